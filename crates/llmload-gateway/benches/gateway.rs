//! Gateway overhead benchmark: the same streaming backend measured directly and through the
//! gateway, open-loop at a fixed rate (added latency), then closed-loop for peak throughput.
//!
//! Environment knobs: BENCH_SECS (per phase, default 5), BENCH_RATE (req/s, default 1000),
//! BENCH_CONC (closed-loop concurrency, default 64), BENCH_TOKENS (chunks per stream, default
//! 8), BENCH_BACKEND_ADDR (bind the test backend there, e.g. to point LiteLLM at it),
//! BENCH_EXTRA_TARGET (another proxy's base URL, e.g. http://127.0.0.1:4000, measured in the
//! same run), BENCH_EXTRA_MODEL (model name to send to it, default mock-model),
//! BENCH_EXTRA_KEY (bearer key for it), BENCH_CLIENT_THREADS (worker threads shared by the
//! load client and the test backend, default 2), BENCH_GATEWAY_URL (measure an already running gateway,
//! e.g. the `gateway` example pinned to two cores, instead of one spawned in-process; start it
//! with `--backend http://$BENCH_BACKEND_ADDR`), BENCH_ONLY_BACKEND=1 (serve the test backend on
//! BENCH_BACKEND_ADDR for BENCH_SECS seconds and do nothing else).

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

fn main() {
    let secs: f64 = env("BENCH_SECS", 5.0);
    let rate: f64 = env("BENCH_RATE", 1000.0);
    let conc: usize = env("BENCH_CONC", 64);
    let tokens: u32 = env("BENCH_TOKENS", 8);
    // Backend and load client share one runtime; the gateway gets its own, as in production
    // where it is a separate process.
    let gw_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        let addr = std::env::var("BENCH_BACKEND_ADDR")
            .ok()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal"));
        let backend = MockBackend::start_on(addr, MockConfig { default_tokens: tokens, ..MockConfig::default() })
            .await
            .expect("backend");
        if std::env::var("BENCH_ONLY_BACKEND").is_ok() {
            println!("backend on {}", backend.url());
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            return;
        }
        let cfg = GatewayConfig {
            listen: "127.0.0.1:0".parse().expect("literal"),
            backends: vec![BackendConfig::new(backend.url())],
            max_in_flight_per_backend: 4096,
            ..GatewayConfig::default()
        };
        let gw = gw_handle
            .spawn(async move { llmload_gateway::spawn(cfg).await })
            .await
            .expect("join")
            .expect("gateway");
        let c: C = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build_http();
        let gw_url = match std::env::var("BENCH_GATEWAY_URL") {
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
                u
            }
            Err(_) => format!("http://{}", gw.addr),
        };
        let body = Bytes::from(
            serde_json::json!({"model":"mock-model","messages":[{"role":"user","content":"Say hello"}],
                               "max_tokens": tokens, "stream": true})
            .to_string(),
        );
        let mut targets = vec![
            Arc::new(Target { name: "direct".into(), url: format!("{}/v1/chat/completions", backend.url()), body: body.clone(), key: None }),
            Arc::new(Target { name: "gateway".into(), url: format!("{gw_url}/v1/chat/completions"), body: body.clone(), key: None }),
        ];
        if let Ok(extra) = std::env::var("BENCH_EXTRA_TARGET") {
            let model: String = env("BENCH_EXTRA_MODEL", "mock-model".to_string());
            let b = serde_json::json!({"model": model, "messages":[{"role":"user","content":"Say hello"}],
                                        "max_tokens": tokens, "stream": true}).to_string();
            targets.push(Arc::new(Target {
                name: "extra".into(),
                url: format!("{}/v1/chat/completions", extra.trim_end_matches('/')),
                body: Bytes::from(b),
                key: std::env::var("BENCH_EXTRA_KEY").ok(),
            }));
        }
        // Warm-up: connections and allocator.
        for t in &targets {
            let _ = open_loop(&c, t, 200.0, 1.0).await;
        }
        println!("# open loop at {rate} req/s for {secs} s per target, {tokens} chunks per stream");
        println!("target     achieved_rps  errors  ttfb_p50_ms  ttfb_p99_ms  total_p50_ms  total_p99_ms");
        let mut res = Vec::new();
        for t in &targets {
            let (mut s, achieved) = open_loop(&c, t, rate, secs).await;
            let row = (
                pct(&mut s.ttfb, 50.0) * 1e3,
                pct(&mut s.ttfb, 99.0) * 1e3,
                pct(&mut s.total, 50.0) * 1e3,
                pct(&mut s.total, 99.0) * 1e3,
            );
            println!(
                "{:<10} {:>12.0}  {:>6}  {:>11.3}  {:>11.3}  {:>12.3}  {:>12.3}",
                t.name, achieved, s.errors, row.0, row.1, row.2, row.3
            );
            res.push(row);
        }
        for (i, t) in targets.iter().enumerate().skip(1) {
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
        for t in &targets {
            let (ok, err, dur) = closed_loop(&c, t, conc, secs).await;
            println!("{:<10} {:>8.0} streamed req/s  ({} ok, {} errors)", t.name, ok as f64 / dur, ok, err);
        }
        println!("backend saw {} requests, {} aborted", backend.received(), backend.aborted());
    });
    drop(gw_rt);
}
