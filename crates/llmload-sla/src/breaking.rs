//! Whether one step (one benchmark) is past the breaking point, and why.
//!
//! Default definition (each criterion can be changed or switched off, see [`BreakingConfig`]):
//! 1. `ttft`: TTFT p95 above 1.0 s;
//! 2. `error_rate`: errored / (completed + errored) above 1 %;
//! 3. `server_queue`: the server's waiting queue above 0 in more than half of the step's
//!    scrapes (needs server metrics);
//! 4. `saturation_trend`: requests in flight keep growing through the step while TTFT trends
//!    up (see [`crate::trend`]). In-flight requests are the server's `num_requests_running`
//!    when scraped, else the client's own count of requests in flight. This is what reveals
//!    saturation on vLLM versions whose waiting queue stays at 0 far past capacity;
//! 5. `rate_shortfall`: for open-loop steps, the achieved rate more than 5 % below the offered
//!    rate, beyond the noise of the counts. Offered is the rate the generator really dispatched
//!    at (from the dispatch times when given, else the profile's rate). Achieved, with request
//!    points, is the completion rate in the steady part of the step (see
//!    `steady_completion_rate`); without them, `completed / (duration − p50 request latency)`,
//!    which removes the drain of the last requests that a healthy server also has.

use llmload_core::Benchmark;
use serde::Serialize;
use serde_json::Value;

use crate::error::SlaError;
use crate::slo::{FileFormat, parse_config_text};
use crate::tiers::ServerSignals;
use crate::trend::{self, Trend, TrendRule};
use crate::units::{self, Dimension};

/// One request of a step, as the trend and rate criteria need it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RequestPoint {
    /// Run-clock seconds of the dispatch.
    pub t_dispatch: f64,
    /// TTFT in seconds, when the request produced a token.
    pub ttft: Option<f64>,
    /// `t_end − t_dispatch` for requests that finished (completed or failed); `None` for those
    /// still in flight or cancelled at the stop.
    pub latency: Option<f64>,
}

impl RequestPoint {
    /// The point of an in-window request record; `None` for requests outside the window.
    /// Cancelled requests keep their dispatch and TTFT but have no latency.
    pub fn from_record(r: &llmload_core::RequestRecord) -> Option<RequestPoint> {
        if !r.in_window {
            return None;
        }
        let cancelled = r.error == Some(llmload_core::ErrorClass::Cancelled);
        Some(RequestPoint {
            t_dispatch: r.t_dispatch,
            ttft: r.ttft(),
            latency: (!cancelled).then_some(r.t_end - r.t_dispatch),
        })
    }
}

/// The points of a step's records (in-window requests only).
pub fn points_from_records<'a>(
    records: impl IntoIterator<Item = &'a llmload_core::RequestRecord>,
) -> Vec<RequestPoint> {
    records
        .into_iter()
        .filter_map(RequestPoint::from_record)
        .collect()
}

/// The breaking-point definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakingConfig {
    /// Statistic of TTFT compared with `ttft_max` (default `p95`).
    pub ttft_statistic: String,
    /// Seconds; `None` switches the criterion off. Default 1.0.
    pub ttft_max: Option<f64>,
    /// Fraction; default 0.01.
    pub max_error_rate: Option<f64>,
    /// Share of scrapes with waiting > 0; default 0.5 ("most of the step").
    pub max_waiting_share: Option<f64>,
    /// Whether a growing backlog (in flight and TTFT both rising) breaks the step.
    pub saturation_trend: bool,
    pub ttft_trend: TrendRule,
    pub concurrency_trend: TrendRule,
    /// Fraction; default 0.05.
    pub max_rate_shortfall: Option<f64>,
}

impl Default for BreakingConfig {
    fn default() -> Self {
        BreakingConfig {
            ttft_statistic: "p95".into(),
            ttft_max: Some(1.0),
            max_error_rate: Some(0.01),
            max_waiting_share: Some(0.5),
            saturation_trend: true,
            ttft_trend: TrendRule::TTFT,
            concurrency_trend: TrendRule::CONCURRENCY,
            max_rate_shortfall: Some(0.05),
        }
    }
}

const TTFT_STATS: [&str; 8] = ["mean", "median", "p50", "p90", "p95", "p99", "p999", "max"];

impl BreakingConfig {
    /// Reads a TOML/JSON definition (at the top level or under `[breaking_point]`); every key
    /// is optional; `false` switches a criterion off:
    ///
    /// ```toml
    /// ttft_statistic = "p99"
    /// ttft_max = "2s"
    /// max_error_rate = "0.5%"
    /// max_waiting_share = false
    /// saturation_trend = true
    /// max_rate_shortfall = "10%"
    /// ```
    pub fn from_text(text: &str, format: FileFormat, file: &str) -> Result<Self, SlaError> {
        let v = parse_config_text(text, format, file)?;
        let root = v.get("breaking_point").unwrap_or(&v);
        let Value::Object(map) = root else {
            return Err(SlaError::config(file, "expected a table of criteria"));
        };
        let mut c = BreakingConfig::default();
        for (k, val) in map {
            let q = |dim: Dimension| -> Result<Option<f64>, SlaError> {
                match val {
                    Value::Bool(false) => Ok(None),
                    Value::String(s) => units::parse_quantity(s, dim, k).map(Some).map_err(|e| {
                        SlaError::config(file, format!("{k} = \"{s}\": {}", e.message))
                    }),
                    Value::Number(n) if dim != Dimension::Time => {
                        let x = n.as_f64().unwrap_or(f64::NAN);
                        if dim == Dimension::Ratio && !(0.0..=1.0).contains(&x) {
                            return Err(SlaError::config(
                                file,
                                format!(
                                    "{k} = {x}: a fraction between 0 and 1, or a string such as \"5%\""
                                ),
                            ));
                        }
                        Ok(Some(x))
                    }
                    other => Err(SlaError::config(
                        file,
                        format!(
                            "{k}: expected a string with a unit (\"1s\", \"1%\") or false, got {other}"
                        ),
                    )),
                }
            };
            match k.as_str() {
                "ttft_statistic" => {
                    let s = val.as_str().unwrap_or_default();
                    if !TTFT_STATS.contains(&s) {
                        return Err(SlaError::config(
                            file,
                            format!("ttft_statistic must be one of {}", TTFT_STATS.join(", ")),
                        ));
                    }
                    c.ttft_statistic = s.to_string();
                }
                "ttft_max" => c.ttft_max = q(Dimension::Time)?,
                "max_error_rate" => c.max_error_rate = q(Dimension::Ratio)?,
                "max_waiting_share" => c.max_waiting_share = q(Dimension::Ratio)?,
                "max_rate_shortfall" => c.max_rate_shortfall = q(Dimension::Ratio)?,
                "saturation_trend" => {
                    c.saturation_trend = val.as_bool().ok_or_else(|| {
                        SlaError::config(file, "saturation_trend must be true or false")
                    })?;
                }
                other => {
                    return Err(SlaError::config(
                        file,
                        format!(
                            "unknown key `{other}` (ttft_statistic, ttft_max, max_error_rate, max_waiting_share, saturation_trend, max_rate_shortfall)"
                        ),
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// One criterion on one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriterionResult {
    /// `ttft`, `error_rate`, `server_queue`, `saturation_trend`, `rate_shortfall`.
    pub name: &'static str,
    pub fired: bool,
    /// Whether the criterion could be judged (inputs present, criterion on).
    pub evaluated: bool,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// `value / limit` (how far past, or below, the limit); for the trend the TTFT rise over its
    /// minimum. Used to name the limiting metric.
    pub severity: Option<f64>,
    /// One sentence with the numbers.
    pub detail: String,
}

impl CriterionResult {
    fn skipped(name: &'static str, why: impl Into<String>) -> Self {
        CriterionResult {
            name,
            fired: false,
            evaluated: false,
            value: None,
            limit: None,
            severity: None,
            detail: why.into(),
        }
    }

    fn judged(name: &'static str, value: f64, limit: f64, detail: String) -> Self {
        CriterionResult {
            name,
            fired: value > limit,
            evaluated: true,
            value: Some(value),
            limit: Some(limit),
            severity: (limit > 0.0).then(|| value / limit),
            detail,
        }
    }
}

/// The verdict on one step; goes into the step's benchmark as `extra["breaking_point"]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakingVerdict {
    pub broken: bool,
    /// In-flight requests and TTFT both rising through the step: a growing backlog. A sweep
    /// stops escalating after such a step.
    pub oversaturated: bool,
    /// The fired criterion with the highest severity.
    pub limited_by: Option<&'static str>,
    pub criteria: Vec<CriterionResult>,
    pub server_metrics: bool,
    pub ttft_trend: Option<Trend>,
    pub concurrency_trend: Option<Trend>,
    /// `server_running` or `client_in_flight`.
    pub concurrency_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl BreakingVerdict {
    pub fn fired(&self) -> impl Iterator<Item = &CriterionResult> {
        self.criteria.iter().filter(|c| c.fired)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// In-flight count of the client sampled at `samples` instants across the dispatch span.
fn client_in_flight(points: &[RequestPoint], samples: usize) -> Vec<(f64, f64)> {
    let mut ev: Vec<(f64, i32)> = Vec::with_capacity(points.len() * 2);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in points {
        if !p.t_dispatch.is_finite() {
            continue;
        }
        lo = lo.min(p.t_dispatch);
        hi = hi.max(p.t_dispatch);
        ev.push((p.t_dispatch, 1));
        if let Some(l) = p.latency.filter(|l| l.is_finite()) {
            ev.push((p.t_dispatch + l.max(0.0), -1));
        }
    }
    if hi.is_nan() || lo.is_nan() || hi <= lo || samples < 2 {
        return Vec::new();
    }
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::with_capacity(samples);
    let (mut k, mut cur) = (0usize, 0i64);
    for s in 0..samples {
        let t = lo + (hi - lo) * s as f64 / (samples - 1) as f64;
        while k < ev.len() && ev[k].0 <= t {
            cur += i64::from(ev[k].1);
            k += 1;
        }
        out.push((t, cur as f64));
    }
    out
}

/// One-sided z for "beyond the count noise" (1 %).
const RATE_Z: f64 = 2.326;

struct SteadyRate {
    achieved: f64,
    /// Relative standard deviation of the completion count expected from arrival randomness.
    relative_noise: f64,
}

/// Completions per second in the steady part of the step, `[t0 + q, t1]`, where `t0`/`t1` are
/// the first and last dispatch and `q` the p90 request latency (so that the fill at the start
/// is skipped and the requests still draining at the end are not missed: a request dispatched
/// at `d` with latency `L <= q` completes inside the window exactly when `d` lies in
/// `[t0 + q − L, t1 − L]`, a span as long as the window). `None` with fewer than 20 finished
/// requests or a window shorter than a quarter of the dispatch span.
fn steady_completion_rate(points: &[RequestPoint]) -> Option<SteadyRate> {
    let dispatched: Vec<f64> = points
        .iter()
        .map(|p| p.t_dispatch)
        .filter(|t| t.is_finite())
        .collect();
    let t0 = dispatched.iter().copied().fold(f64::INFINITY, f64::min);
    let t1 = dispatched.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = t1 - t0;
    let mut lat: Vec<f64> = points
        .iter()
        .filter_map(|p| p.latency)
        .filter(|l| l.is_finite())
        .collect();
    if lat.len() < 20 || span.is_nan() || span <= 0.0 {
        return None;
    }
    lat.sort_by(f64::total_cmp);
    let q = llmload_core::percentile(&lat, 90.0).max(0.0);
    let (a, z) = (t0 + q, t1);
    if z - a < 0.25 * span {
        return None;
    }
    let done = points
        .iter()
        .filter_map(|p| p.latency.map(|l| p.t_dispatch + l))
        .filter(|t| *t >= a && *t <= z)
        .count();
    let n = dispatched.len() as f64;
    let share = (z - a) / span;
    Some(SteadyRate {
        achieved: done as f64 / (z - a),
        relative_noise: ((1.0 - share) / (n * share)).sqrt() + 1.0 / n,
    })
}

fn pct(v: f64) -> String {
    units::human(v, Dimension::Ratio)
}

/// Judges one step. `server` is `None` without server metrics (the server criteria are then
/// skipped and the verdict says so); `points` may be empty (the trend criterion is then
/// skipped and the rate criterion uses the profile's rate).
pub fn evaluate(
    cfg: &BreakingConfig,
    b: &Benchmark,
    server: Option<&ServerSignals>,
    points: &[RequestPoint],
) -> BreakingVerdict {
    let mut criteria = Vec::new();
    let mut notes = Vec::new();

    // 1. TTFT.
    criteria.push(match cfg.ttft_max {
        None => CriterionResult::skipped("ttft", "switched off"),
        Some(max) => match b
            .metrics
            .ttft_s
            .as_ref()
            .and_then(|s| s.get(&cfg.ttft_statistic))
        {
            None => CriterionResult::skipped("ttft", "no request produced a first token"),
            Some(v) => CriterionResult::judged(
                "ttft",
                v,
                max,
                format!(
                    "TTFT {} {} (limit {})",
                    cfg.ttft_statistic,
                    units::human(v, Dimension::Time),
                    units::human(max, Dimension::Time)
                ),
            ),
        },
    });

    // 2. Errors.
    let r = &b.requests;
    let finished = r.completed + r.errored;
    criteria.push(match cfg.max_error_rate {
        None => CriterionResult::skipped("error_rate", "switched off"),
        Some(_) if finished == 0 && r.cancelled > 0 => CriterionResult {
            name: "error_rate",
            fired: true,
            evaluated: true,
            value: None,
            limit: cfg.max_error_rate,
            severity: Some(f64::INFINITY),
            detail: format!(
                "no request finished in the window; {} were cut at the stop condition",
                r.cancelled
            ),
        },
        Some(_) if finished == 0 => CriterionResult::skipped("error_rate", "no request finished"),
        Some(max) => {
            let v = r.errored as f64 / finished as f64;
            CriterionResult::judged(
                "error_rate",
                v,
                max,
                format!(
                    "{} of {} requests failed: {} (limit {})",
                    r.errored,
                    finished,
                    pct(v),
                    pct(max)
                ),
            )
        }
    });

    // 3. Server queue.
    criteria.push(match (cfg.max_waiting_share, server) {
        (None, _) => CriterionResult::skipped("server_queue", "switched off"),
        (_, None) => CriterionResult::skipped(
            "server_queue",
            "no server metrics: judged on client criteria only",
        ),
        (Some(max), Some(s)) => match s.waiting_share_above_zero {
            None => CriterionResult::skipped("server_queue", "the server exposed no waiting gauge"),
            Some(v) => CriterionResult::judged(
                "server_queue",
                v,
                max,
                format!(
                    "requests waited in the server queue in {} of the scrapes (limit {}; mean {}, max {})",
                    pct(v),
                    pct(max),
                    s.waiting_mean.map_or("?".into(), |x| units::human(x, Dimension::Count)),
                    s.waiting_max.map_or("?".into(), |x| units::human(x, Dimension::Count)),
                ),
            ),
        },
    });

    // 4. Growing backlog.
    let ttft_pts: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.ttft.map(|t| (p.t_dispatch, t)))
        .collect();
    let ttft_trend = trend::analyze(&ttft_pts, &cfg.ttft_trend);
    let (conc_trend, source) = match server {
        Some(s) if s.running.len() >= cfg.concurrency_trend.min_points => (
            trend::analyze(&s.running, &cfg.concurrency_trend),
            Some("server_running"),
        ),
        _ => {
            let series = client_in_flight(points, 40);
            let t = trend::analyze(&series, &cfg.concurrency_trend);
            (t, t.map(|_| "client_in_flight"))
        }
    };
    let oversaturated =
        matches!((&ttft_trend, &conc_trend), (Some(a), Some(c)) if a.rising && c.rising);
    criteria.push(if !cfg.saturation_trend {
        CriterionResult::skipped("saturation_trend", "switched off")
    } else {
        match (&ttft_trend, &conc_trend) {
            (Some(tt), Some(ct)) => CriterionResult {
                name: "saturation_trend",
                fired: oversaturated,
                evaluated: true,
                value: Some(tt.rise),
                limit: None,
                severity: Some(tt.relative_rise / cfg.ttft_trend.min_relative_rise.max(1e-9)),
                detail: format!(
                    "TTFT {} {} over the step (z {:.1}); requests in flight ({}) {} {} (z {:.1})",
                    if tt.rising { "rose" } else { "changed" },
                    signed(tt.rise, Dimension::Time),
                    tt.z,
                    source.unwrap_or("?").replace('_', " "),
                    if ct.rising { "rose" } else { "changed" },
                    signed(ct.rise, Dimension::Count),
                    ct.z
                ),
            },
            _ => CriterionResult::skipped(
                "saturation_trend",
                "too few requests in the step to judge a trend",
            ),
        }
    });

    // 5. Achieved vs offered rate (open loop only).
    criteria.push(match (cfg.max_rate_shortfall, b.profile.rate) {
        (None, _) => CriterionResult::skipped("rate_shortfall", "switched off"),
        (_, None) => CriterionResult::skipped(
            "rate_shortfall",
            "closed-loop step: the offered rate is whatever the server sustains",
        ),
        (Some(max), Some(nominal)) => {
            let mut ts: Vec<f64> = points
                .iter()
                .map(|p| p.t_dispatch)
                .filter(|t| t.is_finite())
                .collect();
            ts.sort_by(f64::total_cmp);
            let offered = match (ts.first(), ts.last()) {
                (Some(a), Some(z)) if ts.len() >= 10 && z > a => (ts.len() - 1) as f64 / (z - a),
                _ => nominal,
            };
            if offered < nominal * 0.95 {
                notes.push(format!(
                    "the generator dispatched {} against the {} asked: the client, not the server, fell short of the offered load (see dispatch_delay)",
                    units::human(offered, Dimension::RequestRate),
                    units::human(nominal, Dimension::RequestRate)
                ));
            }
            match steady_completion_rate(points) {
                Some(st) if offered > 0.0 => {
                    let shortfall = 1.0 - st.achieved / offered;
                    let noise = RATE_Z * st.relative_noise;
                    let mut c = CriterionResult::judged(
                        "rate_shortfall",
                        shortfall,
                        max,
                        format!(
                            "completed {} in the steady part of the step against {} offered: {} short (limit {}; count noise {})",
                            units::human(st.achieved, Dimension::RequestRate),
                            units::human(offered, Dimension::RequestRate),
                            pct(shortfall.max(0.0)),
                            pct(max),
                            pct(noise)
                        ),
                    );
                    // Beyond the limit, and beyond what the randomness of the counts explains.
                    c.fired = shortfall > max && shortfall > noise;
                    c
                }
                _ => {
                    let d = b.window.duration_s;
                    let drain = b.metrics.request_latency_s.map_or(0.0, |s| s.p50);
                    let effective = (d - drain).max(d * 0.5);
                    if effective <= 0.0 || offered <= 0.0 {
                        CriterionResult::skipped("rate_shortfall", "empty window")
                    } else {
                        let achieved = r.completed as f64 / effective;
                        let shortfall = 1.0 - achieved / offered;
                        CriterionResult::judged(
                            "rate_shortfall",
                            shortfall,
                            max,
                            format!(
                                "achieved {} of {} offered: {} short (limit {})",
                                units::human(achieved, Dimension::RequestRate),
                                units::human(offered, Dimension::RequestRate),
                                pct(shortfall.max(0.0)),
                                pct(max)
                            ),
                        )
                    }
                }
            }
        }
    });

    if server.is_none() {
        notes
            .push("no server metrics: the breaking point is judged on client criteria only".into());
    }
    let broken = criteria.iter().any(|c| c.fired);
    let limited_by = criteria
        .iter()
        .filter(|c| c.fired)
        .max_by(|a, b| {
            a.severity
                .unwrap_or(0.0)
                .total_cmp(&b.severity.unwrap_or(0.0))
        })
        .map(|c| c.name);
    BreakingVerdict {
        broken,
        oversaturated,
        limited_by,
        criteria,
        server_metrics: server.is_some(),
        ttft_trend,
        concurrency_trend: conc_trend,
        concurrency_source: source,
        notes,
    }
}

fn signed(v: f64, d: Dimension) -> String {
    if v >= 0.0 {
        format!("+{}", units::human(v, d))
    } else {
        format!("-{}", units::human(-v, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trend::tests::Rng;
    use llmload_core::Summary;

    fn summary(x: f64) -> Summary {
        Summary {
            count: 100,
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

    /// A healthy open-loop step at `rate` for 60 s: TTFT 0.2 s, latency 2 s.
    fn healthy(rate: f64) -> (Benchmark, Vec<RequestPoint>) {
        let mut r = Rng(11);
        let mut t = 0.0;
        let mut pts = Vec::new();
        while t < 60.0 {
            pts.push(RequestPoint {
                t_dispatch: t,
                ttft: Some(0.15 + r.exp(0.05)),
                latency: Some(2.0),
            });
            t += r.exp(1.0 / rate);
        }
        let mut b = Benchmark::default();
        b.profile.kind = "poisson".into();
        b.profile.rate = Some(rate);
        b.requests.completed = pts.len() as u64;
        let last = pts.last().map_or(0.0, |p| p.t_dispatch);
        b.window.duration_s = last + 2.0;
        b.throughput.requests_per_s = pts.len() as f64 / b.window.duration_s;
        b.metrics.ttft_s = Some(summary(0.3));
        b.metrics.request_latency_s = Some(summary(2.0));
        (b, pts)
    }

    fn fired(v: &BreakingVerdict) -> Vec<&'static str> {
        v.fired().map(|c| c.name).collect()
    }

    #[test]
    fn healthy_step_passes_on_every_criterion() {
        let (b, pts) = healthy(10.0);
        let s = ServerSignals {
            waiting_share_above_zero: Some(0.1),
            running: (0..60).map(|i| (i as f64, 20.0 + (i % 3) as f64)).collect(),
            ..Default::default()
        };
        let v = evaluate(&BreakingConfig::default(), &b, Some(&s), &pts);
        assert!(!v.broken, "{v:#?}");
        assert!(v.criteria.iter().all(|c| c.evaluated), "{v:#?}");
        assert_eq!(v.concurrency_source, Some("server_running"));
        assert!(v.notes.is_empty());
    }

    #[test]
    fn ttft_fires_alone() {
        let (mut b, pts) = healthy(10.0);
        b.metrics.ttft_s = Some(summary(1.0));
        assert!(!evaluate(&BreakingConfig::default(), &b, None, &pts).broken);
        b.metrics.ttft_s = Some(summary(1.01));
        let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
        assert_eq!(fired(&v), vec!["ttft"]);
        assert_eq!(v.limited_by, Some("ttft"));
        assert!(v.notes.iter().any(|n| n.contains("client criteria only")));
        assert!(!v.criteria[2].evaluated);
    }

    #[test]
    fn error_rate_fires_alone() {
        let (mut b, pts) = healthy(10.0);
        let n = b.requests.completed;
        b.requests.errored = n / 100; // just under 1 %
        assert!(!evaluate(&BreakingConfig::default(), &b, None, &pts).broken);
        b.requests.errored = n / 50;
        b.requests.completed = n - n / 50;
        let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
        assert!(fired(&v).contains(&"error_rate"), "{v:#?}");
        assert!(!fired(&v).contains(&"ttft"));
        // All cut at the stop: broken.
        let mut c = Benchmark::default();
        c.requests.cancelled = 10;
        assert_eq!(
            fired(&evaluate(&BreakingConfig::default(), &c, None, &[])),
            vec!["error_rate"]
        );
    }

    #[test]
    fn server_queue_fires_alone() {
        let (b, pts) = healthy(10.0);
        let s = ServerSignals {
            waiting_share_above_zero: Some(0.8),
            waiting_mean: Some(3.0),
            waiting_max: Some(9.0),
            ..Default::default()
        };
        let v = evaluate(&BreakingConfig::default(), &b, Some(&s), &pts);
        assert_eq!(fired(&v), vec!["server_queue"]);
        assert!(
            v.criteria[2].detail.contains("80%"),
            "{}",
            v.criteria[2].detail
        );
        let s = ServerSignals {
            waiting_share_above_zero: Some(0.5),
            ..Default::default()
        };
        assert!(!evaluate(&BreakingConfig::default(), &b, Some(&s), &pts).broken);
    }

    #[test]
    fn saturation_trend_fires_alone_with_server_running() {
        // TTFT grows through the step while vLLM's waiting queue stays empty (calibration):
        // only the running count and TTFT reveal it. TTFT p95 stays under 1 s.
        let (mut b, mut pts) = healthy(10.0);
        let mut r = Rng(5);
        for p in &mut pts {
            p.ttft = Some(0.1 + 0.01 * p.t_dispatch + r.exp(0.03));
        }
        b.metrics.ttft_s = Some(summary(0.6));
        let s = ServerSignals {
            waiting_share_above_zero: Some(0.0),
            running: (0..60).map(|i| (i as f64, 20.0 + i as f64)).collect(),
            ..Default::default()
        };
        let v = evaluate(&BreakingConfig::default(), &b, Some(&s), &pts);
        assert_eq!(fired(&v), vec!["saturation_trend"], "{v:#?}");
        assert!(v.oversaturated);
        // The same TTFT rise with a flat running count is not a backlog.
        let flat = ServerSignals {
            running: (0..60).map(|i| (i as f64, 20.0)).collect(),
            ..s
        };
        let v = evaluate(&BreakingConfig::default(), &b, Some(&flat), &pts);
        assert!(!v.broken && !v.oversaturated, "{v:#?}");
    }

    #[test]
    fn saturation_trend_from_client_in_flight_without_server() {
        // Requests that take longer and longer: in flight grows, TTFT grows.
        let (mut b, mut pts) = healthy(10.0);
        for p in &mut pts {
            p.ttft = Some(0.1 + 0.015 * p.t_dispatch);
            p.latency = Some(2.0 + 0.2 * p.t_dispatch);
        }
        b.metrics.ttft_s = Some(summary(0.9));
        b.metrics.request_latency_s = Some(summary(2.0)); // keep the rate criterion quiet
        let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
        assert_eq!(v.concurrency_source, Some("client_in_flight"));
        assert!(v.oversaturated, "{v:#?}");
        assert!(fired(&v).contains(&"saturation_trend"));
    }

    #[test]
    fn rate_shortfall_fires_alone() {
        // Requests take longer and longer (completions fall behind) while TTFT stays flat.
        let (b, mut pts) = healthy(10.0);
        assert!(!evaluate(&BreakingConfig::default(), &b, None, &pts).broken);
        for p in &mut pts {
            p.latency = Some(2.0 + 0.3 * p.t_dispatch);
        }
        let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
        assert_eq!(fired(&v), vec!["rate_shortfall"], "{v:#?}");
        assert!(v.criteria[4].value.unwrap() > 0.15, "{v:#?}");
        // Without points: the benchmark's own figures, completions stretched over 25 % more
        // time than the dispatches.
        let (mut b, pts) = healthy(10.0);
        assert!(!evaluate(&BreakingConfig::default(), &b, None, &[]).broken);
        b.window.duration_s = (pts.last().unwrap().t_dispatch + 2.0) * 1.25;
        let v = evaluate(&BreakingConfig::default(), &b, None, &[]);
        assert_eq!(fired(&v), vec!["rate_shortfall"], "{v:#?}");
        // Closed loop: not judged.
        b.profile.rate = None;
        let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
        assert!(!v.broken && !v.criteria[4].evaluated);
    }

    #[test]
    fn widely_spread_latencies_are_no_shortfall() {
        // A healthy server whose latencies range from 1 to 20 s (long and short answers): the
        // drain at the end of the step must not read as a shortfall, whatever the seed.
        for seed in 0..100 {
            let mut r = Rng(seed);
            let (mut t, mut pts) = (0.0, Vec::new());
            while t < 60.0 {
                pts.push(RequestPoint {
                    t_dispatch: t,
                    ttft: Some(0.2),
                    latency: Some(1.0 + 19.0 * r.next_f64()),
                });
                t += r.exp(0.1);
            }
            let mut b = Benchmark::default();
            b.profile.rate = Some(10.0);
            b.requests.completed = pts.len() as u64;
            b.window.duration_s = 80.0;
            let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
            assert!(!v.criteria[4].fired, "seed {seed}: {:?}", v.criteria[4]);
            assert!(v.criteria[4].evaluated);
        }
    }

    #[test]
    fn generator_shortfall_is_blamed_on_the_client() {
        let (mut b, pts) = healthy(10.0);
        b.profile.rate = Some(20.0); // asked 20, dispatched 10
        let v = evaluate(&BreakingConfig::default(), &b, None, &pts);
        assert!(!v.broken, "{v:#?}");
        assert!(v.notes.iter().any(|n| n.contains("client, not the server")));
    }

    #[test]
    fn config_file() {
        let t = "ttft_statistic = \"p99\"\nttft_max = \"2s\"\nmax_error_rate = \"0.5%\"\nmax_waiting_share = false\nsaturation_trend = false\nmax_rate_shortfall = 0.1\n";
        let c = BreakingConfig::from_text(t, FileFormat::Toml, "b.toml").unwrap();
        assert_eq!(c.ttft_statistic, "p99");
        assert_eq!(c.ttft_max, Some(2.0));
        assert_eq!(c.max_error_rate, Some(0.005));
        assert_eq!(c.max_waiting_share, None);
        assert!(!c.saturation_trend);
        assert_eq!(c.max_rate_shortfall, Some(0.1));
        let bad = |t: &str| {
            BreakingConfig::from_text(t, FileFormat::Toml, "b.toml")
                .unwrap_err()
                .to_string()
        };
        assert!(bad("ttft_max = 1").contains("unit"));
        assert!(bad("max_error_rate = 5").contains("between 0 and 1"));
        assert!(bad("ttft_max = \"1tok/s\"").contains("tok/s on ttft_max"));
        assert!(bad("foo = 1").contains("unknown key"));
        assert!(bad("ttft_statistic = \"p75\"").contains("one of"));
        let j = r#"{"breaking_point": {"ttft_max": "500ms"}}"#;
        assert_eq!(
            BreakingConfig::from_text(j, FileFormat::Json, "b.json")
                .unwrap()
                .ttft_max,
            Some(0.5)
        );
    }
}
