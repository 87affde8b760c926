//! `llmload metrics analyze|diff` through its clap arguments and `run`.

use clap::{CommandFactory, Parser};
use llmload_prom::PromError;
use llmload_prom::cli::{MetricsArgs, run};

#[derive(Parser)]
struct Top {
    #[command(flatten)]
    metrics: MetricsArgs,
}

fn data(p: &str) -> String {
    format!("{}/tests/data/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn args(v: &[&str]) -> MetricsArgs {
    let mut full = vec!["metrics"];
    full.extend_from_slice(v);
    Top::try_parse_from(full).expect("valid arguments").metrics
}

#[tokio::test]
async fn analyze_writes_each_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (fmt, check) in [
        ("text", "== Insights =="),
        ("md", "# Server metrics analysis"),
        ("json", "\"insights\""),
    ] {
        let out = dir.path().join(format!("a.{fmt}"));
        let a = args(&[
            "analyze",
            &data("real-0.25.0-h100/metrics_c128_mid.txt"),
            "--format",
            fmt,
            "--out",
            out.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(run(a).await.expect("runs"), 0);
        let text = std::fs::read_to_string(&out).expect("written");
        assert!(text.contains(check), "{fmt}: {text}");
    }
}

#[tokio::test]
async fn diff_of_two_files_with_elapsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("d.json");
    let a = args(&[
        "diff",
        &data("real-0.25.0-h100/metrics_c8_before.txt"),
        &data("real-0.25.0-h100/metrics_c8_after.txt"),
        "--elapsed",
        "20",
        "--format",
        "json",
        "-o",
        out.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run(a).await.expect("runs"), 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("json");
    // generation_tokens_total 5268.0 -> 10388.0 over 20 s
    assert_eq!(
        v["rates"]["generation_tokens_per_s"],
        (10388.0 - 5268.0) / 20.0
    );
    assert_eq!(v["kind"], "diff");
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let err = run(args(&["diff", &data("vllm-0.33.0-single-engine.prom")]))
        .await
        .expect_err("one file");
    assert!(matches!(err, PromError::Usage(_)), "{err}");
    let err = run(args(&["analyze", "/nonexistent/dump.txt"]))
        .await
        .expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/dump.txt"), "{err}");
    let err = run(args(&[
        "analyze",
        &data("vllm-docs-design-metrics-example.prom"),
    ]))
    .await
    .expect_err("elided excerpt");
    assert!(err.to_string().contains("line "), "{err}");
    assert!(Top::try_parse_from(["m", "diff", "x", "--interval", "soon"]).is_err());
}

#[test]
fn help_has_examples() {
    let mut cmd = Top::command();
    let help = cmd.render_long_help().to_string();
    assert!(help.contains("llmload metrics analyze"), "{help}");
}

#[derive(Parser)]
struct RunLike {
    #[command(flatten)]
    scrape: llmload_prom::cli::ScrapeArgs,
}

#[test]
fn scrape_flags_for_run() {
    let target = url::Url::parse("http://10.0.0.5:8000/v1").expect("url");
    let a = RunLike::try_parse_from(["run"]).expect("defaults");
    assert_eq!(a.scrape.scrape_interval, std::time::Duration::from_secs(1));
    assert_eq!(
        a.scrape.urls(&target)[0].as_str(),
        "http://10.0.0.5:8000/metrics"
    );
    let b = RunLike::try_parse_from([
        "run",
        "--metrics-url",
        "http://a:1/metrics",
        "--metrics-url",
        "http://b:2/m",
        "--scrape-interval",
        "250ms",
    ])
    .expect("valid");
    assert_eq!(b.scrape.urls(&target).len(), 2);
    assert_eq!(
        b.scrape.scrape_interval,
        std::time::Duration::from_millis(250)
    );
    let c = RunLike::try_parse_from(["run", "--no-server-metrics"]).expect("valid");
    assert!(c.scrape.urls(&target).is_empty());
}
