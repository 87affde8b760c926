//! SLA tiers per benchmark: excellent / acceptable / degraded / breaking, for TTFT, decode
//! rate, KV-cache usage and server queue depth (DESIGN §5's default table).
//!
//! Each metric has three bounds, checked in order; the first that holds gives the tier, and a
//! value none holds is `breaking`. The defaults, with their exact boundary semantics:
//!
//! | metric | statistic | excellent | acceptable | degraded | breaking |
//! |---|---|---|---|---|---|
//! | TTFT | p95 | `< 0.5 s` | `< 1.0 s` | `<= 2.0 s` | `> 2.0 s` |
//! | decode rate | p5 (= 1 / TPOT p95) | `> 50 tok/s` | `> 20 tok/s` | `>= 10 tok/s` | `< 10 tok/s` |
//! | KV cache usage | max over the step | `< 70 %` | `< 85 %` | `<= 95 %` | `> 95 %` |
//! | queue depth (waiting) | mean over the step | `<= 0` | `<= 1` | `<= 5` | `> 5` |
//!
//! So TTFT exactly 0.5 s is acceptable, exactly 1.0 s degraded, exactly 2.0 s degraded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ExprError, SlaError};
use crate::slo::{FileFormat, parse_config_text};
use crate::threshold::Op;
use crate::units::{self, Dimension};
use llmload_core::Benchmark;

/// A tier; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Excellent,
    Acceptable,
    Degraded,
    Breaking,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Excellent => "excellent",
            Tier::Acceptable => "acceptable",
            Tier::Degraded => "degraded",
            Tier::Breaking => "breaking",
        }
    }
}

/// One condition `value OP limit` (OP is one of `< <= > >=`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bound {
    pub op: Op,
    pub limit: f64,
}

impl Bound {
    pub fn holds(&self, v: f64) -> bool {
        self.op.holds(v, self.limit)
    }

    fn lower_is_better(&self) -> bool {
        matches!(self.op, Op::Lt | Op::Le)
    }

    /// Parses `< 0.5s`, `>= 10tok/s`, `< 70%` in the metric's dimension.
    pub fn parse(text: &str, dim: Dimension, metric: &str) -> Result<Bound, ExprError> {
        let lead = text.len() - text.trim_start().len();
        let e = |at, len, m: String| ExprError::new("tier bound", text, at, len, m);
        let (op, n) = Op::lex(&text[lead..]).ok_or_else(|| {
            e(
                lead,
                1,
                "expected <, <=, > or >= followed by a value, e.g. \"< 0.5s\"".into(),
            )
        })?;
        if matches!(op, Op::Eq | Op::Ne) {
            return Err(e(lead, n, "a tier bound uses <, <=, > or >=".into()));
        }
        let raw = units::parse_raw(text, lead + n).map_err(|x| e(x.at, x.len, x.message))?;
        let limit = units::to_base(&raw, dim, metric).map_err(|x| e(x.at, x.len, x.message))?;
        Ok(Bound { op, limit })
    }

    fn render(&self, dim: Dimension) -> String {
        format!("{} {}", self.op, units::human(self.limit, dim))
    }
}

/// The bounds and statistic of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierRule {
    /// Which statistic is classified (`p95` of TTFT, `p5` of decode rate, `max`, `mean`).
    pub statistic: String,
    pub excellent: Bound,
    pub acceptable: Bound,
    pub degraded: Bound,
}

impl TierRule {
    fn new(statistic: &str, b: [(Op, f64); 3]) -> Self {
        let mk = |(op, limit)| Bound { op, limit };
        TierRule {
            statistic: statistic.into(),
            excellent: mk(b[0]),
            acceptable: mk(b[1]),
            degraded: mk(b[2]),
        }
    }

    /// The tier of `v`: the first bound that holds, else breaking.
    pub fn classify(&self, v: f64) -> Tier {
        if self.excellent.holds(v) {
            Tier::Excellent
        } else if self.acceptable.holds(v) {
            Tier::Acceptable
        } else if self.degraded.holds(v) {
            Tier::Degraded
        } else {
            Tier::Breaking
        }
    }

    /// Bounds must all point the same way and be ordered (looser from excellent to degraded).
    fn validate(&self, metric: &str) -> Result<(), String> {
        let bs = [self.excellent, self.acceptable, self.degraded];
        let dir = bs[0].lower_is_better();
        if bs.iter().any(|b| b.lower_is_better() != dir) {
            return Err(format!(
                "{metric}: the bounds mix < and >; use < or <= for lower-is-better metrics and > or >= for higher-is-better ones"
            ));
        }
        if bs.iter().any(|b| !b.limit.is_finite()) {
            return Err(format!("{metric}: every bound must be a finite number"));
        }
        let ordered = bs.windows(2).all(|w| {
            if dir {
                w[0].limit <= w[1].limit
            } else {
                w[0].limit >= w[1].limit
            }
        });
        if !ordered {
            return Err(format!(
                "{metric}: bounds must loosen from excellent to acceptable to degraded"
            ));
        }
        Ok(())
    }

    /// Human text of the rule: `excellent < 500 ms, acceptable < 1 s, degraded <= 2 s`.
    pub fn describe(&self, dim: Dimension) -> String {
        format!(
            "excellent {}, acceptable {}, degraded {}, else breaking",
            self.excellent.render(dim),
            self.acceptable.render(dim),
            self.degraded.render(dim)
        )
    }
}

/// The tier table. [`TierConfig::default`] is DESIGN §5's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierConfig {
    pub ttft: TierRule,
    pub decode_rate: TierRule,
    pub kv_cache_usage: TierRule,
    pub queue_depth: TierRule,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            ttft: TierRule::new("p95", [(Op::Lt, 0.5), (Op::Lt, 1.0), (Op::Le, 2.0)]),
            decode_rate: TierRule::new("p5", [(Op::Gt, 50.0), (Op::Gt, 20.0), (Op::Ge, 10.0)]),
            kv_cache_usage: TierRule::new("max", [(Op::Lt, 0.70), (Op::Lt, 0.85), (Op::Le, 0.95)]),
            queue_depth: TierRule::new("mean", [(Op::Le, 0.0), (Op::Le, 1.0), (Op::Le, 5.0)]),
        }
    }
}

impl TierConfig {
    /// The table as `results.extra["sla_tiers"]`: per metric the three bounds
    /// (`ttft_s` seconds, `decode_rate` tok/s, `kv_cache_pct` percent, `queue_depth`
    /// requests), with each bound's operator and the statistic classified.
    pub fn to_results_value(&self) -> Value {
        let rule = |r: &TierRule, scale: f64| {
            serde_json::json!({
                "excellent": r.excellent.limit * scale,
                "acceptable": r.acceptable.limit * scale,
                "degraded": r.degraded.limit * scale,
                "operators": [r.excellent.op.as_str(), r.acceptable.op.as_str(), r.degraded.op.as_str()],
                "statistic": r.statistic,
            })
        };
        serde_json::json!({
            "ttft_s": rule(&self.ttft, 1.0),
            "decode_rate": rule(&self.decode_rate, 1.0),
            "kv_cache_pct": rule(&self.kv_cache_usage, 100.0),
            "queue_depth": rule(&self.queue_depth, 1.0),
        })
    }
}

const TTFT_STATS: [&str; 9] = [
    "mean", "median", "p50", "p90", "p95", "p99", "p999", "max", "min",
];
const DECODE_STATS: [&str; 9] = [
    "mean", "median", "p50", "min", "p10", "p5", "p1", "p0.1", "max",
];

impl TierConfig {
    /// Reads a TOML (or JSON) tier table; every key is optional and overrides the default:
    ///
    /// ```toml
    /// [ttft]
    /// statistic = "p99"
    /// excellent = "< 300ms"
    /// acceptable = "< 800ms"
    /// degraded = "<= 2s"
    /// [decode_rate]
    /// statistic = "mean"
    /// [kv_cache_usage]
    /// degraded = "<= 90%"
    /// [queue_depth]
    /// statistic = "max"
    /// ```
    /// The tables may also sit under `[tiers]`.
    pub fn from_text(text: &str, format: FileFormat, file: &str) -> Result<TierConfig, SlaError> {
        let v = parse_config_text(text, format, file)?;
        let root = v.get("tiers").unwrap_or(&v);
        let Value::Object(map) = root else {
            return Err(SlaError::config(
                file,
                "expected tables [ttft], [decode_rate], ...",
            ));
        };
        let mut cfg = TierConfig::default();
        for (key, val) in map {
            let (rule, dim, stats): (&mut TierRule, Dimension, &[&str]) = match key.as_str() {
                "ttft" => (&mut cfg.ttft, Dimension::Time, &TTFT_STATS),
                "decode_rate" => (&mut cfg.decode_rate, Dimension::TokenRate, &DECODE_STATS),
                "kv_cache_usage" => (&mut cfg.kv_cache_usage, Dimension::Ratio, &["max", "mean"]),
                "queue_depth" => (&mut cfg.queue_depth, Dimension::Count, &["mean", "max"]),
                other => {
                    return Err(SlaError::config(
                        file,
                        format!(
                            "unknown tier metric `{other}` (one of ttft, decode_rate, kv_cache_usage, queue_depth)"
                        ),
                    ));
                }
            };
            let Value::Object(t) = val else {
                return Err(SlaError::config(file, format!("[{key}] must be a table")));
            };
            for (k, x) in t {
                let s = x.as_str().ok_or_else(|| {
                    SlaError::config(
                        file,
                        format!("{key}.{k} must be a string such as \"< 0.5s\""),
                    )
                })?;
                let slot = match k.as_str() {
                    "statistic" => {
                        if !stats.contains(&s) {
                            return Err(SlaError::config(
                                file,
                                format!("{key}.statistic `{s}` is not one of {}", stats.join(", ")),
                            ));
                        }
                        rule.statistic = s.to_string();
                        continue;
                    }
                    "excellent" => &mut rule.excellent,
                    "acceptable" => &mut rule.acceptable,
                    "degraded" => &mut rule.degraded,
                    other => {
                        return Err(SlaError::config(
                            file,
                            format!(
                                "{key}.{other}: unknown key (statistic, excellent, acceptable, degraded; breaking is what is left)"
                            ),
                        ));
                    }
                };
                *slot = Bound::parse(s, dim, key)
                    .map_err(|e| SlaError::config(file, format!("{key}.{k}: {e}")))?;
            }
            rule.validate(key).map_err(|m| SlaError::config(file, m))?;
        }
        Ok(cfg)
    }
}

/// Server-side figures over one step's window, filled by the caller from the Prometheus
/// samples of the server (vLLM `/metrics`). `None` where the server did not expose a figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSignals {
    /// Highest KV-cache usage over the step, as a fraction 0..1 (vLLM's `kv_cache_usage_perc`
    /// / `gpu_cache_usage_perc` are fractions despite their names).
    pub kv_usage_max: Option<f64>,
    /// Mean of `num_requests_waiting` over the step's scrapes.
    pub waiting_mean: Option<f64>,
    /// Max of `num_requests_waiting` over the step's scrapes.
    pub waiting_max: Option<f64>,
    /// Share (0..1) of the step's scrapes with `num_requests_waiting > 0`.
    pub waiting_share_above_zero: Option<f64>,
    /// `num_requests_running` samples: (seconds on the run clock, value).
    #[serde(default)]
    pub running: Vec<(f64, f64)>,
    /// Mean server-side TTFT over the step (from the histogram's deltas), seconds.
    pub server_ttft_mean: Option<f64>,
    /// Mean queue time plus mean prefill time over the step (histogram deltas), seconds.
    pub queue_plus_prefill_mean: Option<f64>,
}

impl ServerSignals {
    /// Reads the signals from a benchmark's `server` section as `llmload run` writes it (the
    /// server-metrics window of `llmload-prom`): `kv_cache_usage.max`, `waiting.mean/max`,
    /// the per-scrape `series` (waiting share and running samples inside `[start_s, end_s]`;
    /// with several URLs the samples of all are pooled) and the latency histograms' means
    /// (`totals.latency.ttft_s/queue_s/prefill_s`). `None` when the section is absent or no
    /// scrape landed in the window.
    pub fn from_server_value(v: &Value) -> Option<ServerSignals> {
        let obj = v.as_object()?;
        let num = |x: &Value| x.as_f64();
        let path = |p: &[&str]| -> Option<f64> {
            let mut cur = v;
            for k in p {
                cur = cur.get(k)?;
            }
            num(cur)
        };
        let start = path(&["start_s"]).unwrap_or(f64::NEG_INFINITY);
        let end = path(&["end_s"]).unwrap_or(f64::INFINITY);
        let mut running = Vec::new();
        let (mut above, mut present) = (0usize, 0usize);
        for series in obj
            .get("series")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let col = |k: &str| -> Vec<Option<f64>> {
                series
                    .get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(num).collect())
                    .unwrap_or_default()
            };
            let t = col("t");
            let run = col("running");
            let wait = col("waiting");
            for (i, ti) in t.iter().enumerate() {
                let Some(ti) = *ti else { continue };
                if ti < start || ti > end {
                    continue;
                }
                if let Some(Some(r)) = run.get(i) {
                    running.push((ti, *r));
                }
                if let Some(Some(w)) = wait.get(i) {
                    present += 1;
                    above += usize::from(*w > 0.0);
                }
            }
        }
        let scrapes = obj
            .get("scrapes_in_window")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if scrapes == 0 && running.is_empty() && present == 0 {
            return None;
        }
        let lat = |k: &str| path(&["totals", "latency", k, "mean"]);
        Some(ServerSignals {
            kv_usage_max: path(&["kv_cache_usage", "max"]),
            waiting_mean: path(&["waiting", "mean"]),
            waiting_max: path(&["waiting", "max"]),
            waiting_share_above_zero: (present > 0).then(|| above as f64 / present as f64),
            running,
            server_ttft_mean: lat("ttft_s"),
            queue_plus_prefill_mean: match (lat("queue_s"), lat("prefill_s")) {
                (Some(q), Some(p)) => Some(q + p),
                _ => None,
            },
        })
    }
}

/// The tier of one metric, with the value used, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricTier {
    pub tier: Option<Tier>,
    pub value: Option<f64>,
    pub statistic: String,
    /// Unit of `value`: `s`, `tok/s`, `fraction`, `requests`.
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MetricTier {
    fn of(rule: &TierRule, unit: &'static str, v: Result<f64, String>) -> Self {
        match v {
            Ok(x) if x.is_finite() => MetricTier {
                tier: Some(rule.classify(x)),
                value: Some(x),
                statistic: rule.statistic.clone(),
                unit,
                reason: None,
            },
            Ok(x) => MetricTier::none(rule, unit, format!("the value is not finite ({x})")),
            Err(why) => MetricTier::none(rule, unit, why),
        }
    }

    fn none(rule: &TierRule, unit: &'static str, why: String) -> Self {
        MetricTier {
            tier: None,
            value: None,
            statistic: rule.statistic.clone(),
            unit,
            reason: Some(why),
        }
    }
}

/// `benchmark.sla` in results.json: the tier of each metric and the overall tier (the worst).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    /// The worst tier among the metrics that have one; `null` when none has.
    pub overall: Option<Tier>,
    /// The metrics at the overall tier.
    pub limited_by: Vec<String>,
    pub ttft: MetricTier,
    pub decode_rate: MetricTier,
    pub kv_cache_usage: MetricTier,
    pub queue_depth: MetricTier,
    /// Whether server metrics were available for this benchmark.
    pub server_metrics: bool,
    /// Tier per classified metric, `{"ttft": "excellent", ...}` (the same tiers as above, in
    /// the compact shape the report reads).
    pub tiers: std::collections::BTreeMap<String, Tier>,
    /// Whether the step met the SLA by the breaking-point definition; set by
    /// [`crate::annotate`] and the sweep planner, which judge both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
    /// The breaking-point criteria that fired, one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl SlaReport {
    /// The four metrics with their names, in table order.
    pub fn metrics(&self) -> [(&'static str, &MetricTier); 4] {
        [
            ("ttft", &self.ttft),
            ("decode_rate", &self.decode_rate),
            ("kv_cache_usage", &self.kv_cache_usage),
            ("queue_depth", &self.queue_depth),
        ]
    }

    /// Records the breaking-point verdict of the same step (`pass`, `failures`).
    pub fn set_verdict(&mut self, v: &crate::breaking::BreakingVerdict) {
        self.pass = Some(!v.broken);
        self.failures = v
            .fired()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
    }

    /// As the JSON value to store in `benchmark.sla`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The decode-rate statistic of a benchmark. Low percentiles (`p10 p5 p1 p0.1`) are read as
/// `1 / TPOT` at the mirrored high percentile (`p5` = 1 / TPOT p95), since decode rate is
/// 1 / TPOT per request and the results keep TPOT's upper tail.
fn decode_stat(b: &Benchmark, stat: &str) -> Result<f64, String> {
    let mirrored = match stat {
        "p10" => Some("p90"),
        "p5" => Some("p95"),
        "p1" => Some("p99"),
        "p0.1" => Some("p999"),
        _ => None,
    };
    if let Some(hi) = mirrored {
        let t = b
            .metrics
            .tpot_s
            .as_ref()
            .ok_or("no request had more than one output token, so there is no TPOT")?;
        let v = t.get(hi).ok_or("missing TPOT statistic")?;
        return if v > 0.0 {
            Ok(1.0 / v)
        } else {
            Err(format!("TPOT {hi} is {v}, so its decode rate is undefined"))
        };
    }
    let d = b
        .metrics
        .decode_rate_tokens_per_s
        .as_ref()
        .ok_or("no request had more than one output token, so there is no decode rate")?;
    d.get(stat)
        .ok_or_else(|| format!("no decode-rate statistic `{stat}`"))
}

/// Classifies one benchmark. `server` is `None` when no server metrics were collected: the KV
/// and queue tiers are then `null` with that reason.
pub fn classify(cfg: &TierConfig, b: &Benchmark, server: Option<&ServerSignals>) -> SlaReport {
    let ttft = MetricTier::of(
        &cfg.ttft,
        "s",
        b.metrics
            .ttft_s
            .as_ref()
            .ok_or_else(|| "no request produced a first token".to_string())
            .and_then(|s| {
                s.get(&cfg.ttft.statistic)
                    .ok_or_else(|| format!("no TTFT statistic `{}`", cfg.ttft.statistic))
            }),
    );
    let decode_rate = MetricTier::of(
        &cfg.decode_rate,
        "tok/s",
        decode_stat(b, &cfg.decode_rate.statistic),
    );
    let no_server = || {
        "no server metrics for this benchmark (the server's /metrics was not scraped)".to_string()
    };
    let kv_cache_usage = MetricTier::of(
        &cfg.kv_cache_usage,
        "fraction",
        match server {
            None => Err(no_server()),
            Some(s) => s
                .kv_usage_max
                .ok_or_else(|| "the server exposed no KV-cache usage gauge".to_string()),
        },
    );
    let queue_depth = MetricTier::of(
        &cfg.queue_depth,
        "requests",
        match server {
            None => Err(no_server()),
            Some(s) => match cfg.queue_depth.statistic.as_str() {
                "max" => s.waiting_max,
                _ => s.waiting_mean,
            }
            .ok_or_else(|| "the server exposed no waiting-requests gauge".to_string()),
        },
    );
    let mut notes = Vec::new();
    if let Some(s) = server
        && let (Some(ttft), Some(qp)) = (s.server_ttft_mean, s.queue_plus_prefill_mean)
        && ttft > 2.0 * qp
        && ttft - qp > 0.1
    {
        notes.push(format!(
            "server TTFT ({}) is far above queue + prefill ({}): requests wait before the engine (API server / tokenization / image processing); an empty waiting queue does not mean the server keeps up",
            units::human(ttft, Dimension::Time),
            units::human(qp, Dimension::Time)
        ));
    }
    let mut report = SlaReport {
        overall: None,
        limited_by: Vec::new(),
        ttft,
        decode_rate,
        kv_cache_usage,
        queue_depth,
        server_metrics: server.is_some(),
        tiers: Default::default(),
        pass: None,
        failures: Vec::new(),
        notes,
    };
    report.tiers = report
        .metrics()
        .iter()
        .filter_map(|(n, m)| m.tier.map(|t| (n.to_string(), t)))
        .collect();
    let overall = report.metrics().iter().filter_map(|(_, m)| m.tier).max();
    report.limited_by = report
        .metrics()
        .iter()
        .filter(|(_, m)| m.tier.is_some() && m.tier == overall)
        .map(|(n, _)| n.to_string())
        .collect();
    report.overall = overall;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmload_core::Summary;

    fn flat(x: f64) -> Summary {
        Summary {
            count: 10,
            mean: x,
            stddev: 0.0,
            min: x,
            p50: x,
            p90: x,
            p95: x,
            p99: x,
            p999: x,
            max: x,
        }
    }

    fn tier_of_ttft(v: f64) -> Tier {
        let mut b = Benchmark::default();
        b.metrics.ttft_s = Some(flat(v));
        classify(&TierConfig::default(), &b, None)
            .ttft
            .tier
            .unwrap()
    }

    fn tier_of_decode(v: f64) -> Tier {
        let mut b = Benchmark::default();
        b.metrics.tpot_s = Some(flat(1.0 / v));
        b.metrics.decode_rate_tokens_per_s = Some(flat(v));
        let r = classify(&TierConfig::default(), &b, None);
        assert!((r.decode_rate.value.unwrap() - v).abs() < 1e-9);
        r.decode_rate.tier.unwrap()
    }

    fn server(kv: f64, waiting: f64) -> SlaReport {
        let s = ServerSignals {
            kv_usage_max: Some(kv),
            waiting_mean: Some(waiting),
            waiting_max: Some(waiting),
            ..Default::default()
        };
        classify(&TierConfig::default(), &Benchmark::default(), Some(&s))
    }

    use Tier::*;

    #[test]
    fn ttft_boundaries() {
        assert_eq!(tier_of_ttft(0.0), Excellent);
        assert_eq!(tier_of_ttft(0.499_999), Excellent);
        assert_eq!(tier_of_ttft(0.5), Acceptable);
        assert_eq!(tier_of_ttft(0.999_999), Acceptable);
        assert_eq!(tier_of_ttft(1.0), Degraded);
        assert_eq!(tier_of_ttft(2.0), Degraded);
        assert_eq!(tier_of_ttft(2.000_001), Breaking);
    }

    #[test]
    fn decode_rate_boundaries() {
        assert_eq!(tier_of_decode(50.000_01), Excellent);
        assert_eq!(tier_of_decode(50.0), Acceptable);
        assert_eq!(tier_of_decode(20.000_01), Acceptable);
        assert_eq!(tier_of_decode(20.0), Degraded);
        assert_eq!(tier_of_decode(10.0), Degraded);
        assert_eq!(tier_of_decode(9.999), Breaking);
    }

    #[test]
    fn kv_and_queue_boundaries() {
        let kv = |v| server(v, 0.0).kv_cache_usage.tier.unwrap();
        assert_eq!(kv(0.0), Excellent);
        assert_eq!(kv(0.699), Excellent);
        assert_eq!(kv(0.70), Acceptable);
        assert_eq!(kv(0.849), Acceptable);
        assert_eq!(kv(0.85), Degraded);
        assert_eq!(kv(0.95), Degraded);
        assert_eq!(kv(0.951), Breaking);
        let q = |v| server(0.0, v).queue_depth.tier.unwrap();
        assert_eq!(q(0.0), Excellent);
        assert_eq!(q(0.01), Acceptable);
        assert_eq!(q(1.0), Acceptable);
        assert_eq!(q(1.01), Degraded);
        assert_eq!(q(2.0), Degraded);
        assert_eq!(q(5.0), Degraded);
        assert_eq!(q(5.01), Breaking);
    }

    #[test]
    fn overall_is_the_worst_and_missing_server_is_null() {
        let mut b = Benchmark::default();
        b.metrics.ttft_s = Some(flat(0.7));
        b.metrics.tpot_s = Some(flat(0.01));
        b.metrics.decode_rate_tokens_per_s = Some(flat(100.0));
        let r = classify(&TierConfig::default(), &b, None);
        assert_eq!(r.overall, Some(Acceptable));
        assert_eq!(r.limited_by, vec!["ttft"]);
        assert!(r.kv_cache_usage.tier.is_none());
        assert!(
            r.kv_cache_usage
                .reason
                .as_deref()
                .unwrap()
                .contains("no server metrics")
        );
        assert!(!r.server_metrics);
        let v = r.to_value();
        assert_eq!(v["overall"], "acceptable");
        assert_eq!(v["kv_cache_usage"]["tier"], Value::Null);
        assert_eq!(v["ttft"]["statistic"], "p95");
        assert_eq!(
            v["tiers"],
            serde_json::json!({"ttft": "acceptable", "decode_rate": "excellent"})
        );
        assert!(v.get("pass").is_none());
        let t = TierConfig::default().to_results_value();
        assert_eq!(t["kv_cache_pct"]["acceptable"], 85.0);
        assert_eq!(t["ttft_s"]["degraded"], 2.0);
        assert_eq!(t["decode_rate"]["operators"][2], ">=");
        let empty = classify(&TierConfig::default(), &Benchmark::default(), None);
        assert_eq!(empty.overall, None);
        assert!(empty.ttft.reason.is_some());
        let s = ServerSignals {
            kv_usage_max: Some(0.99),
            ..Default::default()
        };
        let r = classify(&TierConfig::default(), &b, Some(&s));
        assert_eq!(r.overall, Some(Breaking));
        assert_eq!(r.limited_by, vec!["kv_cache_usage"]);
        assert!(r.queue_depth.reason.as_deref().unwrap().contains("waiting"));
    }

    #[test]
    fn signals_from_the_server_section() {
        let v = serde_json::json!({
            "start_s": 10.0, "end_s": 20.0, "scrapes_in_window": 4,
            "running": {"mean": 30.0, "max": 41.0, "samples": 4},
            "waiting": {"mean": 0.5, "max": 2.0, "samples": 4},
            "kv_cache_usage": {"mean": 0.2, "max": 0.31, "samples": 4},
            "totals": {"latency": {
                "ttft_s": {"mean": 0.9}, "queue_s": {"mean": 0.01}, "prefill_s": {"mean": 0.07}
            }},
            "series": [{
                "url": "http://x/metrics",
                "t": [9.0, 11.0, 13.0, 15.0, 17.0, 21.0],
                "running": [5.0, 20.0, 25.0, null, 41.0, 3.0],
                "waiting": [0.0, 0.0, 2.0, 1.0, 0.0, 9.0],
                "kv_cache_usage": [0.1, 0.2, 0.2, 0.3, 0.31, 0.0]
            }]
        });
        let s = ServerSignals::from_server_value(&v).unwrap();
        assert_eq!(s.kv_usage_max, Some(0.31));
        assert_eq!((s.waiting_mean, s.waiting_max), (Some(0.5), Some(2.0)));
        assert_eq!(s.waiting_share_above_zero, Some(0.5));
        assert_eq!(s.running, vec![(11.0, 20.0), (13.0, 25.0), (17.0, 41.0)]);
        assert_eq!(s.server_ttft_mean, Some(0.9));
        assert!((s.queue_plus_prefill_mean.unwrap() - 0.08).abs() < 1e-12);
        assert!(ServerSignals::from_server_value(&Value::Null).is_none());
        let empty = serde_json::json!({"scrapes_in_window": 0, "series": []});
        assert!(ServerSignals::from_server_value(&empty).is_none());
    }

    #[test]
    fn front_end_bottleneck_note() {
        let s = ServerSignals {
            waiting_mean: Some(0.0),
            server_ttft_mean: Some(1.2),
            queue_plus_prefill_mean: Some(0.08),
            ..Default::default()
        };
        let r = classify(&TierConfig::default(), &Benchmark::default(), Some(&s));
        assert_eq!(r.queue_depth.tier, Some(Excellent));
        assert!(r.notes[0].contains("far above queue + prefill"));
    }

    #[test]
    fn config_file_overrides_and_validates() {
        let t = r#"
[ttft]
statistic = "p99"
excellent = "< 300ms"
acceptable = "<= 800ms"
[queue_depth]
statistic = "max"
[kv_cache_usage]
degraded = "<= 90%"
"#;
        let c = TierConfig::from_text(t, FileFormat::Toml, "tiers.toml").unwrap();
        assert_eq!(c.ttft.statistic, "p99");
        assert_eq!(
            c.ttft.excellent,
            Bound {
                op: Op::Lt,
                limit: 0.3
            }
        );
        assert_eq!(
            c.ttft.acceptable,
            Bound {
                op: Op::Le,
                limit: 0.8
            }
        );
        assert_eq!(c.ttft.classify(0.8), Acceptable);
        assert_eq!(c.ttft.degraded.limit, 2.0);
        assert_eq!(c.kv_cache_usage.degraded.limit, 0.9);
        assert_eq!(c.queue_depth.statistic, "max");
        let bad = |t: &str| {
            TierConfig::from_text(t, FileFormat::Toml, "t.toml")
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[ttft]\nexcellent = \"> 1s\"").contains("mix"));
        assert!(bad("[ttft]\nexcellent = \"< 1.5s\"").contains("loosen"));
        assert!(bad("[ttft]\nexcellent = \"< 5\"").contains("needs a unit"));
        assert!(bad("[ttft]\nexcellent = \"< 5\"").contains('^'));
        assert!(bad("[decode_rate]\nexcellent = \"> 5ms\"").contains("ms on decode_rate"));
        assert!(bad("[ttft]\nstatistic = \"p75\"").contains("not one of"));
        assert!(bad("[foo]\nx = \"1\"").contains("unknown tier metric"));
        assert!(bad("[ttft]\nbreaking = \"> 2s\"").contains("unknown key"));
        let j = r#"{"tiers": {"decode_rate": {"statistic": "mean", "excellent": "> 60tok/s"}}}"#;
        let c = TierConfig::from_text(j, FileFormat::Json, "t.json").unwrap();
        assert_eq!(c.decode_rate.statistic, "mean");
        assert_eq!(c.decode_rate.excellent.limit, 60.0);
    }

    #[test]
    fn decode_rate_low_percentile_is_mirrored_tpot() {
        let mut b = Benchmark::default();
        let mut tpot = flat(0.02);
        tpot.p95 = 0.04; // slowest 5 % at 25 tok/s
        b.metrics.tpot_s = Some(tpot);
        b.metrics.decode_rate_tokens_per_s = Some(flat(50.0));
        let r = classify(&TierConfig::default(), &b, None);
        assert!((r.decode_rate.value.unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(r.decode_rate.tier, Some(Acceptable));
    }
}
