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
    Threshold, ThresholdReport, ThresholdResult, check, check_all, parse_threshold,
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
