//! Standalone gateway binary (the same entry point `llmload gateway` wires), for trying the
//! gateway and for benchmarking it as a separate process:
//! `cargo run --release -p llmload-gateway --example gateway -- --backend http://127.0.0.1:8000`

use clap::Parser;
use llmload_gateway::cli::{GatewayArgs, run};

#[derive(Parser)]
#[command(name = "llmload-gateway")]
struct Cli {
    #[command(flatten)]
    args: GatewayArgs,
}

fn main() {
    let cli = Cli::parse();
    let threads = std::env::var("GATEWAY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llmload gateway: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(cli.args)).unwrap_or_else(|e| {
        eprintln!("llmload gateway: {e}");
        2
    });
    std::process::exit(code);
}
