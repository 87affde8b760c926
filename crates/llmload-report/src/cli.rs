//! Command-line entry points of `llmload report` and `llmload compare` (wired by the binary).

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::compare::{self, CompareOptions, SlaCriteria};
use crate::import::load_run;
use crate::{Format, RenderOptions, ReportError, flat, render};

/// Exit status when the regression gate fails (k6's threshold convention, as elsewhere in
/// llmload).
pub const EXIT_REGRESSION: i32 = 99;

/// Render a results directory as HTML (inline SVG charts), Markdown and CSV.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  llmload report results/20260101-120000-sweep
  llmload report results/run1/results.json --format html,md,csv --out /tmp/reports
  llmload report results/run1 --format csv --requests-csv

Writes report.html (one self-contained file: no network, printable), report.md and
benchmarks.csv (one row per step, every statistic); --requests-csv also writes
requests.csv (one row per request) from requests.jsonl. Definitions: docs/reports.md.")]
pub struct ReportArgs {
    /// A results directory (holding results.json and requests.jsonl) or a results.json file.
    #[arg(value_name = "RESULTS_DIR|results.json")]
    pub input: PathBuf,
    /// Formats to write, comma-separated: html, md, csv.
    #[arg(long, value_delimiter = ',', default_value = "html,md")]
    pub format: Vec<String>,
    /// Output directory (default: the results directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write requests.csv, one row per request (needs requests.jsonl).
    #[arg(long)]
    pub requests_csv: bool,
}

/// `llmload report`: writes the reports and prints their paths. Exit status 0.
pub fn run_report(args: ReportArgs) -> Result<i32, ReportError> {
    let formats = args
        .format
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| Format::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let written = render(
        &args.input,
        &RenderOptions {
            formats,
            out: args.out,
            requests_csv: args.requests_csv,
        },
    )?;
    let mut out = std::io::stdout().lock();
    for p in written {
        let _ = writeln!(out, "wrote {}", p.display());
    }
    Ok(0)
}

/// Compare runs side by side (llmload, GuideLLM or vllm bench results), with ROI and a
/// regression gate.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  llmload compare results/int4-1gpu results/bf16-4gpu
  llmload compare results/int4 results/bf16 --label 1:gpus=1 --label 1:gpu_hour_cost=2.10 \\
      --label 2:gpus=4 --label 2:gpu_hour_cost=2.10 --at-rate 2
  llmload compare results/sweep guidellm/benchmarks.json vllm-bench/result.json
  llmload compare --baseline results/nightly-old results/nightly-new --max-regression 10% \\
      --metric ttft.p95 --metric output_tokens_per_s

Runs are numbered 1, 2, ... in the order given (the baseline is 1). Steps are aligned by
rate (within 2 %), else by concurrency. With --baseline the exit status is 99 when a
metric got worse by more than --max-regression at any aligned step, 0 otherwise.
ROI labels: gpus (count) and gpu_hour_cost (price of one GPU for one hour).")]
pub struct CompareArgs {
    /// Runs to compare: results directories, results.json, GuideLLM benchmarks.json, or
    /// vllm bench serve result files (.json or JSON Lines).
    #[arg(value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Baseline run for the regression gate; give exactly one other RUN (the new one).
    #[arg(long, value_name = "OLD")]
    pub baseline: Option<PathBuf>,
    /// Largest accepted worsening per metric and step, e.g. 10% (default 10% with --baseline).
    #[arg(long, value_name = "PCT")]
    pub max_regression: Option<String>,
    /// Metric to show and gate, repeatable: ttft.p95, tpot.mean, e2e_latency.p99, itl.p50,
    /// output_tokens_per_s, requests_per_s, error_rate, ...
    #[arg(long = "metric", value_name = "METRIC.STAT")]
    pub metrics: Vec<String>,
    /// Add a label to a run: RUN_INDEX:key=value (1-based), e.g. 2:gpus=4, 1:gpu_hour_cost=2.5.
    #[arg(long = "label", value_name = "RUN_INDEX:key=value")]
    pub labels: Vec<String>,
    /// Also compute output tokens/s and cost per 1M output tokens at this offered rate (req/s).
    #[arg(long, value_name = "REQ_PER_S")]
    pub at_rate: Option<f64>,
    /// SLA used for capacity when a run recorded no breaking point: TTFT p95 below this (s).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub sla_ttft_p95: f64,
    /// SLA used for capacity when a run recorded no breaking point: error rate below this.
    #[arg(long, default_value = "1%", value_name = "PCT")]
    pub sla_max_error_rate: String,
    /// Write compare.md and compare.html into this directory (the Markdown is printed too).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `llmload compare`: prints the comparison (and writes it with `--out`). Exit status 0, or
/// [`EXIT_REGRESSION`] when the gate fails.
pub fn run_compare(args: CompareArgs) -> Result<i32, ReportError> {
    let mut paths = Vec::new();
    if let Some(b) = &args.baseline {
        if args.runs.len() != 1 {
            return Err(ReportError::Usage(format!(
                "--baseline OLD needs exactly one NEW run after it, got {}",
                args.runs.len()
            )));
        }
        paths.push(b.clone());
    } else if args.max_regression.is_some() {
        return Err(ReportError::Usage(
            "--max-regression needs --baseline OLD (and one NEW run)".into(),
        ));
    }
    paths.extend(args.runs.iter().cloned());
    if paths.len() < 2 {
        return Err(ReportError::Usage(
            "compare needs at least two runs (or --baseline OLD NEW)".into(),
        ));
    }
    let mut runs = paths
        .iter()
        .map(|p| load_run(p))
        .collect::<Result<Vec<_>, _>>()?;
    compare::apply_labels(&mut runs, &args.labels).map_err(ReportError::Usage)?;
    let metrics = args
        .metrics
        .iter()
        .map(|m| flat::canonical_key(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReportError::Usage(format!("--metric: {e}")))?;
    let sla = SlaCriteria {
        ttft_p95_s: args.sla_ttft_p95,
        error_rate: compare::parse_margin(&args.sla_max_error_rate).map_err(|e| {
            ReportError::Usage(e.replace("--max-regression", "--sla-max-error-rate"))
        })?,
    };
    let opts = CompareOptions {
        metrics: if metrics.is_empty() {
            compare::DEFAULT_METRICS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            metrics.clone()
        },
        at_rate: args.at_rate,
        sla,
    };
    let mut md = compare::render_markdown(&runs, &opts);
    let mut code = 0;
    if args.baseline.is_some() {
        let margin = compare::parse_margin(args.max_regression.as_deref().unwrap_or("10%"))
            .map_err(ReportError::Usage)?;
        let gate_metrics: Vec<String> = if metrics.is_empty() {
            compare::DEFAULT_GATE_METRICS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            metrics
        };
        let res = compare::gate(&runs[0], &runs[1], &gate_metrics, margin);
        if res.checks.is_empty() {
            return Err(ReportError::Usage(format!(
                "regression gate: nothing to compare between {} and {} ({}); check that both runs have the same load steps and the chosen --metric",
                paths[0].display(),
                paths[1].display(),
                res.skipped.join("; ")
            )));
        }
        md.push('\n');
        md.push_str(&compare::render_gate(&res, margin));
        if res.failed() {
            code = EXIT_REGRESSION;
        }
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.clone(),
            source,
        })?;
        crate::write_file(&dir.join("compare.md"), md.as_bytes())?;
        crate::write_file(
            &dir.join("compare.html"),
            compare::render_html(&runs, &opts).as_bytes(),
        )?;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(md.as_bytes());
    if let Some(dir) = &args.out {
        let _ = writeln!(out, "\nwrote {}", dir.join("compare.md").display());
        let _ = writeln!(out, "wrote {}", dir.join("compare.html").display());
    }
    Ok(code)
}
