//! The request path: auth, body limits, routing, the upstream call with its single retry, and
//! the streaming response body that measures what passes through it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use crate::access_log::{AccessLog, AccessRecord};
use crate::auth::ApiKeys;
use crate::backend::{AcquireError, Backend, Pool, Slot};
use crate::config::GatewayConfig;
use crate::metrics::{Metrics, ModelBackend};
use crate::sse::{SseScanner, Usage};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// State shared by every connection.
pub struct Shared {
    pub cfg: GatewayConfig,
    pub pool: Arc<Pool>,
    pub client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    pub keys: Option<ApiKeys>,
    pub log: Option<AccessLog>,
    pub serve_metrics_on_main: bool,
    next_id: AtomicU64,
    id_prefix: String,
}

impl Shared {
    pub fn new(
        cfg: GatewayConfig,
        pool: Arc<Pool>,
        client: UpstreamClient,
        metrics: Arc<Metrics>,
        keys: Option<ApiKeys>,
        log: Option<AccessLog>,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Self {
            serve_metrics_on_main: cfg.admin_listen.is_none(),
            cfg,
            pool,
            client,
            metrics,
            keys,
            log,
            next_id: AtomicU64::new(1),
            id_prefix: format!("gw-{:08x}", (seed ^ (seed >> 29)) as u32),
        }
    }

    fn request_id(&self, headers: &HeaderMap) -> String {
        if let Some(v) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
            && !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
        {
            return v.to_string();
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }
}

/// Response body of every gateway answer.
pub enum GwBody {
    Full(Option<Bytes>),
    Proxy(Box<ProxyBody>),
}

impl GwBody {
    fn full(b: impl Into<Bytes>) -> Self {
        GwBody::Full(Some(b.into()))
    }
}

impl Body for GwBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            GwBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GwBody::Proxy(p) => Pin::new(p.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GwBody::Full(b) => b.is_none(),
            GwBody::Proxy(p) => p.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GwBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GwBody::Full(None) => SizeHint::with_exact(0),
            GwBody::Proxy(p) if !p.rewrites() => p.upstream.size_hint(),
            GwBody::Proxy(_) => SizeHint::default(),
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response<GwBody> {
    let mut r = Response::new(GwBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An OpenAI-style error body.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response<GwBody> {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}
    });
    json_response(status, body.to_string())
}

/// Entry point for the client-facing listener.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<GwBody>, Infallible> {
    let t0 = Instant::now();
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => return Ok(health(&shared)),
        (&Method::GET, "/metrics") if shared.serve_metrics_on_main => {
            return Ok(metrics_response(&shared, req.headers()));
        }
        _ => {}
    }
    if let Some(keys) = &shared.keys
        && !keys.verify_headers(req.headers())
    {
        shared.metrics.count_request("", "", "401");
        let mut r = error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or invalid API key: send `Authorization: Bearer <key>`",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(r);
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/models") => models_response(&shared),
        (&Method::POST, "/v1/chat/completions" | "/v1/completions") => proxy(shared, req, t0).await,
        (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions") => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method not allowed on this path",
        ),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown path: the gateway serves /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics",
        ),
    };
    Ok(resp)
}

/// Entry point for the admin listener (`/metrics`, `/health`).
pub async fn handle_admin(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<GwBody>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics_response(&shared, req.headers()),
        (&Method::GET, "/health") => health(&shared),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "the admin listener serves /metrics and /health",
        ),
    })
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format
/// otherwise.
fn metrics_response(shared: &Shared, headers: &HeaderMap) -> Response<GwBody> {
    let wants_om = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, ct) = if wants_om {
        (
            shared.metrics.render(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            shared.metrics.render_prometheus(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut r = Response::new(GwBody::full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn health(shared: &Shared) -> Response<GwBody> {
    let total = shared.pool.backends.len();
    let up = shared.pool.backends.iter().filter(|b| b.is_up()).count();
    let status = if up > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if up > 0 { "ok" } else { "unavailable" },
        "backends_up": up,
        "backends": total,
    });
    json_response(status, body.to_string())
}

fn models_response(shared: &Shared) -> Response<GwBody> {
    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    for b in shared.pool.backends.iter().filter(|b| b.is_up()) {
        if let Some(m) = b.models() {
            for raw in &m.raw {
                if let Some(id) = raw.get("id").and_then(|v| v.as_str())
                    && seen.insert(id.to_string())
                {
                    data.push(raw.clone());
                }
            }
        }
    }
    let body = serde_json::json!({"object": "list", "data": data});
    json_response(StatusCode::OK, body.to_string())
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The few request fields the gateway looks at; everything else passes through untouched.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<serde_json::Value>,
}

/// Adds `"stream_options":{"include_usage":true}` to a JSON object body.
fn inject_include_usage(body: &Bytes, has_stream_options: bool) -> Option<Bytes> {
    if !has_stream_options {
        // Textual insertion keeps every other byte of the client's body as it was.
        let end = body.iter().rposition(|&c| !c.is_ascii_whitespace())?;
        if body[end] != b'}' {
            return None;
        }
        let inner_empty = body[..end]
            .iter()
            .rposition(|&c| !c.is_ascii_whitespace())
            .is_some_and(|p| body[p] == b'{');
        let sep: &[u8] = if inner_empty { b"" } else { b"," };
        let mut out = Vec::with_capacity(body.len() + 48);
        out.extend_from_slice(&body[..end]);
        out.extend_from_slice(sep);
        out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        out.extend_from_slice(&body[end..]);
        return Some(out.into());
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    match obj.get_mut("stream_options") {
        Some(serde_json::Value::Object(so)) => {
            so.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        Some(serde_json::Value::Null) | None => {
            obj.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
        Some(_) => return None,
    }
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

fn build_upstream(
    shared: &Shared,
    b: &Backend,
    parts: &http::request::Parts,
    body: Bytes,
    rid: &HeaderValue,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = b.url.uri(pq)?;
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    // The gateway reads the stream (timings, tokens): ask for it uncompressed.
    headers.remove(header::ACCEPT_ENCODING);
    if shared.keys.is_some() {
        // The client's key was for the gateway.
        headers.remove(header::AUTHORIZATION);
        headers.remove("x-api-key");
    }
    if let Some(k) = &b.api_key {
        headers.insert(header::AUTHORIZATION, k.clone());
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert("x-request-id", rid.clone());
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// A model label whose cardinality the gateway controls: the model when the backend lists it,
/// otherwise `other` (clients cannot mint label values).
fn model_label(b: &Backend, model: Option<&str>) -> String {
    match model {
        Some(m) if b.serves(m) == Some(true) => m.to_string(),
        Some(_) => "other".to_string(),
        None => String::new(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Classifies a failed upstream call. Returns (class, definitive-for-ejection).
fn classify_client_error(e: &hyper_util::client::legacy::Error) -> (&'static str, bool) {
    if e.is_connect() {
        let refused = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        let msg = format!("{e:?}");
        let refused = refused || msg.contains("ConnectionRefused") || msg.contains("refused");
        if msg.contains("Timeout") || msg.contains("timed out") {
            return ("connect_timeout", false);
        }
        return ("connect", refused);
    }
    ("closed_before_response", false)
}

async fn proxy(shared: Arc<Shared>, req: Request<Incoming>, t0: Instant) -> Response<GwBody> {
    let rid = shared.request_id(req.headers());
    let rid_hv = HeaderValue::from_str(&rid).unwrap_or_else(|_| HeaderValue::from_static("-"));
    let max = shared.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    // Set once the body is parsed, for the access log of requests answered by the gateway.
    let logged_model: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let early = |status: StatusCode, kind: &str, msg: &str| {
        shared.metrics.count_request("", "", status.as_str());
        if let Some(log) = &shared.log {
            log.write(AccessRecord {
                request_id: &rid,
                model: logged_model.get().map(String::as_str),
                backend: "",
                status: status.as_str(),
                http_status: status.as_u16(),
                attempts: 0,
                ttft_s: None,
                prompt_tokens: None,
                output_tokens: None,
                token_source: "none",
                duration_s: t0.elapsed().as_secs_f64(),
            });
        }
        let mut r = error_response(status, kind, msg);
        r.headers_mut().insert("x-request-id", rid_hv.clone());
        r
    };
    let too_large =
        format!("request body larger than the gateway's limit of {max} bytes (--max-body-bytes)");
    if declared.is_some_and(|n| n > max as u64) {
        return early(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            &too_large,
        );
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        shared.cfg.body_read_timeout,
        Limited::new(body, max).collect(),
    )
    .await;
    let Ok(collected) = collected else {
        return early(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "the request body did not arrive within --body-read-timeout",
        );
    };
    let body = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                return early(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    &too_large,
                );
            }
            return early(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "could not read the request body",
            );
        }
    };
    let first = body.iter().find(|c| !c.is_ascii_whitespace());
    let peek = match first {
        Some(b'{') => serde_json::from_slice::<Peek>(&body),
        _ => {
            return early(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "request body must be a JSON object",
            );
        }
    };
    let peek = match peek {
        Ok(p) => p,
        Err(e) => {
            return early(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("request body is not valid JSON: {e}"),
            );
        }
    };
    let stream = peek.stream.unwrap_or(false);
    let so = peek.stream_options.as_ref();
    let client_wants_usage = so
        .and_then(|v| serde_json::from_value::<StreamOptions>(v.clone()).ok())
        .and_then(|s| s.include_usage)
        .unwrap_or(false);
    let mut strip_usage = false;
    let mut upstream_body = body;
    if stream && !client_wants_usage && shared.cfg.inject_usage {
        let has_so = so.is_some_and(|v| !v.is_null());
        if let Some(b) = inject_include_usage(&upstream_body, has_so) {
            upstream_body = b;
            strip_usage = true;
        }
    }
    let model = peek.model.as_deref();
    if let Some(m) = model {
        let _ = logged_model.set(truncate(m, 256));
    }

    let mut exclude: Option<usize> = None;
    let mut last_err: Option<(StatusCode, String)> = None;
    for attempt in 0..2u32 {
        let slot = match shared.pool.acquire(model, exclude).await {
            Ok(s) => s,
            Err(e) => {
                if let Some((status, msg)) = last_err {
                    // The retry found no other backend: report the first failure.
                    return early(status, "upstream_error", &msg);
                }
                let r = match e {
                    AcquireError::QueueFull => {
                        let mut r = early(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate_limit_error",
                            "every backend is at its in-flight cap and the gateway queue is full; retry later",
                        );
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        r
                    }
                    AcquireError::QueueTimeout => {
                        let mut r = early(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "overloaded_error",
                            "timed out waiting in the gateway queue for a backend slot",
                        );
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        r
                    }
                    AcquireError::UnknownModel => early(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        &format!(
                            "model {:?} is not served by any backend (see GET /v1/models)",
                            truncate(model.unwrap_or(""), 200)
                        ),
                    ),
                    AcquireError::NoBackendUp => early(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable",
                        "no healthy backend serves this model right now",
                    ),
                };
                return r;
            }
        };
        let b = slot.backend.clone();
        let ureq = match build_upstream(&shared, &b, &parts, upstream_body.clone(), &rid_hv) {
            Ok(r) => r,
            Err(e) => {
                return early(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &format!("cannot forward this request: {e}"),
                );
            }
        };
        let fb = shared.cfg.first_byte_timeout;
        let (class, definitive, msg) =
            match tokio::time::timeout(fb, shared.client.request(ureq)).await {
                Ok(Ok(resp)) => {
                    return respond(
                        &shared,
                        slot,
                        resp,
                        t0,
                        rid,
                        rid_hv,
                        model,
                        strip_usage,
                        attempt + 1,
                    );
                }
                Ok(Err(e)) => {
                    let (class, definitive) = classify_client_error(&e);
                    (
                        class,
                        definitive,
                        format!("backend {} failed: {class}", b.label),
                    )
                }
                Err(_) => (
                    "first_byte_timeout",
                    false,
                    format!(
                        "backend {} sent no response within {:?} (--first-byte-timeout)",
                        b.label, fb
                    ),
                ),
            };
        shared.metrics.upstream_error(&b.label, class);
        shared.pool.record_failure(&b, class, definitive);
        drop(slot);
        let status = if class == "first_byte_timeout" {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        last_err = Some((status, msg));
        exclude = Some(b.idx);
        if attempt == 0 {
            shared.metrics.retries.inc();
        }
    }
    let (status, msg) = last_err.unwrap_or((StatusCode::BAD_GATEWAY, "upstream failed".into()));
    early(status, "upstream_error", &msg)
}

#[allow(clippy::too_many_arguments)]
fn respond(
    shared: &Arc<Shared>,
    slot: Slot,
    resp: Response<Incoming>,
    t0: Instant,
    rid: String,
    rid_hv: HeaderValue,
    model: Option<&str>,
    strip_usage: bool,
    attempts: u32,
) -> Response<GwBody> {
    let (mut parts, upstream) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s.trim_start().starts_with("text/event-stream"));
    let ok = parts.status.is_success();
    let strip = strip_usage && is_sse && ok;
    if strip {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    parts.headers.insert("x-request-id", rid_hv);
    let b = &slot.backend;
    let label = model_label(b, model);
    let mb = ModelBackend {
        model: label.clone(),
        backend: b.label.clone(),
    };
    let hist = if ok {
        Some(Hists {
            ttft: shared.metrics.ttft.get_or_create_owned(&mb),
            itl: shared.metrics.itl.get_or_create_owned(&mb),
        })
    } else {
        None
    };
    let body = ProxyBody {
        upstream,
        scanner: (is_sse && ok).then(|| SseScanner::new(strip)),
        json_tee: (!is_sse && ok).then(Vec::new),
        hist,
        t0,
        first: None,
        last: None,
        output_events: 0,
        usage: None,
        idle: shared.cfg.idle_timeout,
        last_activity: Instant::now(),
        sleep: None,
        slot: Some(slot),
        shared: shared.clone(),
        rid,
        model: label,
        model_requested: model.map(|m| truncate(m, 256)),
        status: parts.status.as_u16(),
        attempts,
        done: false,
        finished: false,
        strip,
    };
    Response::from_parts(parts, GwBody::Proxy(Box::new(body)))
}

struct Hists {
    ttft: Histogram,
    itl: Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    StreamBroken,
    IdleTimeout,
    ClientClosed,
}

const JSON_TEE_LIMIT: usize = 1024 * 1024;

/// The response body on its way to the client: forwards each upstream frame as it comes,
/// watches SSE events for timing and tokens, enforces the idle timeout, and records metrics
/// when the stream ends (or is dropped because the client went away).
pub struct ProxyBody {
    upstream: Incoming,
    scanner: Option<SseScanner>,
    json_tee: Option<Vec<u8>>,
    hist: Option<Hists>,
    t0: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    output_events: u64,
    usage: Option<Usage>,
    idle: Duration,
    last_activity: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    slot: Option<Slot>,
    shared: Arc<Shared>,
    rid: String,
    model: String,
    model_requested: Option<String>,
    status: u16,
    attempts: u32,
    done: bool,
    finished: bool,
    strip: bool,
}

impl ProxyBody {
    fn rewrites(&self) -> bool {
        self.strip
    }

    fn observe(&mut self, data: Bytes, now: Instant) -> Bytes {
        if let Some(sc) = &mut self.scanner {
            let (first, last, events, usage, hist) = (
                &mut self.first,
                &mut self.last,
                &mut self.output_events,
                &mut self.usage,
                &self.hist,
            );
            let t0 = self.t0;
            return sc.push(data, |ev| {
                if ev.output {
                    *events += 1;
                    match *last {
                        None => {
                            *first = Some(now);
                            if let Some(h) = hist {
                                h.ttft.observe((now - t0).as_secs_f64());
                            }
                        }
                        Some(prev) => {
                            if let Some(h) = hist {
                                h.itl.observe((now - prev).as_secs_f64());
                            }
                        }
                    }
                    *last = Some(now);
                }
                if let Some(u) = ev.usage {
                    *usage = Some(u);
                }
            });
        }
        if let Some(tee) = &mut self.json_tee {
            if tee.len() + data.len() <= JSON_TEE_LIMIT {
                tee.extend_from_slice(&data);
            } else {
                self.json_tee = None;
            }
        }
        data
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.done = true;
        let now = Instant::now();
        let Some(slot) = self.slot.take() else { return };
        let b = slot.backend.clone();
        let shared = self.shared.clone();
        let m = &shared.metrics;
        match outcome {
            Outcome::Complete | Outcome::ClientClosed => shared.pool.record_success(&b),
            Outcome::StreamBroken => {
                m.upstream_error(&b.label, "stream_broken");
                shared.pool.record_failure(&b, "stream_broken", false);
            }
            Outcome::IdleTimeout => {
                m.upstream_error(&b.label, "idle_timeout");
                shared.pool.record_failure(&b, "idle_timeout", false);
            }
        }
        drop(slot);
        if let Some(tee) = self.json_tee.take()
            && outcome == Outcome::Complete
        {
            #[derive(Deserialize)]
            struct WithUsage {
                #[serde(default)]
                usage: Option<Usage>,
            }
            if let Ok(w) = serde_json::from_slice::<WithUsage>(&tee) {
                self.usage = w.usage;
            }
        }
        let status_label = match outcome {
            Outcome::Complete => self.status.to_string(),
            Outcome::StreamBroken => "stream_broken".into(),
            Outcome::IdleTimeout => "idle_timeout".into(),
            Outcome::ClientClosed => "client_closed".into(),
        };
        m.count_request(&self.model, &b.label, &status_label);
        let streamed = self.scanner.is_some();
        let (output_tokens, source) = match self.usage.and_then(|u| u.completion_tokens) {
            Some(n) => (Some(n), "usage"),
            None if streamed => (Some(self.output_events), "events"),
            None => (None, "none"),
        };
        let ok = outcome == Outcome::Complete && (200..300).contains(&self.status);
        let end = if streamed { self.last } else { Some(now) };
        if ok && let Some(end) = end {
            let e2e = (end - self.t0).as_secs_f64();
            let mb = ModelBackend {
                model: self.model.clone(),
                backend: b.label.clone(),
            };
            m.e2e.get_or_create(&mb).observe(e2e);
            if let Some(n) = output_tokens
                && n > 0
                && e2e > 0.0
            {
                m.tokens_per_second
                    .get_or_create(&mb)
                    .observe(n as f64 / e2e);
            }
        }
        if let Some(log) = &shared.log {
            log.write(AccessRecord {
                request_id: &self.rid,
                model: self.model_requested.as_deref(),
                backend: &b.label,
                status: &status_label,
                http_status: self.status,
                attempts: self.attempts,
                ttft_s: self.first.map(|f| (f - self.t0).as_secs_f64()),
                prompt_tokens: self.usage.and_then(|u| u.prompt_tokens),
                output_tokens,
                token_source: source,
                duration_s: (now - self.t0).as_secs_f64(),
            });
        }
    }

    fn fail(
        &mut self,
        outcome: Outcome,
        msg: &str,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let had_partial = self
            .scanner
            .as_mut()
            .map(|s| {
                let rest = s.finish();
                !rest.is_empty()
            })
            .unwrap_or(false);
        self.finish(outcome);
        if self.scanner.is_some() {
            let ev = serde_json::json!({
                "error": {"message": msg, "type": "upstream_error", "param": null, "code": 502}
            });
            // Without stripping, a partial event was already forwarded: terminate it first.
            let prefix = if had_partial && !self.strip {
                "\n\n"
            } else {
                ""
            };
            let s = format!("{prefix}data: {ev}\n\n");
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(s)))));
        }
        Poll::Ready(Some(Err(msg.to_string().into())))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let now = Instant::now();
                    this.last_activity = now;
                    match frame.into_data() {
                        Ok(data) => {
                            let out = this.observe(data, now);
                            if out.is_empty() {
                                continue;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let label = this
                        .slot
                        .as_ref()
                        .map(|s| s.backend.label.clone())
                        .unwrap_or_default();
                    return this.fail(
                        Outcome::StreamBroken,
                        &format!("the stream from backend {label} broke: {e}"),
                    );
                }
                Poll::Ready(None) => {
                    let rest = this.scanner.as_mut().map(|s| s.finish());
                    this.finish(Outcome::Complete);
                    if let Some(rest) = rest
                        && !rest.is_empty()
                    {
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    let idle = this.idle;
                    let sleep = this.sleep.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep_until(this.last_activity + idle))
                    });
                    loop {
                        match sleep.as_mut().poll(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(()) => {
                                let deadline = this.last_activity + idle;
                                if Instant::now() >= deadline {
                                    let msg = format!(
                                        "backend sent nothing for {idle:?} (--idle-timeout)"
                                    );
                                    return this.fail(Outcome::IdleTimeout, &msg);
                                }
                                sleep.as_mut().reset(deadline);
                            }
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away (or hyper gave up on the connection) before the end:
            // dropping `upstream` right after this closes the upstream connection, which
            // cancels the request on the backend.
            self.finish(Outcome::ClientClosed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_keeps_other_bytes() {
        let b = Bytes::from_static(br#"{"model":"m", "stream":true}  "#);
        let out = inject_include_usage(&b, false).unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"m", "stream":true,"stream_options":{"include_usage":true}}  "#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let b = Bytes::from_static(
            br#"{"stream":true,"stream_options":{"continuous_usage_stats":false}}"#,
        );
        let out = inject_include_usage(&b, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["continuous_usage_stats"], false);
        let b = Bytes::from_static(br#"{"stream":true,"stream_options":5}"#);
        assert!(inject_include_usage(&b, true).is_none());
        let b = Bytes::from_static(b"{ }");
        assert_eq!(
            &inject_include_usage(&b, false).unwrap()[..],
            br#"{ "stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("content-type", "text/event-stream".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn truncation_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
