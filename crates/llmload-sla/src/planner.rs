//! The sweep planner: a pure state machine that says which load to run next, given the steps
//! measured so far, and finally reports the maximum sustainable load under the SLA.
//!
//! The caller's loop:
//! ```text
//! let mut p = SweepPlanner::new(cfg)?;
//! while let Some(step) = p.next_step() {
//!     let b = run(&step.load).await;                 // one benchmark
//!     let out = p.record(&step, &b, signals.as_ref(), &points)?;
//!     // store out.sla in b.sla and out.verdict in b.extra["breaking_point"]
//! }
//! let summary = p.finish();                          // results.extra["sweep"], ["breaking_point"]
//! ```
//!
//! Order of steps:
//! - **auto** (GuideLLM's sweep): `synchronous`, then `throughput` (closed loop at the maximum
//!   concurrency), then `N` rates evenly spaced from the synchronous rate `r_s` to the throughput
//!   rate `r_t` (the measured `requests_per_s` of those two steps): `r_s + (r_t − r_s)·i/N` for
//!   `i = 1..=N`, the last being `r_t` itself (GuideLLM's `linspace(r_s, r_t, N+1)[1:]`);
//! - **rates** (`--rates`): the given rates, ascending;
//! - **concurrency** (`--concurrency 1,10,50,100`): a closed-loop ladder, ascending;
//! - then **refinement**: between the highest passing level below the lowest failing one and
//!   that failing level, bisect (arithmetic midpoint; integers for concurrency) until the gap is
//!   within `tolerance` (5 %) of the passing level, or the refinement budget is spent.
//!
//! A step that is over-saturated (in-flight requests and TTFT both rising through it) stops the
//! escalation: higher levels of the list are skipped (they would only pile up a longer
//! backlog) and refinement starts.

use std::collections::VecDeque;

use llmload_core::Benchmark;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::breaking::{self, BreakingConfig, BreakingVerdict, CriterionResult, RequestPoint};
use crate::error::SlaError;
use crate::tiers::{self, ServerSignals, SlaReport, Tier, TierConfig};

/// Arrival process of rate steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    #[default]
    Poisson,
    Constant,
}

/// The load of one step; the caller maps it to its profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Load {
    /// One request at a time.
    Synchronous,
    /// Closed loop at `max_concurrency` (the throughput profile).
    Throughput { max_concurrency: u32 },
    /// Open loop at `rate` requests per second.
    Rate { rate: f64, arrival: Arrival },
    /// Closed loop with `concurrency` requests always in flight.
    Concurrency { concurrency: u32 },
}

impl Load {
    /// Short text: `synchronous`, `throughput (256)`, `poisson 12.5 req/s`, `concurrency 50`.
    pub fn label(&self) -> String {
        match self {
            Load::Synchronous => "synchronous".into(),
            Load::Throughput { max_concurrency } => format!("throughput ({max_concurrency})"),
            Load::Rate { rate, arrival } => format!(
                "{} {} req/s",
                match arrival {
                    Arrival::Poisson => "poisson",
                    Arrival::Constant => "constant",
                },
                crate::units::human(*rate, crate::units::Dimension::Count)
            ),
            Load::Concurrency { concurrency } => format!("concurrency {concurrency}"),
        }
    }
}

/// Why a step is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Synchronous,
    Throughput,
    Sweep,
    Refine,
}

/// One step to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SweepStep {
    /// 0-based; also the index of its benchmark in the results file.
    pub index: usize,
    pub phase: Phase,
    pub load: Load,
}

/// Which levels to sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SweepMode {
    Auto {
        /// `N` rates between the synchronous and the throughput rate (default 8: 10 steps in
        /// all, GuideLLM's default sweep size).
        rate_steps: usize,
        arrival: Arrival,
        /// Concurrency of the throughput step.
        throughput_concurrency: u32,
    },
    Rates {
        rates: Vec<f64>,
        arrival: Arrival,
    },
    Concurrency {
        levels: Vec<u32>,
    },
}

/// The planner's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepConfig {
    pub mode: SweepMode,
    pub breaking: BreakingConfig,
    pub tiers: TierConfig,
    /// Bisect between the last passing and the first failing level.
    pub refine: bool,
    /// Relative gap at which refinement stops (default 0.05).
    pub tolerance: f64,
    /// At most this many refinement steps (default 6).
    pub refine_budget: usize,
    /// Skip higher levels after an over-saturated step (default true).
    pub stop_on_oversaturation: bool,
}

impl SweepConfig {
    pub fn new(mode: SweepMode) -> Self {
        SweepConfig {
            mode,
            breaking: BreakingConfig::default(),
            tiers: TierConfig::default(),
            refine: true,
            tolerance: 0.05,
            refine_budget: 6,
            stop_on_oversaturation: true,
        }
    }

    /// The default sweep: synchronous, throughput at 256, 8 Poisson rates.
    pub fn auto() -> Self {
        SweepConfig::new(SweepMode::Auto {
            rate_steps: 8,
            arrival: Arrival::Poisson,
            throughput_concurrency: 256,
        })
    }

    pub fn validate(&self) -> Result<(), SlaError> {
        let bad = |m: String| Err(SlaError::Invalid(m));
        match &self.mode {
            SweepMode::Auto {
                rate_steps,
                throughput_concurrency,
                ..
            } => {
                if *rate_steps == 0 {
                    return bad("--steps must be at least 1".into());
                }
                if *rate_steps > 1000 {
                    return bad(format!("--steps {rate_steps} is more than 1000 steps"));
                }
                if *throughput_concurrency == 0 {
                    return bad("--throughput-concurrency must be at least 1".into());
                }
            }
            SweepMode::Rates { rates, .. } => {
                if rates.is_empty() {
                    return bad("--rates needs at least one rate".into());
                }
                if let Some(r) = rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
                    return bad(format!(
                        "--rates: every rate must be a positive number of requests per second, got {r}"
                    ));
                }
            }
            SweepMode::Concurrency { levels } => {
                if levels.is_empty() {
                    return bad("--concurrency needs at least one level".into());
                }
                if levels.contains(&0) {
                    return bad("--concurrency: every level must be at least 1".into());
                }
            }
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0 && self.tolerance < 1.0) {
            return bad(format!(
                "--tolerance must be between 0 and 100 %, got {}",
                self.tolerance
            ));
        }
        Ok(())
    }
}

/// What `record` concluded about one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutcome {
    pub step: SweepStep,
    pub verdict: BreakingVerdict,
    /// For `benchmark.sla`.
    pub sla: SlaReport,
    pub achieved_requests_per_s: f64,
}

/// One step in the sweep summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSummary {
    pub index: usize,
    pub phase: Phase,
    pub load: Load,
    pub achieved_requests_per_s: f64,
    pub broken: bool,
    pub oversaturated: bool,
    pub fired: Vec<&'static str>,
    pub limited_by: Option<&'static str>,
    pub tier: Option<Tier>,
}

/// `results.extra["breaking_point"]`: the maximum sustainable load under the SLA.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakingPoint {
    /// `rate` (requests per second, open loop) or `concurrency` (closed loop).
    pub dimension: &'static str,
    /// Whether some step broke the SLA. When false, `max_sustainable` is only a lower bound.
    pub found: bool,
    /// The highest passing level below the lowest failing one.
    pub max_sustainable: Option<f64>,
    /// `max_sustainable` when the dimension is `rate` (req/s).
    pub max_sustainable_rate: Option<f64>,
    /// `max_sustainable` when the dimension is `concurrency`.
    pub max_sustainable_concurrency: Option<f64>,
    /// Output tokens per second achieved at that step.
    pub output_tokens_per_s: Option<f64>,
    pub max_sustainable_step: Option<usize>,
    /// Requests per second achieved at that step.
    pub achieved_requests_per_s: Option<f64>,
    /// The lowest failing level.
    pub first_failing: Option<f64>,
    pub first_failing_step: Option<usize>,
    /// `(first_failing − max_sustainable) / max_sustainable`.
    pub relative_gap: Option<f64>,
    /// Whether the gap is within the tolerance.
    pub converged: bool,
    pub tolerance: f64,
    /// The criterion that limits the load: the most severe one fired at the first failing step.
    pub limited_by: Option<&'static str>,
    /// Every criterion fired at the first failing step, with its numbers.
    pub limiting_criteria: Vec<CriterionResult>,
    /// The limiting criterion's sentence.
    pub reason: Option<String>,
    /// Whether the verdicts used server metrics (any step).
    pub server_metrics: bool,
}

/// The sweep as a whole: `results.extra["sweep"]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepSummary {
    /// `auto`, `rates` or `concurrency`.
    pub mode: &'static str,
    pub synchronous_rate: Option<f64>,
    pub throughput_rate: Option<f64>,
    pub steps: Vec<StepSummary>,
    /// Whether any step was over-saturated.
    pub oversaturated: bool,
    pub stop_reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip)]
    pub breaking_point: BreakingPoint,
}

impl SweepSummary {
    /// Indices of the steps that passed at or below the sustainable level (and a passing
    /// synchronous step): where per-benchmark thresholds of a sweep are meaningful, since the
    /// steps past the breaking point fail them by design. Pass to `check_results(.., Some(..))`.
    pub fn sustainable_steps(&self) -> Vec<usize> {
        let max = self
            .breaking_point
            .max_sustainable
            .unwrap_or(f64::NEG_INFINITY);
        self.steps
            .iter()
            .filter(|s| !s.broken)
            .filter(|s| match s.load {
                Load::Synchronous => true,
                Load::Rate { rate, .. } => rate <= max,
                Load::Concurrency { concurrency } => f64::from(concurrency) <= max,
                Load::Throughput { .. } => false,
            })
            .map(|s| s.index)
            .collect()
    }

    /// The entries to add to `Results::extra`: `sweep` and `breaking_point`.
    pub fn extra_entries(&self) -> [(String, Value); 2] {
        [
            (
                "sweep".into(),
                serde_json::to_value(self).unwrap_or(Value::Null),
            ),
            (
                "breaking_point".into(),
                serde_json::to_value(&self.breaking_point).unwrap_or(Value::Null),
            ),
        ]
    }
}

#[derive(Debug, Clone)]
struct Done {
    step: SweepStep,
    achieved: f64,
    output_tokens_per_s: f64,
    verdict: BreakingVerdict,
    sla: SlaReport,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SweepPlanner {
    cfg: SweepConfig,
    done: Vec<Done>,
    pending: Option<SweepStep>,
    queue: VecDeque<Load>,
    planned: bool,
    refine_used: usize,
    stop_reason: Option<String>,
    notes: Vec<String>,
}

/// A measured level: (level, passed, step index).
type Point = (f64, bool, usize);

impl SweepPlanner {
    pub fn new(cfg: SweepConfig) -> Result<Self, SlaError> {
        cfg.validate()?;
        Ok(SweepPlanner {
            cfg,
            done: Vec::new(),
            pending: None,
            queue: VecDeque::new(),
            planned: false,
            refine_used: 0,
            stop_reason: None,
            notes: Vec::new(),
        })
    }

    pub fn config(&self) -> &SweepConfig {
        &self.cfg
    }

    fn arrival(&self) -> Arrival {
        match &self.cfg.mode {
            SweepMode::Auto { arrival, .. } | SweepMode::Rates { arrival, .. } => *arrival,
            SweepMode::Concurrency { .. } => Arrival::Poisson,
        }
    }

    fn is_concurrency(&self) -> bool {
        matches!(self.cfg.mode, SweepMode::Concurrency { .. })
    }

    fn achieved_of(&self, phase: Phase) -> Option<f64> {
        self.done
            .iter()
            .find(|d| d.step.phase == phase)
            .map(|d| d.achieved)
    }

    fn stop(&mut self, why: impl Into<String>) -> Option<SweepStep> {
        if self.stop_reason.is_none() {
            self.stop_reason = Some(why.into());
        }
        None
    }

    fn issue(&mut self, phase: Phase, load: Load) -> Option<SweepStep> {
        let s = SweepStep {
            index: self.done.len(),
            phase,
            load,
        };
        self.pending = Some(s);
        Some(s)
    }

    /// The next step to run, or `None` when the sweep is over. Until that step is recorded,
    /// the same step is returned again.
    pub fn next_step(&mut self) -> Option<SweepStep> {
        if let Some(p) = self.pending {
            return Some(p);
        }
        if self.stop_reason.is_some() {
            return None;
        }
        if !self.planned {
            match self.cfg.mode.clone() {
                SweepMode::Auto {
                    rate_steps,
                    arrival,
                    throughput_concurrency,
                } => {
                    let Some(rs) = self.achieved_of(Phase::Synchronous) else {
                        return self.issue(Phase::Synchronous, Load::Synchronous);
                    };
                    let Some(rt) = self.achieved_of(Phase::Throughput) else {
                        if rs.is_nan() || rs <= 0.0 {
                            return self.stop(
                                "the synchronous step completed no request: nothing to sweep",
                            );
                        }
                        return self.issue(
                            Phase::Throughput,
                            Load::Throughput {
                                max_concurrency: throughput_concurrency,
                            },
                        );
                    };
                    if rt.is_nan() || rt <= 0.0 {
                        return self.stop("the throughput step completed no request");
                    }
                    let hi = if rt <= rs {
                        self.notes.push(format!(
                            "the throughput step ({rt:.3} req/s) was no faster than the synchronous one ({rs:.3} req/s): the server does not gain from concurrency; rates are spread from {:.3} to {:.3} req/s",
                            rs / 2.0,
                            rs
                        ));
                        rs
                    } else {
                        rt
                    };
                    let lo = if rt <= rs { rs / 2.0 } else { rs };
                    for i in 1..=rate_steps {
                        let rate = lo + (hi - lo) * i as f64 / rate_steps as f64;
                        self.queue.push_back(Load::Rate { rate, arrival });
                    }
                }
                SweepMode::Rates { rates, arrival } => {
                    let mut r = rates.clone();
                    r.sort_by(f64::total_cmp);
                    r.dedup();
                    if r != rates {
                        self.notes
                            .push("--rates were sorted ascending (duplicates removed)".into());
                    }
                    self.queue
                        .extend(r.into_iter().map(|rate| Load::Rate { rate, arrival }));
                }
                SweepMode::Concurrency { levels } => {
                    let mut l = levels.clone();
                    l.sort_unstable();
                    l.dedup();
                    if l != levels {
                        self.notes.push(
                            "--concurrency levels were sorted ascending (duplicates removed)"
                                .into(),
                        );
                    }
                    self.queue.extend(
                        l.into_iter()
                            .map(|concurrency| Load::Concurrency { concurrency }),
                    );
                }
            }
            self.planned = true;
        }
        if let Some(load) = self.queue.pop_front() {
            return self.issue(Phase::Sweep, load);
        }
        self.next_refinement()
    }

    /// Measured levels of the bracketing dimension.
    fn points(&self) -> Vec<Point> {
        let conc = self.is_concurrency();
        self.done
            .iter()
            .filter_map(|d| {
                let level = match (d.step.load, conc) {
                    (Load::Rate { rate, .. }, false) => rate,
                    (Load::Synchronous, false) if d.achieved > 0.0 => d.achieved,
                    (Load::Concurrency { concurrency }, true) => f64::from(concurrency),
                    _ => return None,
                };
                Some((level, !d.verdict.broken, d.step.index))
            })
            .collect()
    }

    /// (highest passing below the lowest failing, lowest failing).
    fn bracket(&self) -> (Option<Point>, Option<Point>) {
        let pts = self.points();
        let fail = pts
            .iter()
            .filter(|p| !p.1)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .copied();
        let pass = pts
            .iter()
            .filter(|p| p.1 && fail.is_none_or(|f| p.0 < f.0))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .copied();
        (pass, fail)
    }

    fn next_refinement(&mut self) -> Option<SweepStep> {
        let (pass, fail) = self.bracket();
        let Some(fail) = fail else {
            return self
                .stop("every level passed: the breaking point lies above the highest level tried");
        };
        if let Some(p) = pass
            && p.0 > 0.0
            && (fail.0 - p.0) / p.0 <= self.cfg.tolerance
        {
            return self.stop(format!(
                "converged: the breaking point is bracketed within {:.0} %",
                self.cfg.tolerance * 100.0
            ));
        }
        if !self.cfg.refine {
            return self.stop("the level list is done (refinement off)");
        }
        if self.refine_used >= self.cfg.refine_budget {
            return self.stop(format!(
                "the refinement budget ({} steps) is spent",
                self.cfg.refine_budget
            ));
        }
        let lo = pass.map_or(0.0, |p| p.0);
        let load = if self.is_concurrency() {
            let (lo, hi) = (lo as u32, fail.0 as u32);
            if hi <= lo + 1 {
                return self.stop(if hi <= 1 {
                    "the SLA breaks even at concurrency 1".to_string()
                } else {
                    format!("converged: concurrency {lo} passes and {hi} fails")
                });
            }
            Load::Concurrency {
                concurrency: lo + (hi - lo) / 2,
            }
        } else {
            let mid = (lo + fail.0) / 2.0;
            if pass.is_none() && self.refine_used >= 3 {
                return self.stop(
                    "the SLA breaks at every rate tried, down to an eighth of the lowest level",
                );
            }
            Load::Rate {
                rate: mid,
                arrival: self.arrival(),
            }
        };
        self.refine_used += 1;
        self.issue(Phase::Refine, load)
    }

    /// Records the measured benchmark of `step` (the step `next_step` returned), judges it
    /// (breaking point and SLA tiers) and returns the verdicts for the caller to store.
    pub fn record(
        &mut self,
        step: &SweepStep,
        b: &Benchmark,
        server: Option<&ServerSignals>,
        points: &[RequestPoint],
    ) -> Result<StepOutcome, SlaError> {
        if self.pending != Some(*step) {
            return Err(SlaError::Invalid(format!(
                "sweep planner: step {} ({}) was not the step asked for; record each step that next_step returned, once",
                step.index,
                step.load.label()
            )));
        }
        self.pending = None;
        let verdict = breaking::evaluate(&self.cfg.breaking, b, server, points);
        let mut sla = tiers::classify(&self.cfg.tiers, b, server);
        sla.set_verdict(&verdict);
        let achieved = b.throughput.requests_per_s;
        if step.phase == Phase::Sweep
            && verdict.oversaturated
            && self.cfg.stop_on_oversaturation
            && !self.queue.is_empty()
        {
            self.notes.push(format!(
                "step {} ({}) was over-saturated (TTFT and requests in flight rising through it): {} higher level(s) skipped",
                step.index,
                step.load.label(),
                self.queue.len()
            ));
            self.queue.clear();
        }
        let done = Done {
            step: *step,
            achieved,
            output_tokens_per_s: b.throughput.output_tokens_per_s,
            verdict: verdict.clone(),
            sla: sla.clone(),
        };
        self.done.push(done);
        Ok(StepOutcome {
            step: *step,
            verdict,
            sla,
            achieved_requests_per_s: achieved,
        })
    }

    /// The sweep's summary and breaking point.
    pub fn finish(mut self) -> SweepSummary {
        let (pass, fail) = self.bracket();
        let pts = self.points();
        if let Some(f) = fail
            && let Some(hp) = pts
                .iter()
                .filter(|p| p.1 && p.0 > f.0)
                .max_by(|a, b| a.0.total_cmp(&b.0))
        {
            self.notes.push(format!(
                "level {} passed although {} below it failed: the results are noisy near the limit; the breaking point reported is the conservative one",
                fmt_level(hp.0),
                fmt_level(f.0)
            ));
        }
        if let Some(sync) = self
            .done
            .iter()
            .find(|d| d.step.phase == Phase::Synchronous)
            && sync.verdict.broken
        {
            self.notes
                .push("the synchronous step (one request at a time) already breaks the SLA".into());
        }
        let by_index = |i: usize| self.done.iter().find(|d| d.step.index == i);
        let first_fail = fail.and_then(|f| by_index(f.2));
        let server_metrics = self.done.iter().any(|d| d.verdict.server_metrics);
        let breaking_point = BreakingPoint {
            dimension: if self.is_concurrency() {
                "concurrency"
            } else {
                "rate"
            },
            found: fail.is_some(),
            max_sustainable: pass.map(|p| p.0),
            max_sustainable_rate: pass.filter(|_| !self.is_concurrency()).map(|p| p.0),
            max_sustainable_concurrency: pass.filter(|_| self.is_concurrency()).map(|p| p.0),
            output_tokens_per_s: pass
                .and_then(|p| by_index(p.2))
                .map(|d| d.output_tokens_per_s),
            max_sustainable_step: pass.map(|p| p.2),
            achieved_requests_per_s: pass.and_then(|p| by_index(p.2)).map(|d| d.achieved),
            first_failing: fail.map(|f| f.0),
            first_failing_step: fail.map(|f| f.2),
            relative_gap: match (pass, fail) {
                (Some(p), Some(f)) if p.0 > 0.0 => Some((f.0 - p.0) / p.0),
                _ => None,
            },
            converged: matches!((pass, fail), (Some(p), Some(f)) if p.0 > 0.0 && (f.0 - p.0) / p.0 <= self.cfg.tolerance),
            tolerance: self.cfg.tolerance,
            limited_by: first_fail.and_then(|d| d.verdict.limited_by),
            limiting_criteria: first_fail
                .map(|d| d.verdict.fired().cloned().collect())
                .unwrap_or_default(),
            reason: first_fail.and_then(|d| {
                d.verdict
                    .fired()
                    .find(|c| Some(c.name) == d.verdict.limited_by)
                    .map(|c| format!("{}: {}", c.name, c.detail))
            }),
            server_metrics,
        };
        if !server_metrics && !self.done.is_empty() {
            self.notes.push(
                "no server metrics: the breaking point was judged on client criteria only".into(),
            );
        }
        let steps = self
            .done
            .iter()
            .map(|d| StepSummary {
                index: d.step.index,
                phase: d.step.phase,
                load: d.step.load,
                achieved_requests_per_s: d.achieved,
                broken: d.verdict.broken,
                oversaturated: d.verdict.oversaturated,
                fired: d.verdict.fired().map(|c| c.name).collect(),
                limited_by: d.verdict.limited_by,
                tier: d.sla.overall,
            })
            .collect();
        SweepSummary {
            mode: match self.cfg.mode {
                SweepMode::Auto { .. } => "auto",
                SweepMode::Rates { .. } => "rates",
                SweepMode::Concurrency { .. } => "concurrency",
            },
            oversaturated: self.done.iter().any(|d| d.verdict.oversaturated),
            synchronous_rate: self.achieved_of(Phase::Synchronous),
            throughput_rate: self.achieved_of(Phase::Throughput),
            steps,
            stop_reason: self
                .stop_reason
                .clone()
                .unwrap_or_else(|| "the sweep was ended before its plan was done".into()),
            notes: self.notes,
            breaking_point,
        }
    }
}

fn fmt_level(v: f64) -> String {
    crate::units::human(v, crate::units::Dimension::Count)
}
