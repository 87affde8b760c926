#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::{data, temp_dir};
use llmload_report::cli::{CompareArgs, EXIT_REGRESSION, run_compare};
use llmload_report::compare::{
    self, CompareOptions, SlaCriteria, align, answer, apply_labels, gate, parse_margin, roi,
};
use llmload_report::import::{Source, load_run};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn roi_of_int4_on_one_gpu_against_bf16_on_four_matches_the_hand_computation() {
    let runs = vec![
        load_run(&data("int4-1gpu")).unwrap(),
        load_run(&data("bf16-4gpu")).unwrap(),
    ];
    let sla = SlaCriteria::default();
    let int4 = roi(&runs[0], &sla, Some(2.0));
    let bf16 = roi(&runs[1], &sla, Some(2.0));
    // INT4, no breaking point: the highest step with TTFT p95 < 1 s and errors < 1 % is step 3
    // (3 req/s achieved, 3 × 128 = 384 output tok/s); 1 GPU at $2.00/h.
    let c = int4.capacity.as_ref().unwrap();
    assert!(close(c.rps, 3.0) && close(c.out_tps, 384.0), "{c:?}");
    assert!(c.basis.contains("no breaking point recorded") && c.basis.contains("step 3"));
    assert!(close(int4.cost_per_hour.unwrap(), 2.0));
    assert!(close(int4.out_tps_per_gpu.unwrap(), 384.0));
    assert!(close(int4.rps_per_gpu.unwrap(), 3.0));
    // $2/h ÷ (384 tok/s × 3600 s/h) × 1e6 = $1.446759... per 1M output tokens.
    assert!(close(
        int4.cost_per_1m_at_capacity.unwrap(),
        2.0 / (384.0 * 3600.0) * 1e6
    ));
    assert!((int4.cost_per_1m_at_capacity.unwrap() - 1.446_759).abs() < 1e-6);
    // At 2 req/s: 256 tok/s → $2.170139 per 1M.
    let (tps, cost, meets) = int4.at_rate.unwrap();
    assert!(close(tps, 256.0) && (cost.unwrap() - 2.170_139).abs() < 1e-6 && meets == Some(true));
    // BF16: breaking point 7.5 req/s recorded; output tokens 128 per request (step at 6 req/s)
    // → 960 tok/s; 4 GPUs × $2.00 = $8/h; 240 tok/s and 1.875 req/s per GPU;
    // $8 ÷ (960 × 3600) × 1e6 = $2.314815 per 1M.
    let c = bf16.capacity.as_ref().unwrap();
    assert!(close(c.rps, 7.5) && close(c.out_tps, 960.0), "{c:?}");
    assert!(c.basis.contains("breaking point recorded"));
    assert!(close(bf16.out_tps_per_gpu.unwrap(), 240.0));
    assert!(close(bf16.rps_per_gpu.unwrap(), 1.875));
    assert!((bf16.cost_per_1m_at_capacity.unwrap() - 2.314_815).abs() < 1e-6);
    assert!((bf16.at_rate.unwrap().1.unwrap() - 8.680_556).abs() < 1e-6);
    // ceil(7.5 / 3) = 3 replicas of INT4 (3 GPUs, 9 req/s) at 3 × $2 / $8 = 0.75× the cost;
    // for $8/h, 4 replicas: 12 req/s = 1.6× the capacity.
    let a = answer(&runs, &[int4, bf16]).unwrap();
    for s in [
        "3 replica(s) of int4-1gpu (3 GPUs, 9 req/s)",
        "0.75× its cost ($6.00/h vs $8.00/h): cheaper by 25.0 %",
        "4 replica(s) of int4-1gpu: 12 req/s under the SLA, 1.60× the capacity",
    ] {
        assert!(a.contains(s), "missing {s:?} in {a}");
    }
}

#[test]
fn labels_given_at_compare_time_change_the_answer() {
    let mut runs = vec![
        load_run(&data("int4-1gpu")).unwrap(),
        load_run(&data("bf16-4gpu")).unwrap(),
    ];
    apply_labels(
        &mut runs,
        &["1:gpu_hour_cost=3".into(), "2:name=bf16 x4".into()],
    )
    .unwrap();
    let sla = SlaCriteria::default();
    let rois: Vec<_> = runs.iter().map(|r| roi(r, &sla, None)).collect();
    let a = answer(&runs, &rois).unwrap();
    // 3 replicas × $3 = $9 against $8: 1.125×.
    assert!(
        a.contains("1.12× its cost ($9.00/h vs $8.00/h): dearer by 12.5 %"),
        "{a}"
    );
    assert!(a.contains("bf16 x4 sustains 7.5 req/s"));
    for bad in ["gpus=4", "x:gpus=4", "3:gpus=4", "1:gpus"] {
        assert!(apply_labels(&mut runs, &[bad.into()]).is_err(), "{bad}");
    }
}

#[test]
fn roi_names_what_is_missing() {
    let run = load_run(&data("sweep")).unwrap();
    let mut run = run;
    run.labels.clear();
    let r = roi(&run, &SlaCriteria::default(), Some(3.0));
    assert!(r.cost_per_1m_at_capacity.is_none());
    let m = r.missing.join("; ");
    assert!(
        m.contains("gpus") && m.contains("gpu_hour_cost") && m.contains("no step at 3 req/s"),
        "{m}"
    );
    // The sweep recorded its breaking point: 4.6 req/s.
    assert!(close(r.capacity.unwrap().rps, 4.6));
}

#[test]
fn guidellm_benchmarks_import_onto_our_names() {
    let run = load_run(&data("guidellm/benchmarks.json")).unwrap();
    assert_eq!(run.source, Source::GuideLlm);
    assert_eq!(run.model, "Qwen/Qwen3-8B");
    assert_eq!(run.steps.len(), 2);
    let s0 = &run.steps[0];
    assert_eq!(
        (s0.kind.as_str(), s0.rate, s0.concurrency),
        ("synchronous", None, Some(1.0))
    );
    assert!(close(s0.get("ttft.mean").unwrap(), 0.045));
    assert!(close(s0.get("ttft.p95").unwrap(), 0.072));
    assert!(close(s0.get("ttft.p50").unwrap(), 0.045 * 0.95));
    // GuideLLM "ITL" is our tpot; its "TPOT" is our tpot_incl_ttft.
    assert!(close(s0.get("tpot.mean").unwrap(), 0.012));
    assert!(close(s0.get("tpot_incl_ttft.mean").unwrap(), 0.0124));
    assert!(close(s0.get("request_latency.mean").unwrap(), 1.57));
    assert!(close(s0.get("requests_per_s").unwrap(), 60.0 / 120.0));
    assert!(close(
        s0.get("output_tokens_per_s").unwrap(),
        128.0 * 60.0 / 120.0
    ));
    assert!(close(s0.get("error_rate").unwrap(), 0.0));
    let s1 = &run.steps[1];
    assert_eq!((s1.kind.as_str(), s1.rate), ("constant", Some(2.0)));
    assert!(close(s1.get("error_rate").unwrap(), 2.0 / 240.0));
    // Not mapped: named, not guessed.
    assert!(s0.get("e2e_latency.p95").is_none() && s0.get("itl.mean").is_none());
    assert!(run.unmapped.iter().any(|u| u.starts_with("e2e_latency")));
    assert!(run.unmapped.iter().any(|u| u.starts_with("itl")));
    assert!(
        run.notes
            .iter()
            .any(|n| n.contains("= llmload tpot_incl_ttft"))
    );
}

#[test]
fn vllm_bench_results_import_onto_our_names() {
    let run = load_run(&data("vllm/result.json")).unwrap();
    assert_eq!(run.source, Source::VllmBench);
    let s = &run.steps[0];
    assert_eq!(
        (s.kind.as_str(), s.rate, s.concurrency),
        ("poisson", Some(2.0), None)
    );
    // From the per-request ttfts list: exact statistics.
    assert_eq!(s.get("ttft.count"), Some(200.0));
    assert!(close(s.get("ttft.min").unwrap(), 0.04) && close(s.get("ttft.max").unwrap(), 0.076));
    assert!(close(s.get("tpot.mean").unwrap(), 0.0131));
    assert!(close(s.get("tpot.p50").unwrap(), 0.0131 * 0.95));
    assert!(close(s.get("tpot.p99").unwrap(), 0.0262));
    assert!(close(s.get("itl.stddev").unwrap(), 0.0129 * 0.2));
    assert!(close(s.get("e2e_latency.mean").unwrap(), 1.722));
    assert!(close(s.get("requests_per_s").unwrap(), 200.0 / 101.5));
    assert!(close(
        s.get("output_tokens_per_s").unwrap(),
        200.0 * 128.0 / 101.5
    ));
    assert_eq!(s.get("error_rate"), Some(0.0));
    assert!(s.get("goodput_requests_per_s").is_none());
    assert!(s.get("tpot.p95").is_none(), "vllm recorded no p95 TPOT");
    assert!(run.unmapped.iter().any(|u| u == "ttfot"));

    let sweep = load_run(&data("vllm/sweep.jsonl")).unwrap();
    assert_eq!(sweep.steps.len(), 2);
    let s = &sweep.steps[1];
    assert_eq!(
        (s.kind.as_str(), s.rate, s.concurrency),
        ("concurrent", None, Some(16.0))
    );
    assert!(close(s.get("error_rate").unwrap(), 4.0 / 404.0));
    assert!(close(s.get("ttft.p95").unwrap(), 0.42 * 1.7));
}

#[test]
fn malformed_peer_files_get_clear_errors() {
    let e = load_run(&data("guidellm/malformed.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GuideLLM")
            && e.contains("benchmarks[0].metrics.time_to_first_token_ms.successful.percentiles.p95 should be a number"),
        "{e}"
    );
    let e = load_run(&data("vllm/malformed.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vllm bench serve") && e.contains("result.mean_ttft_ms should be a number"),
        "{e}"
    );
    let dir = temp_dir("import");
    std::fs::write(dir.join("x.json"), "{\"hello\": 1}").unwrap();
    let e = load_run(&dir.join("x.json")).unwrap_err().to_string();
    assert!(
        e.contains("llmload") && e.contains("GuideLLM") && e.contains("vllm"),
        "{e}"
    );
    std::fs::write(dir.join("y.json"), "{\"benchmarks\": [").unwrap();
    let e = load_run(&dir.join("y.json")).unwrap_err().to_string();
    assert!(e.contains("not valid JSON") && e.contains("line 1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn steps_align_by_rate_within_two_percent_and_by_concurrency() {
    let mut a = load_run(&data("vllm/sweep.jsonl")).unwrap();
    let b = load_run(&data("guidellm/benchmarks.json")).unwrap();
    a.steps[0].rate = Some(2.03); // within 2 % of GuideLLM's 2.0
    let rows = align(&[a.clone(), b.clone()]);
    let both: Vec<_> = rows
        .iter()
        .filter(|r| r.steps.iter().all(Option::is_some))
        .collect();
    assert_eq!(both.len(), 1);
    a.steps[0].rate = Some(2.1); // 5 % away: not the same step
    let rows = align(&[a, b]);
    assert!(
        rows.iter()
            .all(|r| r.steps.iter().filter(|s| s.is_some()).count() == 1)
    );
}

#[test]
fn comparison_renders_tables_charts_and_unmapped_names() {
    let runs = vec![
        load_run(&data("sweep")).unwrap(),
        load_run(&data("vllm/result.json")).unwrap(),
        load_run(&data("guidellm/benchmarks.json")).unwrap(),
    ];
    let opts = CompareOptions::default();
    let md = compare::render_markdown(&runs, &opts);
    assert!(md.contains("| 2 req/s |"), "{md}");
    assert!(md.contains("Δ #2 − #1") && md.contains("#3 / #1"));
    assert!(md.contains("Not in this format (not estimated)"));
    let html = compare::render_html(&runs, &opts);
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let n = html.matches("<svg class=\"chart\"").count();
    assert_eq!(n, compare::DEFAULT_METRICS.len());
    assert!(html.contains("<table>") && html.contains("<h2>ROI</h2>"));
}

fn args(runs: &[&std::path::Path]) -> CompareArgs {
    CompareArgs {
        runs: runs.iter().map(|p| p.to_path_buf()).collect(),
        baseline: None,
        max_regression: None,
        metrics: vec![],
        labels: vec![],
        at_rate: None,
        sla_ttft_p95: 1.0,
        sla_max_error_rate: "1%".into(),
        out: None,
    }
}

/// A copy of the sweep with step 3's TTFT p95 scaled by `f`.
fn slower_copy(f: f64) -> std::path::PathBuf {
    let dir = temp_dir("gate");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("sweep/results.json")).unwrap())
            .unwrap();
    let p = &mut v["benchmarks"][2]["metrics"]["ttft_s"]["p95"];
    *p = serde_json::json!(p.as_f64().unwrap() * f);
    std::fs::write(dir.join("results.json"), serde_json::to_string(&v).unwrap()).unwrap();
    dir
}

#[test]
fn regression_gate_exit_codes() {
    let new = slower_copy(1.2);
    let old = data("sweep");
    let mut a = args(&[&new]);
    a.baseline = Some(old.clone());
    a.max_regression = Some("10%".into());
    assert_eq!(run_compare(a.clone()).unwrap(), EXIT_REGRESSION);
    a.max_regression = Some("25%".into());
    assert_eq!(run_compare(a.clone()).unwrap(), 0);
    // Only the chosen metric is gated.
    a.max_regression = Some("10%".into());
    a.metrics = vec!["tpot.p95".into()];
    assert_eq!(run_compare(a.clone()).unwrap(), 0);
    a.metrics = vec!["ttft.p95".into()];
    assert_eq!(run_compare(a.clone()).unwrap(), EXIT_REGRESSION);
    // Identical runs pass.
    let mut same = args(&[&old]);
    same.baseline = Some(old.clone());
    assert_eq!(run_compare(same).unwrap(), 0);
    // Usage errors.
    a.metrics = vec!["ttft.p97".into()];
    assert!(
        run_compare(a.clone())
            .unwrap_err()
            .to_string()
            .contains("--metric")
    );
    let mut b = args(&[&new]);
    b.max_regression = Some("10%".into());
    assert!(
        run_compare(b)
            .unwrap_err()
            .to_string()
            .contains("--baseline")
    );
    assert!(
        run_compare(args(&[&old]))
            .unwrap_err()
            .to_string()
            .contains("at least two")
    );
    std::fs::remove_dir_all(&new).unwrap();
}

#[test]
fn gate_checks_direction_per_metric() {
    let old = load_run(&data("sweep")).unwrap();
    let mut new = old.clone();
    // Throughput down 20 % is a regression; TTFT down 20 % is an improvement.
    for s in &mut new.steps {
        *s.values.get_mut("output_tokens_per_s").unwrap() *= 0.8;
        *s.values.get_mut("ttft.p95").unwrap() *= 0.8;
    }
    let res = gate(
        &old,
        &new,
        &["output_tokens_per_s".into(), "ttft.p95".into()],
        0.1,
    );
    assert!(res.failed());
    assert!(
        res.checks
            .iter()
            .filter(|c| c.metric == "output_tokens_per_s")
            .all(|c| c.regressed)
    );
    assert!(
        res.checks
            .iter()
            .filter(|c| c.metric == "ttft.p95")
            .all(|c| !c.regressed)
    );
    assert_eq!(res.checks.len(), 10);
    let md = compare::render_gate(&res, 0.1);
    assert!(md.contains("FAIL: 5 of 10 checks"), "{md}");
    // error_rate from 0 to anything is a regression.
    let mut worse = old.clone();
    worse.steps[0].values.insert("error_rate".into(), 0.001);
    let res = gate(&old, &worse, &["error_rate".into()], 0.1);
    assert!(res.checks[0].regressed && res.checks[0].worse_by.is_infinite());
}

#[test]
fn margins_parse() {
    assert_eq!(parse_margin("10%").unwrap(), 0.1);
    assert_eq!(parse_margin(" 5 %").unwrap(), 0.05);
    assert_eq!(parse_margin("0.2").unwrap(), 0.2);
    assert!(parse_margin("10").unwrap_err().contains("ambiguous"));
    assert!(parse_margin("ten%").is_err());
    assert!(parse_margin("-5%").is_err());
}

#[test]
fn compare_writes_markdown_and_html_with_out() {
    let out = temp_dir("cmp-out");
    let mut a = args(&[&data("int4-1gpu"), &data("bf16-4gpu")]);
    a.out = Some(out.clone());
    a.at_rate = Some(2.0);
    assert_eq!(run_compare(a).unwrap(), 0);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("**Answer.**"));
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.contains("<svg class=\"chart\""));
    std::fs::remove_dir_all(&out).unwrap();
}
