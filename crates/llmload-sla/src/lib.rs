//! llmload-sla: the decisions of llmload, as pure library code (no I/O, no clock).
//!
//! - [`slo`]: `--slo ttft=1s` flags and SLO files (goodput objectives);
//! - [`threshold`]: k6-style CI thresholds (`ttft.p95<2s`), their check and the exit code 99;
//! - [`tiers`]: SLA tiers (excellent / acceptable / degraded / breaking) per benchmark;
//! - [`breaking`]: the breaking-point criteria of one step;
//! - [`trend`]: robust trend tests (Theil–Sen slope, Mann–Kendall) used by them;
//! - [`planner`]: the sweep planner (what to run next, bisection, the sustainable maximum);
//! - [`format`]: console text;
//! - [`cli`]: clap arguments the binary flattens into `run` and `sweep`.

pub mod error;
pub mod threshold;
pub mod units;

pub use error::{ExprError, SlaError};
pub use threshold::{
    Threshold, ThresholdReport, ThresholdResult, check, check_all, check_results, parse_threshold,
};
pub mod slo;
pub mod tiers;
pub mod trend;

pub use slo::{FileFormat, parse_slo, parse_slo_file, parse_slos};
pub use tiers::{ServerSignals, SlaReport, Tier, TierConfig, classify};
pub mod breaking;

pub use breaking::{BreakingConfig, BreakingVerdict, RequestPoint, evaluate};
pub mod planner;

pub use planner::{
    Arrival, BreakingPoint, Load, Phase, StepOutcome, SweepConfig, SweepMode, SweepPlanner,
    SweepStep, SweepSummary,
};
pub mod cli;
pub mod format;

/// Judges one benchmark in place, for `llmload run`: reads the server signals from
/// `b.server` (when scraped), sets `b.sla` to the SLA tiers and `b.extra["breaking_point"]` to
/// the breaking-point verdict, and returns both. `points` are the in-window requests
/// ([`breaking::points_from_records`]); empty disables the trend test.
pub fn annotate(
    b: &mut llmload_core::Benchmark,
    tiers: &TierConfig,
    breaking: &BreakingConfig,
    points: &[RequestPoint],
) -> (SlaReport, BreakingVerdict) {
    let signals = b.server.as_ref().and_then(ServerSignals::from_server_value);
    let mut sla = classify(tiers, b, signals.as_ref());
    let verdict = evaluate(breaking, b, signals.as_ref(), points);
    sla.set_verdict(&verdict);
    b.sla = Some(sla.to_value());
    b.extra
        .insert("breaking_point".to_string(), verdict.to_value());
    (sla, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotate_fills_the_benchmark() {
        let mut b = llmload_core::Benchmark::default();
        b.metrics.ttft_s = Some(llmload_core::Summary {
            count: 3,
            p95: 1.5,
            ..Default::default()
        });
        b.requests.completed = 3;
        b.server = Some(serde_json::json!({
            "scrapes_in_window": 2,
            "kv_cache_usage": {"max": 0.5},
            "waiting": {"mean": 0.0, "max": 0.0},
            "series": []
        }));
        let (sla, v) = annotate(
            &mut b,
            &TierConfig::default(),
            &BreakingConfig::default(),
            &[],
        );
        assert_eq!(sla.overall, Some(Tier::Degraded));
        assert!(sla.server_metrics && v.server_metrics);
        assert!(v.broken);
        assert_eq!(
            b.sla.as_ref().unwrap()["kv_cache_usage"]["tier"],
            "excellent"
        );
        assert_eq!(b.extra["breaking_point"]["limited_by"], "ttft");
        assert_eq!(b.sla.as_ref().unwrap()["pass"], false);
        assert!(
            b.sla.as_ref().unwrap()["failures"][0]
                .as_str()
                .unwrap()
                .starts_with("ttft: TTFT p95")
        );
    }
}
