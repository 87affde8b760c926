//! `/metrics` conformance: every family of the real vLLM 0.25.0 exposition (names, types, HELP,
//! label names, histogram buckets) and promtool's verdict.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use llmload_sim::{Profile, SimConfig, spawn};
use serde_json::json;

const REAL: &str = include_str!("data/real-0.25.0-h100-metrics_final.txt");
const REAL_MID: &str = include_str!("data/real-0.25.0-h100-metrics_c128_mid.txt");

#[derive(Debug, Default, Clone, PartialEq)]
struct Family {
    kind: String,
    help: String,
    label_names: BTreeSet<String>,
    buckets: Vec<String>,
    samples: usize,
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',').to_string();
        let after = &rest[eq + 2..];
        let mut end = 0;
        let b = after.as_bytes();
        while end < b.len() && !(b[end] == b'"' && (end == 0 || b[end - 1] != b'\\')) {
            end += 1;
        }
        out.push((name, after[..end].to_string()));
        rest = &after[(end + 1).min(after.len())..];
    }
    out
}

fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("# HELP ") {
            let (n, h) = r.split_once(' ').unwrap_or((r, ""));
            fams.entry(n.to_string()).or_default().help = h.to_string();
        } else if let Some(r) = line.strip_prefix("# TYPE ") {
            let (n, t) = r.split_once(' ').unwrap();
            fams.entry(n.to_string()).or_default().kind = t.to_string();
        } else if !line.is_empty() && !line.starts_with('#') {
            let (name, labels) = match line.find('{') {
                Some(i) => (&line[..i], &line[i + 1..line.rfind('}').unwrap()]),
                None => (line.split(' ').next().unwrap(), ""),
            };
            let fam = [
                name,
                name.trim_end_matches("_bucket"),
                name.trim_end_matches("_count"),
                name.trim_end_matches("_sum"),
            ]
            .into_iter()
            .find(|n| fams.contains_key(*n))
            .unwrap_or_else(|| panic!("sample {name} without a family"))
            .to_string();
            let f = fams.get_mut(&fam).unwrap();
            f.samples += 1;
            for (k, v) in parse_labels(labels) {
                if k == "le" {
                    if !f.buckets.contains(&v) {
                        f.buckets.push(v);
                    }
                } else {
                    f.label_names.insert(k);
                }
            }
        }
    }
    fams
}

async fn exercised_server() -> (llmload_sim::SimHandle, String) {
    let cfg = SimConfig {
        profile: Profile::builtin("qwen3-4b-bf16-h100").unwrap(),
        model_name: Some("qwen3-4b-dummy".into()),
        speedup: 50.0,
        ..SimConfig::default()
    };
    let h = spawn(cfg).await.unwrap();
    let c = client();
    let base = h.base_url();
    get(&c, &format!("{base}/v1/models")).await;
    for i in 0..3 {
        let (s, _) = post(&c, &format!("{base}/v1/chat/completions"), &json!({
            "messages": [{"role": "user", "content": format!("hello {i} there")}], "max_tokens": 4, "ignore_eos": true,
            "stream": true, "stream_options": {"include_usage": true}})).await;
        assert_eq!(s, 200);
    }
    post(
        &c,
        &format!("{base}/v1/completions"),
        &json!({"prompt": "a b c", "max_tokens": 2}),
    )
    .await;
    let (s, text) = get(&c, &format!("{base}/metrics")).await;
    assert_eq!(s, 200);
    (h, text)
}

#[tokio::test]
async fn every_real_family_is_served_with_the_same_type_help_labels_and_buckets() {
    let (h, ours_text) = exercised_server().await;
    let real = parse(REAL);
    let ours = parse(&ours_text);
    let mut checked = 0;
    for (name, rf) in &real {
        if name.starts_with("python_") || name.starts_with("process_") {
            continue; // Python runtime metrics: not simulated
        }
        let of = ours
            .get(name)
            .unwrap_or_else(|| panic!("missing family {name}"));
        assert_eq!(of.kind, rf.kind, "{name}: type");
        assert_eq!(of.help, rf.help, "{name}: HELP");
        if name == "vllm:cache_config_info" {
            // an open map: ours is a subset of the real labels
            assert!(
                of.label_names.is_subset(&rf.label_names),
                "{name}: {:?}",
                of.label_names
            );
        } else {
            assert_eq!(of.label_names, rf.label_names, "{name}: label names");
        }
        assert_eq!(of.buckets, rf.buckets, "{name}: buckets");
        checked += 1;
    }
    assert!(checked >= 70, "{checked} families checked");
    for name in ours.keys() {
        assert!(
            real.contains_key(name),
            "family {name} is not in the real exposition"
        );
    }
    // the values agree with the simulator's ground truth
    let k = h.counters();
    assert!(ours_text.contains(&format!(
        "vllm:generation_tokens_total{{engine=\"0\",model_name=\"qwen3-4b-dummy\"}} {}.0",
        k.generation_tokens
    )));
    assert!(ours_text.contains(&format!(
        "vllm:request_success_total{{engine=\"0\",finished_reason=\"length\",model_name=\"qwen3-4b-dummy\"}} {}.0",
        k.finished_length
    )));
    assert!(ours_text.contains(
        "http_requests_total{handler=\"/v1/chat/completions\",method=\"POST\",status=\"2xx\"} 3.0"
    ));
    assert!(
        ours_text.contains(
            "http_requests_total{handler=\"/v1/models\",method=\"GET\",status=\"2xx\"} 1.0"
        )
    );
    assert!(
        !ours_text.contains("handler=\"/metrics\""),
        "/metrics is not counted"
    );
    assert!(ours_text.contains("num_gpu_blocks=\"26658\""));
    // the mid-run dump has the same families
    assert_eq!(
        parse(REAL_MID).keys().collect::<Vec<_>>(),
        real.keys().collect::<Vec<_>>()
    );
    h.shutdown().await.unwrap();
}

fn promtool(text: &str) -> Option<(i32, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.code().unwrap_or(-1), msg))
}

/// promtool's lint findings with the metric name dropped ("metric names should not contain ':'").
fn lint_kinds(msg: &str) -> BTreeSet<String> {
    msg.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_once(' ')
                .map(|(_, k)| k.to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn promtool_accepts_the_exposition_as_it_accepts_vllms() {
    let (h, ours) = exercised_server().await;
    let Some((rc_real, msg_real)) = promtool(REAL) else {
        println!(
            "NOTICE: promtool not installed (apt-get install prometheus); promtool check skipped"
        );
        h.shutdown().await.unwrap();
        return;
    };
    let (rc, msg) = promtool(&ours).expect("promtool ran once");
    // exit 1 = parse error; 3 = lint findings only. vLLM's own names contain ':' (lint).
    assert_ne!(rc, 1, "promtool could not parse the exposition:\n{msg}");
    assert_ne!(rc_real, 1);
    let allowed = lint_kinds(&msg_real);
    for k in lint_kinds(&msg) {
        assert!(
            allowed.contains(&k),
            "lint finding vLLM does not have: {k}\n{msg}"
        );
    }
    h.shutdown().await.unwrap();
}
