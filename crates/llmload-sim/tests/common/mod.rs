//! A tiny HTTP client for the end-to-end tests (loopback only).
#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type C = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> C {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn get(c: &C, url: &str) -> (u16, String) {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn post(c: &C, url: &str, json: &serde_json::Value) -> (u16, String) {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await;
    match body {
        Ok(b) => (status, String::from_utf8_lossy(&b.to_bytes()).into_owned()),
        Err(e) => (status, format!("<<body error: {e}>>")),
    }
}

/// Posts and returns (status, the body read so far, whether the body ended with an error).
pub async fn post_stream(c: &C, url: &str, json: &serde_json::Value) -> (u16, String, bool) {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = String::new();
    loop {
        match body.frame().await {
            None => return (status, text, false),
            Some(Err(_)) => return (status, text, true),
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    text.push_str(&String::from_utf8_lossy(d));
                }
            }
        }
    }
}

/// The JSON payloads of `data:` events (without `[DONE]`).
pub fn sse_events(text: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("valid JSON event"))
        .collect()
}
