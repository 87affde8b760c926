//! Reads the real GPUs: the `llmload gpu` table, a sampler window (JSON) over a few seconds, and
//! one scrape of the exporter. Used to record real output in docs/gpu.md.
//!
//! ```text
//! cargo run --release -p llmload-gpu --example gpu_probe -- [SECONDS] [INTERVAL_MS] [--series]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmload_gpu::cli::{GpuArgs, exporter_state, run_gpu};
use llmload_gpu::exporter::serve;
use llmload_gpu::{GpuSampler, NvmlSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let interval_ms: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let series = args.iter().any(|a| a == "--series");
    if args.iter().any(|a| a == "--nvml-timing") {
        return nvml_timing();
    }

    println!("== llmload gpu");
    let code = run_gpu(GpuArgs {
        gpu_metrics_url: None,
        json: false,
        timeout: Duration::from_secs(5),
    })
    .await?;
    if code != 0 {
        println!("(exit {code})");
        return Ok(());
    }

    println!("\n== sampler: {seconds} s at {interval_ms} ms");
    let src = NvmlSource::open()?;
    let epoch = Instant::now();
    let mut h = GpuSampler::spawn(Box::new(src), Duration::from_millis(interval_ms), epoch);
    h.wait_first(Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    h.stop();
    let end = h.now_s();
    let mut w = h.window(0.0, end);
    // Illustrative client totals, to show the derived figures' shape.
    w.set_client_totals(100_000, 1_000, end);
    let mut v = serde_json::to_value(&w)?;
    if !series && let Some(gpus) = v["gpus"].as_array_mut() {
        for g in gpus {
            let n = g["series"]["t_s"].as_array().map_or(0, Vec::len);
            g["series"] = serde_json::json!(format!("({n} samples; --series prints them)"));
        }
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    println!(
        "read time: {:?} total over {} reads",
        h.read_time(),
        h.progress().reads_ok
    );

    println!("\n== gpu-exporter scrape (--dcgm-names)");
    let state = Arc::new(exporter_state(true, Duration::from_millis(500), None).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    let mut remote =
        llmload_gpu::RemoteSource::new(&format!("http://{addr}/metrics"), Duration::from_secs(5))?;
    let back = llmload_gpu::GpuSource::snapshot(&mut remote).await?;
    let text = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        buf
    };
    println!("{text}");
    println!("read back through --gpu-metrics-url: {back:?}");
    let _ = tx.send(());
    server.await??;
    Ok(())
}

/// Mean wall and CPU time of each NVML call we make, over 200 calls each.
fn nvml_timing() -> Result<(), Box<dyn std::error::Error>> {
    use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
    let nvml = nvml_wrapper::Nvml::init()?;
    let d = nvml.device_by_index(0)?;
    let n = 200;
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    };
    let time = |name: &str, f: &mut dyn FnMut()| {
        let (w0, c0) = (Instant::now(), cpu());
        for _ in 0..n {
            f();
        }
        let (w, c) = (w0.elapsed().as_secs_f64(), cpu() - c0);
        println!(
            "{name:32} wall {:8.1} us  cpu {:8.1} us per call",
            w * 1e6 / n as f64,
            c * 1e6 / n as f64
        );
    };
    time("device_by_index", &mut || {
        let _ = nvml.device_by_index(0);
    });
    time("uuid", &mut || {
        let _ = d.uuid();
    });
    time("name", &mut || {
        let _ = d.name();
    });
    time("utilization_rates", &mut || {
        let _ = d.utilization_rates();
    });
    time("memory_info", &mut || {
        let _ = d.memory_info();
    });
    time("power_usage", &mut || {
        let _ = d.power_usage();
    });
    time("total_energy_consumption", &mut || {
        let _ = d.total_energy_consumption();
    });
    time("temperature", &mut || {
        let _ = d.temperature(TemperatureSensor::Gpu);
    });
    time("clock_info(SM)", &mut || {
        let _ = d.clock_info(Clock::SM);
    });
    // One nvmlDeviceGetFieldValues call for energy (83) and instant power (186).
    let ids = [
        nvml_wrapper::structs::device::FieldId(83),
        nvml_wrapper::structs::device::FieldId(186),
    ];
    time("field_values(energy, power)", &mut || {
        let _ = d.field_values_for(&ids);
    });
    if let Ok(v) = d.field_values_for(&ids) {
        println!("field values: {v:?}");
    }
    Ok(())
}
