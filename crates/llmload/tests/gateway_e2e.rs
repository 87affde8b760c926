//! End-to-end: `llmload run` through `llmload gateway` in front of two simulators.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::net::SocketAddr;

mod common;
use common::results;

fn sum_metric(text: &str, name: &str, label_filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_through_the_gateway_counts_agree_everywhere() {
    let mut sims = Vec::new();
    for seed in [1, 2] {
        let cfg = llmload_sim::SimConfig {
            speedup: 10.0,
            seed,
            ..Default::default()
        };
        sims.push(llmload_sim::spawn(cfg).await.expect("simulator starts"));
    }
    let gw = llmload_gateway::spawn(llmload_gateway::GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        backends: sims
            .iter()
            .map(|s| llmload_gateway::BackendConfig::new(s.base_url()))
            .collect(),
        ..Default::default()
    })
    .await
    .expect("gateway starts");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let target = format!("http://{}", gw.addr);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmload"))
        .args([
            "run",
            "--target",
            &target,
            "--concurrency",
            "4",
            "--max-requests",
            "40",
            "--output-tokens",
            "16",
            "--prompt-tokens",
            "64",
            "--no-server-metrics",
            "--quiet",
            "--no-report",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let r = results(&out);
    let b = &r["benchmarks"][0];
    assert_eq!(b["requests"]["completed"], 40);
    assert_eq!(b["tokens"]["output_total"], 40 * 16);

    // 40 measured requests plus the preflight's one probe request.
    let finished: Vec<u64> = sims
        .iter()
        .map(|s| {
            let c = s.counters();
            c.finished_stop + c.finished_length + c.finished_abort + c.finished_error
        })
        .collect();
    assert_eq!(finished.iter().sum::<u64>(), 41, "{finished:?}");
    assert!(
        finished.iter().all(|n| *n > 0),
        "both backends served: {finished:?}"
    );
    let generated: u64 = sims.iter().map(|s| s.counters().generation_tokens).sum();
    assert_eq!(generated, 40 * 16 + 1);

    let text = gw.metrics().render_prometheus();
    let ok = sum_metric(&text, "gateway_requests_total", "status=\"200\"");
    assert_eq!(ok, 41.0, "{text}");
    assert_eq!(sum_metric(&text, "gateway_upstream_errors_total", ""), 0.0);
    gw.shutdown().await;
    for s in sims {
        let _ = s.shutdown().await;
    }
}
