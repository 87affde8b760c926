//! End-to-end: the real binary against its built-in simulator (no --target), sped up.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

mod common;
use common::results;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_llmload")
}

fn llmload(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("the llmload binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_without_target_measures_the_simulator_and_its_metrics_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let (code, stdout, stderr) = llmload(&[
        "run",
        "--sim-speedup",
        "10",
        "--concurrency",
        "4",
        "--max-requests",
        "24",
        "--prompt-tokens",
        "128",
        "--output-tokens",
        "32",
        "--scrape-interval",
        "0.2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("built-in simulator"), "{stderr}");
    let r = results(&out);
    assert!(
        r["run"]["target_note"]
            .as_str()
            .unwrap()
            .contains("simulator")
    );
    let b = &r["benchmarks"][0];
    assert_eq!(b["requests"]["completed"], 24);
    assert_eq!(b["tokens"]["output_total"], 24 * 32);
    // The server's own counters over the benchmark window equal the client's counts exactly.
    let c = &b["server"]["correlation"];
    assert_eq!(c["server_requests_finished"].as_f64(), Some(24.0), "{c}");
    assert_eq!(
        c["server_generation_tokens"].as_f64(),
        Some((24 * 32) as f64),
        "{c}"
    );
    assert_eq!(
        c["server_prompt_tokens"].as_f64(),
        b["tokens"]["prompt_total"].as_f64(),
        "{c}"
    );
    // SLA tiers and the breaking-point verdict are attached.
    assert!(b["sla"].is_object(), "{}", b["sla"]);
    assert!(b["breaking_point"].is_object());
    // Reports were written.
    assert!(out.join("report.html").is_file());
    assert!(out.join("report.md").is_file());
}

#[test]
fn client_ttft_is_close_to_the_simulators_own_in_real_time() {
    // Real time (no speedup): what the client measures and what the simulator reports as its
    // server-side TTFT differ only by loopback and parsing. A missing TCP_NODELAY once made
    // every first token wait for the client's delayed ACK (+24 ms on average).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let (code, stdout, stderr) = llmload(&[
        "run",
        "--concurrency",
        "1",
        "--max-requests",
        "12",
        "--prompt-tokens",
        "64",
        "--output-tokens",
        "4",
        "--scrape-interval",
        "0.2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-report",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r = results(&out);
    let c = &r["benchmarks"][0]["server"]["correlation"];
    let overhead = c["ttft_overhead_s"].as_f64().unwrap();
    assert!(
        overhead.abs() < 0.010,
        "client TTFT - server TTFT = {overhead} s: {c}"
    );
}

#[test]
fn thresholds_decide_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "run",
        "--sim-speedup",
        "20",
        "--profile",
        "synchronous",
        "--max-requests",
        "5",
        "--output-tokens",
        "8",
        "--quiet",
        "--no-report",
        "--no-server-metrics",
    ];
    let out = dir.path().join("pass");
    let mut a: Vec<&str> = common.to_vec();
    a.extend([
        "--out",
        out.to_str().unwrap(),
        "--threshold",
        "error_rate<5%",
        "--threshold",
        "ttft.p95<10s",
    ]);
    let (code, stdout, stderr) = llmload(&a);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let out = dir.path().join("fail");
    let mut a: Vec<&str> = common.to_vec();
    a.extend([
        "--out",
        out.to_str().unwrap(),
        "--threshold",
        "ttft.p95<1us",
    ]);
    let (code, stdout, stderr) = llmload(&a);
    assert_eq!(code, 99, "{stdout}\n{stderr}");
    assert!(results(&out)["thresholds"].is_object());
    // A bad expression is refused before any load, showing where it is wrong.
    let (code, _, stderr) = llmload(&["run", "--threshold", "ttft.p95<<2s", "--max-requests", "1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains('^'), "{stderr}");
}

#[test]
fn sweep_over_explicit_rates_writes_every_step_and_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let (code, stdout, stderr) = llmload(&[
        "sweep",
        "--sim-speedup",
        "20",
        "--rates",
        "2,4",
        "--max-seconds",
        "2",
        "--no-refine",
        "--output-tokens",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-report",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r = results(&out);
    assert_eq!(r["benchmarks"].as_array().unwrap().len(), 2);
    assert_eq!(r["benchmarks"][1]["profile"]["kind"], "poisson");
    assert_eq!(r["benchmarks"][1]["profile"]["rate"], 4.0);
    assert!(r["breaking_point"].is_object(), "{r}");
    assert!(r["sweep"].is_object());
}
