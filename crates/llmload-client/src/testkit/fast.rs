//! The minimal benchmark server: answers every request at once, from pre-rendered bytes.
//!
//! - a POST whose body has `"stream":true` gets an SSE stream of `tokens` output events (one
//!   token each, chat or completions shape by the presence of `"prompt"`), a usage chunk
//!   and `[DONE]`, all in one write (chunked encoding, keep-alive);
//! - any other request (e.g. `wrk`'s GET) gets the same answer as one JSON body;
//! - `GET .../models` lists the model.
//!
//! Pipelined requests are answered in order. Used by `examples/fast_server.rs` and the
//! benchmarks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The pre-rendered answers.
pub struct Responses {
    chat_stream: Vec<u8>,
    chat_json: Vec<u8>,
    cmpl_stream: Vec<u8>,
    cmpl_json: Vec<u8>,
    models: Vec<u8>,
}

fn http_json(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn http_sse(events: &[String]) -> Vec<u8> {
    let mut payload = String::new();
    for e in events {
        payload.push_str("data: ");
        payload.push_str(e);
        payload.push_str("\n\n");
    }
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{payload}\r\n0\r\n\r\n",
        payload.len()
    )
    .into_bytes()
}

impl Responses {
    /// Answers of `tokens` tokens for `model` (prompt tokens reported: 16).
    pub fn new(tokens: u32, model: &str) -> Self {
        let prompt = 16u64;
        let usage = json!({"prompt_tokens":prompt,"completion_tokens":tokens,"total_tokens":prompt+u64::from(tokens)});
        let mut chat = vec![
            json!({"id":"chatcmpl-0","object":"chat.completion.chunk","created":0,"model":model,
                "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})
            .to_string(),
        ];
        let mut cmpl = Vec::new();
        for i in 0..tokens {
            let last = i + 1 == tokens;
            let fin = if last { json!("length") } else { json!(null) };
            chat.push(
                json!({"id":"chatcmpl-0","object":"chat.completion.chunk","created":0,"model":model,
                    "choices":[{"index":0,"delta":{"content":format!(" tok{i}")},"finish_reason":fin}]})
                .to_string(),
            );
            cmpl.push(
                json!({"id":"cmpl-0","object":"text_completion","created":0,"model":model,
                    "choices":[{"index":0,"text":format!(" tok{i}"),"finish_reason":fin}]})
                .to_string(),
            );
        }
        chat.push(
            json!({"id":"chatcmpl-0","object":"chat.completion.chunk","created":0,"model":model,
                "choices":[],"usage":usage})
            .to_string(),
        );
        cmpl.push(
            json!({"id":"cmpl-0","object":"text_completion","created":0,"model":model,
                "choices":[],"usage":usage})
            .to_string(),
        );
        chat.push("[DONE]".into());
        cmpl.push("[DONE]".into());
        let text: String = (0..tokens).map(|i| format!(" tok{i}")).collect();
        let chat_json = json!({"id":"chatcmpl-0","object":"chat.completion","created":0,"model":model,
            "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"length"}],
            "usage":usage})
        .to_string();
        let cmpl_json = json!({"id":"cmpl-0","object":"text_completion","created":0,"model":model,
            "choices":[{"index":0,"text":text,"finish_reason":"length"}],"usage":usage})
        .to_string();
        let models =
            json!({"object":"list","data":[{"id":model,"object":"model","owned_by":"llmload"}]})
                .to_string();
        Self {
            chat_stream: http_sse(&chat),
            chat_json: http_json(&chat_json),
            cmpl_stream: http_sse(&cmpl),
            cmpl_json: http_json(&cmpl_json),
            models: http_json(&models),
        }
    }

    fn pick(&self, head: &[u8], body: &[u8]) -> &[u8] {
        if head.starts_with(b"GET ") && memchr::memmem::find(head, b"/models").is_some() {
            return &self.models;
        }
        let stream = memchr::memmem::find(body, b"\"stream\":true").is_some();
        let cmpl = memchr::memmem::find(body, b"\"prompt\"").is_some();
        match (stream, cmpl) {
            (true, false) => &self.chat_stream,
            (true, true) => &self.cmpl_stream,
            (false, false) => &self.chat_json,
            (false, true) => &self.cmpl_json,
        }
    }
}

/// The value of `content-length` in a request head (0 when absent).
fn content_length(head: &[u8]) -> Option<usize> {
    for line in head.split(|&b| b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            return std::str::from_utf8(&line[15..]).ok()?.trim().parse().ok();
        }
    }
    Some(0)
}

async fn serve_conn(mut sock: TcpStream, r: Arc<Responses>) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let n = sock.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            let Some(h) = memchr::memmem::find(rest, b"\r\n\r\n") else {
                break;
            };
            let head = &rest[..h + 4];
            let Some(len) = content_length(head) else {
                sock.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await?;
                return Ok(());
            };
            if rest.len() < h + 4 + len {
                break;
            }
            out.extend_from_slice(r.pick(head, &rest[h + 4..h + 4 + len]));
            start += h + 4 + len;
        }
        buf.drain(..start);
        if !out.is_empty() {
            sock.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Serve on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tokens: u32, model: &str) -> io::Result<()> {
    let r = Arc::new(Responses::new(tokens, model));
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        let r = r.clone();
        tokio::spawn(async move {
            let _ = serve_conn(sock, r).await;
        });
    }
}

/// Start on 127.0.0.1:`port` (0 = ephemeral) in the current runtime; returns the address.
pub async fn spawn(port: u16, tokens: u32, model: &str) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let model = model.to_string();
    tokio::spawn(async move {
        let _ = serve(listener, tokens, &model).await;
    });
    Ok(addr)
}
