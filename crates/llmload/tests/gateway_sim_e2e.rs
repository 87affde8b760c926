//! End-to-end failover: `llmload run` through the gateway in front of two `llmload sim`
//! processes; one is killed (SIGKILL) mid-run and restarted later on the same port.
//!
//! What must hold (issue 8): new requests go to the surviving backend; the streams in flight on
//! the dead one reach the client as errors, counted once, never replayed elsewhere; the dead
//! backend is ejected, and comes back into rotation after it restarts.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{jsonl, requests, results};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_llmload");

/// A free loopback port (the simulator is then started on it; it is restarted on the same one).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// GET over a fresh connection; `None` when the server is not there or answers garbage.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// Starts `llmload sim` on `port` and waits until its /health answers 200.
async fn start_sim(port: u16, seed: u32) -> Child {
    let child = Command::new(BIN)
        .args([
            "sim",
            "--port",
            &port.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if matches!(http_get(port, "/health").await, Some((200, _))) {
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "llmload sim on port {port} did not become healthy within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sum of a metric's samples whose line contains every one of `filters`.
fn sum_metric(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every request the simulator finished, whatever the reason (success, abort, error).
async fn sim_requests_seen(port: u16) -> f64 {
    let (status, body) = http_get(port, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    sum_metric(&body, "vllm:request_success_total", &[])
}

async fn sim_completed(port: u16) -> f64 {
    let (_, body) = http_get(port, "/metrics").await.unwrap();
    sum_metric(
        &body,
        "vllm:request_success_total",
        &["finished_reason=\"stop\""],
    ) + sum_metric(
        &body,
        "vllm:request_success_total",
        &["finished_reason=\"length\""],
    )
}

async fn wait_for(what: &str, secs: f64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_mid_run_fails_only_its_streams_and_it_comes_back() {
    const N: u64 = 150;
    let (port_a, port_b) = (free_port(), free_port());
    let mut sim_a = start_sim(port_a, 1).await;
    let mut sim_b = start_sim(port_b, 2).await;

    let dir = tempfile::tempdir().unwrap();
    let access_log = dir.path().join("access.jsonl");
    let gw = llmload_gateway::spawn(llmload_gateway::GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        backends: vec![
            llmload_gateway::BackendConfig::new(format!("http://127.0.0.1:{port_a}")),
            llmload_gateway::BackendConfig::new(format!("http://127.0.0.1:{port_b}")),
        ],
        health_interval: Duration::from_millis(200),
        access_log: Some(access_log.clone()),
        ..Default::default()
    })
    .await
    .expect("gateway starts");
    let pool = gw.pool().clone();
    assert!(pool.backends.iter().all(|b| b.is_up()));
    let label_a = pool.backends[0].label.clone();
    let label_b = pool.backends[1].label.clone();

    // Open loop at 25 req/s, 64 output tokens each (about 0.3 to 0.5 s per stream on the
    // simulator's default profile): a handful of streams are in flight on each backend at any time.
    let out = dir.path().join("r");
    let target = format!("http://{}", gw.addr);
    let run = Command::new(BIN)
        .args([
            "run",
            "--target",
            &target,
            "--profile",
            "constant",
            "--rate",
            "25",
            "--max-requests",
            &N.to_string(),
            "--output-tokens",
            "64",
            "--prompt-tokens",
            "64",
            "--no-server-metrics",
            "--quiet",
            "--no-report",
            "--out",
            out.to_str().unwrap(),
        ])
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let run = tokio::spawn(run.wait_with_output());

    // Mid-run: B has served some requests and has streams in flight.
    let b = pool.backends[1].clone();
    let m = gw.metrics().clone();
    wait_for(
        "backend B to have served requests and hold streams",
        20.0,
        || {
            let served = sum_metric(
                &m.render_prometheus(),
                "gateway_requests_total",
                &[&format!("backend=\"{label_b}\""), "status=\"200\""],
            );
            served >= 5.0 && b.in_flight() >= 2
        },
    )
    .await;
    sim_b.kill().await.unwrap(); // SIGKILL: connections reset, no goodbye
    let killed_at = Instant::now();

    // B is ejected (a refused connection or failed probes take it out).
    wait_for("backend B to be ejected", 5.0, || !b.is_up()).await;
    // Its in-flight streams have all ended (as errors) by now.
    wait_for("B's slots to be released", 5.0, || b.in_flight() == 0).await;
    let b_ok_before_restart = sum_metric(
        &m.render_prometheus(),
        "gateway_requests_total",
        &[&format!("backend=\"{label_b}\""), "status=\"200\""],
    );
    // A while with B down: everything goes to A.
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(killed_at.elapsed())).await;

    // Restart B on the same port; the health checks bring it back.
    let sim_b2 = start_sim(port_b, 3).await;
    wait_for("backend B to come back after its restart", 5.0, || {
        b.is_up()
    })
    .await;

    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("llmload run finishes")
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    // The client's view.
    let r = results(&out);
    let bench = &r["benchmarks"][0];
    let completed = bench["requests"]["completed"].as_u64().unwrap();
    let records = requests(&out);
    let failed: Vec<&Value> = records
        .iter()
        .filter(|rec| !rec["error"].is_null())
        .collect();
    assert_eq!(records.len() as u64, N, "every request has one record");
    assert_eq!(
        completed + failed.len() as u64,
        N,
        "every request completed or failed"
    );
    assert!(
        !failed.is_empty(),
        "the streams in flight on B when it was killed fail at the client"
    );
    // They failed because their stream broke: the gateway's clean SSE error event (code 502).
    for rec in &failed {
        let e = rec["error"].as_str().unwrap();
        assert!(e == "http_5xx" || e == "stream_broken", "{rec}");
    }

    // The gateway's view: each client request counted once; the failures are exactly B's
    // broken streams; nothing else failed.
    let text = m.render_prometheus();
    let total = sum_metric(&text, "gateway_requests_total", &[]);
    let ok = sum_metric(&text, "gateway_requests_total", &["status=\"200\""]);
    let broken_b = sum_metric(
        &text,
        "gateway_requests_total",
        &[
            &format!("backend=\"{label_b}\""),
            "status=\"stream_broken\"",
        ],
    );
    // +1: the run's preflight request.
    assert_eq!(total, (N + 1) as f64, "{text}");
    assert_eq!(ok, (completed + 1) as f64, "{text}");
    assert_eq!(broken_b, failed.len() as f64, "{text}");
    assert_eq!(
        sum_metric(
            &text,
            "gateway_upstream_errors_total",
            &[&format!("backend=\"{label_a}\"")]
        ),
        0.0,
        "{text}"
    );
    assert_eq!(
        sum_metric(&text, "gateway_backend_up", &[]),
        2.0,
        "both backends in rotation at the end: {text}"
    );

    // Never duplicated: A saw exactly the requests the gateway ended on A (a broken stream
    // replayed on A would show up there as one more), all of them completed.
    let on_a = sum_metric(
        &text,
        "gateway_requests_total",
        &[&format!("backend=\"{label_a}\"")],
    );
    assert_eq!(sim_requests_seen(port_a).await, on_a, "{text}");
    assert_eq!(sim_completed(port_a).await, on_a, "{text}");
    // The restarted B took new requests, and the gateway ended on B exactly those.
    let b_ok_after = sum_metric(
        &text,
        "gateway_requests_total",
        &[&format!("backend=\"{label_b}\""), "status=\"200\""],
    );
    let b2_seen = sim_requests_seen(port_b).await;
    assert!(b2_seen > 0.0, "the restarted backend got traffic again");
    assert_eq!(b2_seen, b_ok_after - b_ok_before_restart, "{text}");

    eprintln!(
        "completed {completed}, failed {} (on B when it was killed), A ended {on_a}, B ended {b_ok_before_restart} before its kill and {b2_seen} after its restart, retries {}",
        failed.len(),
        sum_metric(&text, "gateway_retries_total", &[])
    );

    // The access log: one line per request, each with its own id; the broken ones on B after
    // one attempt.
    gw.shutdown().await;
    let lines = jsonl(&access_log);
    assert_eq!(lines.len() as u64, N + 1);
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), lines.len(), "request ids are unique");
    let broken: Vec<&Value> = lines
        .iter()
        .filter(|l| l["status"] == "stream_broken")
        .collect();
    assert_eq!(broken.len(), failed.len());
    assert!(
        broken
            .iter()
            .all(|l| l["backend"] == label_b.as_str() && l["attempts"] == 1),
        "{broken:?}"
    );

    let _ = sim_a.kill().await;
    drop(sim_b2);
}
