//! A benchmark step flattened into named figures: the CSV columns, and the metric keys that
//! `compare` and the regression gate use (`ttft.p95`, `output_tokens_per_s`, `error_rate`).

use std::collections::BTreeMap;

use llmload_core::{Benchmark, Results, Summary};

use crate::view::error_rate;

/// Per-request metrics in results order: (results name, short key).
pub const METRICS: [(&str, &str); 12] = [
    ("ttft_s", "ttft"),
    ("ttfot_s", "ttfot"),
    ("e2e_latency_s", "e2e_latency"),
    ("request_latency_s", "request_latency"),
    ("tpot_s", "tpot"),
    ("tpot_incl_ttft_s", "tpot_incl_ttft"),
    ("itl_s", "itl"),
    ("decode_rate_tokens_per_s", "decode_rate"),
    ("dispatch_delay_s", "dispatch_delay"),
    ("scheduled_latency_s", "scheduled_latency"),
    ("prompt_tokens", "prompt_tokens"),
    ("output_tokens", "output_tokens"),
];

/// Statistics of a [`Summary`], in column order.
pub const STATS: [&str; 10] = [
    "count", "mean", "stddev", "min", "p50", "p90", "p95", "p99", "p999", "max",
];

/// Step-level figures (not distributions) that compare and the gate know.
pub const STEP_KEYS: [&str; 8] = [
    "requests_per_s",
    "output_tokens_per_s",
    "total_tokens_per_s",
    "goodput_requests_per_s",
    "error_rate",
    "concurrency.mean",
    "concurrency.max",
    "achieved_ratio",
];

fn stat(s: &Summary, name: &str) -> f64 {
    s.get(name).unwrap_or(f64::NAN)
}

/// A CSV cell: numbers in Rust's shortest round-trip form, missing values empty.
fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        Some(v) => format!("{v}"),
        None => String::new(),
    }
}

/// One step as ordered (column, cell) pairs.
pub fn flatten(index: usize, b: &Benchmark) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::with_capacity(160);
    let mut put = |k: &str, s: String| v.push((k.to_string(), s));
    put("step", index.to_string());
    put("profile.kind", b.profile.kind.clone());
    put("profile.rate", cell(b.profile.rate));
    put(
        "profile.concurrency",
        cell(b.profile.concurrency.map(|c| c as f64)),
    );
    put("window.duration_s", cell(Some(b.window.duration_s)));
    put("requests.completed", b.requests.completed.to_string());
    put("requests.errored", b.requests.errored.to_string());
    put("requests.cancelled", b.requests.cancelled.to_string());
    put("requests.dropped", b.requests.dropped.to_string());
    put("error_rate", cell(error_rate(b)));
    for (class, n) in &b.requests.errors_by_class {
        put(&format!("errors.{class}"), n.to_string());
    }
    put(
        "throughput.requests_per_s",
        cell(Some(b.throughput.requests_per_s)),
    );
    put(
        "throughput.output_tokens_per_s",
        cell(Some(b.throughput.output_tokens_per_s)),
    );
    put(
        "throughput.total_tokens_per_s",
        cell(Some(b.throughput.total_tokens_per_s)),
    );
    put(
        "throughput.goodput_requests_per_s",
        cell(b.throughput.goodput_requests_per_s),
    );
    put("tokens.prompt_total", b.tokens.prompt_total.to_string());
    put("tokens.output_total", b.tokens.output_total.to_string());
    put("tokens.source", b.tokens.source.clone());
    put("concurrency.mean", cell(Some(b.concurrency.mean)));
    put("concurrency.max", b.concurrency.max.to_string());
    put("multi_token_event_share", cell(b.multi_token_event_share));
    for (name, _) in METRICS {
        let s = b.metrics.get(name);
        for st in STATS {
            put(&format!("{name}.{st}"), cell(s.map(|s| stat(s, st))));
        }
    }
    for (name, s) in &b.metrics.extra {
        for st in STATS {
            put(
                &format!("{name}.{st}"),
                cell(s.as_ref().map(|s| stat(s, st))),
            );
        }
    }
    v
}

/// The header and rows of every step: the union of columns, in first-seen order.
pub fn table(results: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let flat: Vec<Vec<(String, String)>> = results
        .benchmarks
        .iter()
        .enumerate()
        .map(|(i, b)| flatten(i, b))
        .collect();
    let mut header: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for row in &flat {
        for (k, _) in row {
            if seen.insert(k.clone()) {
                header.push(k.clone());
            }
        }
    }
    let rows = flat
        .into_iter()
        .map(|row| {
            let m: BTreeMap<String, String> = row.into_iter().collect();
            header
                .iter()
                .map(|h| m.get(h).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    (header, rows)
}

/// Canonical metric key: `ttft_s.p95` → `ttft.p95`, `e2e.median` → `e2e_latency.p50`,
/// `output_tokens_per_s` stays. Errors name the accepted forms.
pub fn canonical_key(user: &str) -> Result<String, String> {
    let k = user.trim();
    if STEP_KEYS.contains(&k) {
        return Ok(k.to_string());
    }
    if let Some(rest) = k.strip_prefix("throughput.")
        && STEP_KEYS.contains(&rest)
    {
        return Ok(rest.to_string());
    }
    let split = match k.strip_suffix(".p99.9") {
        Some(m) => Some((m, "p99.9")),
        None => k.rsplit_once('.'),
    };
    let Some((m, s)) = split else {
        return Err(format!(
            "unknown metric {k:?}: use METRIC.STAT (e.g. ttft.p95, tpot.mean, e2e_latency.p99) or one of {}",
            STEP_KEYS.join(", ")
        ));
    };
    let metric = METRICS
        .iter()
        .find(|(long, short)| *long == m || *short == m)
        .map(|(_, short)| *short)
        .or(match m {
            "e2e" | "e2el" => Some("e2e_latency"),
            _ => None,
        })
        .ok_or_else(|| {
            format!(
                "unknown metric {m:?} in {k:?}: known metrics are {}",
                METRICS.map(|(_, s)| s).join(", ")
            )
        })?;
    let st = match s {
        "median" => "p50",
        "avg" => "mean",
        "std" => "stddev",
        "p99.9" => "p999",
        other => other,
    };
    if !STATS.contains(&st) {
        return Err(format!(
            "unknown statistic {s:?} in {k:?}: use one of {}",
            STATS.join(", ")
        ));
    }
    Ok(format!("{metric}.{st}"))
}

/// Whether a larger value of the key is better (throughputs, decode rate); else smaller is.
pub fn higher_is_better(key: &str) -> bool {
    key.ends_with("_per_s") || key.starts_with("decode_rate.") || key == "achieved_ratio"
}

/// Every figure of a step under its canonical key (what compare aligns and diffs).
pub fn values(b: &Benchmark) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (long, short) in METRICS {
        if let Some(s) = b.metrics.get(long) {
            for st in STATS {
                m.insert(format!("{short}.{st}"), stat(s, st));
            }
        }
    }
    m.insert("requests_per_s".into(), b.throughput.requests_per_s);
    m.insert(
        "output_tokens_per_s".into(),
        b.throughput.output_tokens_per_s,
    );
    m.insert("total_tokens_per_s".into(), b.throughput.total_tokens_per_s);
    if let Some(g) = b.throughput.goodput_requests_per_s {
        m.insert("goodput_requests_per_s".into(), g);
    }
    if let Some(e) = error_rate(b) {
        m.insert("error_rate".into(), e);
    }
    m.insert("concurrency.mean".into(), b.concurrency.mean);
    m.insert("concurrency.max".into(), b.concurrency.max as f64);
    if let Some(r) = b.profile.rate.filter(|r| *r > 0.0) {
        m.insert("achieved_ratio".into(), b.throughput.requests_per_s / r);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonicalised() {
        assert_eq!(canonical_key("ttft.p95").unwrap(), "ttft.p95");
        assert_eq!(canonical_key("ttft_s.median").unwrap(), "ttft.p50");
        assert_eq!(canonical_key("e2e.p99.9").unwrap(), "e2e_latency.p999");
        assert_eq!(
            canonical_key("throughput.output_tokens_per_s").unwrap(),
            "output_tokens_per_s"
        );
        assert!(canonical_key("ttft.p97").unwrap_err().contains("p95"));
        assert!(
            canonical_key("latency.p95")
                .unwrap_err()
                .contains("known metrics")
        );
        assert!(higher_is_better("output_tokens_per_s"));
        assert!(higher_is_better("decode_rate.p50"));
        assert!(!higher_is_better("ttft.p95"));
        assert!(!higher_is_better("error_rate"));
    }
}
