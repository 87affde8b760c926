//! Requests carrying large image data URLs: the body goes out in segments (the URL shared
//! with the workload, not copied) and must arrive byte-identical to the JSON of a one-piece
//! body, with the right Content-Length, on fresh and on kept-alive connections.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use llmload_client::testkit::{Stream, TestServer};
use llmload_client::{Client, ClientConfig};
use llmload_core::{ChatMessage, ContentPart, Prompt, RequestSpec};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn data_url(n: usize, salt: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut u = String::from("data:image/jpeg;base64,");
    u.extend((0..n).map(|i| alphabet[(i * 13 + salt) % 64] as char));
    u
}

#[tokio::test]
async fn large_image_urls_arrive_byte_identical() {
    let server = TestServer::start(|_| Stream::new(4).gap(Duration::from_millis(1)).reply()).await;
    let client = Client::new(ClientConfig::new(server.url(), "test-model"), None).unwrap();
    let epoch = Instant::now();
    let urls = [data_url(300_000, 1), data_url(5_000, 2)];
    let mut spec = RequestSpec::text("", Some(3), Some(4));
    spec.prompt = Prompt::Messages(vec![
        ChatMessage::text("system", "be brief"),
        ChatMessage {
            role: "user".into(),
            content: vec![
                ContentPart::image_url(urls[0].as_str()),
                ContentPart::Text {
                    text: "what \"is\" this".into(),
                },
                ContentPart::image_url(urls[1].as_str()),
            ],
        },
    ]);
    let expected = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": urls[0]}},
            {"type": "text", "text": "what \"is\" this"},
            {"type": "image_url", "image_url": {"url": urls[1]}}]}
    ]);
    // Twice: the second request reuses the kept-alive connection.
    for _ in 0..2 {
        let out = client.send(&spec, epoch, &CancellationToken::new()).await;
        assert_eq!(out.record.error, None, "{:?}", out.record.error_message);
        assert_eq!(out.record.output_tokens, Some(4));
    }
    let log = server.log();
    assert_eq!(log.len(), 2);
    assert_eq!(server.connections(), 1, "the connection was kept alive");
    for s in &log {
        let r = &s.request;
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert!(r.header("transfer-encoding").is_none());
        let v = r.json();
        assert_eq!(v["messages"], expected);
        assert_eq!(v["max_tokens"], 4);
        // Compact JSON, as for text bodies: the URL appears verbatim, quoted.
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(text.contains(&format!("{{\"url\":\"{}\"}}", urls[0])));
        assert!(!text.contains(": "));
    }
    assert_eq!(log[0].request.body, log[1].request.body);
}
