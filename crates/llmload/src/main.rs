//! llmload: how an LLM inference server really performs.

mod console;
mod run;
mod sweep;

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
    /// Worker threads of the async runtime. Default for `run` and `sweep`: one per CPU core
    /// but one, which is left to the threads that prepare requests and record results (on a
    /// 2-core box that is 1 thread, which measured ~10 % more requests per second than 2 with
    /// the server on the same machine: docs/performance.md); one per core for the servers
    /// (`sim`, `gateway`) and the other verbs.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    threads: Option<u16>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run benchmarks against a server (or the built-in simulator) and write results.
    Run(Box<run::RunArgs>),
    /// Sweep the load (synchronous, throughput, then rates in between, refined by bisection)
    /// to find the maximum sustainable rate under the SLA.
    Sweep(Box<sweep::SweepCmdArgs>),
    /// Serve the simulated vLLM server (OpenAI API, /metrics, faults) on 127.0.0.1.
    Sim(Box<llmload_sim::cli::SimArgs>),
    /// Serve an OpenAI-compatible gateway in front of model servers, with Prometheus metrics.
    Gateway(Box<llmload_gateway::cli::GatewayArgs>),
    /// Print a table of the local GPUs (NVML) or of a GPU exporter URL.
    Gpu(llmload_gpu::cli::GpuArgs),
    /// Serve GPU telemetry as Prometheus metrics (nvidia_gpu_* names, optionally DCGM's).
    GpuExporter(llmload_gpu::cli::GpuExporterArgs),
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

/// The runtime's size when `--threads` is not given: the load generators leave one core to
/// their producer and collector threads (never fewer than one worker).
fn default_threads(cmd: &Cmd) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match cmd {
        Cmd::Run(_) | Cmd::Sweep(_) => cores.saturating_sub(1).max(1),
        _ => cores,
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    builder.worker_threads(
        cli.threads
            .map_or_else(|| default_threads(&cli.cmd), usize::from),
    );
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The verb runs as a task on the runtime, not on this thread: its collector then wakes on a
    // worker (a local queue push) instead of needing a futex wake-up of the main thread for
    // every finished request.
    let run = rt.block_on(async move {
        match tokio::spawn(async move { dispatch(cli, &matches).await }).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!(
                "internal error: the command's task failed: {e}"
            )),
        }
    });
    match run {
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
            let a = &mut *args;
            run::apply_scenario_file(&mut a.common, Some(&mut a.load), &mut a.stop, &sub("run"))?;
            run_cmd(*args).await
        }
        Cmd::Sweep(mut args) => {
            let a = &mut *args;
            run::apply_scenario_file(&mut a.common, None, &mut a.stop, &sub("sweep"))?;
            sweep::run(*args).await
        }
        Cmd::Sim(args) => Ok(llmload_sim::cli::run(*args).await?),
        Cmd::Gateway(args) => Ok(llmload_gateway::cli::run(*args).await?),
        Cmd::Gpu(args) => Ok(llmload_gpu::cli::run_gpu(args).await?),
        Cmd::GpuExporter(args) => Ok(llmload_gpu::cli::run_exporter(args).await?),
        Cmd::Probe(args) => Ok(llmload_client::cli::run(*args, None).await?),
        Cmd::Scenarios(args) => Ok(llmload_workload::cli::run_scenarios(&args)?),
        Cmd::Metrics(args) => Ok(llmload_prom::cli::run(args).await?),
        Cmd::Report(args) => Ok(llmload_report::cli::run_report(args)?),
        Cmd::Compare(args) => Ok(llmload_report::cli::run_compare(args)?),
    }
}

async fn run_cmd(args: run::RunArgs) -> anyhow::Result<i32> {
    let mut defaults = Vec::new();
    let plans = args.load.plans(&args.stop, &mut defaults)?;
    if !defaults.is_empty() {
        eprintln!("no load given: using {}", defaults.join(" "));
    }
    let interrupt = CancellationToken::new();
    run::install_signal_handlers(interrupt.clone());
    let parts = run::workload_parts(&args.common, args.stop.seed)?;
    let (target, note, sim) = run::resolve_target(&args.common, args.stop.seed).await?;
    let result = run::execute(&args, plans, target, note, parts, interrupt).await;
    if let Some(sim) = sim {
        let _ = sim.shutdown().await;
    }
    let (code, _dir, _results) = result?;
    Ok(code)
}
