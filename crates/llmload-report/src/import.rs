//! Runs for `compare`: llmload results, GuideLLM's `benchmarks.json` (GenerativeBenchmarksReport)
//! and `vllm bench serve` result JSON, all mapped onto llmload's metric keys by their
//! documented definitions. Figures a format does not have are listed by name in
//! [`RunData::unmapped`], never estimated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use llmload_core::Summary;
use serde_json::Value;

use crate::view::BreakingPoint;
use crate::{ReportError, flat};

/// Where a run came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Llmload,
    GuideLlm,
    VllmBench,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Llmload => "llmload",
            Source::GuideLlm => "guidellm",
            Source::VllmBench => "vllm bench serve",
        }
    }
}

/// One load step of a run, its figures under canonical keys (`ttft.p95`, seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepData {
    pub kind: String,
    pub rate: Option<f64>,
    pub concurrency: Option<f64>,
    pub values: BTreeMap<String, f64>,
}

impl StepData {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied().filter(|v| !v.is_nan())
    }

    pub fn label(&self) -> String {
        match (self.rate, self.concurrency) {
            (Some(r), _) => format!("{} req/s", crate::view::num(r)),
            (None, Some(c)) if self.kind == "synchronous" => format!("synchronous (c={c})"),
            (None, Some(c)) => format!("concurrency {}", crate::view::num(c)),
            _ => self.kind.clone(),
        }
    }
}

/// A run normalised for comparison.
#[derive(Debug, Clone)]
pub struct RunData {
    pub name: String,
    pub source: Source,
    pub path: PathBuf,
    pub model: String,
    pub labels: BTreeMap<String, String>,
    pub steps: Vec<StepData>,
    pub breaking_point: Option<BreakingPoint>,
    /// llmload figures this format does not provide (named, not estimated).
    pub unmapped: Vec<String>,
    /// Definitional differences to read the numbers with.
    pub notes: Vec<String>,
}

fn import_err(path: &Path, format: &'static str, detail: impl Into<String>) -> ReportError {
    ReportError::Import {
        path: path.to_path_buf(),
        format,
        detail: detail.into(),
    }
}

fn run_name(path: &Path) -> String {
    let p = if path.file_name().and_then(|f| f.to_str()) == Some(crate::RESULTS_FILE) {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    p.file_stem()
        .or_else(|| p.file_name())
        .and_then(|s| s.to_str())
        .unwrap_or("run")
        .to_string()
}

/// Reads a run of any supported format (a results directory, `results.json`, GuideLLM's
/// `benchmarks.json`, a `vllm bench serve` result `.json`, or a JSONL of such results).
pub fn load_run(input: &Path) -> Result<RunData, ReportError> {
    let path = crate::resolve_results_path(input);
    let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    let trimmed = text.trim_start();
    // JSON Lines of vllm results (`--append-result`).
    let doc: Value = match serde_json::from_str(trimmed) {
        Ok(v) => v,
        Err(first_err) => {
            let lines: Vec<&str> = trimmed.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.len() > 1 {
                let mut objs = Vec::new();
                for (i, l) in lines.iter().enumerate() {
                    let v: Value = serde_json::from_str(l).map_err(|e| {
                        import_err(&path, "JSON Lines", format!("line {}: {e}", i + 1))
                    })?;
                    objs.push(v);
                }
                return import_vllm(&path, &objs);
            }
            return Err(import_err(
                &path,
                "JSON",
                format!("not valid JSON: {first_err}"),
            ));
        }
    };
    if doc
        .get("schema")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("llmload.results/"))
    {
        return from_llmload(&path, &text);
    }
    if let Some(bs) = doc.get("benchmarks").and_then(Value::as_array)
        && bs.first().is_some_and(|b| b.get("metrics").is_some())
    {
        return import_guidellm(&path, &doc);
    }
    if let Some(a) = doc.as_array() {
        return import_vllm(&path, a);
    }
    if is_vllm(&doc) {
        return import_vllm(&path, std::slice::from_ref(&doc));
    }
    Err(import_err(
        &path,
        "a known result format",
        "not an llmload results.json (no \"schema\": \"llmload.results/v1\"), not a GuideLLM \
benchmarks.json (no \"benchmarks\"[].\"metrics\"), and not a vllm bench serve result (no \
\"request_throughput\" / \"mean_ttft_ms\")",
    ))
}

fn is_vllm(v: &Value) -> bool {
    v.get("request_throughput").is_some() || v.get("mean_ttft_ms").is_some()
}

fn from_llmload(path: &Path, text: &str) -> Result<RunData, ReportError> {
    let r = crate::parse_results(path, text)?;
    let steps = r
        .benchmarks
        .iter()
        .map(|b| StepData {
            kind: b.profile.kind.clone(),
            rate: b.profile.rate,
            concurrency: crate::view::step_concurrency(b),
            values: flat::values(b),
        })
        .collect();
    Ok(RunData {
        name: r
            .run
            .labels
            .get("name")
            .cloned()
            .unwrap_or_else(|| run_name(path)),
        source: Source::Llmload,
        path: path.to_path_buf(),
        model: r.run.model.clone(),
        labels: r.run.labels.clone(),
        breaking_point: BreakingPoint::of(&r),
        steps,
        unmapped: Vec::new(),
        notes: Vec::new(),
    })
}

// ---------------------------------------------------------------- GuideLLM

const GUIDELLM: &str = "GuideLLM benchmarks.json";

/// A number at `v[key]`: `Ok(None)` when absent or null, an error naming `at.key` when it is
/// something else.
fn num_at(
    path: &Path,
    fmt: &'static str,
    v: &Value,
    key: &str,
    at: &str,
) -> Result<Option<f64>, ReportError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_f64().map(Some).ok_or_else(|| {
            import_err(
                path,
                fmt,
                format!("{at}.{key} should be a number, found {x}"),
            )
        }),
    }
}

/// Maps one GuideLLM DistributionSummary (successful requests) onto `out[key.stat]`.
fn guidellm_dist(
    path: &Path,
    metrics: &Value,
    name: &str,
    key: &str,
    scale: f64,
    at: &str,
    out: &mut BTreeMap<String, f64>,
) -> Result<bool, ReportError> {
    let Some(d) = metrics.get(name) else {
        return Ok(false);
    };
    let at = format!("{at}.{name}");
    let d = match d.get("successful") {
        Some(s) => s,
        // guidellm 0.2 used "completed" for the successful split.
        None => d.get("completed").ok_or_else(|| {
            import_err(
                path,
                GUIDELLM,
                format!("{at} has no \"successful\" distribution"),
            )
        })?,
    };
    if !d.is_object() {
        return Err(import_err(
            path,
            GUIDELLM,
            format!("{at}.successful should be an object"),
        ));
    }
    let at = format!("{at}.successful");
    if num_at(path, GUIDELLM, d, "count", &at)? == Some(0.0) {
        return Ok(false);
    }
    for (src, dst) in [
        ("mean", "mean"),
        ("median", "p50"),
        ("std_dev", "stddev"),
        ("min", "min"),
        ("max", "max"),
    ] {
        if let Some(v) = num_at(path, GUIDELLM, d, src, &at)? {
            out.insert(format!("{key}.{dst}"), v * scale);
        }
    }
    if let Some(c) = num_at(path, GUIDELLM, d, "count", &at)? {
        out.insert(format!("{key}.count"), c);
    }
    if let Some(p) = d.get("percentiles") {
        let pat = format!("{at}.percentiles");
        for (src, dst) in [
            ("p50", "p50"),
            ("p90", "p90"),
            ("p95", "p95"),
            ("p99", "p99"),
            ("p999", "p999"),
        ] {
            if let Some(v) = num_at(path, GUIDELLM, p, src, &pat)? {
                out.insert(format!("{key}.{dst}"), v * scale);
            }
        }
    }
    Ok(true)
}

fn import_guidellm(path: &Path, doc: &Value) -> Result<RunData, ReportError> {
    let bs = doc
        .get("benchmarks")
        .and_then(Value::as_array)
        .ok_or_else(|| import_err(path, GUIDELLM, "no \"benchmarks\" array"))?;
    let mut steps = Vec::new();
    let mut model = String::new();
    for (i, b) in bs.iter().enumerate() {
        let at = format!("benchmarks[{i}]");
        let metrics = b
            .get("metrics")
            .filter(|m| m.is_object())
            .ok_or_else(|| import_err(path, GUIDELLM, format!("{at} has no \"metrics\" object")))?;
        let strategy = b
            .pointer("/config/strategy")
            .or_else(|| b.pointer("/args/strategy"))
            .or_else(|| b.get("strategy"))
            .cloned()
            .unwrap_or(Value::Null);
        let kind = strategy
            .get("type_")
            .or_else(|| strategy.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let rate = num_at(path, GUIDELLM, &strategy, "rate", &format!("{at}.strategy"))?;
        let conc = match kind.as_str() {
            "synchronous" => Some(1.0),
            _ => num_at(
                path,
                GUIDELLM,
                &strategy,
                "streams",
                &format!("{at}.strategy"),
            )?
            .or(num_at(
                path,
                GUIDELLM,
                &strategy,
                "max_concurrency",
                &format!("{at}.strategy"),
            )?),
        };
        if model.is_empty()
            && let Some(m) = b
                .pointer("/config/requests/model")
                .or_else(|| b.pointer("/worker/backend_model"))
                .or_else(|| b.pointer("/args/model"))
                .and_then(Value::as_str)
        {
            model = m.to_string();
        }
        let mut v = BTreeMap::new();
        let mat = format!("{at}.metrics");
        for (name, key, scale) in [
            ("time_to_first_token_ms", "ttft", 1e-3),
            ("time_to_first_output_token_ms", "ttfot", 1e-3),
            ("inter_token_latency_ms", "tpot", 1e-3),
            ("time_per_output_token_ms", "tpot_incl_ttft", 1e-3),
            ("request_latency", "request_latency", 1.0),
            ("prompt_token_count", "prompt_tokens", 1.0),
            ("output_token_count", "output_tokens", 1.0),
        ] {
            guidellm_dist(path, metrics, name, key, scale, &mat, &mut v)?;
        }
        let totals = metrics
            .get("request_totals")
            .or_else(|| b.get("request_totals"))
            .cloned()
            .unwrap_or(Value::Null);
        let tat = format!("{at}.request_totals");
        let ok = num_at(path, GUIDELLM, &totals, "successful", &tat)?;
        let errored = num_at(path, GUIDELLM, &totals, "errored", &tat)?;
        let duration = match num_at(path, GUIDELLM, b, "duration", &at)? {
            Some(d) => Some(d),
            None => {
                let s = b.get("scheduler_metrics").cloned().unwrap_or(Value::Null);
                let sat = format!("{at}.scheduler_metrics");
                match (
                    num_at(path, GUIDELLM, &s, "measure_start_time", &sat)?,
                    num_at(path, GUIDELLM, &s, "measure_end_time", &sat)?,
                ) {
                    (Some(a), Some(e)) if e > a => Some(e - a),
                    _ => None,
                }
            }
        }
        .filter(|d| *d > 0.0);
        let rate_mean = |name: &str| -> Result<Option<f64>, ReportError> {
            match metrics.get(name).and_then(|d| d.get("successful")) {
                Some(d) => num_at(
                    path,
                    GUIDELLM,
                    d,
                    "mean",
                    &format!("{mat}.{name}.successful"),
                ),
                None => Ok(None),
            }
        };
        let out_sum = match metrics.pointer("/output_token_count/successful") {
            Some(d) => num_at(
                path,
                GUIDELLM,
                d,
                "total_sum",
                &format!("{mat}.output_token_count.successful"),
            )?,
            None => None,
        };
        let prompt_sum = match metrics.pointer("/prompt_token_count/successful") {
            Some(d) => num_at(
                path,
                GUIDELLM,
                d,
                "total_sum",
                &format!("{mat}.prompt_token_count.successful"),
            )?,
            None => None,
        };
        if let Some(r) = match (ok, duration) {
            (Some(n), Some(d)) => Some(n / d),
            _ => rate_mean("requests_per_second")?,
        } {
            v.insert("requests_per_s".into(), r);
        }
        if let Some(r) = match (out_sum, duration) {
            (Some(n), Some(d)) => Some(n / d),
            _ => rate_mean("output_tokens_per_second")?,
        } {
            v.insert("output_tokens_per_s".into(), r);
        }
        if let Some(r) = match (out_sum, prompt_sum, duration) {
            (Some(o), Some(p), Some(d)) => Some((o + p) / d),
            _ => rate_mean("tokens_per_second")?,
        } {
            v.insert("total_tokens_per_s".into(), r);
        }
        if let (Some(s), Some(e)) = (ok, errored)
            && s + e > 0.0
        {
            v.insert("error_rate".into(), e / (s + e));
        }
        if let Some(c) = rate_mean("request_concurrency")? {
            v.insert("concurrency.mean".into(), c);
        }
        if let (Some(r), Some(a)) = (rate.filter(|r| *r > 0.0), v.get("requests_per_s")) {
            v.insert("achieved_ratio".into(), a / r);
        }
        steps.push(StepData {
            kind,
            rate,
            concurrency: conc,
            values: v,
        });
    }
    Ok(RunData {
        name: run_name(path),
        source: Source::GuideLlm,
        path: path.to_path_buf(),
        model,
        labels: BTreeMap::new(),
        steps,
        breaking_point: None,
        unmapped: vec![
            "e2e_latency (GuideLLM reports request latency, to the end of the response, not to the last token)".into(),
            "itl (GuideLLM does not report per-event gaps)".into(),
            "decode_rate".into(),
            "dispatch_delay".into(),
            "scheduled_latency".into(),
            "goodput_requests_per_s".into(),
            "concurrency.max".into(),
        ],
        notes: vec![
            "GuideLLM \"TPOT\" (time_per_output_token_ms) = llmload tpot_incl_ttft; GuideLLM \"ITL\" (inter_token_latency_ms) = llmload tpot.".into(),
            "GuideLLM weights its TPOT and ITL distributions by output tokens; llmload's are per request. Means and percentiles can differ for that reason alone.".into(),
            "Successful requests only; throughput = GuideLLM totals over its measured duration (measure_start_time to measure_end_time).".into(),
        ],
    })
}

// ---------------------------------------------------------------- vllm bench serve

const VLLM: &str = "vllm bench serve result";

fn import_vllm(path: &Path, objs: &[Value]) -> Result<RunData, ReportError> {
    if objs.is_empty() {
        return Err(import_err(path, VLLM, "no result object"));
    }
    let mut steps = Vec::new();
    let mut model = String::new();
    let mut notes = vec![
        "vLLM TTFT counts the first non-empty choices event; llmload requires generated output."
            .into(),
        "vLLM E2EL = llmload e2e_latency; vLLM TPOT and ITL have llmload's definitions.".into(),
    ];
    let mut unmapped = vec![
        "ttfot".to_string(),
        "request_latency".into(),
        "tpot_incl_ttft".into(),
        "decode_rate".into(),
        "dispatch_delay".into(),
        "scheduled_latency".into(),
        "concurrency.mean".into(),
    ];
    for (i, o) in objs.iter().enumerate() {
        let at = if objs.len() > 1 {
            format!("result[{i}]")
        } else {
            "result".to_string()
        };
        if !o.is_object() || !is_vllm(o) {
            return Err(import_err(
                path,
                VLLM,
                format!(
                    "{at}: not a vllm bench serve result (no \"request_throughput\" or \"mean_ttft_ms\")"
                ),
            ));
        }
        if model.is_empty()
            && let Some(m) = o.get("model_id").and_then(Value::as_str)
        {
            model = m.to_string();
        }
        let rate = match o.get("request_rate") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "inf" => None,
            Some(Value::Number(n)) => n.as_f64().filter(|r| r.is_finite()),
            Some(other) => {
                return Err(import_err(
                    path,
                    VLLM,
                    format!("{at}.request_rate should be a number or \"inf\", found {other}"),
                ));
            }
        };
        let maxc = num_at(path, VLLM, o, "max_concurrency", &at)?;
        let burst = num_at(path, VLLM, o, "burstiness", &at)?;
        let kind = match (rate, maxc) {
            (Some(_), _) if burst.is_some_and(|b| b != 1.0) => "gamma",
            (Some(_), _) => "poisson",
            (None, Some(_)) => "concurrent",
            (None, None) => "throughput",
        };
        let mut v = BTreeMap::new();
        for (src, dst) in [
            ("ttft", "ttft"),
            ("tpot", "tpot"),
            ("itl", "itl"),
            ("e2el", "e2e_latency"),
        ] {
            for (stat, ours) in [("mean", "mean"), ("median", "p50"), ("std", "stddev")] {
                if let Some(x) = num_at(path, VLLM, o, &format!("{stat}_{src}_ms"), &at)? {
                    v.insert(format!("{dst}.{ours}"), x / 1000.0);
                }
            }
            for (p, ours) in [
                ("p50", "p50"),
                ("p90", "p90"),
                ("p95", "p95"),
                ("p99", "p99"),
                ("p99.9", "p999"),
            ] {
                if let Some(x) = num_at(path, VLLM, o, &format!("{p}_{src}_ms"), &at)? {
                    v.insert(format!("{dst}.{ours}"), x / 1000.0);
                }
            }
        }
        // Exact TTFT distribution from the per-request list, when saved.
        if let Some(list) = o.get("ttfts").and_then(Value::as_array)
            && !list.is_empty()
        {
            let mut xs = Vec::with_capacity(list.len());
            for (j, x) in list.iter().enumerate() {
                xs.push(x.as_f64().ok_or_else(|| {
                    import_err(
                        path,
                        VLLM,
                        format!("{at}.ttfts[{j}] should be a number (seconds), found {x}"),
                    )
                })?);
            }
            if let Some(s) = Summary::from_samples(&mut xs) {
                for st in flat::STATS {
                    if let Some(val) = s.get(st) {
                        v.insert(format!("ttft.{st}"), val);
                    }
                }
            }
        }
        for (src, dst) in [
            ("request_throughput", "requests_per_s"),
            ("output_throughput", "output_tokens_per_s"),
            ("total_token_throughput", "total_tokens_per_s"),
            ("request_goodput", "goodput_requests_per_s"),
            ("max_concurrent_requests", "concurrency.max"),
        ] {
            if let Some(x) = num_at(path, VLLM, o, src, &at)? {
                v.insert(dst.to_string(), x);
            }
        }
        let completed = num_at(path, VLLM, o, "completed", &at)?;
        let failed = num_at(path, VLLM, o, "failed", &at)?;
        match (completed, failed) {
            (Some(c), Some(f)) if c + f > 0.0 => {
                v.insert("error_rate".into(), f / (c + f));
            }
            _ => {
                if !unmapped.iter().any(|u| u.starts_with("error_rate")) {
                    unmapped.push("error_rate (the result has no \"failed\" count)".into());
                }
            }
        }
        if let Some(c) = completed.filter(|c| *c > 0.0) {
            if let Some(t) = num_at(path, VLLM, o, "total_output_tokens", &at)? {
                v.insert("output_tokens.mean".into(), t / c);
            }
            if let Some(t) = num_at(path, VLLM, o, "total_input_tokens", &at)? {
                v.insert("prompt_tokens.mean".into(), t / c);
            }
            v.insert("output_tokens.count".into(), c);
        }
        if let (Some(r), Some(a)) = (rate.filter(|r| *r > 0.0), v.get("requests_per_s")) {
            v.insert("achieved_ratio".into(), a / r);
        }
        if !v.contains_key("e2e_latency.mean")
            && !unmapped.iter().any(|u| u.starts_with("e2e_latency"))
        {
            unmapped.push("e2e_latency (run vllm bench with --percentile-metrics ttft,tpot,itl,e2el to record it)".into());
        }
        steps.push(StepData {
            kind: kind.to_string(),
            rate,
            concurrency: maxc,
            values: v,
        });
    }
    notes.push("vLLM reports mean, median, std and the --metric-percentiles it was given; min, max and other percentiles are not in its result.".into());
    Ok(RunData {
        name: run_name(path),
        source: Source::VllmBench,
        path: path.to_path_buf(),
        model,
        labels: BTreeMap::new(),
        steps,
        breaking_point: None,
        unmapped,
        notes,
    })
}
