//! vLLM V1's Prometheus metrics (names, types, labels, buckets and HELP texts as served by
//! vLLM 0.25.0) and their text exposition.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::engine::FinishReason;

pub const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
pub const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
pub const ITERATION_TOKENS_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
pub const PARAMS_N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
const HTTP_HIGHR_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    7.5, 10.0, 30.0, 60.0,
];
const HTTP_DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0];

/// vLLM's 1-2-5 series up to `max`: 1, 2, 5, 10, 20, 50, ... (values <= max).
pub fn buckets_125(max: u32) -> Vec<f64> {
    let mut out = Vec::new();
    let mut exp = 1u64;
    'outer: loop {
        for m in [1u64, 2, 5] {
            let v = m * exp;
            if v > max as u64 {
                break 'outer;
            }
            out.push(v as f64);
        }
        exp *= 10;
    }
    out
}

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        // the first bound >= v (as partition_point(|b| b < v)); a linear scan: observations
        // cluster in the low buckets, where it ends after a step or two
        let i = if v.is_nan() {
            0
        } else {
            self.bounds
                .iter()
                .position(|&b| b >= v)
                .unwrap_or(self.bounds.len())
        };
        if i < self.counts.len() {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, count in this bucket)` per finite bucket (not cumulative).
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds.iter().copied().zip(self.counts.iter().copied())
    }
}

/// Engine-side metrics (the `vllm:` families).
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    pub prompt_tokens: u64,
    pub prompt_tokens_local_compute: u64,
    pub prompt_tokens_cache_hit: u64,
    pub generation_tokens: u64,
    pub num_preemptions: u64,
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    pub mm_cache_queries: u64,
    pub mm_cache_hits: u64,
    /// stop, length, abort, error
    pub request_success: [u64; 4],
    pub steps: u64,
    pub request_prompt_tokens: Histogram,
    pub request_generation_tokens: Histogram,
    pub iteration_tokens: Histogram,
    pub request_max_num_generation_tokens: Histogram,
    pub request_params_n: Histogram,
    pub request_params_max_tokens: Histogram,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub request_time_per_output_token: Histogram,
    pub e2e_request_latency: Histogram,
    pub request_queue_time: Histogram,
    pub request_inference_time: Histogram,
    pub request_prefill_time: Histogram,
    pub request_decode_time: Histogram,
    pub request_prefill_kv_computed_tokens: Histogram,
}

impl EngineMetrics {
    pub fn new(max_model_len: u32) -> Self {
        let tok = buckets_125(max_model_len);
        EngineMetrics {
            prompt_tokens: 0,
            prompt_tokens_local_compute: 0,
            prompt_tokens_cache_hit: 0,
            generation_tokens: 0,
            num_preemptions: 0,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
            mm_cache_queries: 0,
            mm_cache_hits: 0,
            request_success: [0; 4],
            steps: 0,
            request_prompt_tokens: Histogram::new(&tok),
            request_generation_tokens: Histogram::new(&tok),
            iteration_tokens: Histogram::new(ITERATION_TOKENS_BUCKETS),
            request_max_num_generation_tokens: Histogram::new(&tok),
            request_params_n: Histogram::new(PARAMS_N_BUCKETS),
            request_params_max_tokens: Histogram::new(&tok),
            time_to_first_token: Histogram::new(TTFT_BUCKETS),
            inter_token_latency: Histogram::new(ITL_BUCKETS),
            request_time_per_output_token: Histogram::new(ITL_BUCKETS),
            e2e_request_latency: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_queue_time: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_inference_time: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_prefill_time: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_decode_time: Histogram::new(REQUEST_LATENCY_BUCKETS),
            request_prefill_kv_computed_tokens: Histogram::new(&tok),
        }
    }

    pub fn finished(&mut self, r: FinishReason) {
        let i = match r {
            FinishReason::Stop => 0,
            FinishReason::Length => 1,
            FinishReason::Abort => 2,
            FinishReason::Error => 3,
        };
        self.request_success[i] += 1;
    }
}

/// Instantaneous engine state for the gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineGauges {
    pub running: u64,
    pub waiting: u64,
    pub kv_cache_usage: f64,
}

/// `prometheus-fastapi-instrumentator` metrics, as vLLM's API server has them.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    /// (handler, method, status class) -> count
    requests: BTreeMap<(String, &'static str, &'static str), u64>,
    /// handler -> (count, sum)
    request_size: BTreeMap<String, (u64, f64)>,
    response_size: BTreeMap<String, (u64, f64)>,
    /// (handler, method) -> histogram
    duration: BTreeMap<(String, &'static str), Histogram>,
    highr: Option<Histogram>,
}

impl HttpMetrics {
    /// Records one finished HTTP request. `handler` is the route template, or "none".
    pub fn record(
        &mut self,
        handler: &str,
        method: &'static str,
        status: u16,
        request_bytes: u64,
        response_bytes: u64,
        seconds: f64,
    ) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        *self
            .requests
            .entry((handler.to_string(), method, class))
            .or_insert(0) += 1;
        let e = self
            .request_size
            .entry(handler.to_string())
            .or_insert((0, 0.0));
        e.0 += 1;
        e.1 += request_bytes as f64;
        let e = self
            .response_size
            .entry(handler.to_string())
            .or_insert((0, 0.0));
        e.0 += 1;
        e.1 += response_bytes as f64;
        self.duration
            .entry((handler.to_string(), method))
            .or_insert_with(|| Histogram::new(HTTP_DURATION_BUCKETS))
            .observe(seconds);
        self.highr
            .get_or_insert_with(|| Histogram::new(HTTP_HIGHR_BUCKETS))
            .observe(seconds);
    }

    /// Count of requests for a handler and status class (for tests).
    pub fn requests(&self, handler: &str, method: &str, class: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((h, m, c), _)| h == handler && *m == method && *c == class)
            .map(|(_, v)| *v)
            .sum()
    }
}

/// Formats a float the way Python's prometheus_client does (`1.0`, `0.001`, `1.15106e+06`).
pub fn fmt_float(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{d:?}");
    if d > 0.0
        && !s.contains('e')
        && let Some(dot) = s.find('.')
        && dot > 6
    {
        {
            {
                let digits = format!("{}{}", &s[1..dot], &s[dot + 1..]);
                let mantissa = format!("{}.{}", &s[..1], digits);
                let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
                return format!("{mantissa}e+{:02}", dot - 1);
            }
        }
    }
    if let Some((m, e)) = s.split_once('e') {
        // Rust writes 1e-7, Python 1e-07
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", e),
        };
        return format!("{m}e{sign}{digits:0>2}");
    }
    s
}

/// Everything the `/metrics` page shows.
pub struct ExpositionInput<'a> {
    pub model_name: &'a str,
    pub engine: &'a EngineMetrics,
    pub gauges: EngineGauges,
    pub http: &'a HttpMetrics,
    /// Labels of `vllm:cache_config_info` (sorted by the renderer).
    pub cache_config: &'a [(String, String)],
    /// Unix time the metrics were created (for the `_created` series).
    pub created_unix: f64,
}

struct W<'a> {
    out: String,
    created: String,
    base: &'a str,
}

impl W<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, extra: &[(&str, &str)], v: f64) {
        let _ = writeln!(
            self.out,
            "{name}{{{}}} {}",
            self.labels(extra),
            fmt_float(v)
        );
    }

    fn labels(&self, extra: &[(&str, &str)]) -> String {
        let mut all: Vec<(&str, &str)> = vec![("engine", "0"), ("model_name", self.base)];
        all.extend_from_slice(extra);
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn created_family(&mut self, base: &str, help: &str, label_sets: &[&[(&str, &str)]]) {
        let name = format!("{base}_created");
        self.family(&name, "gauge", help);
        let c = self.created.clone();
        for extra in label_sets {
            let _ = writeln!(self.out, "{name}{{{}}} {c}", self.labels(extra));
        }
    }

    fn counter(&mut self, base: &str, help: &str, series: &[(&[(&str, &str)], u64)]) {
        let total = format!("{base}_total");
        self.family(&total, "counter", help);
        for (extra, v) in series {
            self.sample(&total, extra, *v as f64);
        }
        let sets: Vec<&[(&str, &str)]> = series.iter().map(|(e, _)| *e).collect();
        self.created_family(base, help, &sets);
    }

    fn histogram(&mut self, base: &str, help: &str, h: &Histogram) {
        self.family(base, "histogram", help);
        let bucket = format!("{base}_bucket");
        let mut cum = 0u64;
        for (b, c) in h.bounds.iter().zip(&h.counts) {
            cum += c;
            let le = fmt_float(*b);
            self.sample(&bucket, &[("le", &le)], cum as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count as f64);
        self.sample(&format!("{base}_count"), &[], h.count as f64);
        self.sample(&format!("{base}_sum"), &[], h.sum);
        self.created_family(base, help, &[&[]]);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the exposition (Prometheus text format 0.0.4 / 1.0.0 as vLLM serves it).
pub fn render(inp: &ExpositionInput<'_>) -> String {
    let mut w = W {
        out: String::with_capacity(48 * 1024),
        created: fmt_float(inp.created_unix),
        base: inp.model_name,
    };
    let e = inp.engine;
    let none: &[(&str, &str)] = &[];
    w.counter(
        "vllm:estimated_flops_per_gpu",
        "Estimated number of floating point operations per GPU (for Model Flops Utilization calculations).",
        &[(none, 0)],
    );
    w.counter(
        "vllm:estimated_read_bytes_per_gpu",
        "Estimated number of bytes read from memory per GPU (for Model Flops Utilization calculations).",
        &[(none, 0)],
    );
    w.counter(
        "vllm:estimated_write_bytes_per_gpu",
        "Estimated number of bytes written to memory per GPU (for Model Flops Utilization calculations).",
        &[(none, 0)],
    );
    w.family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
    );
    w.sample("vllm:num_requests_running", none, inp.gauges.running as f64);
    w.family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
    );
    w.sample("vllm:num_requests_waiting", none, inp.gauges.waiting as f64);
    w.family(
        "vllm:num_requests_waiting_by_reason",
        "gauge",
        "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
    );
    w.sample(
        "vllm:num_requests_waiting_by_reason",
        &[("reason", "capacity")],
        inp.gauges.waiting as f64,
    );
    w.sample(
        "vllm:num_requests_waiting_by_reason",
        &[("reason", "deferred")],
        0.0,
    );
    w.family(
        "vllm:engine_sleep_state",
        "gauge",
        "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
    );
    w.sample("vllm:engine_sleep_state", &[("sleep_state", "awake")], 1.0);
    w.sample(
        "vllm:engine_sleep_state",
        &[("sleep_state", "weights_offloaded")],
        0.0,
    );
    w.sample(
        "vllm:engine_sleep_state",
        &[("sleep_state", "discard_all")],
        0.0,
    );
    w.family(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
    );
    w.sample("vllm:kv_cache_usage_perc", none, inp.gauges.kv_cache_usage);
    w.counter(
        "vllm:prefix_cache_queries",
        "Prefix cache queries, in terms of number of queried tokens.",
        &[(none, e.prefix_cache_queries)],
    );
    w.counter(
        "vllm:prefix_cache_hits",
        "Prefix cache hits, in terms of number of cached tokens.",
        &[(none, e.prefix_cache_hits)],
    );
    w.counter(
        "vllm:external_prefix_cache_queries",
        "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
        &[(none, 0)],
    );
    w.counter(
        "vllm:external_prefix_cache_hits",
        "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
        &[(none, 0)],
    );
    w.counter(
        "vllm:mm_cache_queries",
        "Multi-modal cache queries, in terms of number of queried items.",
        &[(none, e.mm_cache_queries)],
    );
    w.counter(
        "vllm:mm_cache_hits",
        "Multi-modal cache hits, in terms of number of cached items.",
        &[(none, e.mm_cache_hits)],
    );
    w.counter(
        "vllm:num_preemptions",
        "Cumulative number of preemption from the engine.",
        &[(none, e.num_preemptions)],
    );
    w.counter(
        "vllm:prompt_tokens",
        "Number of prefill tokens processed.",
        &[(none, e.prompt_tokens)],
    );
    w.counter(
        "vllm:prompt_tokens_by_source",
        "Number of prompt tokens by source.",
        &[
            (
                &[("source", "local_compute")],
                e.prompt_tokens_local_compute,
            ),
            (&[("source", "local_cache_hit")], e.prompt_tokens_cache_hit),
            (&[("source", "external_kv_transfer")], 0),
        ],
    );
    w.counter(
        "vllm:prompt_tokens_cached",
        "Number of cached prompt tokens (local + external).",
        &[(none, e.prompt_tokens_cache_hit)],
    );
    w.counter(
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        &[(none, e.generation_tokens)],
    );
    w.counter(
        "vllm:request_success",
        "Count of successfully processed requests.",
        &[
            (&[("finished_reason", "stop")], e.request_success[0]),
            (&[("finished_reason", "length")], e.request_success[1]),
            (&[("finished_reason", "abort")], e.request_success[2]),
            (&[("finished_reason", "error")], e.request_success[3]),
            (&[("finished_reason", "repetition")], 0),
        ],
    );
    w.histogram(
        "vllm:request_prompt_tokens",
        "Number of prefill tokens processed.",
        &e.request_prompt_tokens,
    );
    w.histogram(
        "vllm:request_generation_tokens",
        "Number of generation tokens processed.",
        &e.request_generation_tokens,
    );
    w.histogram(
        "vllm:iteration_tokens_total",
        "Histogram of number of tokens per engine_step.",
        &e.iteration_tokens,
    );
    w.histogram(
        "vllm:request_max_num_generation_tokens",
        "Histogram of maximum number of requested generation tokens.",
        &e.request_max_num_generation_tokens,
    );
    w.histogram(
        "vllm:request_params_n",
        "Histogram of the n request parameter.",
        &e.request_params_n,
    );
    w.histogram(
        "vllm:request_params_max_tokens",
        "Histogram of the max_tokens request parameter.",
        &e.request_params_max_tokens,
    );
    w.histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        &e.time_to_first_token,
    );
    w.histogram(
        "vllm:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        &e.inter_token_latency,
    );
    w.histogram(
        "vllm:request_time_per_output_token_seconds",
        "Histogram of time_per_output_token_seconds per request.",
        &e.request_time_per_output_token,
    );
    w.histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        &e.e2e_request_latency,
    );
    w.histogram(
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        &e.request_queue_time,
    );
    w.histogram(
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        &e.request_inference_time,
    );
    w.histogram(
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        &e.request_prefill_time,
    );
    w.histogram(
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        &e.request_decode_time,
    );
    w.histogram(
        "vllm:request_prefill_kv_computed_tokens",
        "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
        &e.request_prefill_kv_computed_tokens,
    );
    w.family(
        "vllm:cache_config_info",
        "gauge",
        "Information of the LLMEngine CacheConfig",
    );
    {
        let mut labels: Vec<(String, String)> = inp.cache_config.to_vec();
        labels.push(("engine".into(), "0".into()));
        labels.sort();
        let l = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(w.out, "vllm:cache_config_info{{{l}}} 1.0");
    }
    render_http(&mut w.out, inp.http, &w.created);
    w.out
}

fn render_http(out: &mut String, h: &HttpMetrics, created: &str) {
    let help = "Total number of requests by method, status and handler.";
    let _ = writeln!(
        out,
        "# HELP http_requests_total {help}\n# TYPE http_requests_total counter"
    );
    for ((hd, m, s), v) in &h.requests {
        let _ = writeln!(
            out,
            "http_requests_total{{handler=\"{}\",method=\"{m}\",status=\"{s}\"}} {}",
            escape(hd),
            fmt_float(*v as f64)
        );
    }
    let _ = writeln!(
        out,
        "# HELP http_requests_created {help}\n# TYPE http_requests_created gauge"
    );
    for (hd, m, s) in h.requests.keys() {
        let _ = writeln!(
            out,
            "http_requests_created{{handler=\"{}\",method=\"{m}\",status=\"{s}\"}} {created}",
            escape(hd)
        );
    }
    for (name, map, what) in [
        (
            "http_request_size_bytes",
            &h.request_size,
            "incoming requests",
        ),
        (
            "http_response_size_bytes",
            &h.response_size,
            "outgoing responses",
        ),
    ] {
        let help = format!(
            "Content length of {what} by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. "
        );
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for (hd, (c, s)) in map {
            let _ = writeln!(
                out,
                "{name}_count{{handler=\"{}\"}} {}",
                escape(hd),
                fmt_float(*c as f64)
            );
            let _ = writeln!(
                out,
                "{name}_sum{{handler=\"{}\"}} {}",
                escape(hd),
                fmt_float(*s)
            );
        }
        let _ = writeln!(
            out,
            "# HELP {name}_created {help}\n# TYPE {name}_created gauge"
        );
        for hd in map.keys() {
            let _ = writeln!(
                out,
                "{name}_created{{handler=\"{}\"}} {created}",
                escape(hd)
            );
        }
    }
    let help = "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. ";
    let name = "http_request_duration_highr_seconds";
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let highr = h
        .highr
        .clone()
        .unwrap_or_else(|| Histogram::new(HTTP_HIGHR_BUCKETS));
    let mut cum = 0;
    for (b, c) in highr.bounds.iter().zip(&highr.counts) {
        cum += c;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {}",
            fmt_float(*b),
            fmt_float(cum as f64)
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {}",
        fmt_float(highr.count as f64)
    );
    let _ = writeln!(out, "{name}_count {}", fmt_float(highr.count as f64));
    let _ = writeln!(out, "{name}_sum {}", fmt_float(highr.sum));
    let _ = writeln!(
        out,
        "# HELP {name}_created {help}\n# TYPE {name}_created gauge\n{name}_created {created}"
    );
    let help = "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ";
    let name = "http_request_duration_seconds";
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for ((hd, m), hist) in &h.duration {
        let hd = escape(hd);
        let mut cum = 0;
        for (b, c) in hist.bounds.iter().zip(&hist.counts) {
            cum += c;
            let _ = writeln!(
                out,
                "{name}_bucket{{handler=\"{hd}\",le=\"{}\",method=\"{m}\"}} {}",
                fmt_float(*b),
                fmt_float(cum as f64)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{handler=\"{hd}\",le=\"+Inf\",method=\"{m}\"}} {}",
            fmt_float(hist.count as f64)
        );
        let _ = writeln!(
            out,
            "{name}_count{{handler=\"{hd}\",method=\"{m}\"}} {}",
            fmt_float(hist.count as f64)
        );
        let _ = writeln!(
            out,
            "{name}_sum{{handler=\"{hd}\",method=\"{m}\"}} {}",
            fmt_float(hist.sum)
        );
    }
    let _ = writeln!(
        out,
        "# HELP {name}_created {help}\n# TYPE {name}_created gauge"
    );
    for (hd, m) in h.duration.keys() {
        let _ = writeln!(
            out,
            "{name}_created{{handler=\"{}\",method=\"{m}\"}} {created}",
            escape(hd)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_format_matches_python_client() {
        assert_eq!(fmt_float(1.0), "1.0");
        assert_eq!(fmt_float(0.001), "0.001");
        assert_eq!(fmt_float(145449.0), "145449.0");
        assert_eq!(fmt_float(1151060.0), "1.15106e+06");
        assert_eq!(fmt_float(1795380480.8298845), "1.7953804808298845e+09");
        assert_eq!(fmt_float(f64::INFINITY), "+Inf");
        assert_eq!(fmt_float(1e-7), "1e-07");
    }

    #[test]
    fn buckets_125_stop_at_max_model_len() {
        assert_eq!(
            buckets_125(4096),
            vec![
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0
            ]
        );
        assert_eq!(*buckets_125(40960).last().unwrap(), 20000.0);
    }

    #[test]
    fn histogram_le_is_inclusive() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        h.observe(1.0);
        h.observe(1.5);
        h.observe(3.0);
        assert_eq!(h.counts, vec![1, 1]);
        assert_eq!(h.count, 3);
    }
}
