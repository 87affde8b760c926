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

pub mod cli;
pub mod scrape;
pub mod window;

pub use scrape::{
    ScrapeConfig, ScrapeError, ScrapeHandle, ScrapeSeries, Scraper, default_metrics_url,
};
pub use window::{ClientFigures, Correlation, ServerWindow};

/// Errors of the `metrics` verbs.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: {error}")]
    Parse {
        source_name: String,
        #[source]
        error: ParseError,
    },
    #[error(transparent)]
    Scrape(#[from] ScrapeError),
    #[error("{0}")]
    Usage(String),
}
