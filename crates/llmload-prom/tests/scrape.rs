//! The scraper against a tiny in-test HTTP server on 127.0.0.1 whose exposition the test
//! changes: window deltas must equal the changes made inside the window exactly.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmload_prom::window::ClientFigures;
use llmload_prom::{Scraper, default_metrics_url};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

#[derive(Debug, Clone, Default)]
struct State {
    requests: u64,
    prompt: u64,
    generation: u64,
    running: u64,
    waiting: u64,
    kv: f64,
    /// TTFT observations: counts in (0, 0.1], (0.1, 0.5], (0.5, +Inf).
    ttft: [u64; 3],
    ttft_sum: f64,
    /// Status to answer with (200 normally).
    status: u16,
    gzip: bool,
    openmetrics: bool,
    served: u64,
}

fn exposition(s: &State) -> String {
    let m = "model_name=\"m\",engine=\"0\"";
    let c1 = s.ttft[0];
    let c2 = c1 + s.ttft[1];
    let c3 = c2 + s.ttft[2];
    let (ctr, sep) = if s.openmetrics {
        ("vllm:request_success", "_total")
    } else {
        ("vllm:request_success_total", "")
    };
    let mut t = format!(
        "# TYPE {ctr} counter\n{ctr}{sep}{{finished_reason=\"length\",{m}}} {}\n\
{ctr}{sep}{{finished_reason=\"stop\",{m}}} 0\n",
        s.requests
    );
    let (p, g) = if s.openmetrics {
        ("vllm:prompt_tokens", "vllm:generation_tokens")
    } else {
        ("vllm:prompt_tokens_total", "vllm:generation_tokens_total")
    };
    t.push_str(&format!(
        "# TYPE {p} counter\n{p}{sep}{{{m}}} {}\n# TYPE {g} counter\n{g}{sep}{{{m}}} {}\n",
        s.prompt, s.generation
    ));
    t.push_str(&format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{{m}}} {}\n\
# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{{m}}} {}\n\
# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{{{m}}} {}\n\
# TYPE vllm:time_to_first_token_seconds histogram\n\
vllm:time_to_first_token_seconds_bucket{{le=\"0.1\",{m}}} {c1}\n\
vllm:time_to_first_token_seconds_bucket{{le=\"0.5\",{m}}} {c2}\n\
vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\",{m}}} {c3}\n\
vllm:time_to_first_token_seconds_count{{{m}}} {c3}\n\
vllm:time_to_first_token_seconds_sum{{{m}}} {}\n",
        s.running, s.waiting, s.kv, s.ttft_sum
    ));
    if s.openmetrics {
        t.push_str("# EOF\n");
    }
    t
}

/// Serves the state's exposition to every request on 127.0.0.1 (ephemeral port).
async fn serve(state: Arc<Mutex<State>>) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body, ct) = {
                    let mut s = state.lock();
                    s.served += 1;
                    let text = exposition(&s);
                    let body = if s.gzip {
                        let mut enc =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        enc.write_all(text.as_bytes()).expect("in memory");
                        enc.finish().expect("in memory")
                    } else {
                        text.into_bytes()
                    };
                    let ct = if s.openmetrics {
                        "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    } else {
                        "text/plain; version=0.0.4; charset=utf-8"
                    };
                    (s.status, body, ct)
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
                    body.len(),
                    if state.lock().gzip {
                        "Content-Encoding: gzip\r\n"
                    } else {
                        ""
                    }
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    default_metrics_url(&Url::parse(&format!("http://{addr}/v1")).expect("url"))
}

async fn wait_scrapes(state: &Arc<Mutex<State>>, n: u64) {
    let start = state.lock().served;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.lock().served < start + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn window_deltas_equal_the_changes_inside_the_window() {
    let state = Arc::new(Mutex::new(State {
        status: 200,
        requests: 7,
        prompt: 700,
        generation: 300,
        ttft: [5, 1, 1],
        ttft_sum: 2.0,
        ..Default::default()
    }));
    let url = serve(Arc::clone(&state)).await;
    assert_eq!(url.path(), "/metrics");
    let handle = Scraper::spawn(vec![url], Duration::from_millis(40), Instant::now());
    wait_scrapes(&state, 2).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let start = handle.now_s();
    // Inside the window: 10 requests of 128 prompt and 64 generated tokens, in two steps.
    for step in 0..2 {
        {
            let mut s = state.lock();
            s.requests += 5;
            s.prompt += 5 * 128;
            s.generation += 5 * 64;
            s.running = 5 + step;
            s.waiting = step;
            s.kv = 0.25 * (step as f64 + 1.0);
            s.ttft[0] += 4;
            s.ttft[1] += 1;
            s.ttft_sum += 4.0 * 0.05 + 0.3;
        }
        wait_scrapes(&state, 2).await;
    }
    let end = handle.now_s();
    let w = handle.window(start, end).await;
    // After the window: more traffic that must not count.
    state.lock().requests += 100;
    let t = &w.totals;
    assert_eq!(t.requests_finished, Some(10.0), "{w:#?}");
    assert_eq!(t.prompt_tokens, Some(10.0 * 128.0));
    assert_eq!(t.generation_tokens, Some(10.0 * 64.0));
    let ttft = &t.latency["ttft_s"];
    assert_eq!(ttft.count, 10.0);
    assert!((ttft.sum - 2.0 * (4.0 * 0.05 + 0.3)).abs() < 1e-9);
    // 8 of 10 in the first bucket (0, 0.1], 2 in (0.1, 0.5]: p50 = 0 + 0.1 * 5/8.
    let p50 = ttft.p50.expect("p50");
    assert!((p50.value - 0.1 * 5.0 / 8.0).abs() < 1e-12);
    // Gauges over the scrapes inside the window.
    assert!(w.scrapes_in_window >= 2, "{w:#?}");
    assert_eq!(w.running.max, Some(6.0));
    assert_eq!(w.waiting.max, Some(1.0));
    assert_eq!(w.kv_cache_usage.max, Some(0.5));
    let ts = &w.series[0];
    assert_eq!(ts.t.len(), w.scrapes_in_window);
    assert_eq!(ts.generation_tokens.last().copied().flatten(), Some(640.0));
    assert!(w.baseline_t_s[0].expect("baseline") <= start);
    assert!(w.closing_t_s[0].expect("closing") >= end);
    assert!(w.insights.iter().any(|i| i.code == "saturation"));
    // Correlation with the client's figures.
    let mut w = w;
    w.correlate(&ClientFigures {
        ttft_mean_s: Some(0.2),
        prompt_tokens: 1280,
        output_tokens: 650,
        completed: 10,
    });
    let c = w.correlation.as_ref().expect("set");
    assert!((c.ttft_overhead_s.expect("both") - (0.2 - 1.0 / 10.0)).abs() < 1e-9);
    assert_eq!(c.prompt_tokens_diff, Some(0.0));
    assert_eq!(c.output_tokens_diff, Some(10.0));
    // JSON for results.json.
    let v = w.to_value();
    assert_eq!(v["totals"]["prompt_tokens"], 1280.0);
    let series = handle.stop().await;
    assert!(series.scrape_count() >= 4);
    assert_eq!(series.failure_count(), 0);
}

#[tokio::test]
async fn counter_reset_inside_the_window_counts_the_new_values() {
    let state = Arc::new(Mutex::new(State {
        status: 200,
        requests: 50,
        prompt: 5000,
        generation: 2000,
        ttft: [40, 10, 0],
        ttft_sum: 5.0,
        gzip: true,
        openmetrics: true,
        ..Default::default()
    }));
    let url = serve(Arc::clone(&state)).await;
    let handle = Scraper::spawn(vec![url], Duration::from_millis(40), Instant::now());
    wait_scrapes(&state, 2).await;
    let start = handle.now_s();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Server restarted: everything starts again from zero, then 3 requests.
    {
        let mut s = state.lock();
        s.requests = 3;
        s.prompt = 300;
        s.generation = 30;
        s.ttft = [3, 0, 0];
        s.ttft_sum = 0.15;
    }
    wait_scrapes(&state, 2).await;
    let end = handle.now_s();
    let series = handle.stop().await;
    let w = series.window(start, end);
    assert_eq!(w.totals.requests_finished, Some(3.0), "{w:#?}");
    assert_eq!(w.totals.prompt_tokens, Some(300.0));
    assert_eq!(w.totals.generation_tokens, Some(30.0));
    assert_eq!(w.totals.latency["ttft_s"].count, 3.0);
}

#[tokio::test]
async fn failing_scrapes_are_recorded_and_never_fatal() {
    // A port with nothing listening: bind, read the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let state = Arc::new(Mutex::new(State {
        status: 500,
        ..Default::default()
    }));
    let url500 = serve(Arc::clone(&state)).await;
    let dead_url = Url::parse(&format!("http://{dead}/metrics")).expect("url");
    let https = Url::parse("https://127.0.0.1:1/metrics").expect("url");
    let handle = Scraper::spawn(
        vec![dead_url, url500, https],
        Duration::from_millis(30),
        Instant::now(),
    );
    wait_scrapes(&state, 3).await;
    // The server recovers.
    state.lock().status = 200;
    state.lock().requests = 4;
    wait_scrapes(&state, 2).await;
    let w = handle.window(0.0, handle.now_s()).await;
    assert!(!w.scrape_errors.is_empty());
    assert!(
        w.scrape_errors.iter().any(|e| e.error.contains("HTTP 500")),
        "{:?}",
        w.scrape_errors
    );
    assert!(
        w.scrape_errors.iter().any(|e| e.error.contains("connect")),
        "{:?}",
        w.scrape_errors
    );
    assert!(
        w.scrape_errors
            .iter()
            .any(|e| e.error.contains("only http://"))
    );
    assert!(
        w.warnings
            .iter()
            .any(|m| m.contains("no successful scrape"))
    );
    let series = handle.stop().await;
    assert!(series.targets[1].scrapes.len() >= 2);
    assert!(series.targets[0].scrapes.is_empty());
}

#[tokio::test]
async fn two_urls_are_summed() {
    let a = Arc::new(Mutex::new(State {
        status: 200,
        ..Default::default()
    }));
    let b = Arc::new(Mutex::new(State {
        status: 200,
        ..Default::default()
    }));
    let ua = serve(Arc::clone(&a)).await;
    let ub = serve(Arc::clone(&b)).await;
    let handle = Scraper::spawn(vec![ua, ub], Duration::from_millis(40), Instant::now());
    wait_scrapes(&a, 2).await;
    wait_scrapes(&b, 1).await;
    let start = handle.now_s();
    tokio::time::sleep(Duration::from_millis(10)).await;
    {
        let mut s = a.lock();
        s.requests = 2;
        s.prompt = 20;
    }
    {
        let mut s = b.lock();
        s.requests = 3;
        s.prompt = 33;
    }
    wait_scrapes(&a, 2).await;
    wait_scrapes(&b, 1).await;
    let end = handle.now_s();
    let w = handle.window(start, end).await;
    assert_eq!(w.totals.requests_finished, Some(2.0 + 3.0), "{w:#?}");
    assert_eq!(w.totals.prompt_tokens, Some(20.0 + 33.0));
    assert_eq!(w.series.len(), 2);
    handle.stop().await;
}
