//! Scraping the simulator (`llmload-sim`) while requests run: the window's deltas equal the
//! simulator's own counts of requests and tokens exactly, and the analysis of its exposition
//! equals its ground-truth counters.

use std::time::{Duration, Instant};

use llmload_prom::analyze::{Analysis, AnalyzeOptions};
use llmload_prom::{Scraper, Snapshot, default_metrics_url, parse};
use llmload_sim::{SimConfig, SimCounters};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

fn finished(c: &SimCounters) -> u64 {
    c.finished_stop + c.finished_length + c.finished_abort + c.finished_error
}

/// One non-streaming completion over a fresh connection; returns the HTTP status line.
async fn complete(
    addr: std::net::SocketAddr,
    model: &str,
    prompt: &str,
    max_tokens: u32,
) -> String {
    let body = format!(
        r#"{{"model":"{model}","prompt":"{prompt}","max_tokens":{max_tokens},"ignore_eos":true}}"#
    );
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the simulator");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_deltas_equal_the_simulators_counts() {
    let sim = llmload_sim::spawn(SimConfig {
        speedup: 20.0,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    let target = Url::parse(&sim.base_url()).expect("url");
    let handle = Scraper::spawn(
        vec![default_metrics_url(&target)],
        Duration::from_millis(50),
        Instant::now(),
    );
    // Some traffic before the window, which must not count.
    let st = complete(sim.addr, &sim.model_name, "warm up please", 4).await;
    assert!(st.contains(" 200"), "{st}");
    handle.scrape_now().await;
    let before = sim.counters();
    let start = handle.now_s();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let addr = sim.addr;
        let model = sim.model_name.clone();
        tasks.push(tokio::spawn(async move {
            complete(addr, &model, &"word ".repeat(10 + i as usize * 7), 8 + i).await
        }));
    }
    for t in tasks {
        let st = t.await.expect("task");
        assert!(st.contains(" 200"), "{st}");
    }
    let after = sim.counters();
    let end = handle.now_s();
    let w = handle.window(start, end).await;
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
    let t = &w.totals;
    assert_eq!(
        t.requests_finished,
        Some((finished(&after) - finished(&before)) as f64),
        "{w:#?}"
    );
    assert_eq!(t.requests_finished, Some(8.0));
    assert_eq!(
        t.prompt_tokens,
        Some((after.prompt_tokens - before.prompt_tokens) as f64)
    );
    assert_eq!(
        t.generation_tokens,
        Some((after.generation_tokens - before.generation_tokens) as f64)
    );
    // ignore_eos with max_tokens 8..15: 8 + 9 + ... + 15 tokens generated.
    assert_eq!(t.generation_tokens, Some((8..16).sum::<u32>() as f64));
    assert_eq!(t.latency["ttft_s"].count, 8.0);
    assert_eq!(t.latency["e2e_s"].count, 8.0);

    // The whole exposition against the ground truth.
    let text = sim.exposition();
    let snap = Snapshot::from_exposition(&parse(&text).expect("the simulator's /metrics parses"));
    let a = Analysis::of_snapshot("sim", &snap, &AnalyzeOptions::default());
    let c = sim.counters();
    assert_eq!(a.vllm.total.requests_finished, Some(finished(&c) as f64));
    assert_eq!(a.vllm.total.prompt_tokens, Some(c.prompt_tokens as f64));
    assert_eq!(
        a.vllm.total.generation_tokens,
        Some(c.generation_tokens as f64)
    );
    assert_eq!(a.vllm.total.preemptions, Some(c.preemptions as f64));
    let series = handle.stop().await;
    assert_eq!(series.failure_count(), 0);
    sim.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_verbs_on_a_live_url() {
    use clap::Parser;
    #[derive(Parser)]
    struct Top {
        #[command(flatten)]
        m: llmload_prom::cli::MetricsArgs,
    }
    let sim = llmload_sim::spawn(SimConfig {
        speedup: 20.0,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    let st = complete(sim.addr, &sim.model_name, "one two three", 5).await;
    assert!(st.contains(" 200"), "{st}");
    let url = format!("{}/metrics", sim.base_url());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a.json");
    let out_s = out.to_str().expect("utf-8 path");
    let args = Top::try_parse_from(["m", "analyze", &url, "--format", "json", "-o", out_s])
        .expect("valid")
        .m;
    assert_eq!(llmload_prom::cli::run(args).await.expect("runs"), 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("json");
    assert_eq!(v["vllm_detected"], true);
    assert_eq!(
        v["vllm"]["total"]["requests_finished"],
        finished(&sim.counters()) as f64
    );
    let args = Top::try_parse_from([
        "m",
        "diff",
        &url,
        "--interval",
        "100ms",
        "--format",
        "json",
        "-o",
        out_s,
    ])
    .expect("valid")
    .m;
    assert_eq!(llmload_prom::cli::run(args).await.expect("runs"), 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("json");
    assert_eq!(v["kind"], "diff");
    assert!(v["rates"]["interval_s"].as_f64().expect("interval") >= 0.1);
    // Nothing happened between the two scrapes.
    assert_eq!(v["vllm"]["total"]["requests_finished"], 0.0);
    sim.shutdown().await.expect("clean shutdown");
}
