//! Hostile input on the request path: malformed bodies, oversized heads, slow clients, random
//! bytes. The gateway must answer (or close) cleanly, never panic, and keep serving.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use llmload_gateway::spawn;
use llmload_gateway::testing::{MockBackend, MockConfig, TestBackend};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400() {
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let h = spawn(test_config(&[a.url()])).await.unwrap();
    let c = client();
    let url = gw_url(&h, "/v1/chat/completions");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[1,2,3]".to_vec(),
        b"{\"model\": 5}".to_vec(),
        b"{\"model\":\"mock-model\",\"stream\":\"yes\"}".to_vec(),
        b"{\"model\":\"a\",\"model\":\"b\"}".to_vec(),
        b"{\"model\":\"mock-model\"".to_vec(),
        vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
    ];
    for body in cases {
        let r = send(&c, "POST", &url, Bytes::from(body.clone()), &[]).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(60)])
        );
        serde_json::from_slice::<serde_json::Value>(&r.body).expect("error body is JSON");
    }
    assert_eq!(a.received(), 0, "nothing malformed was forwarded");
    // Deeply nested but valid JSON: the gateway skips what it does not read without
    // recursing (no stack overflow); the backend's own answer passes through.
    let r = send(
        &c,
        "POST",
        &url,
        Bytes::from(format!("{{\"model\":\"mock-model\",\"x\":{deep}}}")),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&c, "DELETE", &url, Bytes::new(), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = get(&c, &gw_url(&h, "/../../etc/passwd")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_heads_and_slow_clients_are_cut_off() {
    let a = MockBackend::start(MockConfig::default()).await.unwrap();
    let mut cfg = test_config(&[a.url()]);
    cfg.header_read_timeout = Duration::from_millis(500);
    cfg.body_read_timeout = Duration::from_millis(500);
    let h = spawn(cfg).await.unwrap();
    let c = client();
    // A 200 KB header: 431 (or the connection is closed), never buffered without bound.
    let big = "a".repeat(200_000);
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let head = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answer or close within 5 s")
        .unwrap_or(0);
    let t = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || t.starts_with("HTTP/1.1 431"), "{t}");

    // Slowloris: a head trickled in byte by byte is cut at the header-read timeout.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let start = tokio::time::Instant::now();
    let trickle = async {
        for b in b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    let t = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || t.starts_with("HTTP/1.1 408"), "{t}");
    assert!(start.elapsed() < Duration::from_secs(8));

    // A body that never finishes: 408 after the body-read timeout.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap_or(0);
    let t = String::from_utf8_lossy(&buf[..n]);
    assert!(t.starts_with("HTTP/1.1 408"), "{t}");

    // Still serving.
    assert_eq!(get(&c, &gw_url(&h, "/health")).await.status, StatusCode::OK);
    h.shutdown().await;
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    // Bytes allowed in a header value by the http crate (visible ASCII, space, tab, obs-text).
    proptest::collection::vec(
        prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_break_the_gateway(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        json_ish in "\\{\"model\":\"(mock-model|x)\",\"stream\":(true|false|1|null)(,\"max_tokens\":[0-9]{1,2})?(,\"stream_options\":(null|5|\\{\\}|\\{\"include_usage\":(true|false)\\}))?\\}",
        path in prop_oneof![Just("/v1/chat/completions".to_string()), Just("/v1/completions".to_string()), "/[a-z0-9/%.]{0,40}"],
        hv in header_value(),
        use_json in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let a = MockBackend::start(MockConfig::default()).await.unwrap();
            let mut cfg = test_config(&[a.url()]);
            cfg.max_body_bytes = 1024;
            let h = spawn(cfg).await.unwrap();
            let c = client();
            let payload = if use_json { Bytes::from(json_ish.clone()) } else { Bytes::from(body.clone()) };
            let mut b = http::Request::builder().method("POST").uri(format!("http://{}{}", h.addr, path));
            if let Ok(v) = http::HeaderValue::from_bytes(&hv) {
                b = b.header("x-hostile", v.clone()).header("x-request-id", v);
            }
            let req = b.body(http_body_util::Full::new(payload)).unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), c.request(req)).await.expect("answer in time");
            if let Ok(resp) = resp {
                let status = resp.status();
                let body = http_body_util::BodyExt::collect(resp.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
                assert!(!status.is_server_error(), "{status} {:?}", String::from_utf8_lossy(&body));
            }
            assert_eq!(get(&c, &gw_url(&h, "/health")).await.status, StatusCode::OK);
            assert!(eventually(Duration::from_secs(3), || async { h.pool().backends[0].in_flight() == 0 }).await);
            h.shutdown().await;
        });
    }
}
