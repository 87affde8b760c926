//! `llmload run`: benchmarks against a target (or the built-in simulator).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use llmload_client::cli::ClientArgs;
use llmload_client::{Client, preflight};
use llmload_core::results::Benchmark;
use llmload_core::results::{Results, ResultsRun, ResultsTool};
use llmload_core::{SCHEMA, TokenCounter, Workload};
use llmload_load::output::{JsonlSink, create_dir, write_results};
use llmload_load::{BenchmarkPlan, Engine, PhaseLen, Profile, RecordSink};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::console;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileKind {
    Synchronous,
    Concurrent,
    Throughput,
    Constant,
    Poisson,
    Gamma,
    Trace,
}

/// Flags of the load: profile and levels.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Load profile. Default: concurrent with --concurrency, poisson with --rate, else
    /// concurrent 1,8,32.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileKind>,

    /// Closed-loop concurrency; a list (1,10,50,100) runs one benchmark per level.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    pub concurrency: Vec<u32>,

    /// Requests per second for constant/poisson/gamma; a list runs one benchmark per rate.
    #[arg(long, value_delimiter = ',', value_name = "R[,R...]")]
    pub rate: Vec<f64>,

    /// Gamma shape (vLLM's burstiness): 1 = Poisson, < 1 burstier, > 1 more regular.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,

    /// Cap on requests in flight for rate profiles (arrivals over it wait in the client,
    /// their queue time recorded) and the cap of the throughput profile (default 256).
    #[arg(long, value_name = "C")]
    pub max_concurrency: Option<u32>,

    /// With --max-concurrency: drop arrivals over the cap (counted as dropped) instead of
    /// queueing them.
    #[arg(long)]
    pub drop_over_cap: bool,
}

/// Flags of each benchmark's length: stop conditions, warm-up, cool-down, seed.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Ramp the rate (or the workers) up linearly over this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub ramp_up: f64,

    /// Seed of the schedule and the workload (same seed, same run).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Stop each benchmark after this many requests (warm-up and cool-down included).
    #[arg(long, value_name = "N")]
    pub max_requests: Option<u64>,

    /// Stop each benchmark after this many seconds; requests in flight are cancelled.
    #[arg(long, value_name = "SECS")]
    pub max_seconds: Option<f64>,

    /// Stop a benchmark once this many requests failed.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Stop a benchmark once this share of finished requests failed (0.05 or 5%).
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    pub max_error_rate: Option<f64>,

    /// Warm-up excluded from statistics: seconds (30, 30s) or requests (100req).
    #[arg(long, value_name = "LEN")]
    pub warmup: Option<PhaseLen>,

    /// Cool-down excluded from statistics: seconds (needs --max-seconds) or requests.
    #[arg(long, value_name = "LEN")]
    pub cooldown: Option<PhaseLen>,
}

/// `llmload run`
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  llmload run                                   # built-in simulator, concurrency 1,8,32
  llmload run --target http://127.0.0.1:8000 --concurrency 1,8,32 --max-seconds 60
  llmload run --target http://gpu:8000 --profile poisson --rate 2,5,10 --max-requests 500 --warmup 20req
  llmload run --target http://gpu:8000 --rate 20 --max-concurrency 64 --max-seconds 120 --out results/r20
  OPENAI_API_KEY=... llmload run --target https://api.example --model m --body-json '{\"temperature\":0}'")]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub load: LoadArgs,

    #[command(flatten)]
    pub stop: StopArgs,
}

/// Flags shared by `run` and `sweep`: target and client, workload, output, server metrics,
/// the built-in simulator, SLOs/thresholds/tiers.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub workload: llmload_workload::WorkloadArgs,

    /// Directory for results.json, requests.jsonl and reports (default results/<time>-<profile>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// A label stored with the run (repeatable): --label gpus=4 --label precision=bf16.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Do not print the progress line.
    #[arg(long, short)]
    pub quiet: bool,

    /// Do not write report.html and report.md at the end.
    #[arg(long)]
    pub no_report: bool,

    #[command(flatten, next_help_heading = "Server metrics")]
    pub server: llmload_prom::cli::ScrapeArgs,

    #[command(flatten)]
    pub sim: EmbeddedSimArgs,

    #[command(flatten)]
    pub sla: llmload_sla::cli::SlaArgs,

    #[command(flatten)]
    pub gpu: llmload_gpu::cli::GpuSamplingArgs,
}

/// The built-in simulator, started when no --target is given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Built-in simulator (no --target)")]
pub struct EmbeddedSimArgs {
    /// Simulator profile (`llmload sim --list-profiles`).
    #[arg(long, value_name = "NAME")]
    pub sim_profile: Option<String>,

    /// Run the simulated model K times faster than real time.
    #[arg(long, value_name = "K", default_value_t = 1.0)]
    pub sim_speedup: f64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a fraction (0.05) or a percentage (5%)"))?;
    let v = v / scale;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("`{s}` must be between 0 and 1 (or 0% and 100%)"));
    }
    Ok(v)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not K=V (e.g. --label gpus=4)"))?;
    if k.trim().is_empty() {
        return Err(format!("`{s}` has an empty label name"));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}

impl StopArgs {
    /// Puts these stop conditions and phases on `p`, the `index`-th benchmark of the run (its
    /// schedule seed is `--seed + index`). With no stop condition at all, 10 s per benchmark.
    pub fn apply(
        &self,
        p: &mut BenchmarkPlan,
        index: usize,
        defaults: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let mut max_seconds = self.max_seconds;
        if self.max_requests.is_none() && max_seconds.is_none() && p.profile != Profile::Trace {
            if !defaults.iter().any(|d| d.starts_with("--max-seconds")) {
                defaults.push("--max-seconds 10".into());
            }
            max_seconds = Some(10.0);
        }
        if let Some(s) = max_seconds
            && !(s.is_finite() && s > 0.0)
        {
            bail!("--max-seconds must be a positive number of seconds, got {s}")
        }
        if self.max_requests == Some(0) {
            bail!("--max-requests must be at least 1")
        }
        if !(self.ramp_up.is_finite() && self.ramp_up >= 0.0) {
            bail!("--ramp-up must be zero or a positive number of seconds")
        }
        p.stop.max_requests = self.max_requests;
        p.stop.max_seconds = max_seconds;
        p.stop.max_errors = self.max_errors;
        p.stop.max_error_rate = self.max_error_rate;
        p.warmup = self.warmup;
        p.cooldown = self.cooldown;
        p.ramp_up_s = self.ramp_up;
        p.seed = self.seed.wrapping_add(index as u64);
        Ok(())
    }
}

impl LoadArgs {
    /// One plan per load level, validated. `defaults` notes what was chosen for the user.
    pub fn plans(
        &self,
        stop: &StopArgs,
        defaults: &mut Vec<String>,
    ) -> anyhow::Result<Vec<BenchmarkPlan>> {
        let kind = match self.profile {
            Some(k) => k,
            None if !self.rate.is_empty() => ProfileKind::Poisson,
            None => ProfileKind::Concurrent,
        };
        let profiles: Vec<Profile> = match kind {
            ProfileKind::Synchronous => vec![Profile::Synchronous],
            ProfileKind::Concurrent => {
                let levels = if self.concurrency.is_empty() {
                    defaults.push("--concurrency 1,8,32".into());
                    vec![1, 8, 32]
                } else {
                    self.concurrency.clone()
                };
                levels
                    .into_iter()
                    .map(|c| Profile::Concurrent { concurrency: c })
                    .collect()
            }
            ProfileKind::Throughput => vec![Profile::Throughput {
                max_concurrency: self.max_concurrency.unwrap_or(256),
            }],
            ProfileKind::Constant | ProfileKind::Poisson | ProfileKind::Gamma => {
                if self.rate.is_empty() {
                    bail!(
                        "--profile {kind:?} needs --rate R (requests per second), e.g. --rate 5 or --rate 1,2,5"
                    )
                }
                self.rate
                    .iter()
                    .map(|&rate| match kind {
                        ProfileKind::Constant => Profile::Constant { rate },
                        ProfileKind::Poisson => Profile::Poisson { rate },
                        _ => Profile::Gamma {
                            rate,
                            burstiness: self.burstiness,
                        },
                    })
                    .collect()
            }
            ProfileKind::Trace => vec![Profile::Trace],
        };
        if !self.concurrency.is_empty() && !matches!(kind, ProfileKind::Concurrent) {
            bail!(
                "--concurrency is for --profile concurrent; for a cap on a rate profile use --max-concurrency"
            )
        }
        if !self.rate.is_empty()
            && !matches!(
                kind,
                ProfileKind::Constant | ProfileKind::Poisson | ProfileKind::Gamma
            )
        {
            bail!("--rate is for --profile constant, poisson or gamma")
        }
        let mut plans = Vec::new();
        for (i, profile) in profiles.into_iter().enumerate() {
            let mut p = BenchmarkPlan::new(profile);
            stop.apply(&mut p, i, defaults)?;
            p.max_concurrency = if kind == ProfileKind::Throughput {
                None
            } else {
                self.max_concurrency
            };
            p.drop_over_cap = self.drop_over_cap;
            p.validate().map_err(anyhow::Error::msg)?;
            plans.push(p);
        }
        Ok(plans)
    }
}

/// The largest number of requests in flight the plans ask for (sizes the connection pool).
pub fn pool_size(plans: &[BenchmarkPlan]) -> usize {
    {
        plans
            .iter()
            .map(|p| {
                match (
                    p.profile.closed_loop_workers(),
                    p.max_concurrency,
                    p.profile.rate(),
                ) {
                    (Some(w), _, _) => w as usize,
                    (None, Some(c), _) => c as usize,
                    (None, None, Some(r)) => (r * 2.0).clamp(16.0, 4096.0) as usize,
                    _ => 64,
                }
            })
            .max()
            .unwrap_or(64)
    }
}

/// The command line with secrets removed: the value of --api-key, and the values of headers
/// whose name looks like a credential (authorization, *key*, *token*, cookie).
pub fn redacted_command() -> Vec<String> {
    redact_args(std::env::args())
}

fn redact_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending: Option<&'static str> = None;
    for a in args {
        match pending.take() {
            Some("--api-key") => {
                out.push("***".into());
                continue;
            }
            Some(_) => {
                out.push(redact_header(&a));
                continue;
            }
            None => {}
        }
        if a == "--api-key" {
            pending = Some("--api-key");
            out.push(a);
        } else if a == "--header" {
            pending = Some("--header");
            out.push(a);
        } else if a.starts_with("--api-key=") {
            out.push("--api-key=***".into());
        } else if let Some(v) = a.strip_prefix("--header=") {
            out.push(format!("--header={}", redact_header(v)));
        } else {
            out.push(a);
        }
    }
    out
}

fn redact_header(v: &str) -> String {
    match v.split_once(':') {
        Some((k, _)) => {
            let kl = k.trim().to_ascii_lowercase();
            if ["auth", "key", "token", "cookie", "secret", "password"]
                .iter()
                .any(|w| kl.contains(w))
            {
                format!("{k}: ***")
            } else {
                v.to_string()
            }
        }
        None => "***".into(),
    }
}

/// Interrupt on Ctrl-C or SIGTERM; a second signal exits at once.
pub fn install_signal_handlers(token: CancellationToken) {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                            count += 1;
                            on_signal(&token, count);
                            continue;
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
            count += 1;
            on_signal(&token, count);
        }
    });
}

fn on_signal(token: &CancellationToken, count: u32) {
    if count == 1 {
        eprintln!(
            "\ninterrupted: finishing what was measured (press Ctrl-C again to quit at once)"
        );
        token.cancel();
    } else {
        eprintln!("quitting");
        std::process::exit(130);
    }
}

/// What a run needs from the workload part.
pub struct WorkloadParts {
    pub workload: Box<dyn Workload>,
    pub tokens: Option<Arc<dyn TokenCounter>>,
}

/// Records sink of a run: `requests.jsonl`, plus the in-window points of the current
/// benchmark that the breaking-point criteria need.
struct RunSink {
    jsonl: JsonlSink,
    points: Vec<llmload_sla::breaking::RequestPoint>,
}

impl RecordSink for RunSink {
    fn write(&mut self, rec: &llmload_core::RequestRecord) {
        self.jsonl.write(rec);
        if let Some(p) = llmload_sla::breaking::RequestPoint::from_record(rec) {
            self.points.push(p);
        }
    }
    fn flush(&mut self) {
        self.jsonl.flush();
    }
}

/// One run against one target: the results directory, the engine, the scraper, the progress
/// display. `run` and `sweep` drive it one benchmark at a time.
pub struct Session {
    pub dir: PathBuf,
    pub results: Results,
    engine: Engine<llmload_client::Client>,
    sink: Arc<std::sync::Mutex<RunSink>>,
    scraper: Option<llmload_prom::scrape::ScrapeHandle>,
    gpu: llmload_gpu::cli::GpuTelemetry,
    display: Option<console::ProgressDisplay>,
    interrupt: CancellationToken,
    no_report: bool,
}

impl Session {
    /// Checks the target (preflight), creates the results directory and starts the scraper.
    /// `pool` sizes the connection pool; `kind` names the default directory.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        common: &CommonArgs,
        pool: usize,
        kind: &str,
        steps: usize,
        target: url::Url,
        target_note: Option<String>,
        parts: WorkloadParts,
        interrupt: CancellationToken,
    ) -> anyhow::Result<Session> {
        let mut cfg = common.client.to_config(target.clone(), pool);
        cfg.capture_answer = parts.workload.wants_responses();
        let pf = preflight(&cfg, parts.tokens.clone(), true)
            .await
            .context("the target is not ready for a benchmark")?;
        cfg.model = pf.model.clone();
        let client =
            Client::new(cfg, parts.tokens.clone()).context("cannot build the HTTP client")?;

        let started = chrono::Utc::now();
        let dir = common.out.clone().unwrap_or_else(|| {
            PathBuf::from("results").join(format!("{}-{kind}", started.format("%Y%m%d-%H%M%S")))
        });
        create_dir(&dir)?;
        let sink = Arc::new(std::sync::Mutex::new(RunSink {
            jsonl: JsonlSink::create(&dir)?,
            points: Vec::new(),
        }));

        let epoch = Instant::now();
        let engine = Engine::new(Arc::new(client), parts.workload, epoch, interrupt.clone());
        let mut run_extra = BTreeMap::new();
        run_extra.insert("workload".into(), engine.describe_workload());
        if let Some(n) = &target_note {
            run_extra.insert("target_note".into(), json!(n));
        }
        run_extra.insert(
            "tokenizer".into(),
            json!(parts.tokens.as_ref().map(|t| t.name())),
        );
        // The generator's own configuration: how many runtime workers timed the requests, on
        // how many CPUs (`--threads`; the default leaves one core to the helper threads).
        run_extra.insert(
            "client_runtime".into(),
            json!({
                "workers": tokio::runtime::Handle::current().metrics().num_workers(),
                "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            }),
        );
        let results = Results {
            schema: SCHEMA.into(),
            tool: ResultsTool::default(),
            run: ResultsRun {
                id: format!(
                    "{}-{:08x}",
                    started.format("%Y%m%dT%H%M%SZ"),
                    rand::random::<u32>()
                ),
                started_at: started.to_rfc3339(),
                target: target.to_string(),
                model: pf.model.clone(),
                api: common.client.api.as_str().into(),
                labels: common.labels.iter().cloned().collect(),
                command: redacted_command(),
                extra: run_extra,
            },
            benchmarks: Vec::new(),
            extra: BTreeMap::new(),
        };
        write_results(&dir, &results)?;
        eprintln!(
            "llmload {}: target {} model {} -> {}",
            env!("CARGO_PKG_VERSION"),
            target,
            pf.model,
            dir.display()
        );
        let scraper = common.server.spawn(&target, epoch);
        let gpu = common.gpu.start(epoch).await;
        let display = Some(console::ProgressDisplay::start(
            engine.progress.clone(),
            epoch,
            steps,
            common.quiet,
        ));
        Ok(Session {
            dir,
            results,
            engine,
            sink,
            scraper,
            gpu,
            display,
            interrupt,
            no_report: common.no_report,
        })
    }

    /// The records sink, between benchmarks (the engine's collector holds it during one).
    fn sink(&self) -> std::sync::MutexGuard<'_, RunSink> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn interrupted(&self) -> bool {
        self.interrupt.is_cancelled()
    }

    /// Runs one benchmark and attaches the server's figures of its window. Returns it with the
    /// in-window request points (for the breaking-point criteria).
    pub async fn step(
        &mut self,
        index: usize,
        plan: &BenchmarkPlan,
    ) -> (Benchmark, Vec<llmload_sla::breaking::RequestPoint>) {
        if let Some(s) = &self.scraper {
            // A fresh baseline just before the benchmark starts.
            s.scrape_now().await;
        }
        self.sink().points.clear();
        let out = self
            .engine
            .run_benchmark(index, plan, self.sink.clone())
            .await;
        let mut b = out.benchmark;
        if let Some(s) = &self.scraper {
            let mut w = s.window(b.window.start_s, b.window.end_s).await;
            w.correlate(&llmload_prom::window::ClientFigures {
                ttft_mean_s: b.metrics.ttft_s.map(|m| m.mean),
                prompt_tokens: b.tokens.prompt_total,
                output_tokens: b.tokens.output_total,
                completed: b.requests.completed,
            });
            b.server = Some(w.to_value());
        }
        let (start, end) = (b.window.start_s, b.window.end_s);
        self.gpu.apply(&mut b, start, end);
        let points = std::mem::take(&mut self.sink().points);
        (b, points)
    }

    /// Adds a finished benchmark and rewrites results.json.
    pub fn push(&mut self, b: Benchmark) -> anyhow::Result<()> {
        eprint!("{}", console::benchmark_notes(&b));
        self.results.benchmarks.push(b);
        write_results(&self.dir, &self.results)?;
        Ok(())
    }

    /// Rewrites results.json (after adding run-level sections).
    pub fn save(&self) -> anyhow::Result<()> {
        write_results(&self.dir, &self.results)?;
        Ok(())
    }

    /// Stops the scraper, prints the summary, writes the reports.
    pub async fn close(mut self) -> anyhow::Result<(PathBuf, Results)> {
        drop(self.display.take());
        self.gpu.stop();
        if let Some(s) = self.scraper.take() {
            let series = s.stop().await;
            if series.failure_count() > 0 {
                eprintln!(
                    "server metrics: {} of {} scrapes failed (see benchmark.server.scrape_errors)",
                    series.failure_count(),
                    series.failure_count() + series.scrape_count()
                );
            }
        }
        {
            let mut sink = self.sink();
            sink.flush();
            if let Some(e) = &sink.jsonl.error {
                eprintln!("WARNING: requests.jsonl is incomplete: {e}");
            }
        }
        write_results(&self.dir, &self.results)?;
        println!("\n{}", console::summary_table(&self.results.benchmarks));
        println!("results: {}", self.dir.join("results.json").display());
        println!("requests: {}", self.dir.join("requests.jsonl").display());
        if !self.no_report {
            match llmload_report::render_default(&self.dir) {
                Ok(paths) => {
                    for p in paths {
                        println!("report: {}", p.display());
                    }
                }
                Err(e) => eprintln!(
                    "WARNING: the report could not be written: {e} (results are complete; retry with `llmload report {}`)",
                    self.dir.display()
                ),
            }
        }
        Ok((self.dir, self.results))
    }
}

/// `llmload run`: the benchmarks of `plans`, each judged against the SLA tiers and the
/// breaking-point rules, then the thresholds. Returns the exit code: 130 when interrupted,
/// 99 when a threshold failed, else 0.
pub async fn execute(
    args: &RunArgs,
    mut plans: Vec<BenchmarkPlan>,
    target: url::Url,
    target_note: Option<String>,
    parts: WorkloadParts,
    interrupt: CancellationToken,
) -> anyhow::Result<(i32, PathBuf, Results)> {
    let sla = &args.common.sla;
    let thresholds = sla.thresholds()?;
    let tiers = sla.tier_config()?;
    let slos = sla.slos()?;
    for p in &mut plans {
        p.slos = slos.clone();
    }
    let breaking = llmload_sla::BreakingConfig::default();
    let kind = plans.first().map(|p| p.profile.kind()).unwrap_or("run");
    let mut session = Session::open(
        &args.common,
        pool_size(&plans),
        kind,
        plans.len(),
        target,
        target_note,
        parts,
        interrupt.clone(),
    )
    .await?;
    session
        .results
        .extra
        .insert("sla_tiers".into(), tiers.to_results_value());
    for (i, plan) in plans.iter().enumerate() {
        if session.interrupted() {
            break;
        }
        let (mut b, points) = session.step(i, plan).await;
        llmload_sla::annotate(&mut b, &tiers, &breaking, &points);
        session.push(b)?;
    }
    let report = (!thresholds.is_empty())
        .then(|| llmload_sla::threshold::check_results(&thresholds, &session.results, None));
    if let Some(r) = &report {
        session
            .results
            .extra
            .insert("thresholds".into(), serde_json::to_value(r)?);
    }
    let (dir, results) = session.close().await?;
    let mut code = 0;
    if let Some(r) = &report {
        print!("{}", llmload_sla::format::thresholds_report(r));
        code = r.exit_code();
    }
    if interrupt.is_cancelled() {
        code = 130;
    }
    Ok((code, dir, results))
}

/// The workload of a run and its token counter. Every input file is read here, so bad input
/// fails before any load starts.
pub fn workload_parts(common: &CommonArgs, seed: u64) -> anyhow::Result<WorkloadParts> {
    let (workload, tokens) = llmload_workload::build(&common.workload, seed)?;
    Ok(WorkloadParts {
        workload,
        tokens: Some(tokens),
    })
}

/// Applies the run-level settings of a `--scenario FILE` under the command line: a setting
/// given as a flag wins. (The file's workload section is merged by the workload builder.)
pub fn apply_scenario_file(
    common: &mut CommonArgs,
    load: Option<&mut LoadArgs>,
    stop: &mut StopArgs,
    matches: &clap::ArgMatches,
) -> anyhow::Result<()> {
    let Some(name) = common.workload.scenario.clone() else {
        return Ok(());
    };
    let llmload_workload::scenario::Scenario::File(path, file) =
        llmload_workload::scenario::resolve(&name)?
    else {
        return Ok(());
    };
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(clap::parser::ValueSource::CommandLine)
                | Some(clap::parser::ValueSource::EnvVariable)
        )
    };
    let bad =
        |what: &str, e: String| anyhow::anyhow!("scenario file {}: `{what}`: {e}", path.display());
    let f = &*file;
    if !given("target")
        && let Some(t) = &f.target
    {
        common.client.target = Some(url::Url::parse(t).map_err(|e| bad("target", e.to_string()))?);
    }
    if !given("model") && f.model.is_some() {
        common.client.model = f.model.clone();
    }
    if !given("api")
        && let Some(a) = &f.api
    {
        common.client.api = <llmload_client::Api as clap::ValueEnum>::from_str(a, true)
            .map_err(|e| bad("api", e))?;
    }
    if !given("no_stream")
        && let Some(s) = f.stream
    {
        common.client.no_stream = !s;
    }
    if !given("no_ignore_eos")
        && let Some(s) = f.ignore_eos
    {
        common.client.no_ignore_eos = !s;
    }
    if !given("record_chunks")
        && let Some(s) = f.record_chunks
    {
        common.client.record_chunks = s;
    }
    if !given("request_timeout")
        && let Some(t) = f.timeout
    {
        if !(t.is_finite() && t > 0.0) {
            return Err(bad(
                "timeout",
                "must be a positive number of seconds".into(),
            ));
        }
        common.client.request_timeout = Some(std::time::Duration::from_secs_f64(t));
    }
    if !given("headers") {
        common.client.headers = f
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    if !given("body_json")
        && let Some(b) = &f.body_json
    {
        match b {
            serde_json::Value::Object(m) => common.client.body_json = Some(m.clone()),
            _ => return Err(bad("body_json", "must be a table/object".into())),
        }
    }
    if let Some(l) = load {
        if !given("profile")
            && let Some(p) = &f.profile
        {
            l.profile = Some(
                <ProfileKind as clap::ValueEnum>::from_str(p, true)
                    .map_err(|e| bad("profile", e))?,
            );
        }
        if !given("rate")
            && let Some(r) = &f.rate
        {
            l.rate = r.to_vec();
        }
        if !given("concurrency")
            && let Some(c) = &f.concurrency
        {
            l.concurrency = c
                .to_vec()
                .into_iter()
                .map(|v| {
                    u32::try_from(v).map_err(|_| bad("concurrency", format!("{v} is too large")))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if !given("burstiness")
            && let Some(b) = f.burstiness
        {
            l.burstiness = b;
        }
        if !given("max_concurrency")
            && let Some(c) = f.max_concurrency
        {
            l.max_concurrency = Some(
                u32::try_from(c)
                    .map_err(|_| bad("max_concurrency", format!("{c} is too large")))?,
            );
        }
        if !given("drop_over_cap")
            && let Some(d) = f.drop_over_cap
        {
            l.drop_over_cap = d;
        }
    }
    let st = stop;
    if !given("ramp_up")
        && let Some(r) = f.ramp_up
    {
        st.ramp_up = r;
    }
    if !given("seed")
        && let Some(s) = f.seed
    {
        st.seed = s;
    }
    if !given("max_requests") && f.max_requests.is_some() {
        st.max_requests = f.max_requests;
    }
    if !given("max_seconds") && f.max_seconds.is_some() {
        st.max_seconds = f.max_seconds;
    }
    if !given("max_errors") && f.max_errors.is_some() {
        st.max_errors = f.max_errors;
    }
    if !given("max_error_rate")
        && let Some(r) = f.max_error_rate
    {
        st.max_error_rate =
            Some(parse_fraction(&r.to_string()).map_err(|e| bad("max_error_rate", e))?);
    }
    if !given("warmup")
        && let Some(w) = &f.warmup
    {
        st.warmup = Some(w.to_string().parse().map_err(|e| bad("warmup", e))?);
    }
    if !given("cooldown")
        && let Some(c) = &f.cooldown
    {
        st.cooldown = Some(c.to_string().parse().map_err(|e| bad("cooldown", e))?);
    }
    if !given("out")
        && let Some(o) = &f.out
    {
        common.out = Some(PathBuf::from(o));
    }
    for (k, v) in &f.labels {
        if !common.labels.iter().any(|(k2, _)| k2 == k) {
            common.labels.push((k.clone(), v.clone()));
        }
    }
    Ok(())
}

/// Starts the built-in simulator in-process on an ephemeral loopback port.
pub async fn start_embedded_sim(
    a: &EmbeddedSimArgs,
    seed: u64,
) -> anyhow::Result<llmload_sim::SimHandle> {
    let mut cfg = llmload_sim::SimConfig::default();
    if let Some(name) = &a.sim_profile {
        cfg.profile = llmload_sim::Profile::builtin(name)?;
    }
    cfg.speedup = a.sim_speedup;
    cfg.seed = seed;
    Ok(llmload_sim::spawn(cfg).await?)
}

/// The target of a run: `--target`, or the built-in simulator started in-process (returned so
/// the caller shuts it down at the end).
pub async fn resolve_target(
    common: &CommonArgs,
    seed: u64,
) -> anyhow::Result<(url::Url, Option<String>, Option<llmload_sim::SimHandle>)> {
    if let Some(t) = common.client.target.clone() {
        return Ok((t, None, None));
    }
    let sim = start_embedded_sim(&common.sim, seed).await?;
    let note = format!(
        "built-in simulator, profile {} (model {}), speedup {}",
        sim.profile_name, sim.model_name, common.sim.sim_speedup
    );
    eprintln!(
        "no --target: started the built-in simulator on {} (profile {}, model {}); pass --target URL to measure a real server",
        sim.base_url(),
        sim.profile_name,
        sim.model_name
    );
    let url = url::Url::parse(&sim.base_url())?;
    Ok((url, Some(note), Some(sim)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_command_line_record() {
        let args = [
            "llmload",
            "run",
            "--api-key",
            "sk-secret:1",
            "--header",
            "Authorization: Bearer sk-2",
            "--header=X-Api-Key: k3",
            "--api-key=sk-4",
            "--header",
            "X-Team: blue",
        ]
        .map(String::from);
        let out = redact_args(args).join(" ");
        for s in ["sk-secret", "sk-2", "k3", "sk-4"] {
            assert!(!out.contains(s), "{out}");
        }
        assert!(out.contains("X-Team: blue"));
    }

    #[test]
    fn fractions_and_labels() {
        assert_eq!(parse_fraction("5%"), Ok(0.05));
        assert_eq!(parse_fraction("0.2"), Ok(0.2));
        assert!(parse_fraction("120%").is_err());
        assert_eq!(parse_label("gpus=4"), Ok(("gpus".into(), "4".into())));
        assert!(parse_label("gpus").is_err());
    }
}
