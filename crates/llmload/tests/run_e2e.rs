//! End-to-end: the real `llmload` binary against the scripted test server on 127.0.0.1.

#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use llmload_client::testkit::{Reply, Stream, TestServer, UsageMode};
use serde_json::Value;

mod common;
use common::{requests, results};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_llmload")
}

async fn run_llmload(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .output()
        .await
        .expect("the llmload binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_scripted_timing() {
    // 8 tokens in 4 events of 2 tokens: TTFT 150 ms, then a gap of 40 ms between events.
    let server = TestServer::start(|_| {
        Stream::new(8)
            .ttft(Duration::from_millis(150))
            .gap(Duration::from_millis(40))
            .per_chunk(2)
            .role_first()
            .reply()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let (code, stdout, stderr) = run_llmload(&[
        "run",
        "--target",
        server.url().as_str(),
        "--concurrency",
        "2",
        "--max-requests",
        "10",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--label",
        "gpus=1",
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r = results(&out);
    assert_eq!(r["schema"], "llmload.results/v1");
    assert_eq!(r["run"]["model"], "test-model");
    assert_eq!(r["run"]["labels"]["gpus"], "1");
    // The default runtime: one worker per CPU but one, at least one.
    let rt = &r["run"]["client_runtime"];
    let cpus = rt["cpus"].as_u64().unwrap();
    assert_eq!(
        rt["workers"].as_u64().unwrap(),
        cpus.saturating_sub(1).max(1)
    );
    let b = &r["benchmarks"][0];
    assert_eq!(b["profile"]["kind"], "concurrent");
    assert_eq!(b["profile"]["concurrency"], 2);
    assert_eq!(b["requests"]["completed"], 10);
    assert_eq!(b["requests"]["scheduled"], 10);
    assert_eq!(b["tokens"]["source"], "usage");
    assert_eq!(b["tokens"]["output_total"], 80);
    let m = &b["metrics"];
    // Generous tolerances: a loaded 2-core machine. The precise bars are benchmarks.
    let ttft = f(&m["ttft_s"]["mean"]);
    assert!((0.15..0.25).contains(&ttft), "ttft {ttft}");
    // TPOT = (last - first) / (8 - 1) = 3 gaps of 40 ms / 7 tokens.
    let tpot = f(&m["tpot_s"]["p50"]);
    assert!((tpot - 0.120 / 7.0).abs() < 0.008, "tpot {tpot}");
    // ITL: one gap per event, 3 per request.
    assert_eq!(m["itl_s"]["count"], 30);
    let itl = f(&m["itl_s"]["p50"]);
    assert!((itl - 0.040).abs() < 0.015, "itl {itl}");
    assert_eq!(f(&b["multi_token_event_share"]), 1.0);
    let e2e = f(&m["e2e_latency_s"]["p50"]);
    assert!((0.27..0.40).contains(&e2e), "e2e {e2e}");
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 10);
    for q in &reqs {
        assert_eq!(q["output_tokens"], 8);
        assert_eq!(q["status"], 200);
        assert!(q.get("error").is_none());
    }
    // The console table names the load level.
    assert!(stdout.contains("c=2"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_measured_not_fatal() {
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let server = TestServer::start(move |req| {
        // The preflight's /v1/models and probe request come first; fail every 3rd request after.
        if !req.path.ends_with("/chat/completions") {
            return Stream::new(4).reply();
        }
        let i = n2.fetch_add(1, Ordering::Relaxed);
        if i > 0 && i.is_multiple_of(3) {
            Reply::error(500, "engine dead")
        } else if i > 0 && i % 3 == 1 {
            Stream::new(4).usage(UsageMode::Absent).reply()
        } else {
            Stream::new(4).reply()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let (code, stdout, stderr) = run_llmload(&[
        "run",
        "--target",
        server.url().as_str(),
        "--profile",
        "synchronous",
        "--max-requests",
        "12",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--threads",
        "3",
    ])
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // `--threads` (a global flag, given after the verb here) sizes the runtime.
    assert_eq!(results(&out)["run"]["client_runtime"]["workers"], 3);
    let b = &results(&out)["benchmarks"][0];
    assert_eq!(b["requests"]["completed"], 8);
    assert_eq!(b["requests"]["errored"], 4);
    assert_eq!(b["requests"]["errors_by_class"]["http_5xx"], 4);
    assert!(
        b["requests"]["error_examples"]["http_5xx"]
            .as_str()
            .unwrap()
            .contains("engine dead")
    );
    // Some answers had no usage: counted by the tokenizer, and the results say so.
    assert_eq!(b["tokens"]["source"], "mixed");
    assert!(stderr.contains("http_5xx=4"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_keeps_every_measured_request() {
    // Each request takes ~1 s (20 events 50 ms apart).
    let server = TestServer::start(|_| {
        Stream::new(20)
            .ttft(Duration::from_millis(50))
            .gap(Duration::from_millis(50))
            .reply()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let child = tokio::process::Command::new(bin())
        .args([
            "run",
            "--target",
            server.url().as_str(),
            "--concurrency",
            "4",
            "--max-seconds",
            "60",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    // Wait until some requests completed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = std::fs::read_to_string(out.join("requests.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if done >= 8 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no requests completed in 30 s"
        );
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(130), "{stdout}");
    let r = results(&out);
    let b = &r["benchmarks"][0];
    let reqs = requests(&out);
    let completed = b["requests"]["completed"].as_u64().unwrap();
    let cancelled = b["requests"]["cancelled"].as_u64().unwrap();
    assert!(completed >= 8, "{b}");
    assert_eq!(cancelled, 4, "{b}");
    assert_eq!(b["window"]["stopped_by"], "interrupted");
    // Every completed request (and every cancelled one) is in requests.jsonl.
    let ok = reqs.iter().filter(|q| q.get("error").is_none()).count() as u64;
    assert_eq!(ok, completed);
    assert_eq!(reqs.len() as u64, completed + cancelled);
    // And the summary of what was measured was printed.
    assert!(stdout.contains("c=4"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_and_unknown_model_are_explained() {
    let (code, _, stderr) = run_llmload(&[
        "run",
        "--target",
        "http://127.0.0.1:1",
        "--max-requests",
        "1",
        "--quiet",
        "--out",
        "/tmp/llmload-never",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");

    let server = TestServer::start(|_| Stream::new(2).reply()).await;
    let (code, _, stderr) = run_llmload(&[
        "run",
        "--target",
        server.url().as_str(),
        "--model",
        "nope",
        "--max-requests",
        "1",
        "--quiet",
        "--out",
        "/tmp/llmload-never",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("nope") && stderr.contains("test-model"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_name_the_problem() {
    let (code, _, stderr) =
        run_llmload(&["run", "--profile", "poisson", "--max-requests", "5"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("--rate"), "{stderr}");
    let (code, _, stderr) =
        run_llmload(&["run", "--concurrency", "0", "--max-requests", "5"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("--concurrency"), "{stderr}");
    let (code, _, stderr) = run_llmload(&["run", "--max-error-rate", "200%"]).await;
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run_llmload(&["run", "--scrape-interval", "0"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--scrape-interval"), "{stderr}");
}
