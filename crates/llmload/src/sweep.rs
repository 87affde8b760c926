//! `llmload sweep`: finds the maximum sustainable load under the SLA. The planner
//! (llmload-sla) decides each step; this module runs them.

use clap::Args;
use llmload_load::{BenchmarkPlan, Profile};
use llmload_sla::{Arrival, Load, SweepPlanner};
use tokio_util::sync::CancellationToken;

use crate::run::{self, CommonArgs, StopArgs};

/// `llmload sweep`
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  llmload sweep --sim-speedup 20 --max-seconds 5          # the built-in simulator, default sweep
  llmload sweep --target http://gpu:8000 --max-seconds 60 --warmup 10s
  llmload sweep --target http://gpu:8000 --rates 1,2,5,10,20 --max-requests 300
  llmload sweep --target http://gpu:8000 --concurrency 1,10,50,100 --max-seconds 60
  llmload sweep --target http://gpu:8000 --break-ttft 500ms --slo ttft=500ms --threshold 'breaking_point.max_sustainable_rate>=20'

The default sweep: synchronous, then throughput (max concurrency), then 8 Poisson rates evenly
spaced between the two measured rates; then it bisects between the last passing and the first
failing rate until within 5 % and reports the maximum sustainable rate and what limits it.
Definitions: docs/sla.md.")]
pub struct SweepCmdArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub sweep: llmload_sla::cli::SweepArgs,

    #[command(flatten)]
    pub stop: StopArgs,
}

/// The engine's profile for a planner step.
fn profile_of(load: Load) -> Profile {
    match load {
        Load::Synchronous => Profile::Synchronous,
        Load::Throughput { max_concurrency } => Profile::Throughput { max_concurrency },
        Load::Concurrency { concurrency } => Profile::Concurrent { concurrency },
        Load::Rate {
            rate,
            arrival: Arrival::Poisson,
        } => Profile::Poisson { rate },
        Load::Rate {
            rate,
            arrival: Arrival::Constant,
        } => Profile::Constant { rate },
    }
}

pub async fn run(args: SweepCmdArgs) -> anyhow::Result<i32> {
    let sla = &args.common.sla;
    let cfg = args.sweep.config(sla)?;
    let thresholds = sla.thresholds()?;
    let slos = sla.slos()?;
    let tiers = cfg.tiers.clone();
    let pool = match &cfg.mode {
        llmload_sla::SweepMode::Auto {
            throughput_concurrency,
            ..
        } => *throughput_concurrency as usize,
        llmload_sla::SweepMode::Concurrency { levels } => {
            levels.iter().copied().max().unwrap_or(64) as usize
        }
        llmload_sla::SweepMode::Rates { rates, .. } => rates
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .mul_add(2.0, 0.0)
            .clamp(16.0, 4096.0) as usize,
    };
    let mut planner = SweepPlanner::new(cfg)?;
    // Validate the step flags once, before any load.
    let mut defaults = Vec::new();
    let mut probe = BenchmarkPlan::new(Profile::Synchronous);
    args.stop.apply(&mut probe, 0, &mut defaults)?;
    probe.validate().map_err(anyhow::Error::msg)?;
    if !defaults.is_empty() {
        eprintln!(
            "no step length given: using {} per step",
            defaults.join(" ")
        );
    }

    let interrupt = CancellationToken::new();
    run::install_signal_handlers(interrupt.clone());
    let parts = run::workload_parts(&args.common, args.stop.seed)?;
    let (target, note, sim) = run::resolve_target(&args.common, args.stop.seed).await?;
    let result = async {
        let mut session = run::Session::open(
            &args.common,
            pool.max(1),
            "sweep",
            0,
            target,
            note,
            parts,
            interrupt.clone(),
        )
        .await?;
        session
            .results
            .extra
            .insert("sla_tiers".into(), tiers.to_results_value());
        while let Some(step) = planner.next_step() {
            if session.interrupted() {
                break;
            }
            let mut plan = BenchmarkPlan::new(profile_of(step.load));
            let mut d = Vec::new();
            args.stop.apply(&mut plan, step.index, &mut d)?;
            plan.slos = slos.clone();
            plan.validate().map_err(anyhow::Error::msg)?;
            eprintln!(
                "step {}: {} ({:?})",
                step.index + 1,
                step.load.label(),
                step.phase
            );
            let (mut b, points) = session.step(step.index, &plan).await;
            let signals = b
                .server
                .as_ref()
                .and_then(llmload_sla::tiers::ServerSignals::from_server_value);
            let out = planner.record(&step, &b, signals.as_ref(), &points)?;
            b.sla = Some(out.sla.to_value());
            b.extra
                .insert("breaking_point".into(), out.verdict.to_value());
            b.extra
                .insert("sweep_phase".into(), serde_json::to_value(step.phase)?);
            eprintln!("  {}", llmload_sla::format::verdict_line(&out.verdict));
            session.push(b)?;
        }
        let summary = planner.finish();
        for (k, v) in summary.extra_entries() {
            session.results.extra.insert(k, v);
        }
        let report = (!thresholds.is_empty()).then(|| {
            llmload_sla::threshold::check_results(
                &thresholds,
                &session.results,
                Some(&summary.sustainable_steps()),
            )
        });
        if let Some(r) = &report {
            session
                .results
                .extra
                .insert("thresholds".into(), serde_json::to_value(r)?);
        }
        session.save()?;
        let _ = session.close().await?;
        print!("{}", llmload_sla::format::sweep_report(&summary));
        let mut code = 0;
        if let Some(r) = &report {
            print!("{}", llmload_sla::format::thresholds_report(r));
            code = r.exit_code();
        }
        if interrupt.is_cancelled() {
            code = 130;
        }
        anyhow::Ok(code)
    }
    .await;
    if let Some(sim) = sim {
        let _ = sim.shutdown().await;
    }
    result
}
