//! A small OpenAI-style streaming backend for tests and benchmarks (not for production).
//!
//! It streams `max_tokens` chat or completion chunks (with a usage chunk when asked), can be
//! killed and restarted on the same port, can fail before sending bytes, can stall, and counts
//! the streams its clients abandoned. End-to-end tests talk to backends through the
//! [`TestBackend`] trait so the same tests can run against the real simulator.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// What end-to-end tests need from a backend.
pub trait TestBackend: Send + Sync {
    /// Base URL, `http://127.0.0.1:port`.
    fn url(&self) -> String;
    /// Stops the server at once: the port refuses connections and open streams break.
    fn kill(&mut self) -> impl Future<Output = ()> + Send;
    /// Starts it again on the same port.
    fn restart(&mut self) -> impl Future<Output = ()> + Send;
    /// Completion requests received.
    fn received(&self) -> u64;
    /// Streams the client abandoned before the end (the backend saw the abort).
    fn aborted(&self) -> u64;
    /// Streams sent to the end.
    fn completed(&self) -> u64;
}

/// Behaviour switch of a [`MockBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MockMode {
    Normal = 0,
    /// Accept the TCP connection and close it without reading or answering.
    CloseOnAccept = 1,
    /// Read the request and never answer.
    Stall = 2,
    /// Send the head and first chunk, then go silent forever.
    StallMidStream = 3,
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub models: Vec<String>,
    /// Output tokens when the request gives no `max_tokens`.
    pub default_tokens: u32,
    /// Delay before the first chunk.
    pub ttft: Duration,
    /// Delay between chunks.
    pub itl: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            models: vec!["mock-model".into()],
            default_tokens: 8,
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    aborted: AtomicU64,
    completed: AtomicU64,
    next_id: AtomicU64,
    mode: AtomicU8,
    last_body: Mutex<Option<Bytes>>,
}

struct MockState {
    cfg: MockConfig,
    c: Counters,
}

pub struct MockBackend {
    addr: SocketAddr,
    state: Arc<MockState>,
    server: Option<JoinHandle<()>>,
}

impl MockBackend {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start(cfg: MockConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), cfg).await
    }

    /// Starts on a given address.
    pub async fn start_on(addr: SocketAddr, cfg: MockConfig) -> std::io::Result<Self> {
        let l = TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        let state = Arc::new(MockState {
            cfg,
            c: Counters::default(),
        });
        let server = Some(tokio::spawn(serve(l, state.clone())));
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, m: MockMode) {
        self.state.c.mode.store(m as u8, Ordering::SeqCst);
    }

    /// The body of the last completion request received.
    pub fn last_body(&self) -> Option<Bytes> {
        self.state.c.last_body.lock().clone()
    }

    fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

impl Drop for MockBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestBackend for MockBackend {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    async fn restart(&mut self) {
        self.kill().await;
        // The port was ours a moment ago; retry briefly in case the OS holds it.
        let mut tries = 0;
        let l = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("mock backend cannot rebind {}: {e}", self.addr),
            }
        };
        self.server = Some(tokio::spawn(serve(l, self.state.clone())));
    }

    fn received(&self) -> u64 {
        self.state.c.received.load(Ordering::SeqCst)
    }
    fn aborted(&self) -> u64 {
        self.state.c.aborted.load(Ordering::SeqCst)
    }
    fn completed(&self) -> u64 {
        self.state.c.completed.load(Ordering::SeqCst)
    }
}

async fn serve(l: TcpListener, state: Arc<MockState>) {
    // Owning the connections here means aborting this task closes every one of them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => {
                let Ok((s, _)) = r else { continue };
                if state.c.mode.load(Ordering::SeqCst) == MockMode::CloseOnAccept as u8 {
                    drop(s);
                    continue;
                }
                let _ = s.set_nodelay(true);
                let st = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Streaming body fed by a generator task; when the client goes away the receiver is dropped
/// and the generator counts an abort.
pub struct MockBody {
    rx: Option<mpsc::Receiver<Bytes>>,
    once: Option<Bytes>,
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(b) = this.once.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match &mut this.rx {
            Some(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            None => Poll::Ready(None),
        }
    }
}

fn full(status: StatusCode, ct: &'static str, body: String) -> Response<MockBody> {
    let mut r = Response::new(MockBody {
        rx: None,
        once: Some(Bytes::from(body)),
    });
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    r
}

async fn handle(
    st: Arc<MockState>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/health") => Ok(full(StatusCode::OK, "text/plain", String::new())),
        (Method::GET, "/v1/models") => {
            let data: Vec<_> = st
                .cfg
                .models
                .iter()
                .map(|m| serde_json::json!({"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"}))
                .collect();
            Ok(full(
                StatusCode::OK,
                "application/json",
                serde_json::json!({"object": "list", "data": data}).to_string(),
            ))
        }
        (Method::POST, "/v1/chat/completions" | "/v1/completions") => {
            let chat = path == "/v1/chat/completions";
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "text/plain", String::new())),
            };
            st.c.received.fetch_add(1, Ordering::SeqCst);
            *st.c.last_body.lock() = Some(body.clone());
            let mode = st.c.mode.load(Ordering::SeqCst);
            if mode == MockMode::Stall as u8 {
                std::future::pending::<()>().await;
            }
            let v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(full(
                        StatusCode::BAD_REQUEST,
                        "application/json",
                        serde_json::json!({"error": {"message": e.to_string()}}).to_string(),
                    ));
                }
            };
            let model = v["model"].as_str().unwrap_or("").to_string();
            if !st.cfg.models.contains(&model) {
                return Ok(full(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    serde_json::json!({"error": {"message": format!("model {model} not found")}})
                        .to_string(),
                ));
            }
            let n = v["max_tokens"]
                .as_u64()
                .map(|x| x as u32)
                .unwrap_or(st.cfg.default_tokens);
            let prompt_tokens = (body.len() / 4) as u64;
            let id = st.c.next_id.fetch_add(1, Ordering::SeqCst);
            let stream = v["stream"].as_bool().unwrap_or(false);
            let usage = v["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false);
            if !stream {
                let text: String = (0..n).map(|i| format!("tok{i} ")).collect();
                let choice = if chat {
                    serde_json::json!({"index":0,"message":{"role":"assistant","content":text},"finish_reason":"length"})
                } else {
                    serde_json::json!({"index":0,"text":text,"finish_reason":"length"})
                };
                st.c.completed.fetch_add(1, Ordering::SeqCst);
                return Ok(full(
                    StatusCode::OK,
                    "application/json",
                    serde_json::json!({
                        "id": format!("cmpl-{id}"), "object": if chat {"chat.completion"} else {"text_completion"},
                        "created": 1700000000, "model": model, "choices": [choice],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n as u64}
                    })
                    .to_string(),
                ));
            }
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            let cfg = st.cfg.clone();
            let st2 = st.clone();
            let stall_mid = mode == MockMode::StallMidStream as u8;
            tokio::spawn(async move {
                let ok = generate(
                    &tx,
                    &cfg,
                    chat,
                    id,
                    &model,
                    n,
                    prompt_tokens,
                    usage,
                    stall_mid,
                )
                .await;
                if ok {
                    st2.c.completed.fetch_add(1, Ordering::SeqCst);
                } else {
                    st2.c.aborted.fetch_add(1, Ordering::SeqCst);
                }
            });
            let mut r = Response::new(MockBody {
                rx: Some(rx),
                once: None,
            });
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            Ok(r)
        }
        _ => Ok(full(StatusCode::NOT_FOUND, "text/plain", String::new())),
    }
}

/// Sleeps, but returns false at once if the client went away meanwhile.
async fn pause(tx: &mpsc::Sender<Bytes>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = tx.closed() => false,
    }
}

#[allow(clippy::too_many_arguments)]
async fn generate(
    tx: &mpsc::Sender<Bytes>,
    cfg: &MockConfig,
    chat: bool,
    id: u64,
    model: &str,
    n: u32,
    prompt_tokens: u64,
    usage: bool,
    stall_mid: bool,
) -> bool {
    let (rid, obj) = if chat {
        (format!("chatcmpl-{id}"), "chat.completion.chunk")
    } else {
        (format!("cmpl-{id}"), "text_completion")
    };
    // Chunks are formatted directly (not through serde_json::Value) to keep the backend cheap
    // in benchmarks; the model name is JSON-escaped once.
    let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
    let head = format!(
        "data: {{\"id\":\"{rid}\",\"object\":\"{obj}\",\"created\":1700000000,\"model\":{model_json},\"choices\":["
    );
    let chunk = |choice: &str| -> Bytes { Bytes::from(format!("{head}{choice}]}}\n\n")) };
    if !cfg.ttft.is_zero() && !pause(tx, cfg.ttft).await {
        return false;
    }
    if chat {
        let first = chunk(
            r#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}"#,
        );
        if tx.send(first).await.is_err() {
            return false;
        }
    }
    for i in 0..n {
        if i > 0 && !cfg.itl.is_zero() && !pause(tx, cfg.itl).await {
            return false;
        }
        let c = if chat {
            chunk(&format!(
                r#"{{"index":0,"delta":{{"content":"tok{i} "}},"logprobs":null,"finish_reason":null}}"#
            ))
        } else {
            chunk(&format!(
                r#"{{"index":0,"text":"tok{i} ","logprobs":null,"finish_reason":null}}"#
            ))
        };
        if tx.send(c).await.is_err() {
            return false;
        }
        if stall_mid {
            // Hold the stream open, silent, until the client goes away.
            tx.closed().await;
            return false;
        }
    }
    let fin = if chat {
        chunk(
            r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"length","stop_reason":null}"#,
        )
    } else {
        chunk(
            r#"{"index":0,"text":"","logprobs":null,"finish_reason":"length","stop_reason":null}"#,
        )
    };
    if tx.send(fin).await.is_err() {
        return false;
    }
    if usage {
        let u = format!(
            "{head}],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"total_tokens\":{},\"completion_tokens\":{n}}}}}\n\n",
            prompt_tokens + n as u64
        );
        if tx.send(Bytes::from(u)).await.is_err() {
            return false;
        }
    }
    tx.send(Bytes::from_static(b"data: [DONE]\n\n"))
        .await
        .is_ok()
}
