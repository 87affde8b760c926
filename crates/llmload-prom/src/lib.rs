//! llmload-prom: Prometheus text 0.0.4 / OpenMetrics 1.0 parsing ([`parse`]), histogram math
//! ([`histogram`]), compact scrape storage ([`snapshot`]), the vLLM metric catalog
//! ([`vllm`]) and analysis ([`analyze`]), a scraper for benchmark runs ([`scrape`]) and the
//! `llmload metrics` command ([`cli`]).

pub mod analyze;
pub mod histogram;
pub mod parse;
pub mod snapshot;
pub mod vllm;

pub use analyze::{Analysis, AnalyzeOptions, Insight, Level, OutputFormat, Tier};
pub use histogram::{Histogram, Quantile, QuantileKind, counter_delta};
pub use parse::{
    Exposition, Family, Format, MetricType, ParseError, Sample, decode_body, parse, parse_as,
};
pub use snapshot::{Interner, KeepFilter, SeriesKey, Snapshot};
pub use vllm::{Figures, HistStats, VllmFigures};
