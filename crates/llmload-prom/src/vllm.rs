//! The vLLM metric catalog and the figures read from a snapshot (cumulative or a window's
//! delta): V1 names first, then the older spellings of the same quantity, so that dumps from
//! any vLLM of the last two years read the same. Buckets are always read from the dump.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::histogram::{Histogram, Quantile};
use crate::snapshot::{SeriesKey, Snapshot};

/// A quantity and the names vLLM has used for it, newest first.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub key: &'static str,
    pub names: &'static [&'static str],
    pub what: &'static str,
}

/// Server-side latency histograms, in seconds.
pub const LATENCIES: &[Entry] = &[
    Entry {
        key: "ttft_s",
        names: &["vllm:time_to_first_token_seconds"],
        what: "time to first token, from arrival at the front end",
    },
    Entry {
        key: "itl_s",
        names: &[
            "vllm:inter_token_latency_seconds",
            "vllm:time_per_output_token_seconds",
        ],
        what: "inter-token latency, one sample per streamed output event",
    },
    Entry {
        key: "tpot_s",
        names: &["vllm:request_time_per_output_token_seconds"],
        what: "per-request TPOT: decode time / (generation tokens - 1)",
    },
    Entry {
        key: "e2e_s",
        names: &["vllm:e2e_request_latency_seconds"],
        what: "end-to-end request latency",
    },
    Entry {
        key: "queue_s",
        names: &["vllm:request_queue_time_seconds"],
        what: "queue time: first queued to first scheduled",
    },
    Entry {
        key: "prefill_s",
        names: &["vllm:request_prefill_time_seconds"],
        what: "prefill time: scheduled to first token",
    },
    Entry {
        key: "decode_s",
        names: &["vllm:request_decode_time_seconds"],
        what: "decode time: first to last token",
    },
    Entry {
        key: "inference_s",
        names: &["vllm:request_inference_time_seconds"],
        what: "inference time: scheduled to last token",
    },
];

/// Per-request size histograms (tokens, counts).
pub const SIZES: &[Entry] = &[
    Entry {
        key: "prompt_tokens_per_request",
        names: &["vllm:request_prompt_tokens"],
        what: "prompt tokens of each finished request",
    },
    Entry {
        key: "generation_tokens_per_request",
        names: &["vllm:request_generation_tokens"],
        what: "generation tokens of each finished request",
    },
    Entry {
        key: "max_tokens_per_request",
        names: &["vllm:request_params_max_tokens"],
        what: "max_tokens requested",
    },
    Entry {
        key: "tokens_per_iteration",
        names: &["vllm:iteration_tokens_total"],
        what: "tokens per engine step (batch size in tokens)",
    },
    Entry {
        key: "preemptions_per_request",
        names: &["vllm:request_num_preemptions"],
        what: "preemptions of each finished request",
    },
];

pub const PROMPT_TOKENS: &[&str] = &["vllm:prompt_tokens_total"];
pub const GENERATION_TOKENS: &[&str] = &["vllm:generation_tokens_total"];
pub const PREEMPTIONS: &[&str] = &["vllm:num_preemptions_total"];
pub const REQUEST_SUCCESS: &[&str] = &["vllm:request_success_total"];
pub const PREFIX_QUERIES: &[&str] = &[
    "vllm:prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_queries_total",
];
pub const PREFIX_HITS: &[&str] = &[
    "vllm:prefix_cache_hits_total",
    "vllm:gpu_prefix_cache_hits_total",
];
pub const MM_QUERIES: &[&str] = &["vllm:mm_cache_queries_total"];
pub const MM_HITS: &[&str] = &["vllm:mm_cache_hits_total"];
pub const RUNNING: &[&str] = &["vllm:num_requests_running"];
pub const WAITING: &[&str] = &["vllm:num_requests_waiting"];
pub const SWAPPED: &[&str] = &["vllm:num_requests_swapped"];
pub const KV_USAGE: &[&str] = &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"];
pub const CACHE_CONFIG: &str = "vllm:cache_config_info";

/// The first of `names` that the snapshot has as a plain series.
pub fn resolve(snap: &Snapshot, names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| snap.has(n))
}

/// The first of `names` that the snapshot has as a histogram.
pub fn resolve_histogram(snap: &Snapshot, names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| {
        let c = format!("{n}_count");
        let b = format!("{n}_bucket");
        snap.iter().any(|(k, _)| k.name == c || k.name == b)
    })
}

/// Whether the snapshot looks like vLLM's `/metrics`.
pub fn is_vllm(snap: &Snapshot) -> bool {
    snap.iter().any(|(k, _)| k.name.starts_with("vllm:"))
}

/// Which series a figure covers: all, or one engine and/or one model.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub engine: Option<String>,
    pub model: Option<String>,
}

impl Selector {
    pub fn matches(&self, k: &SeriesKey) -> bool {
        if let Some(e) = &self.engine
            && k.label("engine") != Some(e.as_str())
        {
            return false;
        }
        if let Some(m) = &self.model
            && k.label("model_name").is_some_and(|v| v != m)
        {
            return false;
        }
        true
    }
}

/// Mean and quantiles of a histogram, with the family they came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistStats {
    pub metric: String,
    pub count: f64,
    pub sum: f64,
    pub mean: Option<f64>,
    pub p50: Option<Quantile>,
    pub p90: Option<Quantile>,
    pub p95: Option<Quantile>,
    pub p99: Option<Quantile>,
    /// Finite bucket bounds as read from the exposition.
    pub bounds: Vec<f64>,
}

impl HistStats {
    pub fn from_histogram(metric: &str, h: &Histogram) -> HistStats {
        HistStats {
            metric: metric.to_string(),
            count: h.count,
            sum: h.sum,
            mean: h.mean(),
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p95: h.quantile(0.95),
            p99: h.quantile(0.99),
            bounds: h
                .buckets
                .iter()
                .map(|b| b.0)
                .filter(|b| b.is_finite())
                .collect(),
        }
    }
}

/// Queries and hits of a cache and the hit rate `hits / queries`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheFigures {
    pub metric: String,
    pub queries: f64,
    pub hits: f64,
    pub hit_rate: Option<f64>,
    /// `tokens`, `blocks` (the pre-0.9 `gpu_prefix_cache_*` of vLLM 0.8 counted blocks), or
    /// `items` (multimodal cache).
    pub unit: String,
}

/// The vLLM figures of one selection (all engines, or one).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Figures {
    pub requests_by_finished_reason: BTreeMap<String, f64>,
    pub requests_finished: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    /// `request_prompt_tokens` sum / count (finished requests), else prompt_tokens / finished.
    pub avg_prompt_tokens_per_request: Option<f64>,
    pub avg_generation_tokens_per_request: Option<f64>,
    /// generation tokens / prompt tokens.
    pub generation_to_prompt_ratio: Option<f64>,
    pub preemptions: Option<f64>,
    pub prefix_cache: Option<CacheFigures>,
    pub mm_cache: Option<CacheFigures>,
    /// Gauges at collection time (last scrape of a window).
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub swapped: Option<f64>,
    /// 0-1 fraction; summed engines show their mean.
    pub kv_cache_usage: Option<f64>,
    pub latency: BTreeMap<String, HistStats>,
    pub sizes: BTreeMap<String, HistStats>,
}

/// Sum over series selected; `None` when none.
fn sum_sel(snap: &Snapshot, name: &str, sel: &Selector) -> Option<f64> {
    snap.sum_where(name, |k| sel.matches(k))
}

fn mean_sel(snap: &Snapshot, name: &str, sel: &Selector) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for (k, v) in snap.series(name) {
        if sel.matches(k) {
            s += v;
            n += 1;
        }
    }
    (n > 0).then(|| s / n as f64)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn cache(
    snap: &Snapshot,
    q: &[&'static str],
    h: &[&'static str],
    sel: &Selector,
    unit_for: impl Fn(&str) -> &'static str,
) -> Option<CacheFigures> {
    // Pair the hits name with the queries name of the same generation.
    let i = q.iter().position(|n| snap.has(n))?;
    let qn = q[i];
    let queries = sum_sel(snap, qn, sel)?;
    let hn = h.get(i).copied().filter(|n| snap.has(n));
    let hits = hn.and_then(|n| sum_sel(snap, n, sel)).unwrap_or(0.0);
    Some(CacheFigures {
        metric: qn.to_string(),
        queries,
        hits,
        hit_rate: ratio(Some(hits), Some(queries)),
        unit: unit_for(qn).to_string(),
    })
}

impl Figures {
    /// Reads the figures of `sel` from `snap`. On a delta snapshot, counters and histograms are
    /// the window's increases and gauges the values at its end.
    pub fn read(snap: &Snapshot, sel: &Selector) -> Figures {
        let mut f = Figures::default();
        if let Some(n) = resolve(snap, REQUEST_SUCCESS) {
            f.requests_by_finished_reason = snap.sum_by(n, "finished_reason", |k| sel.matches(k));
            f.requests_finished = Some(f.requests_by_finished_reason.values().sum());
        }
        f.prompt_tokens = resolve(snap, PROMPT_TOKENS).and_then(|n| sum_sel(snap, n, sel));
        f.generation_tokens = resolve(snap, GENERATION_TOKENS).and_then(|n| sum_sel(snap, n, sel));
        f.preemptions = resolve(snap, PREEMPTIONS).and_then(|n| sum_sel(snap, n, sel));
        f.prefix_cache = cache(snap, PREFIX_QUERIES, PREFIX_HITS, sel, |n| {
            if n.contains("gpu_prefix") {
                "blocks or tokens (gpu_prefix_cache_* counted blocks before vLLM 0.9)"
            } else {
                "tokens"
            }
        });
        f.mm_cache = cache(snap, MM_QUERIES, MM_HITS, sel, |_| "items");
        f.running = resolve(snap, RUNNING).and_then(|n| sum_sel(snap, n, sel));
        f.waiting = resolve(snap, WAITING).and_then(|n| sum_sel(snap, n, sel));
        f.swapped = resolve(snap, SWAPPED).and_then(|n| sum_sel(snap, n, sel));
        f.kv_cache_usage = resolve(snap, KV_USAGE).and_then(|n| mean_sel(snap, n, sel));
        for e in LATENCIES {
            if let Some(n) = resolve_histogram(snap, e.names)
                && let Some(h) = snap.histogram_where(n, |k| sel.matches(k))
            {
                f.latency
                    .insert(e.key.to_string(), HistStats::from_histogram(n, &h));
            }
        }
        for e in SIZES {
            if let Some(n) = resolve_histogram(snap, e.names)
                && let Some(h) = snap.histogram_where(n, |k| sel.matches(k))
            {
                f.sizes
                    .insert(e.key.to_string(), HistStats::from_histogram(n, &h));
            }
        }
        let finished = f.requests_finished;
        f.avg_prompt_tokens_per_request = f
            .sizes
            .get("prompt_tokens_per_request")
            .and_then(|h| h.mean)
            .or_else(|| ratio(f.prompt_tokens, finished));
        f.avg_generation_tokens_per_request = f
            .sizes
            .get("generation_tokens_per_request")
            .and_then(|h| h.mean)
            .or_else(|| ratio(f.generation_tokens, finished));
        f.generation_to_prompt_ratio = ratio(f.generation_tokens, f.prompt_tokens);
        f
    }

    /// A latency's mean, if present.
    pub fn mean(&self, key: &str) -> Option<f64> {
        self.latency.get(key).and_then(|h| h.mean)
    }
}

/// Figures for all engines together and, when there are several, for each.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct VllmFigures {
    pub models: Vec<String>,
    pub engines: Vec<String>,
    /// Which exposition name each quantity was read from (shows old-name fallbacks).
    pub names_used: BTreeMap<String, String>,
    pub total: Figures,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_engine: BTreeMap<String, Figures>,
}

impl VllmFigures {
    pub fn read(snap: &Snapshot, model: Option<&str>) -> VllmFigures {
        let base = Selector {
            engine: None,
            model: model.map(str::to_string),
        };
        let engines = snap.label_values("vllm:", "engine");
        let mut per_engine = BTreeMap::new();
        if engines.len() > 1 {
            for e in &engines {
                let sel = Selector {
                    engine: Some(e.clone()),
                    ..base.clone()
                };
                per_engine.insert(e.clone(), Figures::read(snap, &sel));
            }
        }
        let mut names_used = BTreeMap::new();
        for (key, names) in [
            ("kv_cache_usage", KV_USAGE),
            ("prefix_cache_queries", PREFIX_QUERIES),
            ("prefix_cache_hits", PREFIX_HITS),
        ] {
            if let Some(n) = resolve(snap, names) {
                names_used.insert(key.to_string(), n.to_string());
            }
        }
        for e in LATENCIES {
            if let Some(n) = resolve_histogram(snap, e.names) {
                names_used.insert(e.key.to_string(), n.to_string());
            }
        }
        VllmFigures {
            models: snap.label_values("vllm:", "model_name"),
            engines,
            names_used,
            total: Figures::read(snap, &base),
            per_engine,
        }
    }
}

/// `vllm:cache_config_info` of one engine: every label, plus the figures derived from them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheConfig {
    pub engine: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub block_size: Option<u64>,
    pub num_gpu_blocks: Option<u64>,
    /// `block_size * num_gpu_blocks`: how many tokens of KV cache the GPU holds.
    pub token_capacity: Option<u64>,
    pub gpu_memory_utilization: Option<f64>,
    pub enable_prefix_caching: Option<bool>,
}

impl CacheConfig {
    pub fn read(snap: &Snapshot) -> Vec<CacheConfig> {
        snap.series(CACHE_CONFIG)
            .map(|(k, _)| {
                let labels: BTreeMap<String, String> = k.labels.iter().cloned().collect();
                let num = |n: &str| labels.get(n).and_then(|v| v.parse::<u64>().ok());
                let block_size = num("block_size");
                let num_gpu_blocks = num("num_gpu_blocks");
                CacheConfig {
                    engine: labels.get("engine").cloned(),
                    block_size,
                    num_gpu_blocks,
                    token_capacity: block_size
                        .zip(num_gpu_blocks)
                        .and_then(|(a, b)| a.checked_mul(b)),
                    gpu_memory_utilization: labels
                        .get("gpu_memory_utilization")
                        .and_then(|v| v.parse().ok()),
                    enable_prefix_caching: labels
                        .get("enable_prefix_caching")
                        .map(|v| v.eq_ignore_ascii_case("true")),
                    labels,
                }
            })
            .collect()
    }
}
