//! End-to-end on 127.0.0.1: the remote source against served fixtures, the exporter read back
//! (and checked by promtool when installed), and the no-GPU path of this machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmload_gpu::cli::{GpuSamplingArgs, GpuTelemetry, exporter_state};
use llmload_gpu::exporter::serve;
use llmload_gpu::{
    ExporterFormat, GpuError, GpuSampler, GpuSource, NvmlSource, RemoteSource, read_exposition_text,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn data(name: &str) -> String {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

const LOAD: &str = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01__load.metrics";

/// Serves `body` with `status` to every request; returns the base URL.
async fn static_server(status: u16, body: String) -> String {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn remote_source_reads_both_formats() {
    let base = static_server(200, data(LOAD)).await;
    let mut src = RemoteSource::new(&format!("{base}/metrics"), Duration::from_secs(5)).unwrap();
    let gpus = src.snapshot().await.unwrap();
    assert_eq!(gpus.len(), 1);
    assert_eq!(gpus[0].sm_clock_mhz, Some(1980.0));
    assert_eq!(src.format(), Some(ExporterFormat::NvidiaGpuExporter));
    assert!(src.describe().ends_with("(nvidia_gpu_exporter)"));

    let base = static_server(200, data("dcgm-exporter-README-k8s-sample.prom")).await;
    let mut src = RemoteSource::new(&format!("{base}/metrics"), Duration::from_secs(5)).unwrap();
    let gpus = src.snapshot().await.unwrap();
    assert_eq!(gpus[0].uuid, "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52");
    assert_eq!(src.format(), Some(ExporterFormat::Dcgm));
}

#[tokio::test]
async fn remote_source_errors_say_what_to_do() {
    let base = static_server(404, "nope".into()).await;
    let mut src = RemoteSource::new(&format!("{base}/wrong"), Duration::from_secs(5)).unwrap();
    let e = src.snapshot().await.unwrap_err().to_string();
    assert!(e.contains("--gpu-metrics-url") && e.contains("404"), "{e}");

    let base = static_server(200, "vllm:num_requests_running 1\n".into()).await;
    let mut src = RemoteSource::new(&format!("{base}/metrics"), Duration::from_secs(5)).unwrap();
    match src.snapshot().await {
        Err(GpuError::Format { .. }) => {}
        other => panic!("{other:?}"),
    }

    // A closed port: connection refused.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let mut src =
        RemoteSource::new(&format!("http://{addr}/metrics"), Duration::from_secs(5)).unwrap();
    let e = src.snapshot().await.unwrap_err().to_string();
    assert!(e.contains("request failed"), "{e}");

    assert!(RemoteSource::new("https://x/metrics", Duration::from_secs(1)).is_err());
    assert!(RemoteSource::new("10.0.0.1:9400", Duration::from_secs(1)).is_err());
}

/// The exporter relaying the nvidia_gpu_exporter fixture, read back over HTTP in both namings.
#[tokio::test]
async fn exporter_serves_what_it_reads() {
    let upstream = static_server(200, data(LOAD)).await;
    for dcgm in [false, true] {
        let state = exporter_state(
            dcgm,
            Duration::from_millis(50),
            Some(&format!("{upstream}/metrics")),
        )
        .await;
        assert!(state.gpus.is_ok());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(l, Arc::new(state), async {
            let _ = stop_rx.await;
        }));
        let mut src =
            RemoteSource::new(&format!("http://{addr}/metrics"), Duration::from_secs(5)).unwrap();
        let gpus = src.snapshot().await.unwrap();
        let expected = read_exposition_text(&data(LOAD)).unwrap().1;
        assert_eq!(gpus, expected);
        assert_eq!(
            src.format(),
            Some(if dcgm {
                ExporterFormat::Dcgm
            } else {
                ExporterFormat::NvidiaGpuNames
            })
        );
        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
    }
}

/// promtool's own check of the exposition, when promtool is installed.
#[tokio::test]
async fn exporter_output_passes_promtool() {
    let upstream = static_server(200, data(LOAD)).await;
    let state = exporter_state(
        true,
        Duration::from_millis(50),
        Some(&format!("{upstream}/metrics")),
    )
    .await;
    let text = state.exposition();
    let no_gpu = llmload_gpu::exporter::render(&[], Err("no GPU found: test"), true);
    for (what, t) in [("with GPU", text), ("without GPU", no_gpu)] {
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("promtool not installed: skipping the promtool check");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let msg = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Lint notes about names our users' dashboards impose (units like milliwatts,
        // DCGM's upper-case names) are not errors of the format.
        let hard: Vec<&str> = msg
            .lines()
            .filter(|l| l.contains("error") && !l.contains("lint"))
            .collect();
        assert!(hard.is_empty(), "{what}: promtool: {msg}");
        eprintln!(
            "promtool ({what}): {}",
            if msg.trim().is_empty() {
                "clean"
            } else {
                msg.trim()
            }
        );
    }
}

/// On a machine without the NVIDIA driver (CI, this box), NVML says why, once, and nothing
/// crashes; on a GPU machine the same test reads the GPUs.
#[tokio::test]
async fn no_gpu_path_or_real_gpu() {
    match NvmlSource::open() {
        Err(u) => {
            assert!(u.reason.starts_with("no GPU found: "), "{}", u.reason);
            eprintln!("this machine: {}", u.reason);
            // The exporter still serves, with up 0 and the reason.
            let state = exporter_state(false, Duration::from_millis(100), None).await;
            let text = state.exposition();
            assert!(text.contains("llmload_gpu_exporter_up 0"));
            assert!(text.contains("no GPU found"));
            // `llmload gpu` exits 1.
            let code = llmload_gpu::cli::run_gpu(llmload_gpu::cli::GpuArgs {
                gpu_metrics_url: None,
                json: false,
                timeout: Duration::from_secs(1),
            })
            .await
            .unwrap();
            assert_eq!(code, 1);
            // A run: gpu null plus the reason.
            let args = GpuSamplingArgs {
                gpu_metrics_url: None,
                gpu_interval: Duration::from_millis(100),
                no_gpu: false,
            };
            let t = args.start(Instant::now()).await;
            assert!(matches!(t, GpuTelemetry::Unavailable(_)));
            let mut b = llmload_core::Benchmark::default();
            t.apply(&mut b, 0.0, 1.0);
            let v = serde_json::to_value(&b).unwrap();
            assert!(v["gpu"].is_null());
            assert!(
                v["gpu_unavailable"]["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("no GPU found")
            );
        }
        Ok(src) => {
            eprintln!("GPU machine: {} GPU(s)", src.device_count());
            let mut h = GpuSampler::spawn(Box::new(src), Duration::from_millis(50), Instant::now());
            assert!(h.wait_first(Duration::from_secs(10)).await.unwrap() > 0);
            tokio::time::sleep(Duration::from_millis(300)).await;
            h.stop();
            let w = h.window(0.0, h.now_s());
            assert!(w.gpus[0].summary.samples >= 2);
            assert!(w.gpus[0].summary.mem_total_bytes.unwrap() > 0);
        }
    }
}

/// A run with a remote source: results carry the window and the derived figures.
#[tokio::test]
async fn run_with_remote_source_fills_benchmark_gpu() {
    let upstream = static_server(200, data(LOAD)).await;
    let args = GpuSamplingArgs {
        gpu_metrics_url: Some(format!("{upstream}/metrics")),
        gpu_interval: Duration::from_millis(20),
        no_gpu: false,
    };
    let epoch = Instant::now();
    let mut t = args.start(epoch).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = llmload_core::Benchmark::default();
    b.window.duration_s = 2.0;
    b.tokens.output_total = 12_640;
    b.requests.completed = 100;
    t.apply(&mut b, 0.0, 60.0);
    t.stop();
    let g = b.gpu.as_ref().expect("gpu window");
    assert!(!b.extra.contains_key("gpu_unavailable"));
    assert_eq!(g["totals"]["gpu_count"], 1);
    assert_eq!(g["gpus"][0]["summary"]["util_mean_pct"], 100.0);
    // 631.95 W all along, no counter: energy = integrated power over the covered span.
    assert_eq!(g["gpus"][0]["summary"]["energy_source"], "power_integral");
    assert_eq!(g["derived"]["gpu_seconds"], 2.0);
    assert_eq!(g["derived"]["output_tokens_per_gpu_s"], 6320.0);
    assert_eq!(g["derived"]["gpu_seconds_per_1k_requests"], 20.0);
    assert!(
        g["source"]
            .as_str()
            .unwrap()
            .contains("nvidia_gpu_exporter")
    );
}
