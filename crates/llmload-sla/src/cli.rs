//! Command-line arguments for the binary to flatten: [`SlaArgs`] into `llmload run` and
//! `llmload sweep` (SLOs, thresholds, tier table), [`SweepArgs`] into `llmload sweep`.
//! Files named by flags are read here; everything else in the crate is pure.

use std::path::{Path, PathBuf};

use clap::Args;
use llmload_core::aggregate::Slo;

use crate::breaking::BreakingConfig;
use crate::error::SlaError;
use crate::planner::{Arrival, SweepConfig, SweepMode};
use crate::slo::{FileFormat, parse_slo_file, parse_slos};
use crate::threshold::{Threshold, parse_threshold};
use crate::tiers::TierConfig;
use crate::units::{Dimension, parse_quantity};

fn read(path: &Path) -> Result<String, SlaError> {
    std::fs::read_to_string(path).map_err(|source| SlaError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn format_of(path: &Path) -> FileFormat {
    FileFormat::from_path(&path.to_string_lossy())
}

/// SLOs (goodput), CI thresholds and the SLA tier table.
#[derive(Debug, Clone, Default, Args)]
#[command(after_long_help = SLA_EXAMPLES)]
pub struct SlaArgs {
    /// Service-level objective for goodput, METRIC=VALUE; repeat for several. Metrics: ttft,
    /// ttfot, tpot, tpot_incl_ttft, e2e (e2e_latency), request_latency, scheduled_latency,
    /// itl_max (times need a unit: s, ms, us) and decode_rate (tok/s). Goodput counts the
    /// completed requests that meet every objective, per second.
    #[arg(long = "slo", value_name = "METRIC=VALUE")]
    pub slo: Vec<String>,

    /// SLOs from a TOML or JSON file: a table `metric = "value"` (top level or under [slo]),
    /// e.g. `ttft = "1s"`, `tpot = "50ms"`, `decode_rate = 20`.
    #[arg(long = "slo-file", value_name = "FILE")]
    pub slo_file: Option<PathBuf>,

    /// Pass/fail threshold checked on every benchmark, k6-style: METRIC[.STAT] OP VALUE[UNIT],
    /// e.g. 'ttft.p95<2s', 'error_rate<5%', 'decode_rate.mean>30', 'itl.p99<=80ms'. Operators
    /// < <= > >= == !=; units s ms us % tok/s req/s. Any failure makes the exit status 99.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub threshold: Vec<String>,

    /// SLA tier table (TOML/JSON) replacing parts of the default (TTFT, decode rate, KV cache
    /// usage, queue depth); see docs/sla.md.
    #[arg(long = "sla-tiers", value_name = "FILE")]
    pub sla_tiers: Option<PathBuf>,
}

const SLA_EXAMPLES: &str = "Examples:
  --slo ttft=1s --slo tpot=50ms --slo e2e=10s
  --slo-file slo.toml
  --threshold 'ttft.p95<2s' --threshold 'error_rate<5%' --threshold 'decode_rate.mean>30'
  --threshold 'requests_per_s>=10' --threshold 'server.kv_cache_usage.max<90%'
  --sla-tiers tiers.toml";

impl SlaArgs {
    /// The SLOs of `--slo` and `--slo-file` together (a metric given twice is an error).
    pub fn slos(&self) -> Result<Vec<Slo>, SlaError> {
        let mut v = parse_slos(&self.slo)?;
        if let Some(p) = &self.slo_file {
            for s in parse_slo_file(&read(p)?, format_of(p), &p.display().to_string())? {
                if v.iter().any(|x| x.metric == s.metric) {
                    return Err(SlaError::Invalid(format!(
                        "the objective on {} is given both by --slo and in {}; keep one",
                        s.metric,
                        p.display()
                    )));
                }
                v.push(s);
            }
        }
        Ok(v)
    }

    /// The `--threshold` expressions, parsed (errors show the expression with a caret).
    pub fn thresholds(&self) -> Result<Vec<Threshold>, SlaError> {
        self.threshold
            .iter()
            .map(|t| parse_threshold(t).map_err(SlaError::from))
            .collect()
    }

    /// The tier table: the default, with `--sla-tiers` applied.
    pub fn tier_config(&self) -> Result<TierConfig, SlaError> {
        match &self.sla_tiers {
            None => Ok(TierConfig::default()),
            Some(p) => TierConfig::from_text(&read(p)?, format_of(p), &p.display().to_string()),
        }
    }
}

/// What `llmload sweep` runs and how it decides the breaking point.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = SWEEP_EXAMPLES)]
pub struct SweepArgs {
    /// Explicit request rates (req/s) instead of the automatic sweep, e.g. 0.5,1,2,5.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "RATES",
        conflicts_with = "concurrency"
    )]
    pub rates: Vec<f64>,

    /// A closed-loop concurrency ladder instead of rates, e.g. 1,10,50,100.
    #[arg(long, value_delimiter = ',', value_name = "LEVELS")]
    pub concurrency: Vec<u32>,

    /// Automatic sweep: the number of rates between the synchronous and the throughput rate
    /// (the last is the throughput rate). 8 gives 10 steps in all, GuideLLM's default.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub steps: usize,

    /// Arrival process of rate steps.
    #[arg(long, value_enum, default_value_t = Arrival::Poisson)]
    pub arrival: Arrival,

    /// Concurrency of the automatic sweep's throughput step.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub throughput_concurrency: u32,

    /// Bisect until the breaking point is bracketed within this gap (relative).
    #[arg(long, default_value = "5%", value_name = "PCT")]
    pub tolerance: String,

    /// At most this many bisection steps after the list.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub refine_steps: usize,

    /// Do not bisect: run the list only.
    #[arg(long)]
    pub no_refine: bool,

    /// Keep escalating after an over-saturated step (TTFT and requests in flight both rising).
    #[arg(long)]
    pub keep_escalating: bool,

    /// Breaking-point definition (TOML/JSON); see docs/sla.md.
    #[arg(long = "breaking-point", value_name = "FILE")]
    pub breaking_point: Option<PathBuf>,

    /// Breaking point: TTFT p95 above this (default 1s; `off` to ignore TTFT).
    #[arg(long, value_name = "DURATION")]
    pub break_ttft: Option<String>,

    /// Breaking point: error rate above this (default 1%; `off` to ignore errors).
    #[arg(long, value_name = "PCT")]
    pub break_error_rate: Option<String>,
}

impl Default for SweepArgs {
    fn default() -> Self {
        SweepArgs {
            rates: Vec::new(),
            concurrency: Vec::new(),
            steps: 8,
            arrival: Arrival::Poisson,
            throughput_concurrency: 256,
            tolerance: "5%".into(),
            refine_steps: 6,
            no_refine: false,
            keep_escalating: false,
            breaking_point: None,
            break_ttft: None,
            break_error_rate: None,
        }
    }
}

const SWEEP_EXAMPLES: &str = "Examples:
  llmload sweep --target http://localhost:8000 --max-seconds 60
      synchronous, throughput, then 8 Poisson rates between them; then bisection
  llmload sweep --rates 0.5,1,2,5,10 --arrival constant
  llmload sweep --concurrency 1,10,50,100 --break-ttft 2s
  llmload sweep --breaking-point breaking.toml --sla-tiers tiers.toml --threshold 'ttft.p95<2s'";

fn off_or<T>(
    v: &Option<String>,
    f: impl Fn(&str) -> Result<T, SlaError>,
) -> Result<Option<Option<T>>, SlaError> {
    match v.as_deref() {
        None => Ok(None),
        Some("off" | "none" | "false") => Ok(Some(None)),
        Some(s) => f(s).map(|x| Some(Some(x))),
    }
}

impl SweepArgs {
    /// The planner configuration (reads `--breaking-point` and `--sla-tiers`).
    pub fn config(&self, sla: &SlaArgs) -> Result<SweepConfig, SlaError> {
        let mode = if !self.rates.is_empty() {
            SweepMode::Rates {
                rates: self.rates.clone(),
                arrival: self.arrival,
            }
        } else if !self.concurrency.is_empty() {
            SweepMode::Concurrency {
                levels: self.concurrency.clone(),
            }
        } else {
            SweepMode::Auto {
                rate_steps: self.steps,
                arrival: self.arrival,
                throughput_concurrency: self.throughput_concurrency,
            }
        };
        let mut cfg = SweepConfig::new(mode);
        cfg.tiers = sla.tier_config()?;
        if let Some(p) = &self.breaking_point {
            cfg.breaking =
                BreakingConfig::from_text(&read(p)?, format_of(p), &p.display().to_string())?;
        }
        let flag = |name: &'static str, dim: Dimension| {
            move |s: &str| {
                parse_quantity(s, dim, name)
                    .map_err(|e| SlaError::Invalid(format!("--{name} {s}: {}", e.message)))
            }
        };
        if let Some(v) = off_or(&self.break_ttft, flag("break-ttft", Dimension::Time))? {
            cfg.breaking.ttft_max = v;
        }
        if let Some(v) = off_or(
            &self.break_error_rate,
            flag("break-error-rate", Dimension::Ratio),
        )? {
            cfg.breaking.max_error_rate = v;
        }
        cfg.tolerance = flag("tolerance", Dimension::Ratio)(&self.tolerance)?;
        cfg.refine = !self.no_refine;
        cfg.refine_budget = self.refine_steps;
        cfg.stop_on_oversaturation = !self.keep_escalating;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sla: SlaArgs,
        #[command(flatten)]
        sweep: SweepArgs,
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("llmload").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_give_the_auto_sweep() {
        let c = parse(&[]);
        let cfg = c.sweep.config(&c.sla).unwrap();
        assert_eq!(cfg, SweepConfig::auto());
        assert!(c.sla.slos().unwrap().is_empty());
        assert!(c.sla.thresholds().unwrap().is_empty());
    }

    #[test]
    fn flags_build_the_config() {
        let c = parse(&[
            "--rates",
            "1,2,5",
            "--arrival",
            "constant",
            "--tolerance",
            "2%",
            "--no-refine",
            "--break-ttft",
            "2s",
            "--break-error-rate",
            "off",
            "--slo",
            "ttft=1s",
            "--threshold",
            "ttft.p95<2s",
        ]);
        let cfg = c.sweep.config(&c.sla).unwrap();
        assert_eq!(
            cfg.mode,
            SweepMode::Rates {
                rates: vec![1.0, 2.0, 5.0],
                arrival: Arrival::Constant
            }
        );
        assert_eq!(cfg.tolerance, 0.02);
        assert!(!cfg.refine);
        assert_eq!(cfg.breaking.ttft_max, Some(2.0));
        assert_eq!(cfg.breaking.max_error_rate, None);
        assert_eq!(c.sla.slos().unwrap()[0].metric, "ttft");
        assert_eq!(c.sla.thresholds().unwrap().len(), 1);
        let c = parse(&["--concurrency", "1,10,50"]);
        assert_eq!(
            c.sweep.config(&c.sla).unwrap().mode,
            SweepMode::Concurrency {
                levels: vec![1, 10, 50]
            }
        );
        assert!(Cli::try_parse_from(["x", "--rates", "1", "--concurrency", "2"]).is_err());
    }

    #[test]
    fn bad_flags_are_clear() {
        let c = parse(&["--threshold", "ttft.p95<2"]);
        let e = c.sla.thresholds().unwrap_err().to_string();
        assert!(e.contains("needs a unit") && e.contains("^"), "{e}");
        let c = parse(&["--break-ttft", "2"]);
        let e = c.sweep.config(&c.sla).unwrap_err().to_string();
        assert!(e.starts_with("--break-ttft 2:"), "{e}");
        let c = parse(&["--rates", "0"]);
        assert!(
            c.sweep
                .config(&c.sla)
                .unwrap_err()
                .to_string()
                .contains("positive")
        );
        let c = parse(&["--slo-file", "/nonexistent/slo.toml"]);
        let e = c.sla.slos().unwrap_err().to_string();
        assert!(e.contains("cannot read /nonexistent/slo.toml"), "{e}");
    }

    #[test]
    fn files_are_read() {
        let dir = std::env::temp_dir().join(format!("llmload-sla-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let slo = dir.join("slo.toml");
        std::fs::write(&slo, "ttft = \"1s\"\n").unwrap();
        let tiers = dir.join("tiers.json");
        std::fs::write(&tiers, r#"{"ttft": {"statistic": "p99"}}"#).unwrap();
        let bp = dir.join("bp.toml");
        std::fs::write(&bp, "ttft_max = \"3s\"\n").unwrap();
        let c = parse(&[
            "--slo-file",
            slo.to_str().unwrap(),
            "--sla-tiers",
            tiers.to_str().unwrap(),
            "--breaking-point",
            bp.to_str().unwrap(),
            "--slo",
            "tpot=50ms",
        ]);
        assert_eq!(c.sla.slos().unwrap().len(), 2);
        let cfg = c.sweep.config(&c.sla).unwrap();
        assert_eq!(cfg.tiers.ttft.statistic, "p99");
        assert_eq!(cfg.breaking.ttft_max, Some(3.0));
        let c = parse(&["--slo-file", slo.to_str().unwrap(), "--slo", "ttft=2s"]);
        assert!(c.sla.slos().unwrap_err().to_string().contains("given both"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
