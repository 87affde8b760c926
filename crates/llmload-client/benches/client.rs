//! Client benchmarks (harness = false). Results and how to read them: docs/performance/client.md.
//!
//! ```text
//! cargo bench -p llmload-client --features testkit --bench client -- throughput [SECS]
//! cargo bench -p llmload-client --features testkit --bench client -- ttft [SECS] [GAP_MS]
//! cargo bench -p llmload-client --features testkit --bench client -- memory [STREAMS]
//! cargo bench -p llmload-client --features testkit --bench client            # all, short
//! ```
//! - throughput: streamed requests/s of 16 tokens against the in-process fast server (server
//!   runtime: 1 thread; client runtime: 1 thread, or LLMLOAD_BENCH_CLIENT_THREADS), at 64,
//!   128 and 256 concurrent closed-loop workers; also client+server CPU seconds per 1,000
//!   requests. LLMLOAD_BENCH_TARGET=http://127.0.0.1:8000 measures against an external server
//!   (e.g. `examples/fast_server.rs`) instead; LLMLOAD_BENCH_NO_STREAM=1 sends non-streaming
//!   requests (to compare with `wrk`); LLMLOAD_BENCH_TOKENS=64 changes the answer length
//!   (start the external server with the same `--tokens`).
//! - ttft: 128 concurrent streams against the scripted server, which logs when it wrote each
//!   request's first token; |client t_first_token - server write| p50/p99/max.
//! - memory: STREAMS (default 10,000) concurrent slow streams against a scripted server in a
//!   child process; client RSS growth per in-flight stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use llmload_client::testkit::{Stream, TestServer};
use llmload_client::{Client, ClientConfig};
use llmload_core::{RequestSpec, percentile};
use tokio_util::sync::CancellationToken;

fn cpu_seconds() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct on success; we read it only then.
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return f64::NAN;
        }
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid pointer to a struct rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn client_runtime() -> tokio::runtime::Runtime {
    let threads: usize = std::env::var("LLMLOAD_BENCH_CLIENT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// Start the fast server on its own 1-thread runtime; returns its URL.
fn fast_server_thread(tokens: u32) -> url::Url {
    if let Ok(t) = std::env::var("LLMLOAD_BENCH_TARGET") {
        return url::Url::parse(&t).expect("LLMLOAD_BENCH_TARGET is a URL");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let addr = llmload_client::testkit::fast::spawn(0, tokens, "fast-model")
                .await
                .unwrap();
            tx.send(addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let addr = rx.recv().unwrap();
    url::Url::parse(&format!("http://{addr}")).unwrap()
}

fn throughput(secs: f64) {
    let tokens: u32 = std::env::var("LLMLOAD_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let url = fast_server_thread(tokens);
    let rt = client_runtime();
    let mode = if std::env::var_os("LLMLOAD_BENCH_NO_STREAM").is_some() {
        "non-streamed"
    } else {
        "streamed"
    };
    println!(
        "# throughput: {mode} chat requests of 16 tokens, closed loop, {secs} s per point, target {url}"
    );
    println!("concurrency  requests  req/s     errors  cpu_s/1000req(process)  ttft_p50_us");
    for conc in [64usize, 128, 256] {
        let mut cfg = ClientConfig::new(url.clone(), "fast-model");
        cfg.max_connections = conc;
        cfg.stream = std::env::var_os("LLMLOAD_BENCH_NO_STREAM").is_none();
        let client = Client::new(cfg, None).unwrap();
        let (n, errs, cpu, elapsed, ttft50) = rt.block_on(async {
            // Warm the pool.
            let spec = Arc::new(RequestSpec::text(
                "Hello, how are you today?",
                Some(7),
                Some(16),
            ));
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let epoch = Instant::now();
            let cancel = CancellationToken::new();
            let cpu0 = cpu_seconds();
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (client, spec, stop, count, errors, cancel) = (
                    client.clone(),
                    spec.clone(),
                    stop.clone(),
                    count.clone(),
                    errors.clone(),
                    cancel.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut ttfts = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let out = client.send(&spec, epoch, &cancel).await;
                        if out.record.error.is_some()
                            || out.record.output_tokens != Some(u64::from(tokens))
                        {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(t) = out.record.ttft() {
                            ttfts.push(t);
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    ttfts
                }));
            }
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            let elapsed = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            all.sort_by(f64::total_cmp);
            (
                count.load(Ordering::Relaxed),
                errors.load(Ordering::Relaxed),
                cpu,
                elapsed,
                percentile(&all, 50.0),
            )
        });
        println!(
            "{conc:>11}  {n:>8}  {:>8.0}  {errs:>6}  {:>22.3}  {:>11.0}",
            n as f64 / elapsed,
            cpu / (n as f64 / 1000.0),
            ttft50 * 1e6
        );
    }
}

fn ttft(secs: f64, gap_ms: u64) {
    // The scripted server runs on its own 1-thread runtime, the client on another.
    let srv_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = srv_rt.block_on(TestServer::start(move |_| {
        Stream::new(16)
            .role_first()
            .ttft(Duration::from_millis(gap_ms))
            .gap(Duration::from_millis(gap_ms))
            .reply()
    }));
    let rt = client_runtime();
    rt.block_on(async {
        let mut cfg = ClientConfig::new(server.url(), "test-model");
        cfg.max_connections = 128;
        let client = Client::new(cfg, None).unwrap();
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..128u64 {
            let (client, stop) = (client.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let cancel = CancellationToken::new();
                let mut out = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let tag = format!("w{w}-{i}");
                    let spec = RequestSpec::text(tag.clone(), None, Some(16));
                    let o = client.send(&spec, epoch, &cancel).await;
                    if let Some(t) = o.record.t_first_token {
                        out.push((tag, t));
                    }
                    i += 1;
                }
                out
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut client_t = std::collections::HashMap::new();
        for t in tasks {
            for (tag, ft) in t.await.unwrap() {
                client_t.insert(tag, ft);
            }
        }
        let mut errs = Vec::new();
        for s in server.log() {
            let body = s.request.json();
            let tag = body["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let (Some(ct), Some(w)) = (client_t.get(&tag), s.first_token_write()) {
                let st = w.duration_since(epoch).as_secs_f64();
                errs.push((ct - st).abs());
            }
        }
        errs.sort_by(f64::total_cmp);
        println!(
            "# ttft error: 128 concurrent streams, 16 tokens, {gap_ms} ms TTFT and gaps, {secs} s"
        );
        println!(
            "requests {}  |err| p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  max {:.1} us",
            errs.len(),
            percentile(&errs, 50.0) * 1e6,
            percentile(&errs, 90.0) * 1e6,
            percentile(&errs, 99.0) * 1e6,
            errs.last().copied().unwrap_or(f64::NAN) * 1e6,
        );
    });
}

/// Child process: a scripted server of slow streams; prints its port.
fn slow_server() {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = TestServer::start(|_| {
            Stream::new(8)
                .role_first()
                .ttft(Duration::from_millis(500))
                .gap(Duration::from_millis(1500))
                .reply()
        })
        .await;
        println!("{}", server.addr().port());
        std::future::pending::<()>().await;
    });
}

fn memory(streams: usize) {
    raise_nofile();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .arg("slow-server")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let rt = client_runtime();
    rt.block_on(async {
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mut cfg = ClientConfig::new(url, "test-model");
        cfg.max_connections = streams;
        let client = Client::new(cfg, None).unwrap();
        let epoch = Instant::now();
        // Baseline after the runtime and one request exist.
        let o = client
            .send(&RequestSpec::text("warm", None, Some(8)), epoch, &CancellationToken::new())
            .await;
        assert!(o.record.error.is_none(), "{:?}", o.record.error_message);
        let rss0 = rss_kib();
        let spec = Arc::new(RequestSpec::text("slow stream please", Some(4), Some(8)));
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let (client, spec) = (client.clone(), spec.clone());
            tasks.push(tokio::spawn(async move {
                client.send(&spec, epoch, &CancellationToken::new()).await
            }));
        }
        // Wait until all are in flight and have their first chunk, then sample RSS at peak.
        let t0 = Instant::now();
        while client.in_flight() < streams as u32 && t0.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let reached = client.in_flight();
        let mut peak = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss_kib());
        }
        let in_flight = client.in_flight();
        let mut ok = 0;
        let mut errors = std::collections::BTreeMap::new();
        for t in tasks {
            let o = t.await.unwrap();
            match o.record.error {
                None => ok += 1,
                Some(c) => *errors.entry(c.as_str()).or_insert(0) += 1,
            }
        }
        println!("# memory: {streams} concurrent slow streams (8 tokens over ~11 s each)");
        println!(
            "in flight at sample {in_flight} (max reached {reached}); client RSS {rss0} KiB -> {peak} KiB; \
             {:.1} KiB per stream; completed {ok}, errors {errors:?}",
            (peak.saturating_sub(rss0)) as f64 / streams as f64
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let num = |i: usize, d: f64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("slow-server") => slow_server(),
        Some("throughput") => throughput(num(1, 5.0)),
        Some("ttft") => ttft(num(1, 5.0), num(2, 20.0) as u64),
        Some("memory") => memory(num(1, 10_000.0) as usize),
        _ => {
            throughput(3.0);
            ttft(3.0, 20);
            memory(2_000);
        }
    }
}
