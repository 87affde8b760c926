//! llmload: how an LLM inference server really performs.

mod console;
mod run;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "llmload",
    version,
    about = "Benchmarks LLM inference servers (vLLM, any OpenAI-compatible API): latency, throughput, breaking points, server metrics, cost",
    after_help = "Start with `llmload run` (it starts a built-in vLLM-like simulator when no --target is given)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run benchmarks against a server (or the built-in simulator) and write results.
    Run(Box<run::RunArgs>),
    /// Check a target and send a few requests one at a time, printing every stamp.
    Probe(Box<llmload_client::cli::ProbeArgs>),
    /// List the workload presets (chat, summarization, codegen, stress, rag, vision, ...).
    Scenarios(llmload_workload::cli::ScenariosArgs),
    /// Analyze or diff Prometheus /metrics of a vLLM server (a file or a URL).
    Metrics(llmload_prom::cli::MetricsArgs),
    /// Render results as HTML, Markdown and CSV.
    Report(llmload_report::cli::ReportArgs),
    /// Compare runs side by side, with the ROI of each deployment and a regression gate.
    Compare(llmload_report::cli::CompareArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli, &matches)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<i32> {
    let sub = |name: &str| {
        matches
            .subcommand_matches(name)
            .cloned()
            .unwrap_or_default()
    };
    match cli.cmd {
        Cmd::Run(mut args) => {
            run::apply_scenario_file(&mut args, &sub("run"))?;
            run_cmd(*args).await
        }
        Cmd::Probe(args) => Ok(llmload_client::cli::run(*args, None).await?),
        Cmd::Scenarios(args) => Ok(llmload_workload::cli::run_scenarios(&args)?),
        Cmd::Metrics(args) => Ok(llmload_prom::cli::run(args).await?),
        Cmd::Report(args) => Ok(llmload_report::cli::run_report(args)?),
        Cmd::Compare(args) => Ok(llmload_report::cli::run_compare(args)?),
    }
}

async fn run_cmd(args: run::RunArgs) -> anyhow::Result<i32> {
    let mut defaults = Vec::new();
    let plans = args.load.plans(&mut defaults)?;
    if !defaults.is_empty() {
        eprintln!("no load given: using {}", defaults.join(" "));
    }
    let interrupt = CancellationToken::new();
    run::install_signal_handlers(interrupt.clone());
    let parts = run::workload_parts(&args)?;
    let (target, note, sim) = match args.client.target.clone() {
        Some(t) => (t, None, None),
        None => {
            let sim = run::start_embedded_sim(&args.sim, args.load.seed).await?;
            let note = format!(
                "built-in simulator, profile {} (model {}), speedup {}",
                sim.profile_name, sim.model_name, args.sim.sim_speedup
            );
            eprintln!(
                "no --target: started the built-in simulator on {} (profile {}, model {}); pass --target URL to measure a real server",
                sim.base_url(),
                sim.profile_name,
                sim.model_name
            );
            let url = url::Url::parse(&sim.base_url())?;
            (url, Some(note), Some(sim))
        }
    };
    let result = run::execute(&args, plans, target, note, parts, interrupt).await;
    if let Some(sim) = sim {
        let _ = sim.shutdown().await;
    }
    let (code, _dir, _results) = result?;
    Ok(code)
}
