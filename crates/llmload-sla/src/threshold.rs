//! CI thresholds, k6-style: `ttft.p95<2s`, `error_rate<5%`, `decode_rate.mean>30`.
//!
//! Grammar: `METRIC[.STAT] OP NUMBER[UNIT]`, spaces allowed between the parts.
//! - METRIC: a per-request distribution by short or results name (`ttft`, `ttft_s`, `tpot`,
//!   `itl`, `e2e`, `decode_rate`, ...) followed by a statistic (`count mean stddev min max p50
//!   median p90 p95 p99 p999`); a benchmark figure (`error_rate`, `requests_per_s`,
//!   `output_tokens_per_s`, `total_tokens_per_s`, `goodput_requests_per_s`,
//!   `concurrency.mean`, `concurrency.max`, ...); or a dotted path into the benchmark's
//!   `server` or `gpu` section (`server.kv_cache_usage.max`).
//! - OP: `<  <=  >  >=  ==  !=`.
//! - UNIT: must fit the metric (see [`Dimension`]).

use std::fmt;
use std::str::FromStr;

use llmload_core::Benchmark;
use serde::Serialize;
use serde_json::Value;

use crate::error::ExprError;
use crate::units::{self, Dimension};

/// The exit status of a run or sweep in which any threshold failed (k6's convention).
pub const EXIT_THRESHOLD_FAILED: i32 = 99;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// `value OP limit`. `==` and `!=` compare with a relative tolerance of 1e-9, so that
    /// `100ms` equals a stored `0.1`.
    pub fn holds(self, value: f64, limit: f64) -> bool {
        let eq = (value - limit).abs() <= 1e-9 * value.abs().max(limit.abs()).max(1e-300);
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
            Op::Eq => eq,
            Op::Ne => !eq,
        }
    }

    /// Parses an operator at the start of `s`; returns it and its length.
    pub(crate) fn lex(s: &str) -> Option<(Op, usize)> {
        for (t, op) in [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if s.starts_with(t) {
                return Some((op, t.len()));
            }
        }
        None
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-request distributions of `Benchmark::metrics`: (results name, short name, dimension).
pub const DISTRIBUTIONS: [(&str, &str, Dimension); 14] = [
    ("ttft_s", "ttft", Dimension::Time),
    ("ttfot_s", "ttfot", Dimension::Time),
    ("e2e_latency_s", "e2e_latency", Dimension::Time),
    ("request_latency_s", "request_latency", Dimension::Time),
    ("tpot_s", "tpot", Dimension::Time),
    ("tpot_incl_ttft_s", "tpot_incl_ttft", Dimension::Time),
    ("itl_s", "itl", Dimension::Time),
    (
        "decode_rate_tokens_per_s",
        "decode_rate",
        Dimension::TokenRate,
    ),
    ("dispatch_delay_s", "dispatch_delay", Dimension::Time),
    ("scheduled_latency_s", "scheduled_latency", Dimension::Time),
    ("generator_lag_s", "generator_lag", Dimension::Time),
    ("client_queue_s", "client_queue", Dimension::Time),
    ("prompt_tokens", "prompt_tokens", Dimension::Count),
    ("output_tokens", "output_tokens", Dimension::Count),
];

/// Statistics a distribution metric takes (those of `Summary::get`).
pub const STATS: [&str; 13] = [
    "count", "mean", "avg", "stddev", "std", "min", "max", "p50", "median", "p90", "p95", "p99",
    "p999",
];

/// Benchmark-level figures: (name, dimension, what it is).
pub const FIGURES: [(&str, Dimension, &str); 11] = [
    (
        "error_rate",
        Dimension::Ratio,
        "errored / (completed + errored); cancelled and dropped requests are not counted",
    ),
    (
        "drop_rate",
        Dimension::Ratio,
        "dropped / (completed + errored + dropped): arrivals refused by --max-concurrency",
    ),
    (
        "requests_per_s",
        Dimension::RequestRate,
        "completed / duration",
    ),
    (
        "output_tokens_per_s",
        Dimension::TokenRate,
        "output tokens / duration",
    ),
    (
        "total_tokens_per_s",
        Dimension::TokenRate,
        "(prompt + output tokens) / duration",
    ),
    (
        "goodput_requests_per_s",
        Dimension::RequestRate,
        "completed requests meeting every --slo / duration",
    ),
    (
        "concurrency.mean",
        Dimension::Count,
        "time-weighted mean of requests in flight",
    ),
    (
        "concurrency.max",
        Dimension::Count,
        "most requests in flight",
    ),
    ("requests.completed", Dimension::Count, "completed requests"),
    ("requests.errored", Dimension::Count, "failed requests"),
    ("duration_s", Dimension::Time, "measurement window length"),
];

/// What a threshold reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricRef {
    /// A statistic of a per-request distribution: `metrics.<name>.<stat>`.
    Distribution { name: String, stat: String },
    /// A benchmark-level figure (one of [`FIGURES`]).
    Figure { name: String },
    /// A dotted path into the `server` or `gpu` section of the benchmark.
    Section { section: String, path: Vec<String> },
}

impl MetricRef {
    /// The canonical name shown in reports: `ttft_s.p95`, `error_rate`, `server.a.b`.
    pub fn canonical(&self) -> String {
        match self {
            MetricRef::Distribution { name, stat } => format!("{name}.{stat}"),
            MetricRef::Figure { name } => name.clone(),
            MetricRef::Section { section, path } => format!("{section}.{}", path.join(".")),
        }
    }
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// As the user wrote it.
    pub expression: String,
    pub metric: MetricRef,
    pub op: Op,
    /// The limit in the metric's base unit (seconds, tok/s, req/s, fraction, count).
    pub limit: f64,
    pub dimension: Dimension,
}

fn perr(expr: &str, at: usize, len: usize, msg: impl Into<String>) -> ExprError {
    ExprError::new("threshold", expr, at, len, msg)
}

fn distribution(name: &str) -> Option<(&'static str, Dimension)> {
    if name == "e2e" {
        return Some(("e2e_latency_s", Dimension::Time));
    }
    DISTRIBUTIONS
        .iter()
        .find(|(long, short, _)| *long == name || *short == name)
        .map(|(long, _, d)| (*long, *d))
}

fn figure(name: &str) -> Option<(&'static str, Dimension)> {
    let name = match name {
        "goodput" => "goodput_requests_per_s",
        "throughput" | "rps" => "requests_per_s",
        other => other,
    };
    FIGURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, d, _)| (*n, *d))
}

impl FromStr for Threshold {
    type Err = ExprError;

    fn from_str(expr: &str) -> Result<Self, ExprError> {
        parse_threshold(expr)
    }
}

/// Parses one threshold expression; the error shows the offending position with a caret.
pub fn parse_threshold(expr: &str) -> Result<Threshold, ExprError> {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    let m0 = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.')) {
        i += 1;
    }
    let m1 = i;
    if m0 == m1 {
        return Err(perr(
            expr,
            m0,
            1,
            "expected a metric name such as ttft.p95, error_rate or requests_per_s",
        ));
    }
    let metric_text = &expr[m0..m1];
    let (metric, dimension) = resolve_metric(expr, metric_text, m0)?;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    let (op, oplen) = match Op::lex(&expr[i..]) {
        Some(x) => x,
        None => {
            let msg = if expr[i..].starts_with('=') {
                "`=` is not an operator: use `==` (or <, <=, >, >=, !=)".to_string()
            } else if i >= expr.len() {
                "expected an operator (<, <=, >, >=, ==, !=) and a value after the metric"
                    .to_string()
            } else {
                format!(
                    "expected an operator (<, <=, >, >=, ==, !=), found `{}`",
                    expr[i..].chars().next().unwrap_or(' ')
                )
            };
            let len = expr[i..].chars().next().map_or(1, char::len_utf8);
            return Err(perr(expr, i, len, msg));
        }
    };
    i += oplen;
    let raw = units::parse_raw(expr, i).map_err(|e| perr(expr, e.at, e.len, e.message))?;
    let limit = units::to_base(&raw, dimension, &metric.canonical())
        .map_err(|e| perr(expr, e.at, e.len, e.message))?;
    Ok(Threshold {
        expression: expr.to_string(),
        metric,
        op,
        limit,
        dimension,
    })
}

fn resolve_metric(expr: &str, text: &str, at: usize) -> Result<(MetricRef, Dimension), ExprError> {
    if text.starts_with('.') || text.ends_with('.') || text.contains("..") {
        return Err(perr(
            expr,
            at,
            text.len(),
            "a metric name cannot have empty parts",
        ));
    }
    let (head, rest) = match text.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (text, None),
    };
    let rest_at = at + head.len() + 1;
    if head == "server" || head == "gpu" || head == "breaking_point" {
        let Some(rest) = rest else {
            let example = if head == "breaking_point" {
                "breaking_point.max_sustainable_rate"
            } else if head == "gpu" {
                "gpu.utilization.mean"
            } else {
                "server.kv_cache_usage.max"
            };
            return Err(perr(
                expr,
                at + head.len(),
                1,
                format!("`{head}` needs a path to a figure, e.g. {example}"),
            ));
        };
        return Ok((
            MetricRef::Section {
                section: head.to_string(),
                path: rest.split('.').map(str::to_string).collect(),
            },
            Dimension::Any,
        ));
    }
    if let Some((name, dim)) = distribution(head) {
        let Some(stat) = rest else {
            return Err(perr(
                expr,
                at + head.len(),
                1,
                format!(
                    "{head} is a distribution: name a statistic, e.g. {head}.p95 (one of {})",
                    STATS.join(", ")
                ),
            ));
        };
        let stat_ok = STATS.contains(&stat) || stat == "p99.9";
        if !stat_ok {
            return Err(perr(
                expr,
                rest_at,
                stat.len(),
                format!(
                    "unknown statistic `{stat}` (one of {}, p99.9)",
                    STATS.join(", ")
                ),
            ));
        }
        let dim = if stat == "count" {
            Dimension::Count
        } else {
            dim
        };
        return Ok((
            MetricRef::Distribution {
                name: name.to_string(),
                stat: stat.to_string(),
            },
            dim,
        ));
    }
    if let Some((name, dim)) = figure(text) {
        return Ok((
            MetricRef::Figure {
                name: name.to_string(),
            },
            dim,
        ));
    }
    if let (Some(_), Some((_, _))) = (rest, figure(head)) {
        return Err(perr(
            expr,
            rest_at,
            text.len() - head.len() - 1,
            format!("{head} is a single figure and takes no statistic"),
        ));
    }
    if head == "concurrency" {
        return Err(perr(
            expr,
            at,
            text.len(),
            "concurrency takes .mean or .max (concurrency.mean, concurrency.max)",
        ));
    }
    let known: Vec<&str> = DISTRIBUTIONS
        .iter()
        .map(|d| d.1)
        .chain(FIGURES.iter().map(|f| f.0))
        .collect();
    Err(perr(
        expr,
        at,
        head.len(),
        format!(
            "unknown metric `{head}` (known: {}, server.<path>, gpu.<path>)",
            known.join(", ")
        ),
    ))
}

/// Parses several expressions (flags or a scenario file's list), stopping at the first error.
pub fn parse_thresholds<I, S>(exprs: I) -> Result<Vec<Threshold>, ExprError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    exprs
        .into_iter()
        .map(|s| parse_threshold(s.as_ref()))
        .collect()
}

/// The outcome of one threshold on one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    pub expression: String,
    /// Canonical metric name: `ttft_s.p95`, `error_rate`, `server.x.y`.
    pub metric: String,
    pub op: Op,
    /// Limit in the metric's base unit.
    pub limit: f64,
    /// Measured value in the same unit; `null` when the benchmark lacks the metric.
    pub value: Option<f64>,
    pub passed: bool,
    /// Why it failed without a value (missing metric, not a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub dimension: Dimension,
}

/// Reads the value a threshold refers to, or says why there is none.
pub fn value_of(metric: &MetricRef, b: &Benchmark) -> Result<f64, String> {
    match metric {
        MetricRef::Distribution { name, stat } => {
            let s = b.metrics.get(name).ok_or_else(|| {
                format!("{name} has no samples in this benchmark (no request produced it)")
            })?;
            s.get(stat)
                .ok_or_else(|| format!("{name} has no statistic `{stat}`"))
        }
        MetricRef::Figure { name } => figure_value(name, b),
        MetricRef::Section { section, .. } if section == "breaking_point" => Err(
            "breaking_point figures belong to a sweep, not to one benchmark: they are checked once per run (check_results)"
                .into(),
        ),
        MetricRef::Section { section, path } => {
            let root = if section == "server" {
                &b.server
            } else {
                &b.gpu
            };
            let root = root
                .as_ref()
                .ok_or_else(|| format!("no {section} metrics were collected for this benchmark"))?;
            let mut v = root;
            for (k, part) in path.iter().enumerate() {
                v = match v {
                    Value::Object(m) => m.get(part),
                    Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                }
                .ok_or_else(|| {
                    format!(
                        "{section}.{} is not in this benchmark's {section} section",
                        path[..=k].join(".")
                    )
                })?;
            }
            v.as_f64()
                .ok_or_else(|| format!("{section}.{} is not a number ({v})", path.join(".")))
        }
    }
}

fn figure_value(name: &str, b: &Benchmark) -> Result<f64, String> {
    let r = &b.requests;
    let finished = r.completed + r.errored;
    Ok(match name {
        "error_rate" => {
            if finished == 0 {
                return Err("no request finished, so there is no error rate".into());
            }
            r.errored as f64 / finished as f64
        }
        "drop_rate" => {
            let all = finished + r.dropped;
            if all == 0 {
                return Err("no request arrived, so there is no drop rate".into());
            }
            r.dropped as f64 / all as f64
        }
        "requests_per_s" => b.throughput.requests_per_s,
        "output_tokens_per_s" => b.throughput.output_tokens_per_s,
        "total_tokens_per_s" => b.throughput.total_tokens_per_s,
        "goodput_requests_per_s" => b.throughput.goodput_requests_per_s.ok_or_else(|| {
            "goodput needs SLOs: give --slo (e.g. --slo ttft=1s) to measure it".to_string()
        })?,
        "concurrency.mean" => b.concurrency.mean,
        "concurrency.max" => b.concurrency.max as f64,
        "requests.completed" => r.completed as f64,
        "requests.errored" => r.errored as f64,
        "duration_s" => b.window.duration_s,
        other => return Err(format!("unknown figure {other}")),
    })
}

/// Checks every threshold against one benchmark. A metric the benchmark lacks, or a value that
/// is not a finite number, fails the threshold with a reason.
pub fn check(thresholds: &[Threshold], b: &Benchmark) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|t| {
            let (value, passed, reason) = match value_of(&t.metric, b) {
                Ok(v) if v.is_finite() => (Some(v), t.op.holds(v, t.limit), None),
                Ok(v) => (
                    None,
                    false,
                    Some(format!("the value is not a finite number ({v})")),
                ),
                Err(why) => (None, false, Some(why)),
            };
            ThresholdResult {
                expression: t.expression.clone(),
                metric: t.metric.canonical(),
                op: t.op,
                limit: t.limit,
                value,
                passed,
                reason,
                dimension: t.dimension,
            }
        })
        .collect()
}

/// The thresholds of one benchmark of a run or sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchmarkThresholds {
    /// Index in `results.benchmarks`.
    pub benchmark: usize,
    /// A short description of the load (`poisson 5 req/s`, `synchronous`).
    pub label: String,
    pub results: Vec<ThresholdResult>,
}

/// Every threshold on every benchmark; goes into `results.json` as `extra["thresholds"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ThresholdReport {
    pub benchmarks: Vec<BenchmarkThresholds>,
    pub passed: usize,
    pub failed: usize,
}

impl ThresholdReport {
    /// 99 when any threshold failed on any benchmark (k6's convention), 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.failed > 0 {
            EXIT_THRESHOLD_FAILED
        } else {
            0
        }
    }

    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

/// A short description of a benchmark's load, for reports.
pub fn load_label(b: &Benchmark) -> String {
    let p = &b.profile;
    match (p.rate, p.concurrency) {
        (Some(r), _) => format!("{} {} req/s", p.kind, units::human(r, Dimension::Count)),
        (None, Some(c)) if p.kind != "synchronous" => format!("{} {c}", p.kind),
        _ => p.kind.clone(),
    }
}

/// Checks every threshold on every benchmark.
pub fn check_all(thresholds: &[Threshold], benchmarks: &[Benchmark]) -> ThresholdReport {
    let mut report = ThresholdReport::default();
    for (i, b) in benchmarks.iter().enumerate() {
        let results = check(thresholds, b);
        let failed = results.iter().filter(|r| !r.passed).count();
        report.failed += failed;
        report.passed += results.len() - failed;
        report.benchmarks.push(BenchmarkThresholds {
            benchmark: i,
            label: load_label(b),
            results,
        });
    }
    report
}

impl Threshold {
    /// Whether the threshold is on the run as a whole (`breaking_point.*`), not per benchmark.
    pub fn is_run_level(&self) -> bool {
        matches!(&self.metric, MetricRef::Section { section, .. } if section == "breaking_point")
    }
}

fn json_path(root: Option<&Value>, section: &str, path: &[String]) -> Result<f64, String> {
    let mut v = root.ok_or_else(|| {
        format!("this run recorded no {section} (only `llmload sweep` finds a breaking point)")
    })?;
    for (k, part) in path.iter().enumerate() {
        v = v.get(part).ok_or_else(|| {
            format!(
                "{section}.{} is not in this run's {section}",
                path[..=k].join(".")
            )
        })?;
    }
    v.as_f64().ok_or_else(|| {
        format!(
            "{section}.{} is not a number ({v}){}",
            path.join("."),
            if v.is_null() {
                ": the sweep found no such level"
            } else {
                ""
            }
        )
    })
}

/// Checks a whole results file: per-benchmark thresholds on every benchmark (or on those in
/// `only`, e.g. a sweep's steps at or below its sustainable level), and run-level thresholds
/// (`breaking_point.max_sustainable_rate>=30`) once against `results.extra["breaking_point"]`,
/// reported as an entry with `benchmark` = the number of benchmarks and label `run`.
pub fn check_results(
    thresholds: &[Threshold],
    results: &llmload_core::Results,
    only: Option<&[usize]>,
) -> ThresholdReport {
    let (run, per): (Vec<Threshold>, Vec<Threshold>) = thresholds
        .iter()
        .cloned()
        .partition(Threshold::is_run_level);
    let mut report = ThresholdReport::default();
    if !per.is_empty() {
        for (i, b) in results.benchmarks.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&i)) {
                continue;
            }
            let r = check(&per, b);
            let failed = r.iter().filter(|x| !x.passed).count();
            report.failed += failed;
            report.passed += r.len() - failed;
            report.benchmarks.push(BenchmarkThresholds {
                benchmark: i,
                label: load_label(b),
                results: r,
            });
        }
    }
    if !run.is_empty() {
        let root = results.extra.get("breaking_point").filter(|v| !v.is_null());
        let r: Vec<ThresholdResult> = run
            .iter()
            .map(|t| {
                let found = match &t.metric {
                    MetricRef::Section { section, path } => json_path(root, section, path),
                    other => Err(format!("{} is not a run-level figure", other.canonical())),
                };
                let (value, passed, reason) = match found {
                    Ok(v) if v.is_finite() => (Some(v), t.op.holds(v, t.limit), None),
                    Ok(v) => (None, false, Some(format!("the value is not finite ({v})"))),
                    Err(why) => (None, false, Some(why)),
                };
                ThresholdResult {
                    expression: t.expression.clone(),
                    metric: t.metric.canonical(),
                    op: t.op,
                    limit: t.limit,
                    value,
                    passed,
                    reason,
                    dimension: t.dimension,
                }
            })
            .collect();
        let failed = r.iter().filter(|x| !x.passed).count();
        report.failed += failed;
        report.passed += r.len() - failed;
        report.benchmarks.push(BenchmarkThresholds {
            benchmark: results.benchmarks.len(),
            label: "run".into(),
            results: r,
        });
    }
    report
}

/// Reads a scenario file's `thresholds` entry: a list of expression strings.
pub fn from_value_list(v: &Value) -> Result<Vec<Threshold>, String> {
    let list = v.as_array().ok_or_else(|| {
        "thresholds must be a list of strings such as [\"ttft.p95<2s\"]".to_string()
    })?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let s = e
                .as_str()
                .ok_or_else(|| format!("thresholds[{i}] is not a string: {e}"))?;
            parse_threshold(s).map_err(|e| format!("thresholds[{i}]: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmload_core::Summary;

    fn bench() -> Benchmark {
        let mut b = Benchmark::default();
        let s = |x: f64| Summary {
            count: 100,
            mean: x,
            stddev: x / 10.0,
            min: x / 2.0,
            p50: x,
            p90: x * 1.5,
            p95: x * 2.0,
            p99: x * 3.0,
            p999: x * 4.0,
            max: x * 5.0,
        };
        b.metrics.ttft_s = Some(s(0.5)); // p95 = 1.0 s
        b.metrics.itl_s = Some(s(0.02)); // p99 = 60 ms
        b.metrics.decode_rate_tokens_per_s = Some(s(40.0));
        b.metrics.e2e_latency_s = Some(s(2.0));
        b.requests.completed = 95;
        b.requests.errored = 5;
        b.throughput.requests_per_s = 10.0;
        b.throughput.output_tokens_per_s = 1200.0;
        b.throughput.total_tokens_per_s = 2000.0;
        b.concurrency.mean = 7.5;
        b.concurrency.max = 12;
        b.server = Some(serde_json::json!({"kv_cache_usage": {"max": 0.42}, "name": "x"}));
        b
    }

    fn pass(expr: &str) -> bool {
        let t = parse_threshold(expr).unwrap_or_else(|e| panic!("{e}"));
        let r = check(&[t], &bench());
        r[0].passed
    }

    #[test]
    fn every_operator() {
        // ttft.p95 is exactly 1.0 s.
        assert!(pass("ttft.p95<1.1s") && !pass("ttft.p95<1s"));
        assert!(pass("ttft.p95<=1s") && !pass("ttft.p95<=999ms"));
        assert!(pass("ttft.p95>999ms") && !pass("ttft.p95>1s"));
        assert!(pass("ttft.p95>=1s") && !pass("ttft.p95>=1001ms"));
        assert!(pass("ttft.p95==1000ms") && !pass("ttft.p95==1.001s"));
        assert!(pass("ttft.p95!=2s") && !pass("ttft.p95!=1s"));
    }

    #[test]
    fn every_unit_and_figure() {
        assert!(pass("itl.p99<=80ms"));
        assert!(pass("itl.p99 < 60001us"));
        assert!(pass("itl.p99 > 59999µs"));
        assert!(pass("error_rate<=5%") && !pass("error_rate<5%"));
        assert!(pass("error_rate<0.06"));
        assert!(pass("decode_rate.mean>30") && pass("decode_rate.mean>30tok/s"));
        assert!(pass("requests_per_s>=10") && pass("requests_per_s>=10req/s"));
        assert!(pass("output_tokens_per_s>1000") && pass("output_tokens_per_s>1000tok/s"));
        assert!(pass("total_tokens_per_s==2000"));
        assert!(pass("concurrency.mean<8") && pass("concurrency.max==12"));
        assert!(pass("e2e.p99<10s") && pass("e2e_latency_s.p95<5s"));
        assert!(pass("ttft_s.p99.9<3s") && pass("ttft.median==500ms"));
        assert!(pass("ttft.count>=100"));
        assert!(pass("server.kv_cache_usage.max<50%"));
        assert!(pass("requests.completed==95"));
    }

    #[test]
    fn missing_metrics_fail_with_a_reason() {
        let ts = parse_thresholds([
            "tpot.p95<50ms",
            "goodput_requests_per_s>1",
            "gpu.util.mean<90%",
            "server.missing.x<1",
            "server.name<1",
        ])
        .unwrap();
        let r = check(&ts, &bench());
        assert!(r.iter().all(|r| !r.passed && r.value.is_none()));
        assert!(r[0].reason.as_deref().unwrap().contains("no samples"));
        assert!(r[1].reason.as_deref().unwrap().contains("--slo"));
        assert!(r[2].reason.as_deref().unwrap().contains("no gpu metrics"));
        assert!(r[3].reason.as_deref().unwrap().contains("server.missing"));
        assert!(r[4].reason.as_deref().unwrap().contains("not a number"));
        let empty = Benchmark::default();
        let r = check(&[parse_threshold("error_rate<1%").unwrap()], &empty);
        assert!(
            !r[0].passed
                && r[0]
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("no request finished")
        );
    }

    fn caret(expr: &str) -> (String, String) {
        let e = parse_threshold(expr).unwrap_err();
        (e.caret_line(), e.message.clone())
    }

    #[test]
    fn bad_expressions_show_where() {
        let (c, m) = caret("ttft.p95<2xs");
        assert_eq!(c, "          ^^");
        assert!(m.contains("unknown unit"), "{m}");
        let (c, m) = caret("decode_rate.mean>30ms");
        assert_eq!(c, "                   ^^");
        assert!(m.contains("ms on decode_rate_tokens_per_s.mean"), "{m}");
        let (c, m) = caret("error_rate<5ms");
        assert_eq!(c, "            ^^");
        assert!(m.contains("ms on error_rate"), "{m}");
        let (c, m) = caret("ttft.p75<2s");
        assert_eq!(c, "     ^^^");
        assert!(m.contains("unknown statistic"), "{m}");
        let (c, m) = caret("ttft<2s");
        assert_eq!(c, "    ^");
        assert!(m.contains("ttft.p95"), "{m}");
        let (c, m) = caret("tfft.p95<2s");
        assert_eq!(c, "^^^^");
        assert!(m.contains("unknown metric `tfft`"), "{m}");
        let (c, m) = caret("ttft.p95=2s");
        assert_eq!(c, "        ^");
        assert!(m.contains("=="), "{m}");
        let (c, m) = caret("ttft.p95 2s");
        assert_eq!(c, "         ^");
        assert!(m.contains("operator"), "{m}");
        let (c, m) = caret("ttft.p95<");
        assert_eq!(c, "         ^");
        assert!(m.contains("number"), "{m}");
        let (c, m) = caret("ttft.p95<2");
        assert_eq!(c, "         ^");
        assert!(m.contains("needs a unit"), "{m}");
        let (c, _) = caret("error_rate<5");
        assert_eq!(c, "           ^");
        let (c, m) = caret("requests_per_s.p95>3");
        assert_eq!(c, "               ^^^");
        assert!(m.contains("takes no statistic"), "{m}");
        let (c, _) = caret("<2s");
        assert_eq!(c, "^");
        let (_, m) = caret("concurrency<3");
        assert!(m.contains("concurrency.mean"));
        // The rendered error holds the expression and the caret line.
        let e = parse_threshold("ttft.p95<2xs").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid threshold `ttft.p95<2xs`: unknown unit `xs` (known: s, ms, us, %, tok/s, req/s)\n  ttft.p95<2xs\n            ^^"
        );
    }

    #[test]
    fn exit_codes() {
        let b = bench();
        let ok = parse_thresholds(["ttft.p95<2s", "error_rate<10%"]).unwrap();
        let r = check_all(&ok, &[b.clone(), b.clone()]);
        assert_eq!((r.passed, r.failed, r.exit_code()), (4, 0, 0));
        let bad = parse_thresholds(["ttft.p95<2s", "error_rate<1%"]).unwrap();
        let r = check_all(&bad, &[b.clone(), b]);
        assert_eq!((r.passed, r.failed, r.exit_code()), (2, 2, 99));
        assert_eq!(check_all(&[], &[]).exit_code(), 0);
    }

    #[test]
    fn run_level_thresholds_on_the_breaking_point() {
        let mut results = llmload_core::Results {
            schema: llmload_core::SCHEMA.into(),
            tool: Default::default(),
            run: Default::default(),
            benchmarks: vec![bench(), bench()],
            extra: Default::default(),
        };
        let ts = parse_thresholds([
            "breaking_point.max_sustainable_rate>=30",
            "breaking_point.max_sustainable_concurrency>=4",
            "ttft.p95<2s",
        ])
        .unwrap();
        assert!(ts[0].is_run_level() && !ts[2].is_run_level());
        // Per benchmark, a run-level figure is refused with a reason.
        assert!(!check(&ts[..1], &bench())[0].passed);
        let r = check_results(&ts, &results, None);
        assert_eq!((r.passed, r.failed), (2, 2));
        let run = r.benchmarks.last().unwrap();
        assert_eq!((run.benchmark, run.label.as_str()), (2, "run"));
        assert!(
            run.results[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("no breaking_point")
        );
        results.extra.insert(
            "breaking_point".into(),
            serde_json::json!({"max_sustainable_rate": 36.9, "max_sustainable_concurrency": null}),
        );
        let r = check_results(&ts, &results, Some(&[1]));
        assert_eq!(r.benchmarks.len(), 2);
        assert_eq!(r.benchmarks[0].benchmark, 1);
        let run = &r.benchmarks[1].results;
        assert!(run[0].passed && run[0].value == Some(36.9));
        assert!(
            !run[1].passed
                && run[1]
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("found no such level")
        );
        assert_eq!(r.exit_code(), 99);
        let e = parse_threshold("breaking_point<3").unwrap_err();
        assert!(e.message.contains("max_sustainable_rate"));
    }

    #[test]
    fn scenario_lists() {
        let v = serde_json::json!(["ttft.p95<2s", "error_rate<5%"]);
        assert_eq!(from_value_list(&v).unwrap().len(), 2);
        let e = from_value_list(&serde_json::json!(["ttft.p95<2s", 3])).unwrap_err();
        assert!(e.contains("thresholds[1]"));
        let e = from_value_list(&serde_json::json!(["ttft<2s"])).unwrap_err();
        assert!(e.contains("thresholds[0]") && e.contains('^'));
    }
}
