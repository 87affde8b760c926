//! The scripted HTTP/1.1 server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::script::{Framing, Reply, Step, StreamScript, is_token};

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Connection number (0-based, in accept order) and request number on it.
    pub connection: u64,
    pub seq_on_connection: u32,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the server did for one request: the truth to compare the client with.
#[derive(Debug, Clone)]
pub struct Served {
    pub request: Received,
    /// When the last byte of the request had been read.
    pub t_received: Instant,
    /// Just before each write of an output-bearing event (one per output event).
    pub token_writes: Vec<Instant>,
    /// Just before each write (of any kind).
    pub writes: Vec<Instant>,
    /// Just before the write that carried `[DONE]`, if any.
    pub t_done: Option<Instant>,
    /// The server finished (last write or close).
    pub t_finished: Option<Instant>,
}

impl Served {
    /// When the first output-bearing event was written.
    pub fn first_token_write(&self) -> Option<Instant> {
        self.token_writes.first().copied()
    }
}

/// Options of a [`TestServer`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Close a kept-alive connection that stays idle this long (vLLM: 5 s).
    pub idle_close_after: Option<Duration>,
    /// Close idle connections abortively (a TCP reset, as some proxies do) instead of with FIN.
    pub idle_close_reset: bool,
    /// Models listed at GET /v1/models.
    pub models: Vec<String>,
    /// Answer 401 unless `Authorization: Bearer <key>`.
    pub require_key: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            idle_close_after: None,
            idle_close_reset: false,
            models: vec!["test-model".into()],
            require_key: None,
        }
    }
}

type ScriptFn = dyn Fn(&Received) -> Reply + Send + Sync;

struct Shared {
    script: Box<ScriptFn>,
    opts: ServerOptions,
    log: Mutex<Vec<Served>>,
    connections: AtomicU64,
}

/// An in-process HTTP/1.1 server on 127.0.0.1 (ephemeral port) whose answer to each POST is
/// scripted; `GET /v1/models` lists [`ServerOptions::models`]. Dropping it stops it.
pub struct TestServer {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestServer {
    /// Start a server answering every POST with `script(request)`.
    pub async fn start<F>(script: F) -> TestServer
    where
        F: Fn(&Received) -> Reply + Send + Sync + 'static,
    {
        Self::start_with(ServerOptions::default(), script).await
    }

    /// Start with options.
    pub async fn start_with<F>(opts: ServerOptions, script: F) -> TestServer
    where
        F: Fn(&Received) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 for the test server");
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let shared = Arc::new(Shared {
            script: Box::new(script),
            opts,
            log: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let (s2, st2) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = st2.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((sock, _)) = accepted else { continue };
                let _ = sock.set_nodelay(true);
                let id = s2.connections.fetch_add(1, Ordering::Relaxed);
                let (s3, st3) = (s2.clone(), st2.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = st3.cancelled() => {}
                        _ = serve_conn(sock, id, s3) => {}
                    }
                });
            }
        });
        TestServer { addr, shared, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("a socket address is a URL")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// What the server did, in the order requests arrived.
    pub fn log(&self) -> Vec<Served> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

/// Read one request head + body. `None` at a clean close (or idle timeout).
async fn read_request(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Option<Duration>,
) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 8192];
        let n = match (idle, buf.is_empty()) {
            (Some(d), true) => match tokio::time::timeout(d, sock.read(&mut tmp)).await {
                Ok(r) => r.ok()?,
                Err(_) => return None,
            },
            _ => sock.read(&mut tmp).await.ok()?,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut rl = lines.next()?.split(' ');
    let method = rl.next()?.to_string();
    let path = rl.next()?.to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_string();
            if k == "content-length" {
                len = v.parse().ok()?;
            }
            headers.push((k, v));
        }
    }
    while buf.len() < head_end + len {
        let mut tmp = [0u8; 8192];
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((method, path, headers, body))
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

async fn serve_conn(mut sock: TcpStream, id: u64, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    let mut seq = 0u32;
    loop {
        let idle = if seq == 0 {
            None
        } else {
            shared.opts.idle_close_after
        };
        let Some((method, path, headers, body)) = read_request(&mut sock, &mut buf, idle).await
        else {
            if shared.opts.idle_close_reset {
                // Dropped with SO_LINGER 0: the kernel sends a reset instead of a FIN.
                let _ = sock.set_zero_linger();
            }
            return;
        };
        let t_received = Instant::now();
        let req = Received {
            method,
            path,
            headers,
            body,
            connection: id,
            seq_on_connection: seq,
        };
        seq += 1;
        let idx = {
            let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
            log.push(Served {
                request: req.clone(),
                t_received,
                token_writes: Vec::new(),
                writes: Vec::new(),
                t_done: None,
                t_finished: None,
            });
            log.len() - 1
        };
        let reply = if let Some(k) = &shared.opts.require_key {
            if req.header("authorization") != Some(&format!("Bearer {k}")) {
                Some(Reply::Body {
                    status: 401,
                    body: json!({"error":{"message":"invalid api key","type":"auth","code":401}})
                        .to_string(),
                    content_type: "application/json",
                    delay: Duration::ZERO,
                })
            } else {
                None
            }
        } else {
            None
        };
        let reply = reply.unwrap_or_else(|| {
            if req.method == "GET" && req.path.ends_with("/models") {
                let data: Vec<_> = shared
                    .opts
                    .models
                    .iter()
                    .map(|m| json!({"id":m,"object":"model","owned_by":"test"}))
                    .collect();
                Reply::Body {
                    status: 200,
                    body: json!({"object":"list","data":data}).to_string(),
                    content_type: "application/json",
                    delay: Duration::ZERO,
                }
            } else {
                (shared.script)(&req)
            }
        });
        let keep = run_reply(&mut sock, reply, &shared, idx).await;
        let now = Instant::now();
        if let Some(s) = shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(idx)
        {
            s.t_finished = Some(now);
        }
        if !keep {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

fn note(shared: &Shared, idx: usize, f: impl FnOnce(&mut Served)) {
    if let Some(s) = shared
        .log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(idx)
    {
        f(s);
    }
}

/// Execute a reply; returns whether the connection stays open.
async fn run_reply(sock: &mut TcpStream, reply: Reply, shared: &Shared, idx: usize) -> bool {
    match reply {
        Reply::Body {
            status,
            body,
            content_type,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            let resp = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
                reason(status),
                body.len()
            );
            let t = Instant::now();
            note(shared, idx, |s| {
                s.writes.push(t);
                s.token_writes.push(t);
            });
            sock.write_all(resp.as_bytes()).await.is_ok()
        }
        Reply::Raw { bytes, close } => {
            let t = Instant::now();
            note(shared, idx, |s| s.writes.push(t));
            let ok = sock.write_all(&bytes).await.is_ok();
            ok && !close
        }
        Reply::Close { after } => {
            tokio::time::sleep(after).await;
            false
        }
        Reply::Stream(script) => run_stream(sock, &script, shared, idx).await,
    }
}

struct Writer<'a> {
    sock: &'a mut TcpStream,
    shared: &'a Shared,
    idx: usize,
    chunked: bool,
    /// Bytes to write (head, chunk framing).
    out: Vec<u8>,
    /// Body bytes of the current write.
    payload: Vec<u8>,
    tokens: u32,
    done: bool,
}

impl Writer<'_> {
    fn frame_payload(&mut self) {
        if self.payload.is_empty() {
            return;
        }
        if self.chunked {
            self.out
                .extend_from_slice(format!("{:x}\r\n", self.payload.len()).as_bytes());
            self.out.extend_from_slice(&self.payload);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.out.extend_from_slice(&self.payload);
        }
        self.payload.clear();
    }

    /// Write what is buffered as one write; log its time once per output event in it.
    async fn flush(&mut self) -> bool {
        self.frame_payload();
        if self.out.is_empty() {
            return true;
        }
        let t = Instant::now();
        let (tok, done) = (self.tokens, self.done);
        note(self.shared, self.idx, |s| {
            s.writes.push(t);
            for _ in 0..tok {
                s.token_writes.push(t);
            }
            if done {
                s.t_done = Some(t);
            }
        });
        self.tokens = 0;
        self.done = false;
        let ok = self.sock.write_all(&self.out).await.is_ok();
        self.out.clear();
        ok
    }
}

async fn run_stream(sock: &mut TcpStream, sc: &StreamScript, shared: &Shared, idx: usize) -> bool {
    let chunked = sc.framing == Framing::Chunked;
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncache-control: no-cache\r\n{}\r\n",
        sc.status,
        reason(sc.status),
        sc.content_type,
        if chunked {
            "transfer-encoding: chunked\r\n"
        } else {
            "connection: close\r\n"
        }
    );
    let mut w = Writer {
        sock,
        shared,
        idx,
        chunked,
        out: head.into_bytes(),
        payload: Vec::new(),
        tokens: 0,
        done: false,
    };
    for step in &sc.steps {
        match step {
            Step::Wait(d) => {
                if !w.flush().await {
                    return false;
                }
                if !d.is_zero() {
                    tokio::time::sleep(*d).await;
                }
            }
            Step::Cut => {
                let _ = w.flush().await;
                return false;
            }
            other => {
                if is_token(other) {
                    w.tokens += 1;
                }
                if matches!(other, Step::Done) {
                    w.done = true;
                }
                w.payload.extend_from_slice(&sc.render(other));
            }
        }
    }
    w.frame_payload();
    if chunked {
        w.out.extend_from_slice(b"0\r\n\r\n");
    }
    w.flush().await && chunked
}
