//! Cost of GPU sampling: CPU time of the process while the sampler reads every INTERVAL for
//! SECONDS (fake source or NVML), and the lateness of 1 ms timer ticks on the caller's runtime
//! with and without the sampler (the "no dispatch delay" check).
//!
//! ```text
//! cargo bench -p llmload-gpu --bench sampler_cost -- [fake|nvml] [SECONDS] [INTERVAL_MS]
//! ```

use std::time::{Duration, Instant};

use llmload_gpu::{FakeSource, GpuReading, GpuSampler, GpuSource, NvmlSource};

fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage struct into the pointer we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage failed");
    // SAFETY: zero-initialised and filled by getrusage.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn source(kind: &str) -> Box<dyn GpuSource> {
    match kind {
        "nvml" => Box::new(NvmlSource::open().unwrap_or_else(|u| panic!("{}", u.reason))),
        _ => Box::new(FakeSource::new(|i| {
            Ok((0..8)
                .map(|g| GpuReading {
                    index: g,
                    uuid: format!("GPU-{g}"),
                    name: "Fake H100".into(),
                    util_pct: Some((i % 100) as f64),
                    mem_used_bytes: Some(1 << 30),
                    mem_total_bytes: Some(80 << 30),
                    power_w: Some(500.0),
                    energy_j: Some(i as f64 * 50.0),
                    temp_c: Some(50.0),
                    sm_clock_mhz: Some(1980.0),
                })
                .collect())
        })),
    }
}

/// Lateness of `n` 1 ms ticks on a current-thread runtime: (p50, p99, max) in microseconds.
fn tick_lateness(n: usize) -> (f64, f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut late: Vec<f64> = rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        let mut next = tokio::time::Instant::now();
        for _ in 0..n {
            next += Duration::from_millis(1);
            tokio::time::sleep_until(next).await;
            out.push((tokio::time::Instant::now() - next).as_secs_f64() * 1e6);
        }
        out
    });
    late.sort_by(f64::total_cmp);
    let q = |p: f64| late[((late.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.99), late[late.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let kind = args.first().map_or("fake", String::as_str).to_string();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let interval_ms: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);

    let ticks = (seconds * 1000.0 / 4.0) as usize;
    let base = tick_lateness(ticks.min(5000));

    let src = source(&kind);
    let epoch = Instant::now();
    let c0 = cpu_time();
    let w0 = Instant::now();
    let mut h = GpuSampler::spawn(src, Duration::from_millis(interval_ms), epoch);
    // Sample while measuring tick lateness for part of the time, then idle for the rest.
    let with = tick_lateness(ticks.min(5000));
    let rest = Duration::from_secs_f64(seconds).saturating_sub(w0.elapsed());
    std::thread::sleep(rest);
    let c_mid = cpu_time();
    h.stop();
    let wall = w0.elapsed().as_secs_f64();
    let p = h.progress();
    let w = h.window(0.0, h.now_s());
    let samples: usize = w.gpus.iter().map(|g| g.summary.samples).sum();

    // CPU of the whole process over the window, minus nothing: the tick loop ran on the main
    // thread for part of it, so also report the sampler-only figure from the idle part.
    let cpu = (c_mid - c0).as_secs_f64();
    println!(
        "source: {} ({} GPUs), interval {interval_ms} ms, {wall:.1} s",
        w.source,
        w.gpus.len()
    );
    println!(
        "reads: {} ok, {} failed; samples stored: {samples}",
        p.reads_ok, p.read_errors
    );
    println!(
        "time inside reads: {:.3} ms per read (mean)",
        h.read_time().as_secs_f64() * 1e3 / p.reads_ok.max(1) as f64
    );
    println!(
        "process CPU while sampling (incl. the 1 ms tick loop): {:.3} s = {:.2} % of a core",
        cpu,
        100.0 * cpu / wall
    );
    println!(
        "1 ms tick lateness (us) p50/p99/max: without sampler {:.0}/{:.0}/{:.0}, with sampler {:.0}/{:.0}/{:.0}",
        base.0, base.1, base.2, with.0, with.1, with.2
    );

    // Sampler alone: no other work in the process.
    let src = source(&kind);
    let c0 = cpu_time();
    let w0 = Instant::now();
    let mut h = GpuSampler::spawn(src, Duration::from_millis(interval_ms), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let cpu = (cpu_time() - c0).as_secs_f64();
    let wall = w0.elapsed().as_secs_f64();
    h.stop();
    println!(
        "sampler alone: {:.3} s CPU over {wall:.1} s = {:.3} % of a core ({} reads)",
        cpu,
        100.0 * cpu / wall,
        h.progress().reads_ok
    );
}
