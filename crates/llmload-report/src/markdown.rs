//! The Markdown summary (for a pull request or a wiki page) and the summary table shared with
//! the HTML page and the console.

use std::fmt::Write as _;

use llmload_core::{Benchmark, Results};

use crate::view::{BreakingPoint, StepSla, SweepInfo, error_rate, fixed, num, step_label};

/// Header of the summary table: the console's columns (`llmload run`), then requests in flight
/// and the SLA tier.
pub const SUMMARY_HEADER: [&str; 19] = [
    "#",
    "load",
    "done",
    "errors",
    "req/s",
    "out tok/s",
    "tok in mean",
    "tok out mean",
    "TTFT p50 ms",
    "TTFT p95 ms",
    "TTFT p99 ms",
    "TPOT p50 ms",
    "TPOT p95 ms",
    "ITL p95 ms",
    "e2e mean ms",
    "e2e p95 ms",
    "e2e max ms",
    "in flight mean",
    "SLA",
];

fn ms(b: &Benchmark, metric: &str, stat: &str) -> String {
    fixed(
        b.metrics
            .get(metric)
            .and_then(|s| s.get(stat))
            .map(|v| v * 1000.0),
        1,
    )
}

fn mean0(b: &Benchmark, metric: &str) -> String {
    b.metrics
        .get(metric)
        .map(|s| format!("{:.0}", s.mean))
        .unwrap_or_else(|| "-".into())
}

/// One row of the summary table per step.
pub fn summary_rows(results: &Results) -> Vec<[String; 19]> {
    results
        .benchmarks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let err = match error_rate(b) {
                Some(e) if b.requests.errored > 0 => {
                    format!("{} ({:.2} %)", b.requests.errored, e * 100.0)
                }
                _ => b.requests.errored.to_string(),
            };
            let sla = StepSla::of(b)
                .map(|s| {
                    let mut t = s.overall().unwrap_or_else(|| "-".into());
                    if s.pass == Some(false) {
                        t.push_str(" (fails)");
                    }
                    t
                })
                .unwrap_or_else(|| "-".into());
            [
                (i + 1).to_string(),
                step_label(b),
                b.requests.completed.to_string(),
                err,
                fixed(Some(b.throughput.requests_per_s), 2),
                fixed(Some(b.throughput.output_tokens_per_s), 1),
                mean0(b, "prompt_tokens"),
                mean0(b, "output_tokens"),
                ms(b, "ttft_s", "p50"),
                ms(b, "ttft_s", "p95"),
                ms(b, "ttft_s", "p99"),
                ms(b, "tpot_s", "p50"),
                ms(b, "tpot_s", "p95"),
                ms(b, "itl_s", "p95"),
                ms(b, "e2e_latency_s", "mean"),
                ms(b, "e2e_latency_s", "p95"),
                ms(b, "e2e_latency_s", "max"),
                fixed(Some(b.concurrency.mean), 1),
                sla,
            ]
        })
        .collect()
}

/// Escapes a Markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes a Markdown table.
pub fn md_table<S: AsRef<str>, R: AsRef<[String]>>(out: &mut String, header: &[S], rows: &[R]) {
    let h: Vec<String> = header.iter().map(|s| md_cell(s.as_ref())).collect();
    let _ = writeln!(out, "| {} |", h.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        h.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        let cells: Vec<String> = r.as_ref().iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// A sentence about the breaking point, or how the run ended without one.
pub fn breaking_point_sentence(results: &Results) -> Option<String> {
    let bp = BreakingPoint::of(results)?;
    let load = match (bp.rate, bp.concurrency) {
        (Some(r), _) => format!("{} req/s", num(r)),
        (None, Some(c)) => format!("concurrency {}", num(c)),
        _ => return None,
    };
    if bp.found == Some(false) {
        // Every step passed: the figure is a lower bound, not a breaking point.
        return Some(format!(
            "No step broke the SLA: the server sustained at least **{load}** (the highest load tried); raise the load to find its limit."
        ));
    }
    let mut s = format!("Maximum sustainable load under the SLA: **{load}**");
    if let Some(l) = &bp.limiting {
        let _ = write!(s, ", limited by {l}");
    }
    if let Some(r) = &bp.reason {
        let _ = write!(s, " ({r})");
    }
    s.push('.');
    Some(s)
}

/// The Markdown report.
pub fn render_markdown(results: &Results) -> String {
    let run = &results.run;
    let mut o = String::new();
    let title = if run.model.is_empty() {
        "llmload report".to_string()
    } else {
        format!("llmload report: {}", run.model)
    };
    let _ = writeln!(o, "# {title}\n");
    let mut info: Vec<[String; 2]> = vec![
        ["run".into(), run.id.clone()],
        ["started".into(), run.started_at.clone()],
        ["target".into(), run.target.clone()],
        ["model".into(), run.model.clone()],
        ["api".into(), run.api.clone()],
        [
            "tool".into(),
            format!("{} {}", results.tool.name, results.tool.version),
        ],
    ];
    if !run.labels.is_empty() {
        let l: Vec<String> = run.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        info.push(["labels".into(), l.join(", ")]);
    }
    if let Some(sw) = SweepInfo::of(results)
        && let Some(m) = sw.mode
    {
        info.push(["sweep".into(), m]);
    }
    let info: Vec<Vec<String>> = info.into_iter().map(|r| r.to_vec()).collect();
    md_table(&mut o, &["", ""], &info);
    o.push('\n');
    let _ = writeln!(o, "## Summary\n");
    let rows: Vec<Vec<String>> = summary_rows(results)
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    md_table(&mut o, &SUMMARY_HEADER, &rows);
    o.push('\n');
    if let Some(s) = breaking_point_sentence(results) {
        let _ = writeln!(o, "{s}\n");
    }
    // Errors by class, per step, only where there were errors.
    let mut err_rows = Vec::new();
    for (i, b) in results.benchmarks.iter().enumerate() {
        for (class, n) in &b.requests.errors_by_class {
            if *n > 0 {
                let example = b
                    .requests
                    .error_examples
                    .get(class)
                    .cloned()
                    .unwrap_or_default();
                err_rows.push(vec![
                    (i + 1).to_string(),
                    class.clone(),
                    n.to_string(),
                    example,
                ]);
            }
        }
    }
    if !err_rows.is_empty() {
        let _ = writeln!(o, "## Errors\n");
        md_table(&mut o, &["#", "class", "count", "first message"], &err_rows);
        o.push('\n');
    }
    let warns: Vec<(usize, &String)> = results
        .benchmarks
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.warnings.iter().map(move |w| (i + 1, w)))
        .collect();
    if !warns.is_empty() {
        let _ = writeln!(o, "## Warnings\n");
        for (i, w) in warns {
            let _ = writeln!(o, "- step {i}: {}", w.replace('\n', " "));
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "TTFT = first output event − dispatch; TPOT = (last − first token) / (output tokens − 1); \
e2e = last token − dispatch; errors = errored / (completed + errored), cancelled excluded; \
in flight = time-weighted mean of requests in flight. Definitions: docs/metrics.md."
    );
    o
}

#[cfg(test)]
mod breaking_point_tests {
    use super::*;

    fn results_with(bp: serde_json::Value) -> Results {
        Results {
            schema: llmload_core::SCHEMA.into(),
            tool: Default::default(),
            run: Default::default(),
            benchmarks: Vec::new(),
            extra: [("breaking_point".to_string(), bp)].into_iter().collect(),
        }
    }

    #[test]
    fn a_sweep_that_never_broke_reports_a_lower_bound() {
        let r = results_with(serde_json::json!({"max_sustainable_rate": 1618.4, "found": false}));
        let s = breaking_point_sentence(&r).unwrap();
        assert!(s.starts_with("No step broke the SLA"), "{s}");
        assert!(s.contains("at least **1618.4 req/s**"), "{s}");
        let r = results_with(serde_json::json!({
            "max_sustainable_rate": 37.3, "found": true, "limited_by": "ttft_p95"
        }));
        let s = breaking_point_sentence(&r).unwrap();
        assert!(
            s.starts_with(
                "Maximum sustainable load under the SLA: **37.3 req/s**, limited by ttft_p95"
            ),
            "{s}"
        );
    }
}
