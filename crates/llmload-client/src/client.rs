//! [`Client::send`]: one request, measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use std::io::IoSlice;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use llmload_core::{ErrorClass, RequestRecord, RequestSpec, TokenCounter, TokenSource};
use tokio_util::sync::CancellationToken;

use crate::body::{BodyTemplate, RequestBody};
use crate::config::{ClientConfig, is_secret_header};
use crate::conn::Pool;
use crate::error::{ClientError, rejected_field_hint, scrub, snippet};
use crate::http1::{Body, Conn, Head, HttpError};
use crate::sse::{SseItem, SseParser};
use crate::stream::{Flow, ResponseState};

/// How many times one request may be re-sent after a stale keep-alive connection.
const MAX_RETRIES: u32 = 3;
/// How much of an error body is read (and kept, cut further, in the message).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Largest non-streaming body accepted.
const BODY_LIMIT: usize = 256 * 1024 * 1024;

/// A request with its body already rendered ([`Client::prepare`]).
pub struct Prepared {
    pub spec: RequestSpec,
    body: RequestBody,
}

/// The measurement of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Stamps, counts, status and error class (DESIGN §2).
    pub record: RequestRecord,
    /// ITL gaps `t_chunk[i] - t_chunk[i-1]` in seconds, one per output event after the first.
    pub gaps: Vec<f64>,
    /// The answer text (content, or completion text), when `capture_answer` is set.
    pub answer: Option<String>,
    /// The output-token count still to be made ([`Client::send_prepared_unsettled`]);
    /// `None` once settled.
    pub pending: Option<Box<Pending>>,
}

/// An answer whose output tokens the tokenizer must count (the server sent no usage): the
/// one part of a measurement that can take long (~0.3 ms for 600 tokens) and needs no clock.
/// [`Client::settle`] counts on whatever thread calls it; the engine's collector does, so that
/// the thread that times requests does not hold up every other request's stamps meanwhile.
#[derive(Debug, Clone)]
pub struct Pending {
    resp: ResponseState,
}

/// An OpenAI-compatible client with a keep-alive pool. Cheap to clone; share it between tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    body: BodyTemplate,
    /// The request head up to the value of `content-length`.
    head: Vec<u8>,
    url: String,
    pool: Pool,
    tokens: Option<Arc<dyn TokenCounter>>,
    in_flight: AtomicU32,
    /// Test hook: do not drop pooled connections that already look closed.
    trust_idle: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// Request headers common to every request (Host, content type, auth, `--header`s).
pub(crate) fn base_headers(
    url: &url::Url,
    api_key: Option<&str>,
    extra: &[(String, String)],
    with_body: bool,
) -> Result<HeaderMap, ClientError> {
    let mut h = HeaderMap::new();
    let host = match (url.host_str(), url.port()) {
        (Some(hst), Some(p)) => format!("{hst}:{p}"),
        (Some(hst), None) => hst.to_string(),
        (None, _) => {
            return Err(ClientError::Unsupported(format!(
                "{url}: the URL has no host; pass --target http://HOST:PORT"
            )));
        }
    };
    let host = HeaderValue::from_str(&host).map_err(|e| ClientError::InvalidHeader {
        name: "host".into(),
        reason: e.to_string(),
    })?;
    h.insert(header::HOST, host);
    if with_body {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("llmload/", env!("CARGO_PKG_VERSION"))),
    );
    if let Some(k) = api_key {
        let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
            ClientError::InvalidHeader {
                name: "authorization".into(),
                reason: "the API key holds characters not allowed in a header (check --api-key / OPENAI_API_KEY)".into(),
            }
        })?;
        v.set_sensitive(true);
        h.insert(header::AUTHORIZATION, v);
    }
    for (k, v) in extra {
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| {
            ClientError::InvalidHeader {
                name: k.clone(),
                reason: e.to_string(),
            }
        })?;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return Err(ClientError::InvalidHeader {
                name: k.clone(),
                reason: "llmload frames the request body itself; remove this --header".into(),
            });
        }
        let mut val = HeaderValue::from_str(v.trim()).map_err(|e| ClientError::InvalidHeader {
            name: k.clone(),
            reason: if is_secret_header(k) {
                "the value holds characters not allowed in a header".into()
            } else {
                e.to_string()
            },
        })?;
        if is_secret_header(k) {
            val.set_sensitive(true);
        }
        h.insert(name, val);
    }
    Ok(h)
}

/// Seconds from `epoch` to `t` (negative if `t` is earlier).
fn secs(epoch: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(epoch) {
        Some(d) => d.as_secs_f64(),
        None => -(epoch.duration_since(t).as_secs_f64()),
    }
}

/// How an attempt ended (before finalization).
enum End {
    Ok,
    Fail(ErrorClass, String),
}

/// Mutable state of one request, kept outside the future so that cancellation and
/// timeouts still see every stamp taken so far.
struct Progress {
    rec: RequestRecord,
    resp: ResponseState,
    end: Option<End>,
    t_end: Option<f64>,
    /// Leave the tokenizer's count to [`Client::settle`].
    defer: bool,
}

impl Client {
    /// A client for `cfg`. `tokens` counts output tokens where the server sends no usage.
    pub fn new(
        cfg: ClientConfig,
        tokens: Option<Arc<dyn TokenCounter>>,
    ) -> Result<Self, ClientError> {
        let url = cfg.request_url()?;
        let body = BodyTemplate::new(&cfg).map_err(|e| {
            ClientError::Unsupported(format!(
                "cannot serialize the request body (--body-json): {e}"
            ))
        })?;
        let headers = base_headers(&url, cfg.api_key.as_deref(), &cfg.headers, true)?;
        let mut pq = url.path().to_string();
        if let Some(q) = url.query() {
            pq.push('?');
            pq.push_str(q);
        }
        let head = render_head("POST", &pq, &headers, true);
        let host = url
            .host_str()
            .ok_or_else(|| ClientError::Unsupported(format!("{url}: no host")))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let pool = Pool::new(host, port, cfg.max_connections, cfg.connect_timeout);
        Ok(Self {
            inner: Arc::new(Inner {
                body,
                head,
                url: url.to_string(),
                pool,
                tokens,
                in_flight: AtomicU32::new(0),
                trust_idle: false,
                cfg,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Idle keep-alive connections held now.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// Test hook: reuse pooled connections even when they already look closed, to exercise
    /// the stale keep-alive retry deterministically.
    #[doc(hidden)]
    pub fn with_trusted_idle_connections(self) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.trust_idle = true;
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
    }

    /// Sends one request and measures it. `epoch` is the run's start on the monotonic clock;
    /// all stamps in the record are seconds since `epoch`. The caller fills `id`, `benchmark`,
    /// `t_sched` (and `in_window`); everything else is filled here.
    ///
    /// Never fails: every failure is measured and classified in the record. If `cancel` fires
    /// while in flight, returns at once with error `cancelled` and the stamps so far.
    pub async fn send(
        &self,
        spec: &RequestSpec,
        epoch: Instant,
        cancel: &CancellationToken,
    ) -> Outcome {
        let body = self.inner.body.build(spec);
        self.send_body(spec, &body, epoch, cancel, false).await
    }

    /// Renders a request's body ahead of sending it (the engine does this on its producer
    /// thread, off the thread that times requests).
    pub fn prepare(&self, spec: RequestSpec) -> Prepared {
        let body = self.inner.body.build(&spec);
        Prepared { spec, body }
    }

    /// [`Client::send`] of a prepared request.
    pub async fn send_prepared(
        &self,
        p: &Prepared,
        epoch: Instant,
        cancel: &CancellationToken,
    ) -> Outcome {
        self.send_body(&p.spec, &p.body, epoch, cancel, false).await
    }

    /// [`Client::send_prepared`] that leaves the tokenizer's count for later: when the server
    /// sent no usage, the outcome has everything but `output_tokens` (and
    /// `multi_token_events`, which depends on it), and a [`Pending`] part for
    /// [`Client::settle`] to count, on another thread if wanted. The record is the same
    /// either way. `capture_answer` clients count at once (the answer is handed over).
    pub async fn send_prepared_unsettled(
        &self,
        p: &Prepared,
        epoch: Instant,
        cancel: &CancellationToken,
    ) -> Outcome {
        self.send_body(&p.spec, &p.body, epoch, cancel, true).await
    }

    /// Finishes an outcome of [`Client::send_prepared_unsettled`] (nothing to do for one
    /// already settled).
    pub fn settle(&self, out: &mut Outcome) {
        if let Some(p) = out.pending.take() {
            self.settle_into(&mut out.record, *p);
        }
    }

    /// [`Client::settle`] into a record held elsewhere (the engine keeps its own).
    pub fn settle_into(&self, rec: &mut RequestRecord, p: Pending) {
        let n = self.count_tokens(&p.resp);
        rec.output_tokens = Some(n);
        rec.multi_token_events = p.resp.multi_token_events(Some(n));
    }

    /// Output tokens of an answer without usage, by the tokenizer (0 without one).
    fn count_tokens(&self, resp: &ResponseState) -> u64 {
        let Some(tc) = &self.inner.tokens else {
            return 0;
        };
        let count = |t: &str| if t.is_empty() { 0 } else { tc.count(t) };
        count(&resp.answer) + count(&resp.other_text)
    }

    async fn send_body(
        &self,
        spec: &RequestSpec,
        body: &RequestBody,
        epoch: Instant,
        cancel: &CancellationToken,
        defer: bool,
    ) -> Outcome {
        let inner = &*self.inner;
        let in_flight = inner.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let _guard = InFlightGuard(&inner.in_flight);
        let start = Instant::now();
        let keep_text = inner.tokens.is_some() || inner.cfg.capture_answer;
        let mut p = Progress {
            rec: RequestRecord {
                t_dispatch: secs(epoch, start),
                t_sched: secs(epoch, start),
                prompt_tokens_client: spec.prompt_tokens,
                max_tokens: spec.max_tokens,
                in_flight_at_dispatch: in_flight,
                tag: spec.tag.clone(),
                image_count: (!spec.images.is_empty()).then_some(spec.images.len() as u32),
                image_bytes: {
                    let b: u64 = spec.images.iter().filter_map(|i| i.bytes).sum();
                    (b > 0).then_some(b)
                },
                ..Default::default()
            },
            // Room for the ITL gaps of a stream (a non-streamed answer has none).
            resp: ResponseState::new(keep_text, inner.cfg.record_chunks)
                .capturing(inner.cfg.capture_answer)
                .with_capacity(if inner.cfg.stream {
                    spec.max_tokens.unwrap_or(16) as usize
                } else {
                    0
                }),
            end: None,
            t_end: None,
            defer,
        };
        if cancel.is_cancelled() {
            p.end = Some(End::Fail(
                ErrorClass::Cancelled,
                "cancelled before dispatch".into(),
            ));
        } else {
            let deadline = inner.cfg.request_timeout.map(|d| start + d);
            let ended = {
                let exchange = self.exchange(&mut p, body, epoch);
                tokio::pin!(exchange);
                match deadline {
                    Some(dl) => tokio::select! {
                        biased;
                        _ = cancel.cancelled() => Some(ErrorClass::Cancelled),
                        _ = tokio::time::sleep_until(dl.into()) => Some(ErrorClass::Timeout),
                        _ = &mut exchange => None,
                    },
                    None => tokio::select! {
                        biased;
                        _ = cancel.cancelled() => Some(ErrorClass::Cancelled),
                        _ = &mut exchange => None,
                    },
                }
            };
            // A response already read to its end stays a success even if the stop came while
            // the connection was being drained for reuse.
            if let Some(class) = ended.filter(|_| p.end.is_none()) {
                let msg = match class {
                    ErrorClass::Timeout => format!(
                        "no complete response within the request timeout ({:.1} s); {} output events received",
                        inner.cfg.request_timeout.unwrap_or_default().as_secs_f64(),
                        p.resp.output_events
                    ),
                    _ => format!(
                        "cancelled by the stop condition while in flight; {} output events received",
                        p.resp.output_events
                    ),
                };
                p.end = Some(End::Fail(class, msg));
                p.t_end = Some(secs(epoch, Instant::now()));
            }
        }
        self.finish(p, epoch)
    }

    /// The record's counts, finish reason and error from the response (DESIGN §2); the
    /// tokenizer's count is left pending when `defer` asks for it.
    fn finish(&self, p: Progress, epoch: Instant) -> Outcome {
        let inner = &*self.inner;
        let Progress {
            mut rec,
            mut resp,
            end,
            t_end,
            defer,
        } = p;
        rec.t_end = t_end.unwrap_or_else(|| secs(epoch, Instant::now()));
        rec.t_first_token = resp.t_first_token;
        rec.t_first_output = resp.t_first_output;
        rec.t_last_token = resp.t_last_token;
        rec.output_events = resp.output_events;
        rec.finish_reason = resp.finish_reason.take();
        if inner.cfg.record_chunks {
            rec.chunk_times = Some(std::mem::take(&mut resp.chunk_times));
        }
        // Token counts: the server's usage, else the tokenizer.
        rec.prompt_tokens = resp
            .usage
            .and_then(|u| u.prompt_tokens)
            .or(spec_prompt(&rec));
        let mut count_later = false;
        if let Some(n) = resp.usage.and_then(|u| u.completion_tokens) {
            rec.output_tokens = Some(n);
            rec.token_source = TokenSource::Usage;
        } else if inner.tokens.is_some() {
            rec.token_source = TokenSource::Tokenizer;
            count_later = defer && !inner.cfg.capture_answer;
            if !count_later {
                rec.output_tokens = Some(self.count_tokens(&resp));
            }
        } else {
            rec.token_source = TokenSource::None;
        }
        if !count_later {
            rec.multi_token_events = resp.multi_token_events(rec.output_tokens);
        }
        match end {
            Some(End::Ok) => {}
            Some(End::Fail(class, msg)) => {
                rec.error = Some(class);
                rec.error_message = Some(scrub(msg, inner.cfg.api_key.as_deref()));
            }
            None => {
                rec.error = Some(ErrorClass::StreamBroken);
                rec.error_message = Some("the request ended without a result".into());
            }
        }
        let answer = inner
            .cfg
            .capture_answer
            .then(|| std::mem::take(&mut resp.answer));
        if count_later {
            let gaps = std::mem::take(&mut resp.gaps);
            return Outcome {
                record: rec,
                gaps,
                answer,
                pending: Some(Box::new(Pending { resp })),
            };
        }
        Outcome {
            record: rec,
            gaps: resp.gaps,
            answer,
            pending: None,
        }
    }

    /// Send (with stale keep-alive retries) and read the response into `p`.
    async fn exchange(&self, p: &mut Progress, body: &RequestBody, epoch: Instant) {
        let inner = &*self.inner;
        let mut cl_buf = [0u8; 32];
        let cl = content_length_line(&mut cl_buf, body.len());
        loop {
            let pooled = if inner.trust_idle {
                inner.pool.checkout_any()
            } else {
                inner.pool.checkout()
            };
            let (mut conn, reused) = match pooled {
                Some(c) => (c, true),
                None => match inner.pool.connect().await {
                    Ok(c) => (c, false),
                    Err(e) => {
                        p.end = Some(End::Fail(
                            ErrorClass::Connect,
                            format!("cannot connect to {}: {e}", inner.url),
                        ));
                        p.t_end = Some(secs(epoch, Instant::now()));
                        return;
                    }
                },
            };
            let t_try = Instant::now();
            conn.begin(t_try);
            p.rec.t_dispatch = secs(epoch, t_try);
            // Head, length and body in one vectored write (a text body is one segment; image
            // URLs are shared segments).
            let mut three;
            let mut many;
            let parts: &mut [IoSlice<'_>] = if body.segment_count() == 1 {
                three = [
                    IoSlice::new(&inner.head),
                    IoSlice::new(cl),
                    IoSlice::new(&[]),
                ];
                if let Some(seg) = body.segments().next() {
                    three[2] = IoSlice::new(seg);
                }
                &mut three
            } else {
                many = Vec::with_capacity(2 + body.segment_count());
                many.push(IoSlice::new(&inner.head));
                many.push(IoSlice::new(cl));
                many.extend(body.segments().map(|s| IoSlice::new(s)));
                &mut many
            };
            match conn.write_request(parts).await {
                Ok(t) => p.rec.t_dispatch = secs(epoch, t.max(t_try)),
                Err(we) => {
                    if let Some(t) = we.first_write {
                        p.rec.t_dispatch = secs(epoch, t.max(t_try));
                    }
                    // A server may answer before it read the whole request (413, 431) and
                    // close: when its answer is already here, report it (never retry).
                    if we.written > 0
                        && let Ok(Ok(head)) =
                            tokio::time::timeout(Duration::from_millis(100), conn.read_head()).await
                    {
                        self.read_response(p, conn, head, epoch).await;
                        return;
                    }
                    // Nothing was read yet (the response is read only after the whole request
                    // is written), so the server cannot have answered: a stale keep-alive
                    // connection. Retry on another one.
                    if reused && p.rec.retries < MAX_RETRIES {
                        p.rec.retries += 1;
                        continue;
                    }
                    let total = inner.head.len() + cl.len() + body.len();
                    let (class, msg) = if we.written == 0 {
                        (
                            ErrorClass::Connect,
                            format!(
                                "the connection to {} failed before the request could be sent: {}",
                                inner.url, we.error
                            ),
                        )
                    } else {
                        (
                            ErrorClass::StreamBroken,
                            format!(
                                "sending the request to {} failed after {} of {total} bytes: {}",
                                inner.url, we.written, we.error
                            ),
                        )
                    };
                    p.end = Some(End::Fail(class, msg));
                    p.t_end = Some(secs(epoch, Instant::now()));
                    return;
                }
            }
            let head = match conn.read_head().await {
                Ok(h) => h,
                Err(e) => {
                    p.t_end = Some(secs(epoch, conn.last_read()));
                    let (class, msg) = match e {
                        HttpError::Malformed(m) => (ErrorClass::Protocol, m),
                        e if conn.read_bytes == 0 => (
                            ErrorClass::StreamBroken,
                            format!(
                                "connection closed by the server before any response byte \
                                 ({} connection, {} request bytes written; the request was sent, \
                                 so it is not retried: the server may have processed it): {e}",
                                if reused { "reused keep-alive" } else { "fresh" },
                                inner.head.len() + cl.len() + body.len(),
                            ),
                        ),
                        e => (
                            ErrorClass::StreamBroken,
                            format!("the response broke off: {e}"),
                        ),
                    };
                    p.end = Some(End::Fail(class, msg));
                    return;
                }
            };
            self.read_response(p, conn, head, epoch).await;
            return;
        }
    }

    async fn read_response(&self, p: &mut Progress, mut conn: Conn, head: Head, epoch: Instant) {
        let inner = &*self.inner;
        let status = head.status;
        p.rec.status = Some(status);
        let mut body = Body::new(&head);

        if !(200..300).contains(&status) {
            let mut buf = Vec::new();
            let mut cut = false;
            while let Ok(Some((d, _))) = body.next(&mut conn).await {
                buf.extend_from_slice(d);
                if buf.len() >= ERROR_BODY_LIMIT {
                    cut = true;
                    break;
                }
            }
            p.t_end = Some(secs(epoch, conn.last_read()));
            let text = snippet(&buf, 300);
            let class = ErrorClass::from_status(status).unwrap_or(ErrorClass::Protocol);
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let msg = if matches!(status, 400 | 422) {
                match rejected_field_hint(
                    &String::from_utf8_lossy(&buf),
                    &inner.body.extra_keys,
                    inner.cfg.stream,
                ) {
                    Some((field, hint)) => format!(
                        "server rejected `{field}` (HTTP {status} {reason}: {text}): {hint}"
                    ),
                    None => format!("HTTP {status} {reason}: {text}"),
                }
            } else if (300..400).contains(&status) {
                let loc = head.location.as_deref().unwrap_or("?");
                format!("HTTP {status} redirect to {loc}: point --target at the final URL")
            } else {
                format!("HTTP {status} {reason}: {text}")
            };
            p.end = Some(End::Fail(class, msg));
            if !cut && conn.reusable(&head, &body) {
                inner.pool.checkin(conn);
            }
            return;
        }

        if !inner.cfg.stream {
            let mut scratch = Vec::new();
            match body.read_all(&mut conn, &mut scratch, BODY_LIMIT).await {
                Ok((bytes, t)) => {
                    let t = secs(epoch, t);
                    p.t_end = Some(t);
                    p.end = Some(read_body(&mut p.resp, bytes, t));
                }
                Err(e) => {
                    p.t_end = Some(secs(epoch, conn.last_read()));
                    p.end = Some(End::Fail(
                        body_error_class(&e),
                        format!(
                            "the response body broke off after {} bytes: {e}",
                            body.received.max(scratch.len() as u64)
                        ),
                    ));
                    return;
                }
            }
            if conn.reusable(&head, &body) {
                inner.pool.checkin(conn);
            }
            return;
        }

        // Streaming.
        if head.json {
            let mut buf = Vec::new();
            while let Ok(Some((d, _))) = body.next(&mut conn).await {
                buf.extend_from_slice(d);
                if buf.len() > ERROR_BODY_LIMIT {
                    break;
                }
            }
            p.t_end = Some(secs(epoch, conn.last_read()));
            // An error object in a 200 JSON body is still the server's error.
            let mut probe = ResponseState::new(false, false);
            if probe.on_body(&buf, 0.0) == Flow::Fail
                && let Some((c, m)) = probe.error
                && c != ErrorClass::Protocol
            {
                p.end = Some(End::Fail(c, m));
                return;
            }
            p.end = Some(End::Fail(
                ErrorClass::Protocol,
                format!(
                    "the server answered a streaming request with application/json instead of \
                         text/event-stream (pass --no-stream to benchmark it without streaming): {}",
                    snippet(&buf, 200)
                ),
            ));
            return;
        }

        let mut parser = SseParser::new();
        let outcome: Option<End> = loop {
            match body.next(&mut conn).await {
                Ok(Some((data, t))) => {
                    let t = secs(epoch, t);
                    let resp = &mut p.resp;
                    let mut stop: Option<End> = None;
                    parser.feed(data, &mut |item| match item {
                        SseItem::Event { data, name } => match resp.on_event(data, name, t) {
                            Flow::Continue => true,
                            Flow::Done => false,
                            Flow::Fail => {
                                let (c, m) = resp
                                    .error
                                    .take()
                                    .unwrap_or((ErrorClass::Protocol, "invalid event".into()));
                                stop = Some(End::Fail(c, m));
                                false
                            }
                        },
                        SseItem::Invalid(line) => {
                            stop = Some(End::Fail(
                                ErrorClass::Protocol,
                                format!(
                                    "the response is not an SSE stream: {}",
                                    snippet(line, 200)
                                ),
                            ));
                            false
                        }
                    });
                    if let Some(e) = stop {
                        p.t_end = Some(t);
                        break Some(e);
                    }
                    if p.resp.done {
                        p.t_end = Some(t);
                        break Some(End::Ok);
                    }
                }
                Err(e) => {
                    p.t_end = Some(secs(epoch, conn.last_read()));
                    if p.resp.looks_complete() {
                        break Some(End::Ok);
                    }
                    break Some(End::Fail(
                        body_error_class(&e),
                        format!(
                            "the stream broke off after {} bytes and {} output events, before its end: {e}",
                            body.received, p.resp.output_events,
                        ),
                    ));
                }
                Ok(None) => break None,
            }
        };
        match outcome {
            Some(End::Ok) if p.resp.done => {
                p.end = Some(End::Ok);
                // Read the body's end (normally already here) so the connection can be reused.
                self.drain_and_checkin(conn, head, body).await;
            }
            Some(e) => p.end = Some(e),
            None => {
                // The body ended without [DONE].
                let t = secs(epoch, conn.last_read());
                p.t_end = Some(t);
                let resp = &mut p.resp;
                let mut stop: Option<End> = None;
                let trailing = parser.finish(&mut |item| {
                    if let SseItem::Event { data, name } = item
                        && resp.on_event(data, name, t) == Flow::Fail
                    {
                        stop = resp.error.take().map(|(c, m)| End::Fail(c, m));
                    }
                    true
                });
                if let Some(e) = stop {
                    p.end = Some(e);
                } else if let Some(tr) = trailing.filter(|_| !p.resp.looks_complete()) {
                    p.end = Some(End::Fail(
                        ErrorClass::StreamBroken,
                        format!(
                            "the stream ended inside an event, after {} output events: {}",
                            p.resp.output_events,
                            snippet(&tr, 200)
                        ),
                    ));
                } else if p.resp.looks_complete() {
                    p.end = Some(End::Ok);
                    if conn.reusable(&head, &body) {
                        inner.pool.checkin(conn);
                    }
                } else if body.received == 0 {
                    p.end = Some(End::Fail(
                        ErrorClass::StreamBroken,
                        "the server ended the stream without sending any event".into(),
                    ));
                } else {
                    p.end = Some(End::Fail(
                        ErrorClass::StreamBroken,
                        format!(
                            "the stream ended after {} output events without a finish reason, \
                             usage or [DONE]",
                            p.resp.output_events
                        ),
                    ));
                }
            }
        }
    }

    /// After `[DONE]`: read the body's end (normally in the same read as `[DONE]`) so the
    /// connection goes back to the pool before `send` returns. A server that keeps the body
    /// open longer gets a background task that waits a little for it; the measurement
    /// (stamped at `[DONE]`) is never delayed by this.
    async fn drain_and_checkin(&self, mut conn: Conn, head: Head, mut body: Body) {
        // What is already buffered or readable at once.
        let now = poll_once(drain(&mut conn, &mut body));
        match now {
            Some(true) => {
                if conn.reusable(&head, &body) {
                    self.inner.pool.checkin(conn);
                }
                return;
            }
            Some(false) => return,
            None => {}
        }
        match tokio::time::timeout(Duration::from_millis(20), drain(&mut conn, &mut body)).await {
            Ok(true) => {
                if conn.reusable(&head, &body) {
                    self.inner.pool.checkin(conn);
                }
            }
            Ok(false) => {}
            Err(_) => {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Ok(true) =
                        tokio::time::timeout(Duration::from_secs(5), drain(&mut conn, &mut body))
                            .await
                        && conn.reusable(&head, &body)
                    {
                        this.inner.pool.checkin(conn);
                    }
                });
            }
        }
    }
}

/// A whole non-streamed answer, arrived at `t`, read into `resp`: how the request ended.
fn read_body(resp: &mut ResponseState, bytes: &[u8], t: f64) -> End {
    match resp.on_body(bytes, t) {
        Flow::Fail => {
            let (c, m) = resp
                .error
                .take()
                .unwrap_or((ErrorClass::Protocol, "invalid response".into()));
            End::Fail(c, m)
        }
        _ => End::Ok,
    }
}

/// Read the rest of a body, discarding it; `false` if it broke off.
async fn drain(conn: &mut Conn, body: &mut Body) -> bool {
    loop {
        match body.next(conn).await {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Poll a future once, without waiting (a no-op waker; the future is dropped if pending).
fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// The error class of a body that could not be read to its end.
fn body_error_class(e: &HttpError) -> ErrorClass {
    match e {
        HttpError::Malformed(_) => ErrorClass::Protocol,
        HttpError::Io(_) | HttpError::Closed { .. } => ErrorClass::StreamBroken,
    }
}

/// `{n}\r\n\r\n` (the end of the head after `content-length: `) in `buf`.
fn content_length_line(buf: &mut [u8; 32], n: usize) -> &[u8] {
    let mut digits = itoa::Buffer::new();
    let d = digits.format(n).as_bytes();
    buf[..d.len()].copy_from_slice(d);
    buf[d.len()..d.len() + 4].copy_from_slice(b"\r\n\r\n");
    &buf[..d.len() + 4]
}

/// The request head up to the value of `content-length` (or the whole head without a body):
/// rendered once per client, only the length and the body vary per request.
pub(crate) fn render_head(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    with_body: bool,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(method.as_bytes());
    h.push(b' ');
    h.extend_from_slice(path_and_query.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in headers {
        h.extend_from_slice(k.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    if with_body {
        h.extend_from_slice(b"content-length: ");
    } else {
        h.extend_from_slice(b"\r\n");
    }
    h
}

fn spec_prompt(rec: &RequestRecord) -> Option<u64> {
    rec.prompt_tokens_client
}

struct InFlightGuard<'a>(&'a AtomicU32);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
