//! End-to-end: clients -> gateway -> two test backends, all on 127.0.0.1.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::BodyExt;
use llmload_gateway::spawn;
use llmload_gateway::testing::{MockBackend, MockConfig, MockMode, TestBackend};

fn slow(itl_ms: u64) -> MockConfig {
    MockConfig {
        itl: Duration::from_millis(itl_ms),
        ..MockConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_every_request_completes_and_counters_match() {
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let b = MockBackend::start(MockConfig::default()).await.unwrap();
    let h = spawn(test_config(&[a.url(), b.url()])).await.unwrap();
    let c = client();
    let n = 120usize;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        let (url, body) = if i % 3 == 0 {
            (
                gw_url(&h, "/v1/completions"),
                serde_json::json!({"model":"mock-model","prompt":"hi","max_tokens":5,"stream":true}),
            )
        } else {
            (
                gw_url(&h, "/v1/chat/completions"),
                chat("mock-model", 6, true),
            )
        };
        tasks.spawn(async move { post(&c, &url, &body).await });
        if tasks.len() >= 16 {
            let r = tasks.join_next().await.unwrap().unwrap();
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            assert!(r.text().ends_with("data: [DONE]\n\n"));
        }
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text().ends_with("data: [DONE]\n\n"));
        assert!(r.headers.contains_key("x-request-id"));
    }
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "200")]),
        n as f64
    );
    assert_eq!(metric(&m, "gateway_requests_total", &[]), n as f64);
    assert_eq!(
        metric(&m, "gateway_time_to_first_token_seconds_count", &[]),
        n as f64
    );
    assert_eq!(metric(&m, "gateway_tokens_per_second_count", &[]), n as f64);
    assert_eq!(
        metric(&m, "gateway_e2e_latency_seconds_count", &[]),
        n as f64
    );
    // 5 or 6 output events per request -> 4 or 5 gaps.
    let expect_itl: f64 = (0..n).map(|i| if i % 3 == 0 { 4.0 } else { 5.0 }).sum();
    assert_eq!(
        metric(&m, "gateway_inter_token_latency_seconds_count", &[]),
        expect_itl
    );
    assert_eq!(metric(&m, "gateway_requests_in_flight", &[]), 0.0);
    assert_eq!(metric(&m, "gateway_queue_depth", &[]), 0.0);
    assert_eq!(a.received() + b.received(), n as u64);
    assert!(a.received() > 10 && b.received() > 10, "load is spread");
    assert_eq!(
        metric(
            &m,
            "gateway_requests_total",
            &[("backend", &h.pool().backends[0].label)]
        ),
        a.received() as f64
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_byte_identical_to_direct_ones() {
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let h = spawn(test_config(&[a.url()])).await.unwrap();
    let c = client();
    // Client did not ask for usage: the gateway asks upstream, counts, and strips the chunk.
    for (path, body) in [
        ("/v1/chat/completions", chat("mock-model", 7, true)),
        (
            "/v1/completions",
            serde_json::json!({"model":"mock-model","prompt":"x","max_tokens":3,"stream":true}),
        ),
        ("/v1/chat/completions", chat("mock-model", 4, false)),
        (
            "/v1/chat/completions",
            serde_json::json!({"model":"mock-model","messages":[],"max_tokens":3,"stream":true,
                               "stream_options":{"include_usage":true}}),
        ),
    ] {
        let direct = post(&c, &format!("{}{path}", a.url()), &body).await;
        let via = post(&c, &gw_url(&h, path), &body).await;
        assert_eq!(direct.status, StatusCode::OK);
        assert_eq!(via.status, StatusCode::OK);
        assert_eq!(normalize_ids(&direct.text()), normalize_ids(&via.text()));
        assert_eq!(
            direct.headers.get("content-type"),
            via.headers.get("content-type")
        );
    }
    // What the backend received for a plain streamed request: include_usage was added, the
    // rest of the body is unchanged.
    let body = chat("mock-model", 2, true);
    post(&c, &gw_url(&h, "/v1/chat/completions"), &body).await;
    let seen: serde_json::Value = serde_json::from_slice(&a.last_body().unwrap()).unwrap();
    assert_eq!(seen["stream_options"]["include_usage"], true);
    assert_eq!(seen["messages"], body["messages"]);
    // Token counts came from usage: 7-token stream -> tokens/s sum is positive, and the
    // access path counted every request.
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "200")]),
        5.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_injection_usage_chunk_is_not_invented() {
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let mut cfg = test_config(&[a.url()]);
    cfg.inject_usage = false;
    let h = spawn(cfg).await.unwrap();
    let c = client();
    let body = chat("mock-model", 3, true);
    let via = post(&c, &gw_url(&h, "/v1/chat/completions"), &body).await;
    assert!(!via.text().contains("usage"));
    let seen = a.last_body().unwrap();
    assert_eq!(seen, Bytes::from(body.to_string()));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_backend_mid_run() {
    let mut a = MockBackend::start(slow(40)).await.unwrap();
    let b = MockBackend::start(slow(40)).await.unwrap();
    let h = spawn(test_config(&[a.url(), b.url()])).await.unwrap();
    let a_label = h.pool().backends[0].label.clone();
    let c = client();
    // 10 long streams, spread over both backends.
    let mut inflight = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = c.clone();
        let url = gw_url(&h, "/v1/chat/completions");
        inflight.spawn(async move { post(&c, &url, &chat("mock-model", 25, true)).await });
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.received() + b.received() == 10
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let on_a = a.received();
    assert!(on_a > 0);
    a.kill().await;
    let mut broken = 0;
    let mut complete = 0;
    while let Some(r) = inflight.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let t = r.text();
        if t.ends_with("data: [DONE]\n\n") {
            complete += 1;
        } else {
            // A clean SSE error event ends the broken stream.
            assert!(t.ends_with("\n\n"), "{t}");
            assert!(t.contains("\"error\""), "{t}");
            broken += 1;
        }
    }
    assert_eq!(broken, on_a);
    assert_eq!(complete, 10 - on_a);
    // New requests all go to the survivor.
    for _ in 0..10 {
        let r = post(
            &c,
            &gw_url(&h, "/v1/chat/completions"),
            &chat("mock-model", 2, true),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Never duplicated: every request reached exactly one backend once.
    assert_eq!(a.received(), on_a);
    assert_eq!(b.received(), 10 - on_a + 10);
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "stream_broken")]),
        on_a as f64
    );
    assert!(
        metric(
            &m,
            "gateway_upstream_errors_total",
            &[("backend", &a_label)]
        ) >= on_a as f64
    );
    assert_eq!(
        metric(&m, "gateway_backend_up", &[("backend", &a_label)]),
        0.0
    );
    // It comes back after a restart (health checks every 100 ms).
    a.restart().await;
    let back = eventually(Duration::from_secs(5), || async {
        h.pool().backends[0].is_up()
    })
    .await;
    assert!(back, "backend back in rotation after restart");
    let before = a.received();
    for _ in 0..6 {
        let r = post(
            &c,
            &gw_url(&h, "/v1/chat/completions"),
            &chat("mock-model", 1, true),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert!(
        a.received() > before,
        "restarted backend takes traffic again"
    );
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_backend_up", &[("backend", &a_label)]),
        1.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_before_first_byte_is_retried_once_elsewhere() {
    let mut a = MockBackend::start(MockConfig::default()).await.unwrap();
    let b = MockBackend::start(MockConfig::default()).await.unwrap();
    let mut cfg = test_config(&[a.url(), b.url()]);
    cfg.health_interval = Duration::from_secs(60);
    let h = spawn(cfg).await.unwrap();
    // Restart so that no pooled connection survives, then close every new one on accept.
    a.set_mode(MockMode::CloseOnAccept);
    a.restart().await;
    let c = client();
    for _ in 0..8 {
        let r = post(
            &c,
            &gw_url(&h, "/v1/chat/completions"),
            &chat("mock-model", 2, true),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(a.received(), 0);
    assert_eq!(b.received(), 8);
    let m = metrics_text(&c, &h).await;
    assert!(metric(&m, "gateway_retries_total", &[]) >= 1.0);
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "200")]),
        8.0
    );
    assert!(
        !h.pool().backends[0].is_up(),
        "ejected after repeated failures"
    );
    h.shutdown().await;

    // First-byte timeout: a stalled backend is abandoned and the request retried.
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let b = MockBackend::start(MockConfig::default()).await.unwrap();
    let mut cfg = test_config(&[a.url(), b.url()]);
    cfg.first_byte_timeout = Duration::from_millis(300);
    cfg.health_interval = Duration::from_secs(60);
    let h = spawn(cfg).await.unwrap();
    a.set_mode(MockMode::Stall);
    for _ in 0..4 {
        let r = post(
            &c,
            &gw_url(&h, "/v1/chat/completions"),
            &chat("mock-model", 2, true),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(b.received(), 4);
    let m = metrics_text(&c, &h).await;
    assert!(
        metric(
            &m,
            "gateway_upstream_errors_total",
            &[("class", "first_byte_timeout")]
        ) >= 1.0
    );
    h.shutdown().await;

    // A single backend that refuses: 502 after the failed attempt, no hang.
    let mut a = MockBackend::start(MockConfig::default()).await.unwrap();
    let h = spawn(test_config(&[a.url()])).await.unwrap();
    a.kill().await;
    let r = post(
        &c,
        &gw_url(&h, "/v1/chat/completions"),
        &chat("mock-model", 2, true),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let r = post(
        &c,
        &gw_url(&h, "/v1/chat/completions"),
        &chat("mock-model", 2, true),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let r = get(&c, &gw_url(&h, "/health")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_timeout_ends_with_error_event() {
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let mut cfg = test_config(&[a.url()]);
    cfg.idle_timeout = Duration::from_millis(300);
    let h = spawn(cfg).await.unwrap();
    a.set_mode(MockMode::StallMidStream);
    let c = client();
    let r = post(
        &c,
        &gw_url(&h, "/v1/chat/completions"),
        &chat("mock-model", 5, true),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.text();
    assert!(t.contains("tok0"));
    assert!(t.contains("\"error\"") && t.contains("idle-timeout"), "{t}");
    assert!(eventually(Duration::from_secs(3), || async { a.aborted() == 1 }).await);
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "idle_timeout")]),
        1.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_upstream() {
    let a = MockBackend::start(slow(50)).await.unwrap();
    let h = spawn(test_config(&[a.url()])).await.unwrap();
    let c = client();
    let req = http::Request::post(gw_url(&h, "/v1/chat/completions"))
        .body(http_body_util::Full::new(Bytes::from(
            chat("mock-model", 200, true).to_string(),
        )))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.into_data().is_ok());
    drop(body);
    assert!(
        eventually(Duration::from_secs(3), || async { a.aborted() == 1 }).await,
        "backend saw the abort"
    );
    assert_eq!(a.completed(), 0);
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "client_closed")]),
        1.0
    );
    assert_eq!(metric(&m, "gateway_requests_in_flight", &[]), 0.0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_body_limit_and_queue_full() {
    let a = MockBackend::start(slow(100)).await.unwrap();
    let keys = std::env::temp_dir().join(format!("llmload-gw-keys-{}", std::process::id()));
    std::fs::write(&keys, "# keys\nsk-test-123\n").unwrap();
    let log = std::env::temp_dir().join(format!("llmload-gw-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut cfg = test_config(&[a.url()]);
    cfg.api_keys_file = Some(keys.clone());
    cfg.max_body_bytes = 4096;
    cfg.max_in_flight_per_backend = 1;
    cfg.queue_size = 1;
    cfg.access_log = Some(log.clone());
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let h = spawn(cfg).await.unwrap();
    let c = client();
    let url = gw_url(&h, "/v1/chat/completions");
    let body = Bytes::from(chat("mock-model", 2, true).to_string());
    // 401 without or with a wrong key.
    let r = send(&c, "POST", &url, body.clone(), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &c,
        "POST",
        &url,
        body.clone(),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let auth = [("authorization", "Bearer sk-test-123")];
    let r = send(&c, "POST", &url, body.clone(), &auth).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // /metrics is on the admin listener only.
    let r = send(&c, "GET", &gw_url(&h, "/metrics"), Bytes::new(), &auth).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // 413, declared and streamed.
    let big = serde_json::json!({"model":"mock-model","prompt":"x".repeat(5000)}).to_string();
    let r = send(&c, "POST", &url, Bytes::from(big), &auth).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // 429 when one request is in flight, one queued, and a third arrives.
    let long = Bytes::from(chat("mock-model", 10, true).to_string());
    let mut held = Vec::new();
    for _ in 0..2 {
        let c = c.clone();
        let url = url.clone();
        let long = long.clone();
        held.push(tokio::spawn(async move {
            send(
                &c,
                "POST",
                &url,
                long,
                &[("authorization", "Bearer sk-test-123")],
            )
            .await
        }));
    }
    assert!(eventually(Duration::from_secs(5), || async { h.pool().queued() == 1 }).await);
    let m = metrics_text(&c, &h).await;
    assert_eq!(metric(&m, "gateway_queue_depth", &[]), 1.0);
    let r = send(&c, "POST", &url, body.clone(), &auth).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    for t in held {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "401")]),
        2.0
    );
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "413")]),
        1.0
    );
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "429")]),
        1.0
    );
    assert_eq!(
        metric(&m, "gateway_requests_total", &[("status", "200")]),
        3.0
    );
    assert!(!m.contains("sk-test"));
    h.shutdown().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 3 proxied requests, plus the 413 and the 429 the gateway answered itself (401s are
    // answered before a request id exists and are only counted).
    assert_eq!(lines.len(), 5, "{text}");
    let ok: Vec<_> = lines.iter().filter(|l| l["status"] == "200").collect();
    assert_eq!(ok.len(), 3);
    for l in &ok {
        assert_eq!(l["token_source"], "usage");
        assert!(l["ttft_s"].as_f64().unwrap() > 0.0);
        assert!(l["request_id"].as_str().unwrap().starts_with("gw-"));
    }
    let tokens: u64 = ok
        .iter()
        .map(|l| l["output_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(tokens, 2 + 10 + 10, "exact counts from the usage chunk");
    let rejected: Vec<_> = lines.iter().filter(|l| l["status"] != "200").collect();
    assert_eq!(rejected[0]["status"], "413");
    assert_eq!(rejected[1]["status"], "429");
    assert_eq!(rejected[1]["model"], "mock-model");
    assert!(!text.contains("sk-test"));
    let _ = std::fs::remove_file(&keys);
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_routing_and_merged_models() {
    let a = MockBackend::start(MockConfig {
        models: vec!["m1".into()],
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let b = MockBackend::start(MockConfig {
        models: vec!["m1".into(), "m2".into()],
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let h = spawn(test_config(&[a.url(), b.url()])).await.unwrap();
    let c = client();
    let r = get(&c, &gw_url(&h, "/v1/models")).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["m1", "m2"]);
    for _ in 0..6 {
        let r = post(
            &c,
            &gw_url(&h, "/v1/chat/completions"),
            &chat("m2", 1, true),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(a.received(), 0);
    assert_eq!(b.received(), 6);
    let r = post(
        &c,
        &gw_url(&h, "/v1/chat/completions"),
        &chat("nope", 1, true),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("/v1/models"));
    let m = metrics_text(&c, &h).await;
    assert_eq!(
        metric(
            &m,
            "gateway_requests_total",
            &[("model", "m2"), ("status", "200")]
        ),
        6.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_passes_promtool() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!("promtool not installed: skipping the exposition check");
        return;
    };
    assert!(out.status.success());
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let h = spawn(test_config(&[a.url()])).await.unwrap();
    let c = client();
    for _ in 0..3 {
        post(
            &c,
            &gw_url(&h, "/v1/chat/completions"),
            &chat("mock-model", 4, true),
        )
        .await;
    }
    post(
        &c,
        &gw_url(&h, "/v1/chat/completions"),
        &chat("nope", 4, true),
    )
    .await;
    let text = metrics_text(&c, &h).await;
    let om = send(
        &c,
        "GET",
        &gw_url(&h, "/metrics"),
        Bytes::new(),
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(om.text().ends_with("# EOF\n"));
    assert!(
        om.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    h.shutdown().await;
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
