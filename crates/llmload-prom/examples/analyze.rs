//! `cargo run -p llmload-prom --example analyze -- FILE [text|md|json]`: the analysis of a dump.
use llmload_prom::{
    Analysis, AnalyzeOptions, OutputFormat, Snapshot, analyze::render, decode_body, parse,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: analyze FILE [text|md|json]")?;
    let fmt = match std::env::args().nth(2).as_deref() {
        Some("md") => OutputFormat::Md,
        Some("json") => OutputFormat::Json,
        _ => OutputFormat::Text,
    };
    let bytes = std::fs::read(&path)?;
    let text = decode_body(&bytes)?;
    let snap = Snapshot::from_exposition(&parse(&text)?);
    let a = Analysis::of_snapshot(&path, &snap, &AnalyzeOptions::default());
    print!("{}", render(&a, fmt));
    Ok(())
}
