//! `llmload metrics analyze|diff`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use url::Url;

use crate::PromError;
use crate::analyze::{Analysis, AnalyzeOptions, OutputFormat, render};
use crate::parse::{Format, decode_body, parse_as};
use crate::scrape::fetch;
use crate::snapshot::Snapshot;

const EXAMPLES: &str = "\
Examples:
  llmload metrics analyze http://127.0.0.1:8000/metrics
  llmload metrics analyze metrics_dump.txt --format md > analysis.md
  llmload metrics analyze dump.prom --format json --model qwen3-4b
  llmload metrics diff before.txt after.txt --elapsed 60
  llmload metrics diff http://127.0.0.1:8000/metrics --interval 30s";

/// Scrape, analyze and diff Prometheus expositions (vLLM's /metrics).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct MetricsArgs {
    #[command(subcommand)]
    pub command: MetricsCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum MetricsCommand {
    /// Analyze one exposition: a file, `-` for standard input, or an http:// URL.
    ///
    /// Prints system context, cache config (KV capacity in tokens), requests by finish reason,
    /// tokens, server TTFT/ITL/TPOT/e2e/queue/prefill/decode (mean and quantiles from the
    /// buckets), KV and prefix cache, HTTP requests and GC, then insights and recommendations
    /// tied to the SLA tiers. Counters cover everything since the server started: use `diff` for
    /// a window.
    #[command(after_help = EXAMPLES)]
    Analyze(AnalyzeArgs),
    /// Analyze what happened between two expositions (two files or URLs), or between two
    /// scrapes of one URL taken `--interval` apart.
    ///
    /// Counters and histograms are the increases (a counter that went down restarted: its new
    /// value is the increase); gauges are those of the later exposition.
    #[command(after_help = EXAMPLES)]
    Diff(DiffArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Only series of this model (`model_name` label).
    #[arg(long)]
    pub model: Option<String>,
    /// Timeout of one HTTP scrape (e.g. `5s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// File, `-` (standard input) or http:// URL of a /metrics exposition (gzip accepted).
    pub source: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The earlier exposition (file or URL). Given alone, it must be a URL scraped twice.
    pub before: String,
    /// The later exposition (file or URL).
    pub after: Option<String>,
    /// With one URL: time between the two scrapes (e.g. `30s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Seconds between two given files, for rates (tokens/s, requests/s).
    #[arg(long)]
    pub elapsed: Option<f64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Server-metrics flags for `llmload run` / `sweep` (flatten into their arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct ScrapeArgs {
    /// Prometheus endpoint to scrape during the run; repeat for several (default: the
    /// target's base URL with path /metrics).
    #[arg(long = "metrics-url", value_name = "URL")]
    pub metrics_urls: Vec<Url>,
    /// Do not scrape the server's /metrics.
    #[arg(long)]
    pub no_server_metrics: bool,
    /// Time between two scrapes (e.g. 1s, 250ms; a bare number is seconds).
    #[arg(long, default_value = "1s", value_parser = parse_scrape_interval)]
    pub scrape_interval: Duration,
}

impl ScrapeArgs {
    /// The URLs to scrape for `target`: `--metrics-url`s, else the target's /metrics; none with
    /// `--no-server-metrics`.
    pub fn urls(&self, target: &Url) -> Vec<Url> {
        if self.no_server_metrics {
            Vec::new()
        } else if self.metrics_urls.is_empty() {
            vec![crate::scrape::default_metrics_url(target)]
        } else {
            self.metrics_urls.clone()
        }
    }

    /// Spawns the scraper for `target` (inside a tokio runtime), or `None` when turned off.
    pub fn spawn(&self, target: &Url, epoch: Instant) -> Option<crate::scrape::ScrapeHandle> {
        let urls = self.urls(target);
        (!urls.is_empty()).then(|| crate::scrape::Scraper::spawn(urls, self.scrape_interval, epoch))
    }
}

/// A scrape interval: a duration above zero.
fn parse_scrape_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("--scrape-interval must be above zero, got {s:?}"));
    }
    Ok(d)
}

/// Parses `10`, `10s`, `250ms`, `2m`, `1h` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 10s, 250ms, 2m"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid duration {s:?}: must be a positive number"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn unix_now() -> Option<f64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// Loads a source into a snapshot; returns it and, for URLs, the Unix time of collection.
pub async fn load(source: &str, timeout: Duration) -> Result<(Snapshot, Option<f64>), PromError> {
    let (bytes, content_type, collected) = if is_url(source) {
        let url = Url::parse(source)
            .map_err(|e| PromError::Usage(format!("invalid URL {source:?}: {e}")))?;
        let f = fetch(&url, timeout).await?;
        (f.body.to_vec(), f.content_type, unix_now())
    } else if source == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| PromError::Io {
                path: "<stdin>".into(),
                source: e,
            })?;
        (buf, None, None)
    } else {
        let buf = std::fs::read(source).map_err(|e| PromError::Io {
            path: source.into(),
            source: e,
        })?;
        (buf, None, None)
    };
    let perr = |e| PromError::Parse {
        source_name: source.to_string(),
        error: e,
    };
    let text = decode_body(&bytes).map_err(perr)?;
    let format = content_type
        .as_deref()
        .and_then(Format::from_content_type)
        .unwrap_or_else(|| Format::detect(&text));
    let expo = parse_as(&text, format).map_err(perr)?;
    Ok((Snapshot::from_exposition(&expo), collected))
}

fn emit(out: &Option<PathBuf>, text: &str) -> Result<(), PromError> {
    match out {
        Some(p) => std::fs::write(p, text).map_err(|e| PromError::Io {
            path: p.display().to_string(),
            source: e,
        }),
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(text.as_bytes())
                .and_then(|_| {
                    if text.ends_with('\n') {
                        Ok(())
                    } else {
                        so.write_all(b"\n")
                    }
                })
                .map_err(|e| PromError::Io {
                    path: "<stdout>".into(),
                    source: e,
                })
        }
    }
}

/// Runs `llmload metrics ...`; returns the process exit code (0).
pub async fn run(args: MetricsArgs) -> Result<i32, PromError> {
    match args.command {
        MetricsCommand::Analyze(a) => {
            let (snap, collected) = load(&a.source, a.common.timeout).await?;
            let opts = AnalyzeOptions {
                model: a.common.model.clone(),
                collected_unix: collected,
            };
            let analysis = Analysis::of_snapshot(&a.source, &snap, &opts);
            emit(&a.common.out, &render(&analysis, a.common.format))?;
            Ok(0)
        }
        MetricsCommand::Diff(d) => {
            let opts = AnalyzeOptions {
                model: d.common.model.clone(),
                collected_unix: None,
            };
            let analysis = match &d.after {
                Some(after) => {
                    let (b, tb) = load(&d.before, d.common.timeout).await?;
                    let (a, ta) = load(after, d.common.timeout).await?;
                    // Two live URLs: the time between the two collections.
                    let interval = d.elapsed.or(tb.zip(ta).map(|(x, y)| y - x));
                    Analysis::of_diff([&d.before, after], &b, &a, interval, &opts)
                }
                None => {
                    if !is_url(&d.before) {
                        return Err(PromError::Usage(
                            "`metrics diff` with one argument needs an http:// URL to scrape twice; \
                             give two files to compare dumps"
                                .into(),
                        ));
                    }
                    let interval = d.interval.unwrap_or(Duration::from_secs(10));
                    let t0 = Instant::now();
                    let (b, _) = load(&d.before, d.common.timeout).await?;
                    eprintln!(
                        "scraped {}; scraping again in {:.1} s ...",
                        d.before,
                        interval.as_secs_f64()
                    );
                    tokio::time::sleep(interval).await;
                    let t1 = t0.elapsed();
                    let (a, _) = load(&d.before, d.common.timeout).await?;
                    // From the start of the first scrape to the start of the second.
                    let dt = t1.as_secs_f64();
                    Analysis::of_diff([&d.before, &d.before], &b, &a, Some(dt), &opts)
                }
            };
            emit(&d.common.out, &render(&analysis, d.common.format))?;
            Ok(0)
        }
    }
}
