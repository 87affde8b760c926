//! Streamed tokens per second over many concurrent SSE streams, and how closely the engine
//! thread keeps its step clock. Usage (numbers in docs/performance/sim.md):
//!
//! ```text
//! cargo bench -p llmload-sim --bench stream_throughput -- [streams] [tokens_per_stream] [speedup]
//! ```
//!
//! The client is a minimal HTTP/1.1 client on raw loopback sockets (one connection per stream)
//! that counts the tokens of each stream from its final usage chunk and checks `[DONE]`.

use std::time::{Duration, Instant};

use llmload_sim::{Profile, SimConfig, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connection set-ups in flight at once (below the listen backlog of 1,024).
const CONNECTING: usize = 256;

fn arg(i: usize, default: f64) -> f64 {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn one_stream(
    addr: std::net::SocketAddr,
    body: &'static str,
    connecting: std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<(u64, u64, Duration), String> {
    // at most CONNECTING connection set-ups at once: 10,000 simultaneous SYNs overflow the
    // listen backlog and the dropped ones retry after 1 s and 3 s, which measures the kernel
    let permit = connecting
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).ok();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    drop(permit);
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::with_capacity(8192);
    let mut bytes = 0u64;
    let start = Instant::now();
    let mut first: Option<Duration> = None;
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before [DONE]".into());
        }
        if first.is_none() {
            first = Some(start.elapsed());
        }
        bytes += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 4096 {
            let cut = tail.len() - 1024;
            tail.drain(..cut);
        }
        if tail.windows(12).any(|w| w == b"data: [DONE]") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&tail);
    let i = text
        .rfind("\"completion_tokens\":")
        .ok_or("no usage chunk")?;
    let digits: String = text[i + 20..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let tokens = digits.parse().map_err(|_| "bad usage".to_string())?;
    Ok((tokens, bytes, first.unwrap_or_default()))
}

async fn client(addr: std::net::SocketAddr, streams: usize, tokens: u32) {
    let body: &'static str = Box::leak(
        format!(
            "{{\"messages\":[{{\"role\":\"user\",\"content\":\"bench\"}}],\"max_tokens\":{tokens},\"ignore_eos\":true,\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}"
        )
        .into_boxed_str(),
    );
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let connecting = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    for _ in 0..streams {
        set.spawn(one_stream(addr, body, connecting.clone()));
    }
    let (mut total, mut bytes, mut errors, mut ok) = (0u64, 0u64, 0u64, 0u64);
    let mut ttfb = Vec::with_capacity(streams);
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((t, b, f))) => {
                total += t;
                bytes += b;
                ok += 1;
                ttfb.push(f.as_secs_f64());
            }
            Ok(Err(e)) => {
                errors += 1;
                if errors < 5 {
                    eprintln!("stream error: {e}");
                }
            }
            Err(e) => eprintln!("task error: {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    ttfb.sort_by(f64::total_cmp);
    let p50 = ttfb.get(ttfb.len() / 2).copied().unwrap_or(0.0);
    println!(
        "client: streams {streams} (ok {ok}, errors {errors}), tokens/stream {tokens}: {total} tokens in {secs:.2} s = {:.0} streamed tokens/s, {:.0} MB/s of SSE, first byte p50 {:.0} ms",
        total as f64 / secs,
        bytes as f64 / secs / 1e6,
        p50 * 1e3
    );
}

/// CPU seconds (user + system) of this process and, when `thread` is given, of its thread with
/// that name, from /proc (Linux; None elsewhere). Clock ticks are taken as 100 per second.
fn cpu_seconds(thread: Option<&str>) -> (Option<f64>, Option<f64>) {
    fn ticks(stat: &str) -> Option<f64> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let u: f64 = f.get(11)?.parse().ok()?;
        let s: f64 = f.get(12)?.parse().ok()?;
        Some((u + s) / 100.0)
    }
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s));
    let mut th = None;
    if let (Some(name), Ok(dir)) = (thread, std::fs::read_dir("/proc/self/task")) {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if name.starts_with(comm.trim())
                && !comm.trim().is_empty()
                && let Some(t) = std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|s| ticks(&s))
            {
                th = Some(th.unwrap_or(0.0) + t);
            }
        }
    }
    (own, th)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn main() {
    let streams = arg(1, 10_000.0) as usize;
    let tokens = arg(2, 200.0) as u32;
    let speedup = arg(3, 60.0);
    let threads = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // the client runs in a child process (file-descriptor limits: one socket per stream per side)
    if let Ok(addr) = std::env::var("LLMLOAD_SIM_BENCH_CLIENT") {
        let addr = addr.parse().expect("address from the parent");
        rt.block_on(client(addr, streams, tokens));
        if let (Some(cpu), _) = cpu_seconds(None) {
            println!("client: {cpu:.2} CPU seconds");
        }
        return;
    }
    rt.block_on(async move {
        let mut p = Profile::builtin("qwen3-4b-fp8").expect("built-in profile");
        // room for every stream at once: no queueing, no preemption (bench-only scaling)
        p.scheduler.max_num_seqs = (streams as u32).max(1024);
        p.scheduler.max_num_batched_tokens = (streams as u32 * 64).max(8192);
        p.gpu.memory_bytes = 4_000_000_000_000;
        p.model.max_model_len = 8192;
        let cfg = SimConfig { profile: p, speedup, seed: 1, api_servers: Some(8), ..SimConfig::default() };
        let h = spawn(cfg).await.expect("spawn simulator");
        println!("load average before: {}", load_average());
        // the engine thread names itself once it runs: wait for it
        let (mut cpu0, mut eng0) = cpu_seconds(Some("llmload-sim-engine"));
        for _ in 0..100 {
            if eng0.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            (cpu0, eng0) = cpu_seconds(Some("llmload-sim-engine"));
        }
        let exe = std::env::current_exe().expect("own executable");
        let mut child = tokio::process::Command::new(exe)
            .args(std::env::args().skip(1))
            .env("LLMLOAD_SIM_BENCH_CLIENT", h.addr.to_string())
            .spawn()
            .expect("start the client process");
        // where the worst lateness happens (start-up connection storm, steady state, ...)
        let t0 = Instant::now();
        let mut last_max = 0.0;
        let st = loop {
            if let Some(st) = child.try_wait().expect("client process") {
                break st;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let c = h.clock_stats();
            if c.max_late_s > last_max + 0.05 {
                let (g, k) = (h.gauges(), h.counters());
                println!(
                    "  new max lateness {:.1} ms at {:.2} s ({} requests in the server, {} running, {} steps, {} tokens so far)",
                    c.max_late_s * 1e3,
                    t0.elapsed().as_secs_f64(),
                    h.in_flight(),
                    g.running,
                    k.steps,
                    k.generation_tokens
                );
                last_max = c.max_late_s;
            }
        };
        let (cpu1, eng1) = cpu_seconds(Some("llmload-sim-engine"));
        let clock = h.clock_stats();
        let c = h.counters();
        let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", b - a),
            _ => "n/a".into(),
        };
        println!(
            "server: speedup {speedup}, client exit {st}; engine steps {}, {:.0} tokens/step, {} tokens generated, {} requests finished",
            c.steps,
            c.generation_tokens as f64 / c.steps.max(1) as f64,
            c.generation_tokens,
            c.finished_length + c.finished_stop,
        );
        println!(
            "server: {} CPU seconds (engine thread {}); load average after: {}",
            diff(cpu0, cpu1),
            diff(eng0, eng1),
            load_average()
        );
        println!(
            "step clock lateness: {} samples, mean {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} over 1 ms",
            clock.wakeups,
            clock.mean_late_s * 1e3,
            clock.p99_late_s * 1e3,
            clock.max_late_s * 1e3,
            clock.over_1ms
        );
        println!(
            "engine thread sleeps: {}, woke after its deadline by mean {:.3} ms, p99 {:.3} ms, max {:.3} ms (the OS's share of the lateness)",
            clock.sleeps,
            clock.oversleep_mean_s * 1e3,
            clock.oversleep_p99_s * 1e3,
            clock.oversleep_max_s * 1e3
        );
        h.shutdown().await.ok();
    });
}
