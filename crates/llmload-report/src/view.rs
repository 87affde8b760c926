//! Typed, absence-tolerant views of the parts of a results file that other crates fill in
//! (`benchmark.sla`, `benchmark.server`, `benchmark.gpu`, `extra["sweep"]`,
//! `extra["breaking_point"]`, `extra["sla_tiers"]`), and the derived per-step figures every
//! renderer shares (load axis, error rate). The exact JSON paths read are listed in
//! `docs/reports.md`.

use std::collections::BTreeMap;

use llmload_core::{Benchmark, Results};
use serde::Deserialize;
use serde_json::Value;

/// Error rate of a step: `errored / (completed + errored)`; cancelled requests (cut at the stop
/// condition) and dropped arrivals are not counted. `None` when no request finished.
pub fn error_rate(b: &Benchmark) -> Option<f64> {
    let n = b.requests.completed + b.requests.errored;
    (n > 0).then(|| b.requests.errored as f64 / n as f64)
}

/// Which quantity the charts' x axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadAxis {
    /// Requested (offered) rate, req/s; steps without one (synchronous, throughput) are placed
    /// at their achieved rate.
    Rate,
    /// Concurrency (closed-loop steps).
    Concurrency,
    /// Neither is known: the step number.
    Step,
}

impl LoadAxis {
    pub fn of(results: &Results) -> LoadAxis {
        let bs = &results.benchmarks;
        if bs.iter().any(|b| b.profile.rate.is_some()) {
            LoadAxis::Rate
        } else if !bs.is_empty() && bs.iter().all(|b| step_concurrency(b).is_some()) {
            LoadAxis::Concurrency
        } else {
            LoadAxis::Step
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LoadAxis::Rate => "offered rate (req/s)",
            LoadAxis::Concurrency => "concurrency",
            LoadAxis::Step => "step",
        }
    }

    /// The x value of step `i`.
    pub fn x(self, i: usize, b: &Benchmark) -> f64 {
        match self {
            LoadAxis::Rate => b.profile.rate.unwrap_or(b.throughput.requests_per_s),
            LoadAxis::Concurrency => step_concurrency(b).unwrap_or(0.0),
            LoadAxis::Step => (i + 1) as f64,
        }
    }
}

/// Concurrency of a closed-loop step: the profile's, or 1 for `synchronous`.
pub fn step_concurrency(b: &Benchmark) -> Option<f64> {
    b.profile
        .concurrency
        .map(|c| c as f64)
        .or_else(|| (b.profile.kind == "synchronous").then_some(1.0))
}

/// The load of a step as the console prints it: `sync`, `c=8`, `max c=64`, `poisson 5 r/s`.
pub fn step_label(b: &Benchmark) -> String {
    let p = &b.profile;
    match (p.kind.as_str(), p.rate, p.concurrency) {
        ("synchronous", _, _) => "sync".into(),
        ("concurrent", _, Some(c)) => format!("c={c}"),
        ("throughput", _, Some(c)) => format!("max c={c}"),
        (k, Some(r), _) => format!("{k} {} r/s", num(r)),
        (k, None, Some(c)) => format!("{k} c={c}"),
        (k, None, None) => k.to_string(),
    }
}

/// A number without needless digits: `5`, `2.5`, `0.125`, `1234.6`.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    };
    trim_zeros(&s)
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Fixed-point with `d` decimals (tables: columns line up).
pub fn fixed(v: Option<f64>, d: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.d$}"),
        Some(v) => format!("{v}"),
        None => "-".into(),
    }
}

/// Tier boundaries of one metric (DESIGN §5). For "lower is better" metrics a value below
/// `excellent` is excellent, below `acceptable` acceptable, up to `degraded` degraded, above
/// it breaking. For "higher is better" metrics (decode rate) the comparisons are reversed.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct TierBounds {
    pub excellent: f64,
    pub acceptable: f64,
    pub degraded: f64,
}

/// SLA tier table; read from `extra["sla_tiers"]` when the run recorded one, else the defaults
/// of DESIGN §5.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SlaTiers {
    /// Seconds.
    pub ttft_s: TierBounds,
    /// Tokens per second (higher is better).
    pub decode_rate: TierBounds,
    /// Percent (0-100).
    pub kv_cache_pct: TierBounds,
    /// Requests waiting in the server queue.
    pub queue_depth: TierBounds,
}

impl Default for SlaTiers {
    fn default() -> Self {
        Self {
            ttft_s: TierBounds {
                excellent: 0.5,
                acceptable: 1.0,
                degraded: 2.0,
            },
            decode_rate: TierBounds {
                excellent: 50.0,
                acceptable: 20.0,
                degraded: 10.0,
            },
            kv_cache_pct: TierBounds {
                excellent: 70.0,
                acceptable: 85.0,
                degraded: 95.0,
            },
            queue_depth: TierBounds {
                excellent: 0.0,
                acceptable: 1.0,
                degraded: 5.0,
            },
        }
    }
}

impl SlaTiers {
    pub fn of(results: &Results) -> SlaTiers {
        results
            .extra
            .get("sla_tiers")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// A step's SLA classification as the sweep part records it in `benchmark.sla`. Every field is
/// optional; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StepSla {
    /// Tier per metric: `{"ttft": "excellent", "decode_rate": "degraded", ...}`.
    pub tiers: BTreeMap<String, String>,
    /// The step's overall tier (the worst of its metrics), when recorded.
    #[serde(alias = "overall")]
    pub tier: Option<String>,
    /// Whether the step met the SLA (breaking-point definition).
    #[serde(alias = "passed", alias = "meets_sla")]
    pub pass: Option<bool>,
    /// The reasons it failed, when it did.
    #[serde(alias = "reasons")]
    pub failures: Vec<String>,
}

impl StepSla {
    pub fn of(b: &Benchmark) -> Option<StepSla> {
        let v = b.sla.as_ref()?;
        serde_json::from_value(v.clone()).ok()
    }

    /// The worst tier of the step, from `tier` or the per-metric tiers.
    pub fn overall(&self) -> Option<String> {
        if let Some(t) = &self.tier {
            return Some(t.clone());
        }
        self.tiers.values().max_by_key(|t| tier_rank(t)).cloned()
    }
}

/// Order of tiers, worst last.
pub fn tier_rank(t: &str) -> u8 {
    match t {
        "excellent" => 0,
        "acceptable" => 1,
        "degraded" => 2,
        "breaking" => 3,
        _ => 4,
    }
}

/// The breaking point recorded by `llmload sweep` in `extra["breaking_point"]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BreakingPoint {
    /// Maximum sustainable rate under the SLA, req/s.
    #[serde(alias = "max_sustainable_rate", alias = "max_rate")]
    pub rate: Option<f64>,
    /// Maximum sustainable concurrency under the SLA (concurrency ladders).
    #[serde(alias = "max_sustainable_concurrency", alias = "max_concurrency")]
    pub concurrency: Option<f64>,
    /// The metric that limits it (`ttft_p95`, `error_rate`, `queue`, ...).
    #[serde(alias = "limiting_metric", alias = "limited_by")]
    pub limiting: Option<String>,
    /// Free-text reason.
    pub reason: Option<String>,
    /// Output tokens/s at the breaking point, when recorded.
    pub output_tokens_per_s: Option<f64>,
    /// Whether the sweep found one (false: every step passed).
    pub found: Option<bool>,
}

impl BreakingPoint {
    pub fn of(results: &Results) -> Option<BreakingPoint> {
        let v = results.extra.get("breaking_point")?;
        if v.is_null() {
            return None;
        }
        let bp: BreakingPoint = serde_json::from_value(v.clone()).ok()?;
        (bp.rate.is_some() || bp.concurrency.is_some()).then_some(bp)
    }

    /// Its x on the given axis.
    pub fn x(&self, axis: LoadAxis) -> Option<f64> {
        match axis {
            LoadAxis::Rate => self.rate,
            LoadAxis::Concurrency => self.concurrency,
            LoadAxis::Step => None,
        }
    }
}

/// The sweep summary in `extra["sweep"]` (only what the report shows).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SweepInfo {
    pub mode: Option<String>,
    #[serde(alias = "over_saturated")]
    pub oversaturated: Option<bool>,
    pub notes: Vec<String>,
}

impl SweepInfo {
    pub fn of(results: &Results) -> Option<SweepInfo> {
        serde_json::from_value(results.extra.get("sweep")?.clone()).ok()
    }
}

/// One time series: `t` seconds from the step start, `v` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub t: Vec<f64>,
    pub v: Vec<f64>,
}

fn f64_array(v: Option<&Value>) -> Option<Vec<f64>> {
    let a = v?.as_array()?;
    Some(a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
}

/// The first present key among `names` of a JSON object.
fn first<'a>(obj: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n))
}

fn series_from(obj: &Value, t: &[f64], names: &[&str], label: &str, scale: f64) -> Option<Series> {
    let v = f64_array(first(obj, names))?;
    let n = v.len().min(t.len());
    if n == 0 {
        return None;
    }
    Some(downsample(
        Series {
            name: label.to_string(),
            t: t[..n].to_vec(),
            v: v[..n].iter().map(|x| x * scale).collect(),
        },
        MAX_SERIES_POINTS,
    ))
}

/// Points drawn per recorded time series at most.
pub const MAX_SERIES_POINTS: usize = 300;

/// At most `max` points for drawing: consecutive samples are grouped into `max` buckets, each
/// drawn at its mean time with the mean of its finite values (NaN when none).
pub fn downsample(s: Series, max: usize) -> Series {
    let n = s.t.len().min(s.v.len());
    if n <= max || max == 0 {
        return s;
    }
    let mut out = Series {
        name: s.name.clone(),
        t: Vec::with_capacity(max),
        v: Vec::with_capacity(max),
    };
    for b in 0..max {
        let (lo, hi) = (b * n / max, ((b + 1) * n / max).max(b * n / max + 1));
        let ts = &s.t[lo..hi];
        let vs: Vec<f64> = s.v[lo..hi]
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        out.t.push(ts.iter().sum::<f64>() / ts.len() as f64);
        out.v.push(if vs.is_empty() {
            f64::NAN
        } else {
            vs.iter().sum::<f64>() / vs.len() as f64
        });
    }
    out
}

/// Server time series of a step (`benchmark.server.series`): waiting queue, running, KV cache
/// usage in percent. Times are shifted to start at 0 when they look absolute.
#[derive(Debug, Clone, Default)]
pub struct ServerSeries {
    pub waiting: Option<Series>,
    pub running: Option<Series>,
    pub kv_cache_pct: Option<Series>,
}

impl ServerSeries {
    pub fn of(b: &Benchmark) -> ServerSeries {
        let Some(series) = b.server.as_ref().and_then(|s| s.get("series")) else {
            return ServerSeries::default();
        };
        let Some(t) = f64_array(series.get("t")).map(|t| rebase(t, b.window.start_s)) else {
            return ServerSeries::default();
        };
        let kv = series_from(
            series,
            &t,
            &[
                "kv_cache_usage",
                "kv_cache_usage_perc",
                "gpu_cache_usage_perc",
            ],
            "KV cache usage %",
            1.0,
        )
        .map(|mut s| {
            // vLLM's gauge is a fraction in [0, 1]; accept percent too.
            if s.v.iter().all(|x| x.is_nan() || *x <= 1.0) {
                s.v.iter_mut().for_each(|x| *x *= 100.0);
            }
            s
        });
        ServerSeries {
            waiting: series_from(
                series,
                &t,
                &["waiting", "num_requests_waiting"],
                "server waiting",
                1.0,
            ),
            running: series_from(
                series,
                &t,
                &["running", "num_requests_running"],
                "server running",
                1.0,
            ),
            kv_cache_pct: kv,
        }
    }
}

/// GPU utilisation series of a step (`benchmark.gpu.gpus[i].series`), one per GPU.
pub fn gpu_utilization(b: &Benchmark) -> Vec<Series> {
    let Some(gpus) = b
        .gpu
        .as_ref()
        .and_then(|g| g.get("gpus"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, g) in gpus.iter().enumerate() {
        let idx = g.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
        let Some(s) = g.get("series") else { continue };
        let Some(t) = f64_array(s.get("t")).map(|t| rebase(t, b.window.start_s)) else {
            continue;
        };
        if let Some(series) = series_from(
            s,
            &t,
            &["utilization_pct", "gpu_util", "duty_cycle"],
            &format!("GPU {idx} util %"),
            1.0,
        ) {
            out.push(series);
        }
    }
    out
}

/// Times recorded on the run clock are moved to the step start; times already relative are
/// kept.
fn rebase(t: Vec<f64>, start: f64) -> Vec<f64> {
    match t.first() {
        Some(&t0) if start > 0.0 && t0 >= start * 0.5 => t.into_iter().map(|x| x - start).collect(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(5.0), "5");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(1234.56), "1234.6");
        assert_eq!(fixed(None, 2), "-");
        assert_eq!(fixed(Some(1.0), 3), "1.000");
    }

    #[test]
    fn error_rate_ignores_cancelled() {
        let mut b = Benchmark::default();
        assert_eq!(error_rate(&b), None);
        b.requests.completed = 99;
        b.requests.errored = 1;
        b.requests.cancelled = 50;
        assert_eq!(error_rate(&b), Some(0.01));
    }

    #[test]
    fn sla_views_tolerate_absence_and_aliases() {
        let mut b = Benchmark::default();
        assert!(StepSla::of(&b).is_none());
        b.sla = Some(
            serde_json::json!({"tiers": {"ttft": "acceptable", "kv_cache": "degraded"}, "passed": false, "unknown": 1}),
        );
        let s = StepSla::of(&b).unwrap();
        assert_eq!(s.overall().as_deref(), Some("degraded"));
        assert_eq!(s.pass, Some(false));
        let mut r = Results {
            schema: "llmload.results/v1".into(),
            tool: Default::default(),
            run: Default::default(),
            benchmarks: vec![],
            extra: Default::default(),
        };
        assert!(BreakingPoint::of(&r).is_none());
        r.extra.insert(
            "breaking_point".into(),
            serde_json::json!({"max_sustainable_rate": 4.2, "limiting_metric": "ttft_p95"}),
        );
        let bp = BreakingPoint::of(&r).unwrap();
        assert_eq!(bp.rate, Some(4.2));
        assert_eq!(bp.limiting.as_deref(), Some("ttft_p95"));
        assert_eq!(SlaTiers::of(&r), SlaTiers::default());
    }

    #[test]
    fn long_series_are_downsampled_for_drawing() {
        let s = Series {
            name: "x".into(),
            t: (0..1000).map(f64::from).collect(),
            v: (0..1000)
                .map(|i| if i < 2 { f64::NAN } else { 1.0 })
                .collect(),
        };
        let d = downsample(s, 10);
        assert_eq!(d.t.len(), 10);
        assert_eq!(d.t[0], 49.5);
        assert!(d.v.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn server_and_gpu_series_are_read_defensively() {
        let mut b = Benchmark::default();
        b.window.start_s = 100.0;
        assert!(ServerSeries::of(&b).waiting.is_none());
        b.server = Some(serde_json::json!({"series": {"t": [100.0, 101.0, 102.0],
            "waiting": [0, 2, 3], "kv_cache_usage": [0.5, 0.9, "x"]}}));
        let s = ServerSeries::of(&b);
        assert_eq!(s.waiting.as_ref().unwrap().t, vec![0.0, 1.0, 2.0]);
        let kv = s.kv_cache_pct.unwrap();
        assert_eq!(kv.v[..2], [50.0, 90.0]);
        assert!(kv.v[2].is_nan());
        b.gpu = Some(
            serde_json::json!({"gpus": [{"index": 3, "series": {"t": [0.0, 1.0], "utilization_pct": [10, 90]}}, {"index": 4}]}),
        );
        let g = gpu_utilization(&b);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name, "GPU 3 util %");
    }
}
