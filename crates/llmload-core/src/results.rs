//! The `llmload.results/v1` file (DESIGN §3). Fields may be added; none is renamed or removed
//! within v1. Parts owned by other crates (server metrics, GPU, SLA) are carried as JSON values
//! so that this crate stays the shared vocabulary without depending on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::Summary;

pub const SCHEMA: &str = "llmload.results/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub tool: ResultsTool,
    pub run: ResultsRun,
    pub benchmarks: Vec<Benchmark>,
    /// Added sections (sweep summary, breaking point, thresholds, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsTool {
    pub name: String,
    pub version: String,
}

impl Default for ResultsTool {
    fn default() -> Self {
        Self {
            name: "llmload".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResultsRun {
    pub id: String,
    /// RFC 3339 wall-clock time of the run start.
    pub started_at: String,
    pub target: String,
    pub model: String,
    /// `chat` or `completions`.
    pub api: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The command line, with secrets redacted.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// How the load was generated for one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProfileInfo {
    /// `synchronous | concurrent | throughput | constant | poisson | gamma | trace`.
    pub kind: String,
    pub rate: Option<f64>,
    pub concurrency: Option<u64>,
    pub seed: Option<u64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Window {
    /// From the first in-window dispatch to the last in-window completion.
    pub duration_s: f64,
    /// Run-clock second of the first in-window dispatch.
    #[serde(default)]
    pub start_s: f64,
    /// Run-clock second of the last in-window completion.
    #[serde(default)]
    pub end_s: f64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RequestCounts {
    pub completed: u64,
    pub errored: u64,
    pub cancelled: u64,
    pub dropped: u64,
    /// Every request the profile scheduled (in the window and outside it).
    #[serde(default)]
    pub scheduled: u64,
    /// Requests outside the measurement window (warm-up, cool-down).
    #[serde(default)]
    pub outside_window: u64,
    /// Requests re-sent on a fresh connection after a stale keep-alive connection failed.
    #[serde(default)]
    pub retried_on_fresh_connection: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    /// First message seen per error class, for the reader.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_examples: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Throughput {
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub total_tokens_per_s: f64,
    pub goodput_requests_per_s: Option<f64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Tokens {
    pub prompt_total: u64,
    pub output_total: u64,
    /// `usage`, `tokenizer`, or `mixed` when requests differ.
    pub source: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Concurrency {
    /// Time-weighted mean of requests in flight over the window.
    pub mean: f64,
    pub max: u64,
}

/// Distributions of the per-request metrics (DESIGN §2). `null` when no request had the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    pub ttft_s: Option<Summary>,
    pub ttfot_s: Option<Summary>,
    pub e2e_latency_s: Option<Summary>,
    pub request_latency_s: Option<Summary>,
    pub tpot_s: Option<Summary>,
    pub tpot_incl_ttft_s: Option<Summary>,
    pub itl_s: Option<Summary>,
    pub decode_rate_tokens_per_s: Option<Summary>,
    pub dispatch_delay_s: Option<Summary>,
    pub scheduled_latency_s: Option<Summary>,
    pub prompt_tokens: Option<Summary>,
    pub output_tokens: Option<Summary>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Option<Summary>>,
}

impl Metrics {
    /// A metric's summary by its results name (`ttft_s`, ...) or its short name (`ttft`).
    pub fn get(&self, name: &str) -> Option<&Summary> {
        let s = match name {
            "ttft_s" | "ttft" => &self.ttft_s,
            "ttfot_s" | "ttfot" => &self.ttfot_s,
            "e2e_latency_s" | "e2e_latency" | "e2e" => &self.e2e_latency_s,
            "request_latency_s" | "request_latency" => &self.request_latency_s,
            "tpot_s" | "tpot" => &self.tpot_s,
            "tpot_incl_ttft_s" | "tpot_incl_ttft" => &self.tpot_incl_ttft_s,
            "itl_s" | "itl" => &self.itl_s,
            "decode_rate_tokens_per_s" | "decode_rate" => &self.decode_rate_tokens_per_s,
            "dispatch_delay_s" | "dispatch_delay" => &self.dispatch_delay_s,
            "scheduled_latency_s" | "scheduled_latency" => &self.scheduled_latency_s,
            "prompt_tokens" => &self.prompt_tokens,
            "output_tokens" => &self.output_tokens,
            other => return self.extra.get(other).and_then(|s| s.as_ref()),
        };
        s.as_ref()
    }
}

/// One benchmark (one load level) of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Benchmark {
    pub profile: ProfileInfo,
    pub window: Window,
    pub requests: RequestCounts,
    pub throughput: Throughput,
    pub tokens: Tokens,
    pub concurrency: Concurrency,
    pub metrics: Metrics,
    /// Share of output-bearing events that carried more than one token (read with `itl_s`).
    #[serde(default)]
    pub multi_token_event_share: Option<f64>,
    /// How pooled `itl_s` was computed: `exact` or `hdr3` (HDR histogram, 3 significant digits).
    #[serde(default)]
    pub itl_method: Option<String>,
    /// Loud warnings: generator fell behind its schedule, tokens counted by tokenizer, ...
    #[serde(default)]
    pub warnings: Vec<String>,
    pub server: Option<Value>,
    pub gpu: Option<Value>,
    pub sla: Option<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}
