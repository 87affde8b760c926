//! Shared vocabulary of llmload: what a workload asks for ([`spec`]), what a request measured
//! ([`record`]), exact statistics ([`stats`]), the per-benchmark aggregator ([`aggregate`]) and
//! the `llmload.results/v1` schema ([`results`]).
//!
//! Every definition here follows `docs/metrics.md` (the contract of DESIGN §2 and §3).

pub mod aggregate;
pub mod record;
pub mod results;
pub mod spec;
pub mod stats;
pub mod workload;

pub use aggregate::{Aggregator, WindowRule};
pub use record::{ErrorClass, RequestRecord, TokenSource};
pub use results::{Benchmark, Results, ResultsRun, ResultsTool, SCHEMA};
pub use spec::{ChatMessage, ContentPart, ImageMeta, Prompt, RequestSpec};
pub use stats::{Summary, percentile};
pub use workload::{TokenCounter, Workload};
