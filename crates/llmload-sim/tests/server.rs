//! End-to-end tests of the HTTP server on 127.0.0.1 (ephemeral ports), with a large speedup so
//! they take milliseconds of wall time.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::*;
use llmload_sim::{Faults, Profile, SimConfig, spawn};
use serde_json::json;

fn cfg(profile: &str, speedup: f64) -> SimConfig {
    SimConfig {
        profile: Profile::builtin(profile).unwrap(),
        speedup,
        seed: 1,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn streaming_chat_is_shaped_like_vllm_and_counted() {
    let h = spawn(cfg("qwen3-4b-fp8", 20.0)).await.unwrap();
    let c = client();
    let base = h.base_url();
    let (s, models) = get(&c, &format!("{base}/v1/models")).await;
    assert_eq!(s, 200);
    let models: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], "qwen3-4b-fp8");
    assert_eq!(models["data"][0]["max_model_len"], 4096);
    assert_eq!(get(&c, &format!("{base}/health")).await.0, 200);

    let body = json!({
        "model": "qwen3-4b-fp8", "stream": true, "max_tokens": 8, "ignore_eos": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say something long about the sea and the sky."}]
    });
    let (s, text, broken) = post_stream(&c, &format!("{base}/v1/chat/completions"), &body).await;
    assert_eq!(s, 200);
    assert!(!broken);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let ev = sse_events(&text);
    // role chunk, then content, then the usage chunk
    assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(ev[0]["choices"][0]["delta"]["content"], "");
    assert!(ev[0]["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(ev[0]["object"], "chat.completion.chunk");
    let content: Vec<_> = ev[1..ev.len() - 1].iter().collect();
    let words: usize = content
        .iter()
        .map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .split(' ')
                .count()
                - 1
        })
        .sum();
    assert_eq!(words, 8);
    let last = content.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    let usage = &ev.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 8);
    assert_eq!(ev.last().unwrap()["choices"], json!([]));
    let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();

    // /tokenize agrees with usage
    let (s, tok) = post(&c, &format!("{base}/tokenize"), &json!({"model": "qwen3-4b-fp8",
        "messages": [{"role": "user", "content": "Say something long about the sea and the sky."}]})).await;
    assert_eq!(s, 200);
    let tok: serde_json::Value = serde_json::from_str(&tok).unwrap();
    assert_eq!(tok["count"].as_u64().unwrap(), prompt_tokens);

    let k = h.counters();
    assert_eq!(k.finished_length, 1);
    assert_eq!(k.generation_tokens, 8);
    assert_eq!(k.prompt_tokens, prompt_tokens);
    assert_eq!(
        h.http_metrics()
            .requests("/v1/chat/completions", "POST", "2xx"),
        1
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn completions_non_stream_and_continuous_usage() {
    let h = spawn(cfg("qwen3-4b-fp8", 20.0)).await.unwrap();
    let c = client();
    let base = h.base_url();
    let (s, body) = post(&c, &format!("{base}/v1/completions"),
        &json!({"model": "qwen3-4b-fp8", "prompt": "one two six four", "max_tokens": 5, "ignore_eos": true})).await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    let (s, text, _) = post_stream(&c, &format!("{base}/v1/completions"), &json!({
        "model": "qwen3-4b-fp8", "prompt": "one two", "max_tokens": 4, "ignore_eos": true, "stream": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true}})).await;
    assert_eq!(s, 200);
    let ev = sse_events(&text);
    let mut last_completion = 0;
    for e in &ev[..ev.len() - 1] {
        let c = e["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(c > last_completion);
        last_completion = c;
        assert_eq!(e["object"], "text_completion");
    }
    assert_eq!(last_completion, 4);

    // without ignore_eos the output length is sampled, and may stop early
    let (s, body) = post(
        &c,
        &format!("{base}/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3000}),
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let n = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=3000).contains(&n));
    let reason = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert_eq!(reason == "length", n == 3000);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_are_shaped_like_vllm() {
    let h = spawn(cfg("qwen3-4b-fp8", 20.0)).await.unwrap();
    let c = client();
    let url = format!("{}/v1/chat/completions", h.base_url());
    let (s, b) = post(
        &c,
        &url,
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 404);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["error"]["type"], "NotFoundError");
    assert_eq!(v["error"]["code"], 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));

    let (s, b) = post(
        &c,
        &url,
        &json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}),
    )
    .await;
    assert_eq!(s, 400);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length is 4096"),
        "{b}"
    );

    let long = "word ".repeat(5000);
    let (s, b) = post(
        &c,
        &url,
        &json!({"messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("input tokens"), "{b}");

    let (s, _) = post(&c, &url, &json!({"messages": "x"})).await;
    assert_eq!(s, 400);
    let (s, b) = get(&c, &format!("{}/nope", h.base_url())).await;
    assert_eq!(s, 404, "{b}");
    // errors are counted per handler, unmatched paths as handler="none"
    let m = h.http_metrics();
    assert_eq!(m.requests("/v1/chat/completions", "POST", "4xx"), 4);
    assert_eq!(m.requests("none", "GET", "4xx"), 1);
    // no engine work for rejected requests
    assert_eq!(h.counters().generation_tokens, 0);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn faults_error_rate_cut_slow_start_and_admin_endpoint() {
    let mut c0 = cfg("qwen3-4b-fp8", 20.0);
    c0.faults = Faults {
        unready_for_s: 0.3,
        ..Faults::default()
    };
    let h = spawn(c0).await.unwrap();
    let c = client();
    let base = h.base_url();
    assert_eq!(get(&c, &format!("{base}/health")).await.0, 503);
    let chat = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10, "ignore_eos": true, "stream": true});
    assert_eq!(
        post_stream(&c, &format!("{base}/v1/chat/completions"), &chat)
            .await
            .0,
        503
    );
    assert_eq!(
        get(&c, &format!("{base}/metrics")).await.0,
        200,
        "metrics stay up"
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(get(&c, &format!("{base}/health")).await.0, 200);

    let (s, b) = post(
        &c,
        &format!("{base}/admin/faults"),
        &json!({"error_rate": 1.0}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        post_stream(&c, &format!("{base}/v1/chat/completions"), &chat)
            .await
            .0,
        500
    );
    let (s, _) = post(
        &c,
        &format!("{base}/admin/faults"),
        &json!({"error_rate": 7}),
    )
    .await;
    assert_eq!(s, 400);

    post(
        &c,
        &format!("{base}/admin/faults"),
        &json!({"error_rate": 0.0, "cut_after_tokens": 3}),
    )
    .await;
    let long = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let (s, text, broken) = post_stream(&c, &format!("{base}/v1/chat/completions"), &long).await;
    assert_eq!(s, 200);
    assert!(broken, "the stream must end with a transport error");
    assert!(!text.contains("[DONE]"));
    let words: usize = sse_events(&text)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(|s| s.split(' ').count() - 1)
        })
        .sum();
    assert_eq!(words, 3);
    // the engine sees a client disconnect: finished_reason="abort"
    for _ in 0..100 {
        if h.counters().finished_abort == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.counters().finished_abort, 1);
    let (_, f) = get(&c, &format!("{base}/admin/faults")).await;
    assert!(f.contains("\"cut_after_tokens\":3"), "{f}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_once_requests_wait() {
    let mut p = Profile::builtin("qwen3-4b-fp8").unwrap();
    p.scheduler.max_num_seqs = 1;
    let mut c0 = SimConfig {
        profile: p,
        speedup: 1.0,
        seed: 3,
        ..SimConfig::default()
    };
    c0.faults.rate_limit_waiting = Some(0);
    let h = spawn(c0).await.unwrap();
    let base = h.base_url();
    let long = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2000, "ignore_eos": true, "stream": true});
    // two long requests: one runs, one waits
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (url, body) = (format!("{base}/v1/chat/completions"), long.clone());
        tasks.push(tokio::spawn(async move {
            post_stream(&client(), &url, &body).await
        }));
    }
    let mut waited = false;
    for _ in 0..200 {
        if h.gauges().waiting >= 1 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(waited, "a request should be waiting");
    let (s, b) = post(
        &client(),
        &format!("{base}/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert!(b.contains("RateLimitError"));
    for t in tasks {
        t.abort();
    }
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_disconnect_aborts_in_the_engine() {
    let h = spawn(cfg("qwen3-4b-fp8", 1.0)).await.unwrap();
    let url = format!("{}/v1/chat/completions", h.base_url());
    let body = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let t = tokio::spawn(async move { post_stream(&client(), &url, &body).await });
    for _ in 0..200 {
        if h.gauges().running == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(h.gauges().running, 1);
    t.abort();
    for _ in 0..200 {
        if h.counters().finished_abort == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(h.counters().finished_abort, 1);
    assert_eq!(h.gauges().running, 0);
    assert_eq!(h.gauges().kv_cache_usage, 0.0);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn images_add_tokens_by_resolution() {
    use base64::Engine as _;
    let h = spawn(cfg("qwen3-vl-4b-bf16-h100", 50.0)).await.unwrap();
    let c = client();
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&448u32.to_be_bytes());
    png.extend_from_slice(&448u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0]);
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let msg = |u: &str| {
        json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": u}}]}],
        "max_tokens": 2, "ignore_eos": true})
    };
    let (s, b) = post(
        &c,
        &format!("{}/v1/chat/completions", h.base_url()),
        &msg(&url),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let text_only = 1 + 5 + 3; // "Describe" (one cl100k_base token) + template
    assert_eq!(
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        196 + text_only
    );
    // a text-only profile refuses images
    let h2 = spawn(cfg("qwen3-4b-fp8", 50.0)).await.unwrap();
    let (s, _) = post(
        &c,
        &format!("{}/v1/chat/completions", h2.base_url()),
        &msg(&url),
    )
    .await;
    assert_eq!(s, 400);
    h.shutdown().await.unwrap();
    h2.shutdown().await.unwrap();
}

#[tokio::test]
async fn stall_fault_pauses_the_stream() {
    let mut c0 = cfg("qwen3-4b-fp8", 10.0);
    c0.faults = Faults {
        stall_ms: 3000,
        stall_after_tokens: 2,
        stall_rate: 1.0,
        ..Faults::default()
    };
    let h = spawn(c0).await.unwrap();
    let url = format!("{}/v1/chat/completions", h.base_url());
    let body = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "ignore_eos": true, "stream": true});
    let t0 = std::time::Instant::now();
    let (s, text, broken) = post_stream(&client(), &url, &body).await;
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(s, 200);
    assert!(!broken);
    assert!(text.ends_with("data: [DONE]\n\n"));
    // 3000 ms of simulated time at 10x speedup: at least 0.3 s of wall time
    assert!(wall >= 0.3, "{wall}");
    h.shutdown().await.unwrap();
}
