//! Reports people read, from an llmload results directory: one self-contained HTML page with
//! inline SVG charts, a Markdown summary, CSV (one row per benchmark step, optionally one per
//! request); and `llmload compare` (runs side by side, ROI of a deployment choice, peers'
//! results imported, a regression gate).
//!
//! Every number printed is either copied from `results.json` (statistics are never recomputed
//! from downsampled data) or derived by a formula written in `docs/reports.md`.

pub mod chart;
pub mod cli;
pub mod compare;
pub mod csv_out;
pub mod flat;
pub mod html;
pub mod import;
pub mod markdown;
pub mod series;
pub mod view;

use std::fmt;
use std::path::{Path, PathBuf};

use llmload_core::Results;

/// Everything that can go wrong while reading results or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source} (give a results directory or a results.json file)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source} (check that --out points to a writable directory)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid llmload results file: {detail} (expected schema llmload.results/v1)"
    )]
    Results { path: PathBuf, detail: String },
    #[error("{path}, line {line}: invalid request record: {detail}")]
    Record {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("cannot import {path} as {format}: {detail}")]
    Import {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("CSV error writing {path}: {detail}")]
    Csv { path: PathBuf, detail: String },
}

/// An output format of `llmload report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    Html,
    Markdown,
    Csv,
}

impl Format {
    /// Parses `html`, `md` (or `markdown`) and `csv`.
    pub fn parse(s: &str) -> Result<Format, ReportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "html" => Ok(Format::Html),
            "md" | "markdown" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            other => Err(ReportError::Usage(format!(
                "unknown report format {other:?} in --format: use html, md or csv (comma-separated)"
            ))),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Html => "html",
            Format::Markdown => "md",
            Format::Csv => "csv",
        })
    }
}

/// File names written into the output directory.
pub const HTML_FILE: &str = "report.html";
pub const MARKDOWN_FILE: &str = "report.md";
pub const CSV_FILE: &str = "benchmarks.csv";
pub const REQUESTS_CSV_FILE: &str = "requests.csv";
pub const RESULTS_FILE: &str = "results.json";
pub const REQUESTS_FILE: &str = "requests.jsonl";

/// A results file located on disk, with its per-request records file when one exists.
#[derive(Debug, Clone)]
pub struct LoadedResults {
    pub results: Results,
    /// The `results.json` that was read.
    pub path: PathBuf,
    /// `requests.jsonl` beside it, when present.
    pub requests: Option<PathBuf>,
}

/// Resolves `RESULTS_DIR` or a `results.json` path to the results file.
pub fn resolve_results_path(input: &Path) -> PathBuf {
    if input.is_dir() {
        input.join(RESULTS_FILE)
    } else {
        input.to_path_buf()
    }
}

/// Reads `results.json` (from a results directory or the file itself).
pub fn load_results(input: &Path) -> Result<LoadedResults, ReportError> {
    let path = resolve_results_path(input);
    let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    let results = parse_results(&path, &text)?;
    let requests = path
        .parent()
        .map(|d| d.join(REQUESTS_FILE))
        .filter(|p| p.is_file());
    Ok(LoadedResults {
        results,
        path,
        requests,
    })
}

/// Parses the text of a results file, with a message naming the line and column on error.
pub fn parse_results(path: &Path, text: &str) -> Result<Results, ReportError> {
    let results: Results = serde_json::from_str(text).map_err(|e| ReportError::Results {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if !results.schema.starts_with("llmload.results/") {
        return Err(ReportError::Results {
            path: path.to_path_buf(),
            detail: format!("unknown schema {:?}", results.schema),
        });
    }
    Ok(results)
}

/// Options of one `render` call.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub formats: Vec<Format>,
    /// Output directory; default: the results directory.
    pub out: Option<PathBuf>,
    /// Also write `requests.csv` (one row per request) when `requests.jsonl` exists.
    pub requests_csv: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            formats: vec![Format::Html, Format::Markdown],
            out: None,
            requests_csv: false,
        }
    }
}

/// Renders the reports of one results directory (or file); returns the paths written.
pub fn render(input: &Path, opts: &RenderOptions) -> Result<Vec<PathBuf>, ReportError> {
    render_with_series(input, opts, None)
}

/// Like [`render`], with the in-flight series supplied by the caller (one per benchmark, e.g.
/// built with [`series::in_flight`] from the `(t_dispatch, t_end)` pairs a run still holds in
/// memory) instead of read back from `requests.jsonl`.
pub fn render_with_series(
    input: &Path,
    opts: &RenderOptions,
    in_flight: Option<Vec<series::StepSeries>>,
) -> Result<Vec<PathBuf>, ReportError> {
    let loaded = load_results(input)?;
    let out_dir = match &opts.out {
        Some(d) => d.clone(),
        None => loaded
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    std::fs::create_dir_all(&out_dir).map_err(|source| ReportError::Write {
        path: out_dir.clone(),
        source,
    })?;
    let mut formats = opts.formats.clone();
    formats.sort();
    formats.dedup();
    let mut written = Vec::new();
    // The per-step time series need the request records; read them once.
    let step_series = if in_flight.is_some() {
        in_flight
    } else if formats.contains(&Format::Html) {
        match &loaded.requests {
            Some(p) => Some(series::in_flight_from_jsonl(
                p,
                &loaded.results,
                series::DEFAULT_POINTS,
            )?),
            None => None,
        }
    } else {
        None
    };
    for f in formats {
        match f {
            Format::Html => {
                let path = out_dir.join(HTML_FILE);
                let page = html::render_html(&loaded.results, step_series.as_deref());
                write_file(&path, page.as_bytes())?;
                written.push(path);
            }
            Format::Markdown => {
                let path = out_dir.join(MARKDOWN_FILE);
                write_file(&path, markdown::render_markdown(&loaded.results).as_bytes())?;
                written.push(path);
            }
            Format::Csv => {
                let path = out_dir.join(CSV_FILE);
                csv_out::write_benchmarks_csv(&loaded.results, &path)?;
                written.push(path);
            }
        }
    }
    if opts.requests_csv {
        match &loaded.requests {
            Some(src) => {
                let path = out_dir.join(REQUESTS_CSV_FILE);
                csv_out::write_requests_csv(src, &path)?;
                written.push(path);
            }
            None => {
                return Err(ReportError::Usage(format!(
                    "--requests-csv needs {} beside {}, and there is none",
                    REQUESTS_FILE,
                    loaded.path.display()
                )));
            }
        }
    }
    Ok(written)
}

/// What `llmload run` and `llmload sweep` call at the end: HTML and Markdown into the results
/// directory. Returns the paths written, for printing.
pub fn render_default(results_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    render(results_dir, &RenderOptions::default())
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}
