//! Golden tests on real and really-generated vLLM expositions (tests/data, copied from the
//! project's shared fixtures). Every expected figure is written as arithmetic on values read
//! from the file by hand (the line is quoted in the comment).

use llmload_prom::analyze::{Analysis, AnalyzeOptions, OutputFormat, render};
use llmload_prom::{QuantileKind, Snapshot, parse};

fn load(path: &str) -> Snapshot {
    let full = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).expect("fixture present");
    let expo = parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    Snapshot::from_exposition(&expo)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} != {b}");
}

fn analyze(path: &str) -> Analysis {
    Analysis::of_snapshot(path, &load(path), &AnalyzeOptions::default())
}

#[test]
fn every_fixture_parses() {
    for f in [
        "vllm-0.33.0-single-engine.prom",
        "vllm-0.33.0-single-engine.openmetrics",
        "vllm-0.33.0-dp2-engines.prom",
        "vllm-0.33.0-multiproc-api-servers.prom",
        "real-0.25.0-h100/metrics_startup.txt",
        "real-0.25.0-h100/metrics_c8_before.txt",
        "real-0.25.0-h100/metrics_c8_after.txt",
        "real-0.25.0-h100/metrics_c128_mid.txt",
        "real-0.25.0-h100/metrics_c128_after.txt",
        "real-0.25.0-h100/metrics_final.txt",
        "real-0.25.0-h100-fp8/metrics_r60_after.txt",
        "real-0.25.0-h100-fp8/metrics_r140_mid.txt",
        "real-0.25.0-h100-fp8/metrics_r140_after.txt",
        "real-0.25.0-h100-fp8-4apiservers/metrics_r140_after.txt",
        "real-0.25.0-h100-qwen3vl/metrics_startup.txt",
        "real-0.25.0-h100-qwen3vl/metrics_s448_c32_after.txt",
        "real-0.25.0-h100-qwen3vl/metrics_s896_c32_after.txt",
    ] {
        let a = analyze(f);
        assert!(a.vllm_detected, "{f}");
        for fmt in [OutputFormat::Text, OutputFormat::Md, OutputFormat::Json] {
            assert!(!render(&a, fmt).is_empty());
        }
        let json = render(&a, OutputFormat::Json);
        serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    }
}

#[test]
fn single_engine_figures() {
    let a = analyze("vllm-0.33.0-single-engine.prom");
    let t = &a.vllm.total;
    // request_success_total: stop 3.0, length 3.0, abort 4.0, error 0.0, repetition 0.0
    assert_eq!(t.requests_finished, Some(3.0 + 3.0 + 4.0 + 0.0 + 0.0));
    assert_eq!(t.requests_by_finished_reason.get("abort"), Some(&4.0));
    // vllm:prompt_tokens_total 9133.0, vllm:generation_tokens_total 216.0
    assert_eq!(t.prompt_tokens, Some(9133.0));
    assert_eq!(t.generation_tokens, Some(216.0));
    close(t.generation_to_prompt_ratio.expect("ratio"), 216.0 / 9133.0);
    // num_requests_running 3.0, kv_cache_usage_perc 0.5409
    assert_eq!(t.running, Some(3.0));
    assert_eq!(t.kv_cache_usage, Some(0.5409));
    // prefix_cache_queries_total 25600.0, prefix_cache_hits_total 6400.0
    let pc = t.prefix_cache.as_ref().expect("prefix cache");
    close(pc.hit_rate.expect("rate"), 6400.0 / 25600.0);
    // time_to_first_token_seconds_sum 2.220364056196572 / _count 10.0
    close(t.mean("ttft_s").expect("ttft"), 2.220364056196572 / 10.0);
    // http_requests_total: /v1/completions 3, /v1/chat/completions 1, /v1/models 1, none 4xx 1
    let req = |h: &str, s: &str| {
        a.http
            .iter()
            .find(|r| r.handler == h && r.status == s)
            .map(|r| r.requests)
    };
    assert_eq!(req("/v1/completions", "2xx"), Some(3.0));
    assert_eq!(req("none", "4xx"), Some(1.0));
    assert!(a.insights.iter().any(|i| i.code == "http_errors"));
    assert!(a.insights.iter().any(|i| i.code == "aborted_requests"));
    // python_info version="3.11.7"
    assert_eq!(a.system.python_version.as_deref(), Some("3.11.7"));
    // process_start_time_seconds 1.79537471257e+09
    assert_eq!(a.system.start_time_unix, Some(1.79537471257e+09));
}

#[test]
fn openmetrics_encoding_reads_the_same() {
    // The OpenMetrics file is the same registry; its samples are spelled `vllm_...` under
    // `# TYPE vllm:... ` metadata: the figures must be identical.
    let prom = analyze("vllm-0.33.0-single-engine.prom");
    let om = analyze("vllm-0.33.0-single-engine.openmetrics");
    assert_eq!(prom.vllm.total, om.vllm.total);
    assert_eq!(prom.cache_config, om.cache_config);
    assert_eq!(om.vllm.total.prompt_tokens, Some(9133.0));
}

#[test]
fn two_engines_summed_and_apart() {
    let a = analyze("vllm-0.33.0-dp2-engines.prom");
    assert_eq!(a.vllm.engines, vec!["0".to_string(), "1".to_string()]);
    let t = &a.vllm.total;
    // prompt_tokens_total engine 0: 8605.0, engine 1: 8974.0
    assert_eq!(t.prompt_tokens, Some(8605.0 + 8974.0));
    assert_eq!(a.vllm.per_engine["0"].prompt_tokens, Some(8605.0));
    assert_eq!(a.vllm.per_engine["1"].prompt_tokens, Some(8974.0));
    // running 7.0 + 8.0; waiting 0.0 + 2.0 -> saturation
    assert_eq!(t.running, Some(7.0 + 8.0));
    assert_eq!(t.waiting, Some(0.0 + 2.0));
    assert!(a.insights.iter().any(|i| i.code == "saturation"));
    // KV usage: mean of 0.2251 and 0.1774
    close(t.kv_cache_usage.expect("kv"), (0.2251 + 0.1774) / 2.0);
    // TTFT: sums 1.3949787028264344 + 2.4162862134452183 over counts 10 + 10
    close(
        t.mean("ttft_s").expect("ttft"),
        (1.3949787028264344 + 2.4162862134452183) / (10.0 + 10.0),
    );
    // Merged TTFT buckets: le=0.1 -> 4 + 1 = 5, le=0.25 -> 8 + 5 = 13, +Inf -> 20.
    // p50: rank 10 lies in (0.1, 0.25]: 0.1 + 0.15 * (10 - 5) / (13 - 5)
    let p50 = t.latency["ttft_s"].p50.expect("p50");
    close(
        p50.value,
        0.1 + (0.25 - 0.1) * ((10.0 - 5.0) / (13.0 - 5.0)),
    );
    assert_eq!(p50.kind, QuantileKind::Estimate);
    // Engine 1 alone: le=0.1 -> 1, le=0.25 -> 5, le=0.5 -> 10; p50 rank 5 -> 0.25 exactly.
    let e1 = a.vllm.per_engine["1"].latency["ttft_s"].p50.expect("p50");
    close(e1.value, 0.1 + 0.15 * ((5.0 - 1.0) / (5.0 - 1.0)));
    // cache_config_info: block_size 16 x num_gpu_blocks 27040, per engine
    assert_eq!(a.cache_config.len(), 2);
    assert_eq!(a.cache_config[0].token_capacity, Some(16 * 27040));
    assert_eq!(a.cache_config[0].gpu_memory_utilization, Some(0.92));
}

#[test]
fn multiprocess_mode_has_no_process_metrics() {
    let a = analyze("vllm-0.33.0-multiproc-api-servers.prom");
    assert!(!a.system.process_metrics);
    assert!(a.insights.iter().any(|i| i.code == "multiprocess_mode"));
    // vllm:prompt_tokens_total 9133.0
    assert_eq!(a.vllm.total.prompt_tokens, Some(9133.0));
}

#[test]
fn real_h100_diff_of_the_c8_run() {
    let before = load("real-0.25.0-h100/metrics_c8_before.txt");
    let after = load("real-0.25.0-h100/metrics_c8_after.txt");
    let a = Analysis::of_diff(
        ["before", "after"],
        &before,
        &after,
        Some(10.0),
        &AnalyzeOptions::default(),
    );
    let t = &a.vllm.total;
    // request_success_total{length}: 51.0 -> 91.0
    assert_eq!(t.requests_finished, Some(91.0 - 51.0));
    // prompt_tokens_total 12329.0 -> 22569.0 (40 requests of 256 tokens)
    assert_eq!(t.prompt_tokens, Some(22569.0 - 12329.0));
    assert_eq!(t.prompt_tokens, Some(40.0 * 256.0));
    // generation_tokens_total 5268.0 -> 10388.0 (40 x 128)
    assert_eq!(t.generation_tokens, Some(10388.0 - 5268.0));
    let rates = a.rates.as_ref().expect("rates");
    close(
        rates.generation_tokens_per_s.expect("rate"),
        (10388.0 - 5268.0) / 10.0,
    );
    // TTFT: sum 65.07362532615662 -> 67.87198901176453, count 51 -> 91
    let ttft = &t.latency["ttft_s"];
    assert_eq!(ttft.count, 91.0 - 51.0);
    close(
        ttft.mean.expect("mean"),
        (67.87198901176453 - 65.07362532615662) / (91.0 - 51.0),
    );
    // Delta buckets: le=0.06: 60-42 = 18, le=0.08: 68-42 = 26, le=0.1: 75-42 = 33,
    // le=0.25: 83-43 = 40, +Inf: 91-51 = 40.
    // p50: rank 20 in (0.06, 0.08]: 0.06 + 0.02 * (20 - 18) / (26 - 18)
    close(
        ttft.p50.expect("p50").value,
        0.06 + (0.08 - 0.06) * ((20.0 - 18.0) / (26.0 - 18.0)),
    );
    // p99: rank 39.6 in (0.1, 0.25]: 0.1 + 0.15 * (39.6 - 33) / (40 - 33)
    close(
        ttft.p99.expect("p99").value,
        0.1 + (0.25 - 0.1) * ((0.99 * 40.0 - 33.0) / (40.0 - 33.0)),
    );
}

#[test]
fn real_fp8_overload_flags_the_front_end() {
    let a = analyze("real-0.25.0-h100-fp8/metrics_r140_mid.txt");
    let t = &a.vllm.total;
    // num_requests_running 410.0, num_requests_waiting 0.0
    assert_eq!(t.running, Some(410.0));
    assert_eq!(t.waiting, Some(0.0));
    // TTFT 3765.6433839797974 / 4264; queue 6.622043158998963 / 3858; prefill 317.9618584780027 / 3858
    close(t.mean("ttft_s").expect("ttft"), 3765.6433839797974 / 4264.0);
    close(
        t.mean("queue_s").expect("queue"),
        6.622043158998963 / 3858.0,
    );
    close(
        t.mean("prefill_s").expect("prefill"),
        317.9618584780027 / 3858.0,
    );
    let fe = a
        .insights
        .iter()
        .find(|i| i.code == "front_end_bottleneck")
        .expect("front-end insight");
    assert!(
        fe.recommendation
            .as_deref()
            .is_some_and(|r| r.contains("--api-server-count"))
    );
    // With 4 API servers the gap closes: 654.0894868373871/4313 - 0.13018493000220133/4313
    // - 500.36974669399973/4313 = 0.0357 s, below the rule's 0.1 s.
    let b = analyze("real-0.25.0-h100-fp8-4apiservers/metrics_r140_after.txt");
    assert!(!b.insights.iter().any(|i| i.code == "front_end_bottleneck"));
    // ...and it is an idle server after the run.
    assert!(b.insights.iter().any(|i| i.code == "idle_at_collection"));
}

#[test]
fn real_image_requests_flag_the_front_end() {
    let a = analyze("real-0.25.0-h100-qwen3vl/metrics_s896_c32_after.txt");
    // TTFT 201.4538128376007/347 = 0.581 s; queue 0.0079/347; prefill 109.81244575500077/347 = 0.316 s
    let gap = 201.4538128376007 / 347.0 - 0.007920383999447722 / 347.0 - 109.81244575500077 / 347.0;
    assert!(gap > 0.1);
    assert!(a.insights.iter().any(|i| i.code == "front_end_bottleneck"));
    let mm = a.vllm.total.mm_cache.as_ref().expect("mm cache");
    assert!(mm.queries > 0.0);
}

#[test]
fn real_h100_cache_config_capacity() {
    let a = analyze("real-0.25.0-h100/metrics_c128_mid.txt");
    // block_size="16", num_gpu_blocks="26658", kv_cache_size_tokens="426528"
    let c = &a.cache_config[0];
    assert_eq!(c.token_capacity, Some(16 * 26658));
    assert_eq!(
        c.labels.get("kv_cache_size_tokens").map(String::as_str),
        Some("426528")
    );
    assert_eq!(c.token_capacity, Some(426528));
    // num_requests_running 128.0
    assert_eq!(a.vllm.total.running, Some(128.0));
    // request_prompt_tokens_sum 112681.0 / _count 443.0
    close(
        a.vllm.total.avg_prompt_tokens_per_request.expect("avg"),
        112681.0 / 443.0,
    );
}

/// A dump as vLLM 0.8-0.10 wrote it: the old names must be read as the new quantities.
const OLD_NAMES: &str = r#"# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 12.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
# TYPE vllm:gpu_prefix_cache_queries_total counter
vllm:gpu_prefix_cache_queries_total{engine="0",model_name="m"} 400.0
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{engine="0",model_name="m"} 100.0
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{engine="0",le="0.01",model_name="m"} 10.0
vllm:time_per_output_token_seconds_bucket{engine="0",le="0.025",model_name="m"} 30.0
vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 40.0
vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 40.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 0.8
"#;

#[test]
fn old_vllm_names_are_read() {
    let snap = Snapshot::from_exposition(&parse(OLD_NAMES).expect("valid"));
    let a = Analysis::of_snapshot("old", &snap, &AnalyzeOptions::default());
    let t = &a.vllm.total;
    assert_eq!(t.kv_cache_usage, Some(0.9));
    assert_eq!(
        a.vllm.names_used.get("kv_cache_usage").map(String::as_str),
        Some("vllm:gpu_cache_usage_perc")
    );
    close(
        t.prefix_cache.as_ref().expect("pc").hit_rate.expect("r"),
        100.0 / 400.0,
    );
    close(t.mean("itl_s").expect("itl"), 0.8 / 40.0);
    // p50: rank 20 in (0.01, 0.025]: 0.01 + 0.015 * (20 - 10) / (30 - 10)
    close(
        t.latency["itl_s"].p50.expect("p50").value,
        0.01 + 0.015 * ((20.0 - 10.0) / (30.0 - 10.0)),
    );
    // p99 in +Inf: a lower bound at the last finite bound.
    let p99 = t.latency["itl_s"].p99.expect("p99");
    assert_eq!((p99.kind, p99.value), (QuantileKind::AtLeast, 0.025));
    // KV 90 % -> degraded tier -> memory pressure warning.
    assert!(a.insights.iter().any(|i| i.code == "kv_pressure"));
}

#[test]
fn model_filter_selects_series() {
    let text = "# TYPE vllm:prompt_tokens_total counter\n\
vllm:prompt_tokens_total{model_name=\"a\"} 10\n\
vllm:prompt_tokens_total{model_name=\"b\"} 32\n";
    let snap = Snapshot::from_exposition(&parse(text).expect("valid"));
    let opts = AnalyzeOptions {
        model: Some("b".into()),
        ..Default::default()
    };
    let a = Analysis::of_snapshot("x", &snap, &opts);
    assert_eq!(a.vllm.total.prompt_tokens, Some(32.0));
    let all = Analysis::of_snapshot("x", &snap, &AnalyzeOptions::default());
    assert_eq!(all.vllm.total.prompt_tokens, Some(10.0 + 32.0));
}
