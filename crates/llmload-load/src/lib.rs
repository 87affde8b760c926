//! The load engine of llmload: profiles, the scheduler/dispatcher, stop conditions, warm-up and
//! cool-down, and the results files of a run.

pub mod engine;
mod handoff;
pub mod output;
pub mod plan;
pub mod profile;
mod transport;

pub use engine::{Engine, NullSink, Outcome, Progress, RecordSink, Sent, SharedSink, Transport};
pub use plan::{BenchmarkPlan, PhaseLen, StopConditions};
pub use profile::{Arrivals, Profile};
