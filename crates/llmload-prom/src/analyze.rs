//! The hand analysis of a vLLM `/metrics` dump, automated: system context, cache config,
//! requests, tokens, server latencies from buckets, caches, HTTP, GC; then insights from rules
//! tied to the SLA tiers of DESIGN §5. Rendered as console text, Markdown or JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::histogram::Quantile;
use crate::snapshot::Snapshot;
use crate::vllm::{CacheConfig, Figures, HistStats, VllmFigures, is_vllm};

/// SLA tiers of DESIGN §5: the one table of the whole tool, owned by llmload-sla (so that
/// `metrics analyze` and `run`/`sweep` classify every boundary value the same way).
pub use llmload_sla::tiers::Tier;

fn default_tiers() -> &'static llmload_sla::tiers::TierConfig {
    static T: std::sync::OnceLock<llmload_sla::tiers::TierConfig> = std::sync::OnceLock::new();
    T.get_or_init(llmload_sla::tiers::TierConfig::default)
}

/// How serious an insight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Level {
    fn from_tier(t: Tier) -> Level {
        match t {
            Tier::Excellent => Level::Ok,
            Tier::Acceptable => Level::Info,
            Tier::Degraded => Level::Warning,
            Tier::Breaking => Level::Critical,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// One finding and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insight {
    pub level: Level,
    /// Stable identifier (`saturation`, `kv_pressure`, `front_end_bottleneck`, ...).
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
}

fn insight(level: Level, code: &str, message: String, rec: Option<&str>) -> Insight {
    Insight {
        level,
        code: code.to_string(),
        message,
        recommendation: rec.map(str::to_string),
    }
}

/// Process and runtime context of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct System {
    pub python_version: Option<String>,
    pub python_implementation: Option<String>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    /// Cumulative CPU seconds (or, in a diff, CPU seconds used in the interval).
    pub cpu_seconds: Option<f64>,
    /// Unix time the server process started.
    pub start_time_unix: Option<f64>,
    /// Seconds since start, when the collection time is known (live scrape).
    pub uptime_s: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    /// `false` in `PROMETHEUS_MULTIPROC_DIR` mode (`--api-server-count > 1`): no process metrics.
    pub process_metrics: bool,
}

impl System {
    pub fn read(snap: &Snapshot, collected_unix: Option<f64>) -> System {
        let py = snap.series("python_info").next().map(|(k, _)| k.clone());
        let start = snap.sum("process_start_time_seconds");
        System {
            python_version: py
                .as_ref()
                .and_then(|k| k.label("version").map(str::to_string)),
            python_implementation: py
                .as_ref()
                .and_then(|k| k.label("implementation").map(str::to_string)),
            resident_memory_bytes: snap.sum("process_resident_memory_bytes"),
            virtual_memory_bytes: snap.sum("process_virtual_memory_bytes"),
            cpu_seconds: snap.sum("process_cpu_seconds_total"),
            start_time_unix: start,
            uptime_s: start.zip(collected_unix).map(|(s, now)| now - s),
            open_fds: snap.sum("process_open_fds"),
            max_fds: snap.sum("process_max_fds"),
            process_metrics: start.is_some(),
        }
    }
}

/// Requests per handler, method and status (prometheus-fastapi-instrumentator).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRow {
    pub handler: String,
    pub method: String,
    pub status: String,
    pub requests: f64,
    /// Mean of `http_request_duration_seconds` for the handler and method (all statuses).
    pub mean_duration_s: Option<f64>,
}

impl HttpRow {
    pub fn read(snap: &Snapshot) -> Vec<HttpRow> {
        let mut rows: Vec<HttpRow> = snap
            .series("http_requests_total")
            .map(|(k, v)| {
                let handler = k.label("handler").unwrap_or("").to_string();
                let method = k.label("method").unwrap_or("").to_string();
                let h = snap.histogram_where("http_request_duration_seconds", |s| {
                    s.label("handler") == Some(handler.as_str())
                        && s.label("method") == Some(method.as_str())
                });
                HttpRow {
                    status: k.label("status").unwrap_or("").to_string(),
                    requests: v,
                    mean_duration_s: h.and_then(|h| h.mean()),
                    handler,
                    method,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.requests
                .total_cmp(&a.requests)
                .then(a.handler.cmp(&b.handler))
        });
        rows
    }
}

/// Python garbage collector counters by generation.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Gc {
    pub collections: BTreeMap<String, f64>,
    pub objects_collected: BTreeMap<String, f64>,
    pub uncollectable: BTreeMap<String, f64>,
}

impl Gc {
    pub fn read(snap: &Snapshot) -> Option<Gc> {
        let gc = Gc {
            collections: snap.sum_by("python_gc_collections_total", "generation", |_| true),
            objects_collected: snap.sum_by(
                "python_gc_objects_collected_total",
                "generation",
                |_| true,
            ),
            uncollectable: snap.sum_by(
                "python_gc_objects_uncollectable_total",
                "generation",
                |_| true,
            ),
        };
        (!gc.collections.is_empty() || !gc.objects_collected.is_empty()).then_some(gc)
    }
}

/// Rates over a diff's interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    pub interval_s: f64,
    pub requests_per_s: Option<f64>,
    pub prompt_tokens_per_s: Option<f64>,
    pub generation_tokens_per_s: Option<f64>,
    /// CPU seconds per second of the server process (1.0 = one core busy).
    pub cpu_cores_busy: Option<f64>,
}

/// The whole analysis of one dump or of the difference between two.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// `snapshot` (cumulative since start) or `diff` (increase between two dumps).
    pub kind: String,
    pub sources: Vec<String>,
    pub vllm_detected: bool,
    pub series: usize,
    pub system: System,
    pub cache_config: Vec<CacheConfig>,
    pub vllm: VllmFigures,
    pub http: Vec<HttpRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc: Option<Gc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
    pub insights: Vec<Insight>,
}

/// Options of an analysis.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    /// Only series with this `model_name` (others are ignored).
    pub model: Option<String>,
    /// Unix time the dump was collected (live scrapes), for uptime.
    pub collected_unix: Option<f64>,
}

impl Analysis {
    /// Analyses one dump (cumulative counters since the server started).
    pub fn of_snapshot(source: &str, snap: &Snapshot, opts: &AnalyzeOptions) -> Analysis {
        let mut a = Analysis::build("snapshot", vec![source.to_string()], snap, opts);
        a.insights = insights(&a, false);
        a
    }

    /// Analyses the increase from `before` to `after`; gauges are `after`'s. `interval_s` (when
    /// known) gives rates.
    pub fn of_diff(
        sources: [&str; 2],
        before: &Snapshot,
        after: &Snapshot,
        interval_s: Option<f64>,
        opts: &AnalyzeOptions,
    ) -> Analysis {
        let delta = after.delta_since(before);
        let mut a = Analysis::build(
            "diff",
            sources.iter().map(|s| s.to_string()).collect(),
            &delta,
            opts,
        );
        // Gauges from the later dump; the process start time and memory too.
        a.system.uptime_s = None;
        if let Some(dt) = interval_s.filter(|d| *d > 0.0) {
            let t = &a.vllm.total;
            a.rates = Some(Rates {
                interval_s: dt,
                requests_per_s: t.requests_finished.map(|v| v / dt),
                prompt_tokens_per_s: t.prompt_tokens.map(|v| v / dt),
                generation_tokens_per_s: t.generation_tokens.map(|v| v / dt),
                cpu_cores_busy: a.system.cpu_seconds.map(|v| v / dt),
            });
        }
        a.insights = insights(&a, true);
        a
    }

    fn build(kind: &str, sources: Vec<String>, snap: &Snapshot, opts: &AnalyzeOptions) -> Analysis {
        Analysis {
            kind: kind.to_string(),
            sources,
            vllm_detected: is_vllm(snap),
            series: snap.len(),
            system: System::read(snap, opts.collected_unix),
            cache_config: CacheConfig::read(snap),
            vllm: VllmFigures::read(snap, opts.model.as_deref()),
            http: HttpRow::read(snap),
            gc: Gc::read(snap),
            rates: None,
            insights: Vec::new(),
        }
    }
}

/// Inputs of the rules, so that a benchmark window can use them too.
#[derive(Debug, Clone, Default)]
pub struct RuleInput<'a> {
    pub figures: Option<&'a Figures>,
    /// Requests waiting (at collection time, or the window's maximum).
    pub waiting: Option<f64>,
    pub running: Option<f64>,
    /// KV cache usage 0-1 (at collection time, or the window's maximum).
    pub kv_usage: Option<f64>,
    pub prefix_caching_enabled: Option<bool>,
    /// The figures cover a window or diff (true) or everything since start (false).
    pub windowed: bool,
}

/// Insights from the rules (see docs/server-metrics.md for each).
pub fn rules(inp: &RuleInput<'_>) -> Vec<Insight> {
    let mut out = Vec::new();
    let waiting = inp.waiting;
    let running = inp.running;
    if let Some(w) = waiting
        && w > 0.0
    {
        out.push(insight(
                Level::from_tier(default_tiers().queue_depth.classify(w)).max(Level::Warning),
                "saturation",
                format!(
                    "{w:.0} request(s) waiting in the engine queue (queue depth tier: {}): the server is saturated",
                    default_tiers().queue_depth.classify(w).as_str()
                ),
                Some(
                    "lower the offered load or add replicas; if KV usage is low, raise --max-num-seqs / --max-num-batched-tokens",
                ),
            ));
    }
    if let Some(kv) = inp.kv_usage {
        let t = default_tiers().kv_cache_usage.classify(kv);
        if t >= Tier::Degraded {
            out.push(insight(
                Level::from_tier(t),
                "kv_pressure",
                format!(
                    "KV cache usage {:.1} % ({}): memory pressure, preemptions follow",
                    kv * 100.0,
                    t.as_str()
                ),
                Some(
                    "raise --gpu-memory-utilization, lower --max-model-len or --max-num-seqs, use --kv-cache-dtype fp8, or add GPUs",
                ),
            ));
        }
    }
    let Some(f) = inp.figures else {
        return out;
    };
    if let Some(p) = f.preemptions.filter(|p| *p > 0.0) {
        out.push(insight(
            Level::Warning,
            "preemptions",
            format!("{p:.0} preemption(s): requests were evicted from the KV cache and recomputed"),
            Some("the KV cache is too small for this concurrency: see kv_pressure remedies, or cap concurrency"),
        ));
    }
    if let Some(pc) = &f.prefix_cache
        && pc.queries > 0.0
        && inp.prefix_caching_enabled != Some(false)
        && let Some(r) = pc.hit_rate
        && r < 0.10
    {
        out.push(insight(
            Level::Info,
            "low_prefix_cache_hit_rate",
            format!(
                "prefix-cache hit rate {:.1} % ({:.0} of {:.0} queried {}): prompts share little prefix",
                r * 100.0,
                pc.hits,
                pc.queries,
                pc.unit
            ),
            Some(
                "put shared content (system prompt, few-shot examples) first and identical; route requests with a common prefix to the same replica",
            ),
        ));
    }
    if running == Some(0.0) && waiting.unwrap_or(0.0) == 0.0 && !inp.windowed {
        out.push(insight(
            Level::Info,
            "idle_at_collection",
            "idle at collection time: nothing running or waiting, so the gauges (running, waiting, KV usage) say nothing about load; counters and histograms cover everything since start".into(),
            Some("collect during the load, or diff two dumps taken around it (`llmload metrics diff`)"),
        ));
    }
    if let (Some(ttft), Some(queue), Some(prefill)) =
        (f.mean("ttft_s"), f.mean("queue_s"), f.mean("prefill_s"))
    {
        let gap = ttft - queue - prefill;
        if gap > 0.1 && gap > 0.25 * ttft && waiting.unwrap_or(0.0) == 0.0 {
            out.push(insight(
                Level::Warning,
                "front_end_bottleneck",
                format!(
                    "mean TTFT {:.3} s is far above queue {:.3} s + prefill {:.3} s while nothing waits: \
                     {:.3} s per request is spent before the engine (tokenization, image processing, API server)",
                    ttft, queue, prefill, gap
                ),
                Some(
                    "the front end is the bottleneck, not the engine: try --api-server-count N (more API server processes) and check the API server's CPU",
                ),
            ));
        }
    }
    if let Some(h) = f.latency.get("ttft_s") {
        if let Some(m) = h.mean {
            let t = default_tiers().ttft.classify(m);
            out.push(insight(
                Level::from_tier(t),
                "ttft_tier",
                format!("server mean TTFT {:.3} s: {}", m, t.as_str()),
                (t >= Tier::Degraded).then_some(
                    "reduce queueing (load, --max-num-batched-tokens) or prompt length; check the front end",
                ),
            ));
        }
        if let Some(p95) = h.p95 {
            let t = default_tiers().ttft.classify(p95.value);
            if t >= Tier::Degraded {
                out.push(insight(
                    Level::from_tier(t),
                    "ttft_p95_tier",
                    format!(
                        "server TTFT p95 {} s: {} (DESIGN breaking point: p95 above 1.0 s)",
                        p95.display_with(|v| format!("{v:.3}")),
                        t.as_str()
                    ),
                    None,
                ));
            }
        }
    }
    let tpot = f.mean("tpot_s").or_else(|| f.mean("itl_s"));
    if let Some(tp) = tpot.filter(|t| *t > 0.0) {
        let rate = 1.0 / tp;
        let t = default_tiers().decode_rate.classify(rate);
        out.push(insight(
            Level::from_tier(t),
            "decode_rate_tier",
            format!("server decode rate {:.1} tok/s per request (1 / mean TPOT): {}", rate, t.as_str()),
            (t >= Tier::Degraded).then_some(
                "batches are too large for the GPU: lower concurrency or --max-num-seqs, or use a faster GPU / quantization",
            ),
        ));
    }
    let bad: f64 = ["abort", "error"]
        .iter()
        .filter_map(|r| f.requests_by_finished_reason.get(*r))
        .sum();
    if bad > 0.0 {
        out.push(insight(
            Level::Warning,
            "aborted_requests",
            format!(
                "{bad:.0} request(s) finished with reason abort or error (clients disconnecting, timeouts, or engine errors)"
            ),
            Some("check client timeouts and the server log"),
        ));
    }
    if let (Some(len), Some(total)) = (
        f.requests_by_finished_reason.get("length"),
        f.requests_finished,
    ) && total > 0.0
        && *len / total > 0.9
    {
        out.push(insight(
            Level::Info,
            "stopped_at_max_tokens",
            format!(
                "{:.0} % of requests stopped at max_tokens (finished_reason=length): benchmark-style fixed outputs, or answers cut short",
                len / total * 100.0
            ),
            None,
        ));
    }
    out
}

fn insights(a: &Analysis, windowed: bool) -> Vec<Insight> {
    let f = &a.vllm.total;
    let mut out = if a.vllm_detected {
        rules(&RuleInput {
            figures: Some(f),
            waiting: f.waiting,
            running: f.running,
            kv_usage: f.kv_cache_usage,
            prefix_caching_enabled: a.cache_config.iter().find_map(|c| c.enable_prefix_caching),
            windowed,
        })
    } else {
        vec![insight(
            Level::Info,
            "not_vllm",
            "no vllm:* series: not a vLLM /metrics exposition; only generic sections are shown"
                .into(),
            None,
        )]
    };
    if a.vllm.per_engine.len() > 1 {
        let reqs: Vec<f64> = a
            .vllm
            .per_engine
            .values()
            .filter_map(|e| e.requests_finished)
            .collect();
        let max = reqs.iter().copied().fold(0.0, f64::max);
        let min = reqs.iter().copied().fold(f64::INFINITY, f64::min);
        if max > 0.0 && (max - min) / max > 0.2 {
            out.push(insight(
                Level::Info,
                "engine_imbalance",
                format!(
                    "engines finished between {min:.0} and {max:.0} requests: load is unevenly spread"
                ),
                None,
            ));
        }
    }
    let errors: f64 = a
        .http
        .iter()
        .filter(|r| !r.status.starts_with('2') && !r.status.is_empty())
        .map(|r| r.requests)
        .sum();
    if errors > 0.0 {
        out.push(insight(
            Level::Warning,
            "http_errors",
            format!("{errors:.0} HTTP request(s) answered with a non-2xx status"),
            Some("see the HTTP table for handlers and statuses"),
        ));
    }
    if !a.system.process_metrics && a.vllm_detected {
        out.push(insight(
            Level::Info,
            "multiprocess_mode",
            "no process_* series: multiprocess mode (--api-server-count > 1 or PROMETHEUS_MULTIPROC_DIR); memory and CPU are not exported".into(),
            None,
        ));
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.level));
    out
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Output format of the `metrics` verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Md,
    Json,
}

struct Section {
    title: String,
    rows: Vec<(String, String)>,
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn secs(v: f64) -> String {
    if v < 1.0 {
        format!("{:.1} ms", v * 1000.0)
    } else {
        format!("{v:.3} s")
    }
}

fn bytes(v: f64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut i = 0;
    while x >= 1024.0 && i < U.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    format!("{x:.1} {}", U[i])
}

fn q(qv: &Option<Quantile>, fmt: &dyn Fn(f64) -> String) -> String {
    qv.map_or("-".into(), |x| x.display_with(fmt))
}

fn hist_row(h: &HistStats, fmt: &dyn Fn(f64) -> String) -> String {
    format!(
        "n={}  mean={}  p50={}  p90={}  p95={}  p99={}",
        num(h.count),
        h.mean.map_or("-".into(), fmt),
        q(&h.p50, fmt),
        q(&h.p90, fmt),
        q(&h.p95, fmt),
        q(&h.p99, fmt),
    )
}

fn figure_rows(f: &Figures, rows: &mut Vec<(String, String)>) {
    if let Some(total) = f.requests_finished {
        let parts: Vec<String> = f
            .requests_by_finished_reason
            .iter()
            .map(|(k, v)| format!("{k}={}", num(*v)))
            .collect();
        rows.push((
            "requests finished".into(),
            format!("{} ({})", num(total), parts.join(", ")),
        ));
    }
    if let Some(p) = f.prompt_tokens {
        rows.push(("prompt tokens".into(), num(p)));
    }
    if let Some(g) = f.generation_tokens {
        rows.push(("generation tokens".into(), num(g)));
    }
    if let Some(v) = f.avg_prompt_tokens_per_request {
        rows.push(("prompt tokens / request".into(), num(v)));
    }
    if let Some(v) = f.avg_generation_tokens_per_request {
        rows.push(("generation tokens / request".into(), num(v)));
    }
    if let Some(v) = f.generation_to_prompt_ratio {
        rows.push(("generation : prompt".into(), format!("{v:.3}")));
    }
    if let Some(v) = f.running {
        rows.push(("running".into(), num(v)));
    }
    if let Some(v) = f.waiting {
        rows.push(("waiting".into(), num(v)));
    }
    if let Some(v) = f.kv_cache_usage {
        rows.push(("KV cache usage".into(), format!("{:.2} %", v * 100.0)));
    }
    if let Some(v) = f.preemptions {
        rows.push(("preemptions".into(), num(v)));
    }
    for (label, c) in [
        ("prefix cache", &f.prefix_cache),
        ("multimodal cache", &f.mm_cache),
    ] {
        // The multimodal cache only matters when it was queried (image/audio requests).
        if let Some(c) = c
            && (label == "prefix cache" || c.queries > 0.0)
        {
            rows.push((
                format!("{label} hit rate"),
                format!(
                    "{} ({} hits / {} queries, {})",
                    c.hit_rate
                        .map_or("-".into(), |r| format!("{:.2} %", r * 100.0)),
                    num(c.hits),
                    num(c.queries),
                    c.unit
                ),
            ));
        }
    }
    let sfmt: &dyn Fn(f64) -> String = &secs;
    for (k, h) in &f.latency {
        rows.push((format!("{k} ({})", h.metric), hist_row(h, sfmt)));
    }
    let nfmt: &dyn Fn(f64) -> String = &num;
    for (k, h) in &f.sizes {
        rows.push((format!("{k} ({})", h.metric), hist_row(h, nfmt)));
    }
}

fn sections(a: &Analysis) -> Vec<Section> {
    let mut out = Vec::new();
    let mut rows = vec![
        ("kind".into(), a.kind.clone()),
        ("source".into(), a.sources.join(" -> ")),
        ("series".into(), a.series.to_string()),
    ];
    if !a.vllm.models.is_empty() {
        rows.push(("models".into(), a.vllm.models.join(", ")));
    }
    if !a.vllm.engines.is_empty() {
        rows.push(("engines".into(), a.vllm.engines.join(", ")));
    }
    let s = &a.system;
    if let Some(v) = &s.python_version {
        rows.push((
            "python".into(),
            format!(
                "{} {v}",
                s.python_implementation.clone().unwrap_or_default()
            ),
        ));
    }
    if let Some(v) = s.resident_memory_bytes {
        rows.push(("resident memory".into(), bytes(v)));
    }
    if let Some(v) = s.virtual_memory_bytes {
        rows.push(("virtual memory".into(), bytes(v)));
    }
    if let Some(v) = s.cpu_seconds {
        rows.push(("CPU seconds".into(), format!("{v:.2}")));
    }
    if let Some(v) = s.start_time_unix {
        rows.push(("process start (unix)".into(), format!("{v:.0}")));
    }
    if let Some(v) = s.uptime_s {
        rows.push(("uptime".into(), format!("{v:.0} s")));
    }
    if let (Some(o), Some(m)) = (s.open_fds, s.max_fds) {
        rows.push(("open fds".into(), format!("{} / {}", num(o), num(m))));
    }
    if let Some(r) = &a.rates {
        rows.push(("interval".into(), format!("{:.3} s", r.interval_s)));
        for (k, v) in [
            ("requests/s", r.requests_per_s),
            ("prompt tokens/s", r.prompt_tokens_per_s),
            ("generation tokens/s", r.generation_tokens_per_s),
            ("CPU cores busy", r.cpu_cores_busy),
        ] {
            if let Some(v) = v {
                rows.push((k.into(), format!("{v:.2}")));
            }
        }
    }
    out.push(Section {
        title: "System".into(),
        rows,
    });
    for c in &a.cache_config {
        let mut rows = Vec::new();
        if let Some(v) = c.block_size {
            rows.push(("block size".into(), v.to_string()));
        }
        if let Some(v) = c.num_gpu_blocks {
            rows.push(("GPU blocks".into(), v.to_string()));
        }
        if let Some(v) = c.token_capacity {
            rows.push(("KV capacity (tokens)".into(), v.to_string()));
        }
        if let Some(v) = c.gpu_memory_utilization {
            rows.push(("gpu_memory_utilization".into(), v.to_string()));
        }
        if let Some(v) = c.enable_prefix_caching {
            rows.push(("prefix caching".into(), v.to_string()));
        }
        for k in [
            "cache_dtype",
            "kv_cache_size_tokens",
            "kv_cache_max_concurrency",
        ] {
            if let Some(v) = c.labels.get(k) {
                rows.push((k.into(), v.clone()));
            }
        }
        out.push(Section {
            title: match &c.engine {
                Some(e) => format!("Cache config (engine {e})"),
                None => "Cache config".into(),
            },
            rows,
        });
    }
    if a.vllm_detected {
        let mut rows = Vec::new();
        figure_rows(&a.vllm.total, &mut rows);
        let title = if a.vllm.per_engine.is_empty() {
            "vLLM".to_string()
        } else {
            "vLLM (all engines)".to_string()
        };
        out.push(Section { title, rows });
        for (e, f) in &a.vllm.per_engine {
            let mut rows = Vec::new();
            figure_rows(f, &mut rows);
            out.push(Section {
                title: format!("vLLM engine {e}"),
                rows,
            });
        }
    }
    if !a.http.is_empty() {
        out.push(Section {
            title: "HTTP".into(),
            rows: a
                .http
                .iter()
                .map(|r| {
                    (
                        format!("{} {} {}", r.method, r.handler, r.status),
                        format!(
                            "{}{}",
                            num(r.requests),
                            r.mean_duration_s
                                .map_or(String::new(), |d| format!("  (mean {})", secs(d)))
                        ),
                    )
                })
                .collect(),
        });
    }
    if let Some(gc) = &a.gc {
        let fmt = |m: &BTreeMap<String, f64>| {
            m.iter()
                .map(|(k, v)| format!("gen{k}={}", num(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(Section {
            title: "Python GC".into(),
            rows: vec![
                ("collections".into(), fmt(&gc.collections)),
                ("objects collected".into(), fmt(&gc.objects_collected)),
                ("uncollectable".into(), fmt(&gc.uncollectable)),
            ],
        });
    }
    out
}

/// Renders the analysis in the chosen format.
pub fn render(a: &Analysis, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            serde_json::to_string_pretty(a).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
        OutputFormat::Text => render_text(a),
        OutputFormat::Md => render_md(a),
    }
}

fn render_text(a: &Analysis) -> String {
    let mut out = String::new();
    for s in sections(a) {
        let _ = writeln!(out, "== {} ==", s.title);
        let w = s
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in &s.rows {
            let _ = writeln!(out, "  {k:<w$}  {v}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "== Insights ==");
    if a.insights.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for i in &a.insights {
        let _ = writeln!(out, "  [{}] {}", i.level.as_str(), i.message);
        if let Some(r) = &i.recommendation {
            let _ = writeln!(out, "      -> {r}");
        }
    }
    let _ = writeln!(
        out,
        "\nQuantiles are estimated from the exposition's buckets (Prometheus histogram_quantile); \
         `<= x` lies in the first bucket, `>= x` in the +Inf bucket."
    );
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn render_md(a: &Analysis) -> String {
    let mut out = String::from("# Server metrics analysis\n\n");
    for s in sections(a) {
        let _ = writeln!(out, "## {}\n\n| | |\n|---|---|", s.title);
        for (k, v) in &s.rows {
            let _ = writeln!(out, "| {} | {} |", md_escape(k), md_escape(v));
        }
        out.push('\n');
    }
    out.push_str("## Insights\n\n");
    if a.insights.is_empty() {
        out.push_str("None.\n");
    }
    for i in &a.insights {
        let _ = write!(out, "- **{}** {}", i.level.as_str(), md_escape(&i.message));
        if let Some(r) = &i.recommendation {
            let _ = write!(out, " — *{}*", md_escape(r));
        }
        out.push('\n');
    }
    out.push_str(
        "\nQuantiles are estimated from the exposition's buckets (Prometheus `histogram_quantile`); \
         `<= x` lies in the first bucket, `>= x` in the +Inf bucket.\n",
    );
    out
}
