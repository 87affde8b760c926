//! The HTTP server: vLLM's OpenAI-compatible API on top of the simulator.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::engine::{FinishReason, block_hashes};
use crate::faults::Faults;
use crate::image::{image_tokens, probe_data_url};
use crate::metrics::{ExpositionInput, HttpMetrics, render};
use crate::profile::Profile;
use crate::runtime::{Deliveries, Runtime, Update};
use crate::sim::SimRequest;
use crate::tokenize;

const VOCAB: usize = 4096;

pub(crate) struct AppState {
    pub rt: Arc<Runtime>,
    pub profile: Arc<Profile>,
    pub model: String,
    pub faults: Mutex<Faults>,
    pub http: Mutex<HttpMetrics>,
    pub next_id: AtomicU64,
    pub ready_at: Mutex<Instant>,
    pub vocab: Vec<String>,
    pub created_unix: f64,
    pub cache_config: Vec<(String, String)>,
    pub rng: Mutex<ChaCha8Rng>,
    pub seen_images: Mutex<HashSet<u64>>,
    pub id_salt: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl AppState {
    pub fn new(
        rt: Arc<Runtime>,
        profile: Arc<Profile>,
        model: String,
        faults: Faults,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_70C5);
        let vocab = (0..VOCAB)
            .map(|_| {
                let mut w = String::from(" ");
                for _ in 0..4 {
                    w.push((b'a' + rng.random_range(0..26u8)) as char);
                }
                w
            })
            .collect();
        let ready_at = Instant::now() + Duration::from_secs_f64(faults.unready_for_s.max(0.0));
        let cache_config = cache_config_labels(&profile);
        AppState {
            rt,
            model,
            faults: Mutex::new(faults),
            http: Mutex::new(HttpMetrics::default()),
            next_id: AtomicU64::new(1),
            ready_at: Mutex::new(ready_at),
            vocab,
            created_unix: unix_now(),
            cache_config,
            rng: Mutex::new(rng),
            seen_images: Mutex::new(HashSet::new()),
            id_salt: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1234_5678_9ABC_DEF0,
            profile,
        }
    }

    pub fn http_metrics(&self) -> HttpMetrics {
        lock(&self.http).clone()
    }

    /// Replaces the faults; `rearm_slow_start` restarts the not-ready period from now.
    pub fn set_faults(&self, f: Faults, rearm_slow_start: bool) {
        if rearm_slow_start {
            *lock(&self.ready_at) =
                Instant::now() + Duration::from_secs_f64(f.unready_for_s.max(0.0));
        }
        *lock(&self.faults) = f;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }
}

fn cache_config_labels(p: &Profile) -> Vec<(String, String)> {
    let blocks = p.num_gpu_blocks() as u64;
    let bs = p.scheduler.block_size as u64;
    let tokens = blocks * bs;
    let conc = tokens as f64 / p.model.max_model_len as f64;
    let py = |b: bool| if b { "True" } else { "False" }.to_string();
    vec![
        ("block_size".into(), bs.to_string()),
        ("cache_dtype".into(), "auto".into()),
        (
            "enable_prefix_caching".into(),
            py(p.scheduler.enable_prefix_caching),
        ),
        (
            "gpu_memory_utilization".into(),
            p.gpu.gpu_memory_utilization.to_string(),
        ),
        ("kv_cache_max_concurrency".into(), conc.to_string()),
        ("kv_cache_size_tokens".into(), tokens.to_string()),
        ("num_cpu_blocks".into(), "None".into()),
        ("num_gpu_blocks".into(), blocks.to_string()),
        ("num_gpu_blocks_override".into(), "None".into()),
        ("prefix_caching_hash_algo".into(), "sha256".into()),
        ("sliding_window".into(), "None".into()),
    ]
}

/// vLLM's error body: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error(
    status: StatusCode,
    kind: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Response {
    let body = json!({
        "error": {"message": message.into(), "type": kind, "param": param, "code": status.as_u16()}
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>, param: Option<&str>) -> Response {
    error(StatusCode::BAD_REQUEST, "BadRequestError", message, param)
}

fn bad(message: impl Into<String>, param: Option<&str>) -> Box<Response> {
    Box::new(bad_request(message, param))
}

pub(crate) fn router(st: Arc<AppState>) -> Router {
    let tracked = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize_handler))
        .route("/admin/faults", get(get_faults).post(post_faults))
        .route_layer(middleware::from_fn_with_state(st.clone(), track));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .merge(tracked)
        .fallback(fallback)
        .with_state(st)
}

// ---------- HTTP metrics (prometheus-fastapi-instrumentator's) ----------

struct Recorder {
    st: Arc<AppState>,
    handler: String,
    method: &'static str,
    status: u16,
    req_bytes: u64,
    resp_bytes: u64,
    start: Instant,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let secs = self.start.elapsed().as_secs_f64() * self.st.rt.speedup();
        lock(&self.st.http).record(
            &self.handler,
            self.method,
            self.status,
            self.req_bytes,
            self.resp_bytes,
            secs,
        );
    }
}

/// A response body that records the request's HTTP metrics when it is finished or dropped.
struct TrackedBody {
    inner: Body,
    _rec: Recorder,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn method_name(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}

fn content_length(h: &axum::http::HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "none".into());
    let method = method_name(req.method());
    let req_bytes = content_length(req.headers());
    let start = Instant::now();
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let rec = Recorder {
        st,
        handler,
        method,
        status: parts.status.as_u16(),
        req_bytes,
        resp_bytes: content_length(&parts.headers),
        start,
    };
    Response::from_parts(
        parts,
        Body::new(TrackedBody {
            inner: body,
            _rec: rec,
        }),
    )
}

async fn fallback(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let rec = Recorder {
        st,
        handler: "none".into(),
        method: method_name(req.method()),
        status: 404,
        req_bytes: content_length(req.headers()),
        resp_bytes: 22,
        start: Instant::now(),
    };
    drop(rec);
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"detail\":\"Not Found\"}",
    )
        .into_response()
}

// ---------- simple endpoints ----------

fn unready(st: &AppState) -> Option<Response> {
    if Instant::now() < *lock(&st.ready_at) {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "The server is starting up (simulated slow start); retry later",
            None,
        ));
    }
    None
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if let Some(r) = unready(&st) {
        return r;
    }
    StatusCode::OK.into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let http = st.http_metrics();
    let text = st.rt.with_sim(|sim| {
        render(&ExpositionInput {
            model_name: &st.model,
            engine: sim.metrics(),
            gauges: sim.gauges(),
            http: &http,
            cache_config: &st.cache_config,
            created_unix: st.created_unix,
        })
    });
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    if let Some(r) = unready(&st) {
        return r;
    }
    let created = st.created_unix as u64;
    let body = json!({
        "object": "list",
        "data": [{
            "id": st.model, "object": "model", "created": created, "owned_by": "vllm",
            "root": st.model, "parent": null, "max_model_len": st.profile.model.max_model_len,
            "permission": [{
                "id": format!("modelperm-{:016x}", st.id_salt), "object": "model_permission",
                "created": created, "allow_create_engine": false, "allow_sampling": true,
                "allow_logprobs": true, "allow_search_indices": false, "allow_view": true,
                "allow_fine_tuning": false, "organization": "*", "group": null, "is_blocking": false
            }]
        }]
    });
    axum::Json(body).into_response()
}

async fn get_faults(State(st): State<Arc<AppState>>) -> Response {
    axum::Json(st.faults()).into_response()
}

async fn post_faults(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON body: {e}"), None),
    };
    match st.faults().patched(&v) {
        Ok(f) => {
            st.set_faults(f.clone(), v.get("unready_for_s").is_some());
            axum::Json(f).into_response()
        }
        Err(m) => bad_request(m, None),
    }
}

// ---------- prompts ----------

struct Prompt {
    ids: Vec<u32>,
    text_tokens: u32,
    images: u32,
    image_pixels: u64,
    vision_patches: u64,
    images_cached: u32,
}

impl Prompt {
    fn new() -> Self {
        Prompt {
            ids: Vec::new(),
            text_tokens: 0,
            images: 0,
            image_pixels: 0,
            vision_patches: 0,
            images_cached: 0,
        }
    }
}

fn add_image(st: &AppState, url: &str, p: &mut Prompt) -> Result<(), Box<Response>> {
    let Some(v) = st.profile.vision.as_ref() else {
        return Err(bad(
            format!(
                "model {} does not accept images (choose a vision profile, e.g. --profile qwen3-vl-4b-bf16-h100)",
                st.model
            ),
            Some("messages"),
        ));
    };
    let (w, h, hash) = if url.starts_with("data:") {
        let info = probe_data_url(url)
            .map_err(|e| bad(format!("cannot read image: {e}"), Some("messages")))?;
        (info.width, info.height, info.hash)
    } else {
        // not fetched: the profile's default resolution stands in (see docs/sim.md)
        let mut hsh: u64 = 0xcbf2_9ce4_8422_2325;
        for b in url.bytes() {
            hsh ^= b as u64;
            hsh = hsh.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (v.default_width, v.default_height, hsh)
    };
    let (tokens, patches) = image_tokens(v, w, h);
    p.images += 1;
    p.image_pixels += w as u64 * h as u64;
    p.vision_patches += patches;
    if !lock(&st.seen_images).insert(hash) {
        p.images_cached += 1;
    }
    let base = (hash as u32) | 0x8000_0000;
    p.ids.extend((0..tokens).map(|i| base.wrapping_add(i)));
    Ok(())
}

fn chat_prompt(st: &AppState, body: &Value) -> Result<Prompt, Box<Response>> {
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad(
                "'messages' is required and must be an array of messages",
                Some("messages"),
            )
        })?;
    if msgs.is_empty() {
        return Err(bad("'messages' must not be empty", Some("messages")));
    }
    let mut p = Prompt::new();
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        tokenize::push_message_template(role, &mut p.ids);
        match m.get("content") {
            Some(Value::String(s)) => p.text_tokens += tokenize::tokenize_into(s, &mut p.ids),
            Some(Value::Array(parts)) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let t = part.get("text").and_then(Value::as_str).unwrap_or("");
                            p.text_tokens += tokenize::tokenize_into(t, &mut p.ids);
                        }
                        Some("image_url") => {
                            let url = part
                                .get("image_url")
                                .and_then(|u| u.get("url").or(Some(u)))
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    bad("image_url part without a url", Some("messages"))
                                })?;
                            add_image(st, url, &mut p)?;
                        }
                        other => {
                            return Err(bad(
                                format!(
                                    "unsupported content part type {other:?} (supported: text, image_url)"
                                ),
                                Some("messages"),
                            ));
                        }
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => {
                return Err(bad(
                    "message content must be a string or an array of parts",
                    Some("messages"),
                ));
            }
        }
    }
    tokenize::push_assistant_prompt(&mut p.ids);
    p.text_tokens += tokenize::CHAT_TOKENS_PER_MESSAGE * msgs.len() as u32
        + tokenize::CHAT_TOKENS_ASSISTANT_PROMPT;
    Ok(p)
}

fn completion_prompt(body: &Value) -> Result<Prompt, Box<Response>> {
    let mut p = Prompt::new();
    match body.get("prompt") {
        Some(Value::String(s)) => p.text_tokens = tokenize::tokenize_into(s, &mut p.ids),
        Some(Value::Array(a)) if a.iter().all(Value::is_u64) && !a.is_empty() => {
            p.ids = a
                .iter()
                .filter_map(Value::as_u64)
                .map(|x| x as u32)
                .collect();
            p.text_tokens = p.ids.len() as u32;
        }
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            p.text_tokens = tokenize::tokenize_into(a[0].as_str().unwrap_or(""), &mut p.ids);
        }
        Some(Value::Array(_)) => {
            return Err(bad(
                "batched prompts are not supported by llmload sim: send one prompt per request",
                Some("prompt"),
            ));
        }
        _ => {
            return Err(bad(
                "'prompt' is required (a string or a list of token ids)",
                Some("prompt"),
            ));
        }
    }
    if p.ids.is_empty() {
        return Err(bad("the prompt is empty", Some("prompt")));
    }
    Ok(p)
}

async fn tokenize_handler(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON body: {e}"), None),
    };
    if let Some(r) = check_model(&st, &v) {
        return r;
    }
    let p = if v.get("messages").is_some() {
        chat_prompt(&st, &v)
    } else {
        completion_prompt(&v)
    };
    match p.map_err(|r| *r) {
        Ok(p) => axum::Json(json!({
            "count": p.ids.len(),
            "max_model_len": st.profile.model.max_model_len,
            "tokens": p.ids,
            "token_strs": null
        }))
        .into_response(),
        Err(r) => r,
    }
}

fn check_model(st: &AppState, body: &Value) -> Option<Response> {
    match body.get("model").and_then(Value::as_str) {
        Some(m) if m != st.model => Some(error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{m}` does not exist."),
            Some("model"),
        )),
        _ => None,
    }
}

// ---------- generation ----------

#[derive(Clone, Copy)]
struct GenOpts {
    chat: bool,
    stream: bool,
    include_usage: bool,
    continuous_usage: bool,
}

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    generate(st, body, true).await
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    generate(st, body, false).await
}

fn u32_field(body: &Value, name: &str) -> Result<Option<u32>, Box<Response>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if x <= u32::MAX as u64 => Ok(Some(x as u32)),
            _ => Err(bad(
                format!("'{name}' must be a non-negative integer"),
                Some(name),
            )),
        },
    }
}

async fn generate(st: Arc<AppState>, body: Bytes, chat: bool) -> Response {
    if let Some(r) = unready(&st) {
        return r;
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("JSON decode error: {e}"), None),
    };
    if let Some(r) = check_model(&st, &v) {
        return r;
    }
    let faults = st.faults();
    let (fail, cut, stall) = {
        let mut rng = lock(&st.rng);
        (
            faults.error_rate > 0.0 && rng.random::<f64>() < faults.error_rate,
            faults
                .cut_after_tokens
                .filter(|_| rng.random::<f64>() < faults.cut_rate),
            (faults.stall_ms > 0 && rng.random::<f64>() < faults.stall_rate)
                .then_some((faults.stall_after_tokens, faults.stall_ms)),
        )
    };
    if fail {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "injected fault: error_rate",
            None,
        );
    }
    if let Some(limit) = faults.rate_limit_waiting {
        let waiting = st.rt.with_sim(|s| s.gauges().waiting);
        if waiting > limit {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitError",
                format!("injected fault: {waiting} requests waiting (limit {limit})"),
                None,
            );
        }
    }
    let prompt = if chat {
        chat_prompt(&st, &v)
    } else {
        completion_prompt(&v)
    };
    let prompt = match prompt {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match v.get("n").and_then(Value::as_u64) {
        None | Some(1) => {}
        Some(n) => {
            return bad_request(
                format!("n = {n} is not supported by llmload sim (only n = 1)"),
                Some("n"),
            );
        }
    }
    let max_len = st.profile.model.max_model_len;
    let plen = prompt.ids.len() as u32;
    let requested = match (
        u32_field(&v, "max_completion_tokens"),
        u32_field(&v, "max_tokens"),
    ) {
        (Err(r), _) | (_, Err(r)) => return *r,
        (Ok(a), Ok(b)) => a.or(b),
    };
    if requested == Some(0) {
        return bad_request("max_tokens must be at least 1, got 0.", Some("max_tokens"));
    }
    if plen >= max_len {
        return bad_request(
            format!(
                "This model's maximum context length is {max_len} tokens. However, your request has {plen} input tokens. Please reduce the length of the input messages."
            ),
            None,
        );
    }
    let max_tokens = match requested {
        Some(m) if plen as u64 + m as u64 > max_len as u64 => {
            return bad_request(
                format!(
                    "'max_tokens' or 'max_completion_tokens' is too large: {m}. This model's maximum context length is {max_len} tokens and your request has {plen} input tokens ({m} > {max_len} - {plen})."
                ),
                None,
            );
        }
        Some(m) => m,
        None => max_len - plen,
    };
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let so = v.get("stream_options");
    let opts = GenOpts {
        chat,
        stream,
        include_usage: so
            .and_then(|s| s.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        continuous_usage: so
            .and_then(|s| s.get("continuous_usage_stats"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let ignore_eos = v
        .get("ignore_eos")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
    let req = SimRequest {
        id,
        prompt_tokens: plen,
        text_tokens: prompt.text_tokens,
        block_hashes: block_hashes(&prompt.ids, st.profile.scheduler.block_size as usize),
        max_tokens,
        ignore_eos,
        images: prompt.images,
        image_pixels: prompt.image_pixels,
        vision_patches: prompt.vision_patches,
        images_cached: prompt.images_cached,
    };
    let Some(rx) = st.rt.submit(req) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "the simulator is shutting down",
            None,
        );
    };
    let guard = AbortGuard {
        rt: st.rt.clone(),
        id,
        done: false,
    };
    let ctx = RenderCtx::new(&st, id, plen, opts);
    if stream {
        let state = StreamState {
            rx,
            guard,
            ctx,
            st: st.clone(),
            cut,
            stall,
            finished: false,
            cut_error: None,
            buf: BytesMut::new(),
        };
        let body = Body::from_stream(futures_util::stream::unfold(state, next_frame));
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        r
    } else {
        non_stream(rx, guard, ctx, &st).await
    }
}

struct AbortGuard {
    rt: Arc<Runtime>,
    id: u64,
    done: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.done {
            self.rt.abort(self.id);
        }
    }
}

/// Pre-rendered pieces of one request's chunks.
struct RenderCtx {
    head: String,
    opts: GenOpts,
    prompt_tokens: u32,
    tokens: u32,
    vocab_seed: u64,
    fingerprint: &'static str,
}

impl RenderCtx {
    fn new(st: &AppState, id: u64, prompt_tokens: u32, opts: GenOpts) -> Self {
        let hex = (id ^ st.id_salt).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let created = unix_now() as u64;
        let (rid, object) = if opts.chat {
            (format!("chatcmpl-{hex:016x}"), "chat.completion.chunk")
        } else {
            (format!("cmpl-{hex:016x}"), "text_completion")
        };
        let object = if opts.stream {
            object
        } else if opts.chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        let head = format!(
            "{{\"id\":\"{rid}\",\"object\":\"{object}\",\"created\":{created},\"model\":{}",
            serde_json::to_string(&st.model).unwrap_or_else(|_| "\"model\"".into())
        );
        RenderCtx {
            head,
            opts,
            prompt_tokens,
            tokens: 0,
            vocab_seed: hex,
            fingerprint: concat!("llmload-sim-", env!("CARGO_PKG_VERSION")),
        }
    }

    fn word<'a>(&self, vocab: &'a [String], k: u32) -> &'a str {
        let h = (self.vocab_seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_mul(0xD6E8_FEB8_6659_FD93);
        &vocab[(h >> 40) as usize % vocab.len()]
    }

    fn usage(&self, out: &mut BytesMut, completion: u32) {
        use std::fmt::Write;
        let _ = write!(
            ByteWriter(out),
            "\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":{},\"completion_tokens\":{}}}",
            self.prompt_tokens,
            self.prompt_tokens + completion,
            completion
        );
    }

    /// Appends the SSE events for one delivery.
    fn events(&mut self, vocab: &[String], d: &Update, out: &mut BytesMut) {
        let first = self.tokens == 0;
        if self.opts.chat && first {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(self.head.as_bytes());
            out.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]");
            if self.opts.continuous_usage {
                out.extend_from_slice(b",");
                self.usage(out, 0);
            }
            out.extend_from_slice(b",\"prompt_token_ids\":null,\"prompt_text\":null}\n\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(self.head.as_bytes());
        if self.opts.chat {
            out.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
        } else {
            out.extend_from_slice(b",\"choices\":[{\"index\":0,\"text\":\"");
        }
        for _ in 0..d.tokens {
            out.extend_from_slice(self.word(vocab, self.tokens).as_bytes());
            self.tokens += 1;
        }
        if self.opts.chat {
            out.extend_from_slice(b"\"},\"logprobs\":null,\"finish_reason\":");
        } else {
            out.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":");
        }
        match d.finish {
            Some(r) => {
                out.extend_from_slice(b"\"");
                out.extend_from_slice(finish_str(r).as_bytes());
                out.extend_from_slice(b"\",\"stop_reason\":null");
            }
            None if self.opts.chat => out.extend_from_slice(b"null"),
            None => out.extend_from_slice(b"null,\"stop_reason\":null"),
        }
        if self.opts.chat {
            out.extend_from_slice(b",\"token_ids\":null}]");
        } else {
            out.extend_from_slice(b",\"prompt_token_ids\":null,\"token_ids\":null}]");
        }
        if self.opts.continuous_usage {
            out.extend_from_slice(b",");
            self.usage(out, d.completion_tokens);
        }
        out.extend_from_slice(b"}\n\n");
        if d.finish.is_some() {
            if self.opts.include_usage {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(self.head.as_bytes());
                out.extend_from_slice(b",\"choices\":[],");
                self.usage(out, d.completion_tokens);
                out.extend_from_slice(b",\"system_fingerprint\":\"");
                out.extend_from_slice(self.fingerprint.as_bytes());
                out.extend_from_slice(b"\"}\n\n");
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
    }
}

fn finish_str(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Abort => "abort",
        FinishReason::Error => "error",
    }
}

struct ByteWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

struct StreamState {
    rx: Deliveries,
    /// Rendering buffer, reused: each frame is split off it (its allocation comes back once
    /// hyper has written and dropped the earlier frames).
    buf: BytesMut,
    guard: AbortGuard,
    ctx: RenderCtx,
    st: Arc<AppState>,
    cut: Option<u32>,
    stall: Option<(u32, u64)>,
    finished: bool,
    cut_error: Option<std::io::Error>,
}

async fn next_frame(mut s: StreamState) -> Option<(Result<Bytes, std::io::Error>, StreamState)> {
    if let Some(e) = s.cut_error.take() {
        // break the connection when the next token would have been sent (this also lets the
        // transport flush what was already written)
        let _ = s.rx.recv().await;
        // hyper drops buffered bytes when a body fails: give it a moment to write them
        tokio::time::sleep(Duration::from_millis(5)).await;
        return Some((Err(e), s));
    }
    if s.finished {
        return None;
    }
    let first = s.rx.recv().await?;
    s.buf.reserve(1024);
    let mut pending = Some(first);
    while let Some(mut d) = pending.take() {
        if let Some(n) = s.cut
            && s.ctx.tokens + d.tokens >= n
        {
            {
                // emit up to n tokens, then break the connection (the stream's drop aborts
                // the request in the engine, as a client disconnect would)
                let keep = n.saturating_sub(s.ctx.tokens);
                if keep > 0 {
                    d.tokens = keep;
                    d.finish = None;
                    s.ctx.events(&s.st.vocab, &d, &mut s.buf);
                }
                s.finished = true;
                let err = std::io::Error::other("injected fault: stream cut");
                if s.buf.is_empty() {
                    return Some((Err(err), s));
                }
                s.cut_error = Some(err);
                return Some((Ok(s.buf.split().freeze()), s));
            }
        }
        if let Some((after, ms)) = s.stall
            && s.ctx.tokens + d.tokens > after
        {
            {
                s.stall = None;
                let wall = Duration::from_secs_f64(ms as f64 / 1e3 / s.st.rt.speedup());
                tokio::time::sleep(wall).await;
            }
        }
        s.ctx.events(&s.st.vocab, &d, &mut s.buf);
        if d.finish.is_some() {
            s.finished = true;
            s.guard.done = true;
            break;
        }
        pending = s.rx.try_recv();
    }
    Some((Ok(s.buf.split().freeze()), s))
}

async fn non_stream(
    mut rx: Deliveries,
    mut guard: AbortGuard,
    mut ctx: RenderCtx,
    st: &AppState,
) -> Response {
    let mut text = String::new();
    let mut finish = FinishReason::Length;
    let mut completion = 0;
    while let Some(d) = rx.recv().await {
        for _ in 0..d.tokens {
            text.push_str(ctx.word(&st.vocab, ctx.tokens));
            ctx.tokens += 1;
        }
        completion = d.completion_tokens;
        if let Some(f) = d.finish {
            finish = f;
            guard.done = true;
            break;
        }
    }
    if !guard.done {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "the simulator stopped",
            None,
        );
    }
    let usage = json!({
        "prompt_tokens": ctx.prompt_tokens, "total_tokens": ctx.prompt_tokens + completion,
        "completion_tokens": completion, "prompt_tokens_details": null
    });
    let head: Value =
        serde_json::from_str(&format!("{}}}", ctx.head)).unwrap_or_else(|_| json!({}));
    let mut body = head;
    let choice = if ctx.opts.chat {
        json!({"index": 0, "message": {"role": "assistant", "content": text, "refusal": null,
               "annotations": null, "audio": null, "function_call": null, "tool_calls": [],
               "reasoning_content": null},
               "logprobs": null, "finish_reason": finish_str(finish), "stop_reason": null})
    } else {
        json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_str(finish),
               "stop_reason": null, "prompt_logprobs": null})
    };
    if let Some(o) = body.as_object_mut() {
        o.insert("choices".into(), json!([choice]));
        o.insert("service_tier".into(), Value::Null);
        o.insert("system_fingerprint".into(), Value::Null);
        o.insert("usage".into(), usage);
        o.insert("prompt_logprobs".into(), Value::Null);
        o.insert("kv_transfer_params".into(), Value::Null);
    }
    axum::Json(body).into_response()
}

/// Binds and serves until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    st: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(st);
    // Without TCP_NODELAY a streamed event can wait for the client's delayed ACK (up to 40 ms on
    // Linux): the client's TTFT was ~24 ms above the simulator's own at one stream.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{Profile, SimConfig, spawn};

    /// At low load (one stream, real time) the client sees every token at its step time: the
    /// wall-clock cadence of the SSE events matches the simulator's own inter-token latency
    /// (no token held back by the mailbox or its wake-up path), and no token is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn low_load_client_sees_each_token_at_its_step_time() {
        let cfg = SimConfig {
            profile: Profile::builtin("qwen3-4b-fp8").unwrap(),
            speedup: 1.0,
            seed: 3,
            ..SimConfig::default()
        };
        let h = spawn(cfg).await.unwrap();
        let n = 48u32;
        let body = format!(
            "{{\"messages\":[{{\"role\":\"user\",\"content\":\"timing\"}}],\"max_tokens\":{n},\"ignore_eos\":true,\"stream\":true,\"stream_options\":{{\"include_usage\":true,\"continuous_usage_stats\":true}}}}"
        );
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        // (wall time, completion tokens so far) of every content event
        let mut seen: Vec<(Instant, u64)> = Vec::new();
        let mut text = String::new();
        let mut buf = vec![0u8; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !text.contains("data: [DONE]") {
            let k = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
                .await
                .expect("stream finishes in time")
                .unwrap();
            assert!(k > 0, "connection closed early: {text}");
            let now = Instant::now();
            text.push_str(std::str::from_utf8(&buf[..k]).unwrap());
            while let Some(i) = text.find("\n\n") {
                let ev: String = text.drain(..i + 2).collect();
                if let Some(j) = ev.find("\"completion_tokens\":")
                    && ev.contains("\"delta\":{\"content\":\"")
                    && !ev.contains("\"content\":\"\"")
                {
                    let digits: String = ev[j + 20..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    seen.push((now, digits.parse().unwrap()));
                }
                if ev.contains("[DONE]") {
                    text.push_str("data: [DONE]");
                }
            }
        }
        assert_eq!(seen.last().unwrap().1, n as u64, "every token delivered");
        let (t0, c0) = seen[0];
        // one stream: the ITL observations telescope to last delivery - first delivery
        let itl_sum = h
            .state
            .rt
            .with_sim(|sim| sim.metrics().inter_token_latency.sum());
        let itl = itl_sum / (n as u64 - c0) as f64;
        assert!(
            itl > 1e-3,
            "a real-time decode step takes milliseconds: {itl}"
        );
        // each event's offset from the first against the simulator's own cadence; the first
        // event's own delay (a constant offset) is taken out with the median
        let offsets: Vec<f64> = seen
            .iter()
            .map(|(t, c)| t.duration_since(t0).as_secs_f64() - (c - c0) as f64 * itl)
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort_by(f64::total_cmp);
        let center = sorted[sorted.len() / 2];
        let mut errs: Vec<f64> = offsets.iter().map(|o| (o - center).abs()).collect();
        errs.sort_by(f64::total_cmp);
        let median = errs[errs.len() / 2];
        let max = errs[errs.len() - 1];
        // generous bounds for a loaded 2-core machine; a token held back until the next one
        // would be one ITL (several ms) off its neighbours
        assert!(
            median < itl / 2.0 + 2e-3,
            "median error {median} s, ITL {itl} s"
        );
        assert!(max < 0.25, "max error {max} s, ITL {itl} s");
        assert!(
            seen.len() as u32 >= n / 2,
            "at low load most tokens leave as their own event: {} events",
            seen.len()
        );
        let clock = h.clock_stats();
        assert!(clock.wakeups > 0);
        h.shutdown().await.unwrap();
    }
}
