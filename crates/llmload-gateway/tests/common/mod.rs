//! Helpers for the end-to-end tests: a gateway in front of test backends, a small HTTP client,
//! and a reader for the gateway's /metrics. Backends are reached through `TestBackend`, so the
//! same tests can be pointed at the real simulator.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llmload_gateway::{BackendConfig, GatewayConfig, GatewayHandle};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A configuration for tests: loopback, ephemeral port, fast health checks.
pub fn test_config(backends: &[String]) -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        backends: backends.iter().map(BackendConfig::new).collect(),
        health_interval: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(500),
        first_byte_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        ..GatewayConfig::default()
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(
    c: &HttpClient,
    method: &str,
    url: &str,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Answer {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(body)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), c.request(req))
        .await
        .expect("response head within 20 s")
        .expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body within 20 s")
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post(c: &HttpClient, url: &str, json: &serde_json::Value) -> Answer {
    send(c, "POST", url, Bytes::from(json.to_string()), &[]).await
}

pub async fn get(c: &HttpClient, url: &str) -> Answer {
    send(c, "GET", url, Bytes::new(), &[]).await
}

pub fn chat(model: &str, tokens: u32, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": tokens,
        "stream": stream,
    })
}

pub fn gw_url(h: &GatewayHandle, path: &str) -> String {
    format!("http://{}{}", h.addr, path)
}

/// Sum of the samples of `name` whose label set contains every `labels` pair.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, lbls) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| lbls.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

pub async fn metrics_text(c: &HttpClient, h: &GatewayHandle) -> String {
    let url = match h.admin_addr {
        Some(a) => format!("http://{a}/metrics"),
        None => gw_url(h, "/metrics"),
    };
    get(c, &url).await.text()
}

/// Replaces the response ids (`"id":"chatcmpl-12"`) so streams from different paths compare.
pub fn normalize_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\"id\":\"") {
        out.push_str(&rest[..i + 6]);
        rest = &rest[i + 6..];
        let end = rest.find('"').unwrap_or(rest.len());
        out.push_str("ID");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Polls `f` until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
