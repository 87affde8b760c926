//! One measured request, with the stamps of DESIGN §2 and the metrics derived from them.
//!
//! All stamps are seconds on the run's monotonic clock, relative to the run start.

use serde::{Deserialize, Serialize};

/// Error classes of DESIGN §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// TCP/TLS connection could not be made (refused, unreachable, DNS).
    Connect,
    /// The request ran past its timeout.
    Timeout,
    /// HTTP 4xx other than 429.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// HTTP 429 (rate limited).
    #[serde(rename = "http_429")]
    Http429,
    /// HTTP 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// The response stream ended or broke before it was complete.
    StreamBroken,
    /// The server sent something that is not valid SSE/JSON of the OpenAI shape.
    Protocol,
    /// Cut by the benchmark's stop condition while in flight.
    Cancelled,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Http4xx,
        ErrorClass::Http429,
        ErrorClass::Http5xx,
        ErrorClass::StreamBroken,
        ErrorClass::Protocol,
        ErrorClass::Cancelled,
    ];

    /// The snake_case name used in results files.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http429 => "http_429",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::StreamBroken => "stream_broken",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Cancelled => "cancelled",
        }
    }

    /// The class of an HTTP error status.
    pub fn from_status(status: u16) -> Option<ErrorClass> {
        match status {
            429 => Some(ErrorClass::Http429),
            400..=499 => Some(ErrorClass::Http4xx),
            500..=599 => Some(ErrorClass::Http5xx),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request's token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage` object.
    #[default]
    Usage,
    /// The client's tokenizer (the server sent no usage).
    Tokenizer,
    /// Neither: counts are unknown.
    None,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Usage => "usage",
            TokenSource::Tokenizer => "tokenizer",
            TokenSource::None => "none",
        }
    }
}

/// One request, as measured. Written as one line of `requests.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RequestRecord {
    /// Sequence number within the run (0-based, in scheduling order).
    pub id: u64,
    /// Index of the benchmark (step) this request belongs to.
    pub benchmark: usize,
    /// Scheduled send time (open loop); equals `t_dispatch` for closed loops.
    pub t_sched: f64,
    /// Just before the request bytes were written.
    pub t_dispatch: f64,
    /// First event carrying generated output (content, reasoning, tool call, completion text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_first_token: Option<f64>,
    /// First event carrying non-reasoning output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_first_output: Option<f64>,
    /// Last output-bearing event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_last_token: Option<f64>,
    /// End of the response (`[DONE]`, final usage chunk, or close); or when it failed.
    pub t_end: f64,
    /// Prompt tokens (server usage, else client tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Output tokens (server usage, else client tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Where the counts above came from.
    pub token_source: TokenSource,
    /// Prompt tokens by the client's own count (to compare with the server's usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_client: Option<u64>,
    /// Requested output length (`max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Number of output-bearing events received.
    pub output_events: u32,
    /// Of those, events that carried more than one token (per `continuous_usage_stats`, or
    /// inferred when usage shows more tokens than events).
    pub multi_token_events: u32,
    /// HTTP status of the response, if one was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Error class when the request did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorClass>,
    /// Human-readable error detail (status line and first bytes, OS error, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Times the request was re-sent on a fresh connection because a reused keep-alive
    /// connection failed before the server could have seen it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Seconds the request waited in the client for a free slot under `--max-concurrency`
    /// (part of `dispatch_delay`; the rest is the generator's own lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_queue_s: Option<f64>,
    /// Requests in flight on the client when this one was dispatched (itself included).
    #[serde(default)]
    pub in_flight_at_dispatch: u32,
    /// Arrival times of every output-bearing event (with `--record-chunks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_times: Option<Vec<f64>>,
    /// Images sent with this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<u64>,
    /// Workload tag (dataset row, scenario, session/turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Whether the request counts in the benchmark's statistics (dispatched in the window).
    pub in_window: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl RequestRecord {
    /// A request completed successfully (a response with a 2xx status read to its end).
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    /// `t_first_token - t_dispatch`.
    pub fn ttft(&self) -> Option<f64> {
        self.t_first_token.map(|t| t - self.t_dispatch)
    }

    /// `t_first_output - t_dispatch`.
    pub fn ttfot(&self) -> Option<f64> {
        self.t_first_output.map(|t| t - self.t_dispatch)
    }

    /// `t_last_token - t_dispatch` (vLLM's E2EL).
    pub fn e2e_latency(&self) -> Option<f64> {
        self.t_last_token.map(|t| t - self.t_dispatch)
    }

    /// `t_end - t_dispatch`.
    pub fn request_latency(&self) -> f64 {
        self.t_end - self.t_dispatch
    }

    /// `(t_last_token - t_first_token) / (output_tokens - 1)`, for > 1 output token.
    pub fn tpot(&self) -> Option<f64> {
        let n = self.output_tokens?;
        if n < 2 {
            return None;
        }
        Some((self.t_last_token? - self.t_first_token?) / (n - 1) as f64)
    }

    /// `(t_last_token - t_dispatch) / output_tokens` (GuideLLM's "TPOT").
    pub fn tpot_incl_ttft(&self) -> Option<f64> {
        let n = self.output_tokens?;
        if n == 0 {
            return None;
        }
        Some((self.t_last_token? - self.t_dispatch) / n as f64)
    }

    /// `1 / tpot` in tokens per second.
    pub fn decode_rate(&self) -> Option<f64> {
        let t = self.tpot()?;
        (t > 0.0).then(|| 1.0 / t)
    }

    /// `t_dispatch - t_sched`.
    pub fn dispatch_delay(&self) -> f64 {
        self.t_dispatch - self.t_sched
    }

    /// `dispatch_delay - client_queue_s`: how late the generator itself was.
    pub fn generator_lag(&self) -> f64 {
        self.dispatch_delay() - self.client_queue_s.unwrap_or(0.0)
    }

    /// `t_last_token - t_sched` (latency corrected for coordinated omission).
    pub fn scheduled_latency(&self) -> Option<f64> {
        self.t_last_token.map(|t| t - self.t_sched)
    }
}

/// Writes `requests.jsonl` lines without serde's per-field machinery: each key is one
/// constant with its comma, quotes and colon (`,"t_end":`), numbers go through `itoa`, floats
/// and strings through serde_json itself (so the bytes are exactly `serde_json::to_writer`'s;
/// a test holds the two equal). Serialising the record was half of the collector's CPU at
/// 80,000 requests/s.
struct LineWriter<'a> {
    out: &'a mut Vec<u8>,
}

/// `,"name":` as one constant (every member but the first, `id`, which opens the line).
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

impl LineWriter<'_> {
    #[inline(always)]
    fn key(&mut self, k: &[u8]) {
        self.out.extend_from_slice(k);
    }
    #[inline(always)]
    fn uint(&mut self, k: &[u8], v: impl itoa::Integer) {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    #[inline(always)]
    fn float(&mut self, k: &[u8], v: f64) {
        self.key(k);
        self.float_value(v);
    }
    fn float_value(&mut self, v: f64) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, &v);
    }
    fn string(&mut self, k: &[u8], v: &str) {
        self.key(k);
        let _ = serde_json::to_writer(&mut *self.out, v);
    }
    #[inline(always)]
    fn raw(&mut self, k: &[u8], v: &str) {
        self.key(k);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }
}

impl RequestRecord {
    /// Appends the record as JSON (no newline), byte for byte what `serde_json::to_writer`
    /// writes for it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = LineWriter { out };
        w.uint(b"{\"id\":", self.id);
        w.uint(key!("benchmark"), self.benchmark);
        w.float(key!("t_sched"), self.t_sched);
        w.float(key!("t_dispatch"), self.t_dispatch);
        if let Some(v) = self.t_first_token {
            w.float(key!("t_first_token"), v);
        }
        if let Some(v) = self.t_first_output {
            w.float(key!("t_first_output"), v);
        }
        if let Some(v) = self.t_last_token {
            w.float(key!("t_last_token"), v);
        }
        w.float(key!("t_end"), self.t_end);
        if let Some(v) = self.prompt_tokens {
            w.uint(key!("prompt_tokens"), v);
        }
        if let Some(v) = self.output_tokens {
            w.uint(key!("output_tokens"), v);
        }
        w.raw(key!("token_source"), self.token_source.as_str());
        if let Some(v) = self.prompt_tokens_client {
            w.uint(key!("prompt_tokens_client"), v);
        }
        if let Some(v) = self.max_tokens {
            w.uint(key!("max_tokens"), v);
        }
        w.uint(key!("output_events"), self.output_events);
        w.uint(key!("multi_token_events"), self.multi_token_events);
        if let Some(v) = self.status {
            w.uint(key!("status"), v);
        }
        if let Some(v) = &self.finish_reason {
            w.string(key!("finish_reason"), v);
        }
        if let Some(v) = self.error {
            w.raw(key!("error"), v.as_str());
        }
        if let Some(v) = &self.error_message {
            w.string(key!("error_message"), v);
        }
        if self.retries != 0 {
            w.uint(key!("retries"), self.retries);
        }
        if let Some(v) = self.client_queue_s {
            w.float(key!("client_queue_s"), v);
        }
        w.uint(key!("in_flight_at_dispatch"), self.in_flight_at_dispatch);
        if let Some(v) = &self.chunk_times {
            w.key(key!("chunk_times"));
            w.out.push(b'[');
            for (i, t) in v.iter().enumerate() {
                if i > 0 {
                    w.out.push(b',');
                }
                w.float_value(*t);
            }
            w.out.push(b']');
        }
        if let Some(v) = self.image_count {
            w.uint(key!("image_count"), v);
        }
        if let Some(v) = self.image_bytes {
            w.uint(key!("image_bytes"), v);
        }
        if let Some(v) = &self.tag {
            w.string(key!("tag"), v);
        }
        w.key(key!("in_window"));
        w.out
            .extend_from_slice(if self.in_window { b"true" } else { b"false" });
        w.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_json_is_serdes_byte_for_byte() {
        let full = RequestRecord {
            id: 18_446_744_073_709_551_615,
            benchmark: 3,
            t_sched: 0.1,
            t_dispatch: 1e-7,
            t_first_token: Some(123_456.789),
            t_first_output: Some(1e21),
            t_last_token: Some(-0.0),
            t_end: 5.0,
            prompt_tokens: Some(0),
            output_tokens: Some(4096),
            token_source: TokenSource::Tokenizer,
            prompt_tokens_client: Some(17),
            max_tokens: Some(u32::MAX),
            output_events: 9,
            multi_token_events: 2,
            status: Some(503),
            finish_reason: Some("length".into()),
            error: Some(ErrorClass::Http5xx),
            error_message: Some("bad \"quote\" \\ back\nnew line \u{1} ctl é ✓".into()),
            retries: 2,
            client_queue_s: Some(f64::MIN_POSITIVE),
            in_flight_at_dispatch: 64,
            chunk_times: Some(vec![0.25, 1.0 / 3.0, 2.0, f64::NAN]),
            image_count: Some(1),
            image_bytes: Some(123_456),
            tag: Some("session=3;turn=2 \t".into()),
            in_window: true,
        };
        let records = [
            RequestRecord::default(),
            full.clone(),
            RequestRecord {
                error: Some(ErrorClass::Cancelled),
                token_source: TokenSource::None,
                chunk_times: Some(Vec::new()),
                t_end: f64::INFINITY,
                ..full.clone()
            },
            RequestRecord {
                t_dispatch: 0.123_456_789_012_345_67,
                t_end: 98_765.432_1,
                ..RequestRecord::default()
            },
        ];
        for r in &records {
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            let theirs = serde_json::to_vec(r).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
        // Every error class and token source by name.
        for e in ErrorClass::ALL {
            let r = RequestRecord {
                error: Some(e),
                ..RequestRecord::default()
            };
            let mut ours = Vec::new();
            r.write_json(&mut ours);
            assert_eq!(ours, serde_json::to_vec(&r).unwrap());
        }
    }

    fn rec() -> RequestRecord {
        RequestRecord {
            t_sched: 0.9,
            t_dispatch: 1.0,
            t_first_token: Some(1.2),
            t_first_output: Some(1.3),
            t_last_token: Some(2.2),
            t_end: 2.25,
            output_tokens: Some(11),
            ..Default::default()
        }
    }

    #[test]
    fn metrics_follow_their_definitions() {
        let r = rec();
        let eps = 1e-12;
        assert!((r.ttft().unwrap() - 0.2).abs() < eps);
        assert!((r.ttfot().unwrap() - 0.3).abs() < eps);
        assert!((r.e2e_latency().unwrap() - 1.2).abs() < eps);
        assert!((r.request_latency() - 1.25).abs() < eps);
        assert!((r.tpot().unwrap() - 0.1).abs() < eps);
        assert!((r.tpot_incl_ttft().unwrap() - 1.2 / 11.0).abs() < eps);
        assert!((r.decode_rate().unwrap() - 10.0).abs() < 1e-9);
        assert!((r.dispatch_delay() - 0.1).abs() < eps);
        assert!((r.scheduled_latency().unwrap() - 1.3).abs() < eps);
    }

    #[test]
    fn tpot_needs_two_tokens() {
        let mut r = rec();
        r.output_tokens = Some(1);
        assert_eq!(r.tpot(), None);
        assert_eq!(r.decode_rate(), None);
        assert!(r.tpot_incl_ttft().is_some());
        r.output_tokens = Some(0);
        assert_eq!(r.tpot_incl_ttft(), None);
    }

    #[test]
    fn status_classes() {
        assert_eq!(ErrorClass::from_status(429), Some(ErrorClass::Http429));
        assert_eq!(ErrorClass::from_status(422), Some(ErrorClass::Http4xx));
        assert_eq!(ErrorClass::from_status(503), Some(ErrorClass::Http5xx));
        assert_eq!(ErrorClass::from_status(200), None);
        assert_eq!(
            serde_json::to_string(&ErrorClass::Http4xx).unwrap(),
            "\"http_4xx\""
        );
    }
}
