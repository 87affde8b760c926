//! Gateway overhead benchmark: the same streaming backend measured directly and through the
//! gateway, open-loop at a fixed rate (added latency; targets alternate over several rounds so
//! they share the machine's noise), then closed-loop for peak throughput. The proxy's own CPU
//! time is read from /proc around each phase (the in-process gateway's runtime threads, or a
//! process given by pid), which gives its CPU cost per streamed request.
//!
//! Environment knobs:
//! - BENCH_SECS (per phase, default 5), BENCH_ROUNDS (open-loop rounds, default 3),
//!   BENCH_RATE (req/s, default 1000), BENCH_CONC (closed-loop concurrency, default 64),
//!   BENCH_TOKENS (chunks per stream, default 8), BENCH_CLIENT_THREADS (worker threads shared
//!   by the load client and the in-process backend, default 2), BENCH_GATEWAY_THREADS (the
//!   in-process gateway's runtime, default 2).
//! - Backend: the in-process mock (no delay; BENCH_BACKEND_ADDR binds it at a fixed address,
//!   BENCH_ONLY_BACKEND=1 serves it for BENCH_SECS and does nothing else), or an external one
//!   with BENCH_BACKEND_URL (e.g. `llmload sim --speedup 100`); BENCH_MODEL names the model
//!   (default mock-model).
//! - Gateway: in-process on its own runtime, or an external one with BENCH_GATEWAY_URL (start
//!   it with `--backend <the backend>`), BENCH_GATEWAY_PID for its CPU time.
//! - A third proxy measured in the same run: BENCH_EXTRA_TARGET (base URL, e.g. LiteLLM on
//!   http://127.0.0.1:4000), BENCH_EXTRA_NAME (row label, default extra), BENCH_EXTRA_MODEL,
//!   BENCH_EXTRA_KEY (bearer key), BENCH_EXTRA_PID (for its CPU time), BENCH_EXTRA_RATE and
//!   BENCH_EXTRA_CONC (its own open-loop rate and closed-loop concurrency, default the same).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llmload_gateway::testing::{MockBackend, MockConfig, TestBackend};
use llmload_gateway::{BackendConfig, GatewayConfig};
use parking_lot::Mutex;
use tokio::time::Instant;

type C = Client<HttpConnector, Full<Bytes>>;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

#[derive(Default)]
struct Sample {
    ttfb: Vec<f64>,
    total: Vec<f64>,
    errors: u64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let r = p / 100.0 * (v.len() - 1) as f64;
    let lo = r.floor() as usize;
    let hi = r.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
}

struct Target {
    name: String,
    url: String,
    body: Bytes,
    key: Option<String>,
}

async fn one(c: &C, t: &Target) -> Result<(f64, f64), ()> {
    let mut b = http::Request::post(&t.url).header("content-type", "application/json");
    if let Some(k) = &t.key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let req = b.body(Full::new(t.body.clone())).map_err(|_| ())?;
    let t0 = Instant::now();
    let resp = c.request(req).await.map_err(|_| ())?;
    if !resp.status().is_success() {
        return Err(());
    }
    let mut body = resp.into_body();
    let mut first = None;
    let mut tail = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|_| ())?;
        if let Ok(d) = f.into_data() {
            if first.is_none() && !d.is_empty() {
                first = Some(t0.elapsed().as_secs_f64());
            }
            tail.extend_from_slice(&d[d.len().saturating_sub(16)..]);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 32);
            }
        }
    }
    let total = t0.elapsed().as_secs_f64();
    if !tail.ends_with(b"data: [DONE]\n\n") {
        return Err(());
    }
    Ok((first.unwrap_or(total), total))
}

async fn open_loop(c: &C, t: &Arc<Target>, rate: f64, secs: f64) -> (Sample, f64) {
    let s = Arc::new(Mutex::new(Sample::default()));
    let n = (rate * secs) as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let (c, t, s) = (c.clone(), t.clone(), s.clone());
        tasks.spawn(async move {
            match one(&c, &t).await {
                Ok((a, b)) => {
                    let mut s = s.lock();
                    s.ttfb.push(a);
                    s.total.push(b);
                }
                Err(()) => s.lock().errors += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    let s = std::mem::take(&mut *s.lock());
    (s, achieved)
}

async fn closed_loop(c: &C, t: &Arc<Target>, conc: usize, secs: f64) -> (u64, u64, f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (c, t) = (c.clone(), t.clone());
        tasks.spawn(async move {
            let (mut ok, mut err) = (0u64, 0u64);
            while Instant::now() < end {
                match one(&c, &t).await {
                    Ok(_) => ok += 1,
                    Err(()) => err += 1,
                }
            }
            (ok, err)
        });
    }
    let (mut ok, mut err) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        if let Ok((a, b)) = r {
            ok += a;
            err += b;
        }
    }
    (ok, err, start.elapsed().as_secs_f64())
}

/// `/proc/loadavg` (first three fields), to print with every run.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux this runs on; `getconf CLK_TCK` would say otherwise.
    env("BENCH_CLK_TCK", 100.0)
}

/// utime + stime in seconds from the text of a `/proc/.../stat` file.
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Where the CPU time of a proxy under test is read.
#[derive(Clone)]
enum CpuProbe {
    /// The threads of this process whose name is `gateway` (the in-process gateway runtime).
    Threads(&'static str),
    /// A whole process (an external gateway, LiteLLM).
    Pid(u32),
    None,
}

impl CpuProbe {
    fn read(&self) -> Option<f64> {
        match self {
            CpuProbe::Threads(name) => {
                let mut sum = 0.0;
                for e in std::fs::read_dir("/proc/self/task").ok()? {
                    let dir = e.ok()?.path();
                    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                    if comm.trim() == *name {
                        sum += stat_cpu_secs(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
                    }
                }
                Some(sum)
            }
            CpuProbe::Pid(pid) => {
                stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
            }
            CpuProbe::None => None,
        }
    }
}

fn cpu_note(probe: &CpuProbe, before: Option<f64>, requests: u64, wall: f64) -> String {
    match (before, probe.read()) {
        (Some(a), Some(b)) if requests > 0 => {
            let cpu = b - a;
            let per = cpu / requests as f64;
            format!(
                "proxy CPU {:.2} s = {:.0} us/request, {:.0} % of one core; 2 dedicated cores => ~{:.0} req/s",
                cpu,
                per * 1e6,
                cpu / wall * 100.0,
                2.0 / per
            )
        }
        _ => String::new(),
    }
}

fn main() {
    let secs: f64 = env("BENCH_SECS", 5.0);
    let rate: f64 = env("BENCH_RATE", 1000.0);
    let conc: usize = env("BENCH_CONC", 64);
    let tokens: u32 = env("BENCH_TOKENS", 8);
    let rounds: usize = env("BENCH_ROUNDS", 3);
    // Backend and load client share one runtime; the gateway gets its own, as in production
    // where it is a separate process.
    let gw_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env("BENCH_GATEWAY_THREADS", 2))
        .enable_all()
        .thread_name("gateway")
        .build()
        .expect("gateway runtime");
    let client_threads: usize = env("BENCH_CLIENT_THREADS", 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .expect("client runtime");
    let gw_handle = gw_rt.handle().clone();
    rt.block_on(async move {
        println!(
            "# gateway bench: {} cpus, load average {} at start",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            loadavg()
        );
        // The backend: the in-process mock (no delay), or an external server
        // (`llmload sim --speedup 100`, llmload-client's `fast_server`).
        let external_backend = std::env::var("BENCH_BACKEND_URL").ok();
        let mock = if external_backend.is_none() {
            let addr = std::env::var("BENCH_BACKEND_ADDR")
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal"));
            let m = MockBackend::start_on(addr, MockConfig { default_tokens: tokens, ..MockConfig::default() })
                .await
                .expect("backend");
            if std::env::var("BENCH_ONLY_BACKEND").is_ok() {
                println!("backend on {}", m.url());
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                return;
            }
            Some(m)
        } else {
            None
        };
        let backend_url = external_backend
            .map(|u| u.trim_end_matches('/').to_string())
            .or_else(|| mock.as_ref().map(|m| m.url()))
            .expect("either an external backend or the mock");
        let model: String = env("BENCH_MODEL", "mock-model".to_string());
        println!("# backend {backend_url} (model {model})");
        let c: C = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build_http();
        let (gw_url, gw_probe, gw) = match std::env::var("BENCH_GATEWAY_URL") {
            Ok(u) => {
                let u = u.trim_end_matches('/').to_string();
                // Wait until the external gateway sees the backend.
                for _ in 0..100 {
                    let req = http::Request::get(format!("{u}/health")).body(Full::new(Bytes::new())).expect("request");
                    if matches!(c.request(req).await, Ok(r) if r.status().is_success()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let probe = match env("BENCH_GATEWAY_PID", 0u32) {
                    0 => CpuProbe::None,
                    pid => CpuProbe::Pid(pid),
                };
                (u, probe, None)
            }
            Err(_) => {
                let cfg = GatewayConfig {
                    listen: "127.0.0.1:0".parse().expect("literal"),
                    backends: vec![BackendConfig::new(backend_url.clone())],
                    max_in_flight_per_backend: 4096,
                    queue_size: 4096,
                    ..GatewayConfig::default()
                };
                let gw = gw_handle
                    .spawn(async move { llmload_gateway::spawn(cfg).await })
                    .await
                    .expect("join")
                    .expect("gateway");
                (format!("http://{}", gw.addr), CpuProbe::Threads("gateway"), Some(gw))
            }
        };
        let body_for = |model: &str| {
            Bytes::from(
                serde_json::json!({"model": model, "messages":[{"role":"user","content":"Say hello"}],
                                   "max_tokens": tokens, "stream": true})
                .to_string(),
            )
        };
        let mut targets = vec![
            (Arc::new(Target { name: "direct".into(), url: format!("{backend_url}/v1/chat/completions"), body: body_for(&model), key: None }), CpuProbe::None),
            (Arc::new(Target { name: "gateway".into(), url: format!("{gw_url}/v1/chat/completions"), body: body_for(&model), key: None }), gw_probe),
        ];
        if let Ok(extra) = std::env::var("BENCH_EXTRA_TARGET") {
            let m: String = env("BENCH_EXTRA_MODEL", model.clone());
            let probe = match env("BENCH_EXTRA_PID", 0u32) {
                0 => CpuProbe::None,
                pid => CpuProbe::Pid(pid),
            };
            targets.push((
                Arc::new(Target {
                    name: env("BENCH_EXTRA_NAME", "extra".to_string()),
                    url: format!("{}/v1/chat/completions", extra.trim_end_matches('/')),
                    body: body_for(&m),
                    key: std::env::var("BENCH_EXTRA_KEY").ok(),
                }),
                probe,
            ));
        }
        let extra_rate: f64 = env("BENCH_EXTRA_RATE", rate);
        let extra_conc: usize = env("BENCH_EXTRA_CONC", conc);
        // Warm-up: connections and allocator.
        for (t, _) in &targets {
            let r = if t.name == "direct" || t.name == "gateway" { 200.0 } else { extra_rate.min(200.0) };
            let _ = open_loop(&c, t, r, 1.0).await;
        }
        println!(
            "# open loop at {rate} req/s for {secs} s per target and round, {rounds} rounds (targets alternate), {tokens} chunks per stream"
        );
        println!("round target     achieved_rps  errors  ttfb_p50_ms  ttfb_p99_ms  total_p50_ms  total_p99_ms  load");
        let mut pooled: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
        for round in 0..rounds {
            for (i, (t, probe)) in targets.iter().enumerate() {
                let r = if i < 2 { rate } else { extra_rate };
                let before = probe.read();
                let start = Instant::now();
                let (mut s, achieved) = open_loop(&c, t, r, secs).await;
                let cpu = cpu_note(probe, before, s.ttfb.len() as u64 + s.errors, start.elapsed().as_secs_f64());
                println!(
                    "{:>5} {:<10} {:>12.0}  {:>6}  {:>11.3}  {:>11.3}  {:>12.3}  {:>12.3}  {}  {}",
                    round,
                    t.name,
                    achieved,
                    s.errors,
                    pct(&mut s.ttfb, 50.0) * 1e3,
                    pct(&mut s.ttfb, 99.0) * 1e3,
                    pct(&mut s.total, 50.0) * 1e3,
                    pct(&mut s.total, 99.0) * 1e3,
                    loadavg(),
                    cpu
                );
                pooled[i].ttfb.extend(s.ttfb);
                pooled[i].total.extend(s.total);
                pooled[i].errors += s.errors;
            }
        }
        println!("# pooled over rounds");
        let mut res = Vec::new();
        for (i, (t, _)) in targets.iter().enumerate() {
            let s = &mut pooled[i];
            let row = (
                pct(&mut s.ttfb, 50.0) * 1e3,
                pct(&mut s.ttfb, 99.0) * 1e3,
                pct(&mut s.total, 50.0) * 1e3,
                pct(&mut s.total, 99.0) * 1e3,
            );
            println!(
                "  all {:<10} {:>12}  {:>6}  {:>11.3}  {:>11.3}  {:>12.3}  {:>12.3}",
                t.name, s.ttfb.len(), s.errors, row.0, row.1, row.2, row.3
            );
            res.push(row);
        }
        for (i, (t, _)) in targets.iter().enumerate().skip(1) {
            println!(
                "added by {:<8}: ttfb p50 {:+.3} ms, p99 {:+.3} ms; total p50 {:+.3} ms, p99 {:+.3} ms",
                t.name,
                res[i].0 - res[0].0,
                res[i].1 - res[0].1,
                res[i].2 - res[0].2,
                res[i].3 - res[0].3
            );
        }
        println!("# closed loop, concurrency {conc}, {secs} s per target");
        for (i, (t, probe)) in targets.iter().enumerate() {
            let n = if i < 2 { conc } else { extra_conc };
            let before = probe.read();
            let (ok, err, dur) = closed_loop(&c, t, n, secs).await;
            println!(
                "{:<10} conc {:>4} {:>8.0} streamed req/s  ({} ok, {} errors)  load {}  {}",
                t.name,
                n,
                ok as f64 / dur,
                ok,
                err,
                loadavg(),
                cpu_note(probe, before, ok + err, dur)
            );
        }
        if let Some(m) = &mock {
            println!("backend saw {} requests, {} aborted", m.received(), m.aborted());
        }
        println!("# load average {} at end", loadavg());
        if let Some(gw) = gw {
            let _ = gw_handle.spawn(gw.shutdown()).await;
        }
    });
    drop(gw_rt);
}
