//! Stand-alone driver of `llmload report` / `llmload compare` for trying the crate without the
//! main binary: `cargo run -p llmload-report --example report_cli -- report DIR`.

use clap::{Parser, Subcommand};
use llmload_report::cli::{CompareArgs, ReportArgs, run_compare, run_report};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Report(ReportArgs),
    Compare(CompareArgs),
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Report(a) => run_report(a),
        Cmd::Compare(a) => run_compare(a),
    };
    match res {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
