//! Console text: the tier table of a run or sweep, the thresholds report, a step's verdict and
//! the breaking-point sentence. Plain ASCII columns, no colours (the caller may add them).

use std::fmt::Write as _;

use crate::breaking::BreakingVerdict;
use crate::planner::{BreakingPoint, SweepSummary};
use crate::threshold::ThresholdReport;
use crate::tiers::{MetricTier, SlaReport};
use crate::units::{self, Dimension};

fn cell(m: &MetricTier, dim: Dimension) -> String {
    match (m.value, m.tier) {
        (Some(v), Some(t)) => format!("{} {}", units::human(v, dim), t.as_str()),
        _ => "-".into(),
    }
}

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header, &mut out);
    let rule: Vec<String> = w.iter().map(|k| "-".repeat(*k)).collect();
    line(&rule, &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// The SLA tier of each metric per step: one row per `(label, report)`.
pub fn tier_table(rows: &[(String, &SlaReport)]) -> String {
    let Some((_, first)) = rows.first() else {
        return String::new();
    };
    let header = vec![
        "step".to_string(),
        format!("TTFT {}", first.ttft.statistic),
        format!("decode {}", first.decode_rate.statistic),
        format!("KV {}", first.kv_cache_usage.statistic),
        format!("queue {}", first.queue_depth.statistic),
        "overall".to_string(),
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(label, r)| {
            vec![
                label.clone(),
                cell(&r.ttft, Dimension::Time),
                cell(&r.decode_rate, Dimension::TokenRate),
                cell(&r.kv_cache_usage, Dimension::Ratio),
                cell(&r.queue_depth, Dimension::Count),
                r.overall.map_or("-".into(), |t| t.as_str().to_uppercase()),
            ]
        })
        .collect();
    let mut out = table(&header, &body);
    if rows.iter().any(|(_, r)| !r.server_metrics) {
        out.push_str("KV and queue tiers need server metrics (the server's /metrics); '-' where none were collected.\n");
    }
    for (label, r) in rows {
        for n in &r.notes {
            let _ = writeln!(out, "note ({label}): {n}");
        }
    }
    out
}

/// Every threshold per benchmark, `PASS`/`FAIL`, and a final count with the exit status.
pub fn thresholds_report(r: &ThresholdReport) -> String {
    let mut out = String::new();
    let many = r.benchmarks.len() > 1;
    for b in &r.benchmarks {
        if many {
            let _ = writeln!(out, "benchmark {} ({}):", b.benchmark, b.label);
        }
        for t in &b.results {
            let status = if t.passed { "PASS" } else { "FAIL" };
            let detail = match (t.value, &t.reason) {
                (Some(v), _) => format!("{} = {}", t.metric, units::human(v, t.dimension)),
                (None, Some(why)) => format!("{}: {why}", t.metric),
                (None, None) => t.metric.clone(),
            };
            let _ = writeln!(
                out,
                "{}{status}  {:<28} {detail}",
                if many { "  " } else { "" },
                t.expression
            );
        }
    }
    let _ = writeln!(
        out,
        "thresholds: {} passed, {} failed{}",
        r.passed,
        r.failed,
        if r.failed > 0 {
            format!(" (exit status {})", r.exit_code())
        } else {
            String::new()
        }
    );
    out
}

/// One line on a step: `within the SLA` or `BROKEN: <criterion detail>; ...`.
pub fn verdict_line(v: &BreakingVerdict) -> String {
    let fired: Vec<String> = v
        .fired()
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    let mut s = if fired.is_empty() {
        "within the SLA".to_string()
    } else {
        format!("BROKEN: {}", fired.join("; "))
    };
    if v.oversaturated {
        s.push_str(" [over-saturated: backlog growing through the step]");
    }
    s
}

fn level(bp: &BreakingPoint, v: f64) -> String {
    if bp.dimension == "concurrency" {
        format!("concurrency {}", units::human(v, Dimension::Count))
    } else {
        units::human(v, Dimension::RequestRate)
    }
}

/// The breaking point in one or two sentences.
pub fn breaking_sentence(bp: &BreakingPoint) -> String {
    let mut s = match (bp.max_sustainable, bp.first_failing) {
        (Some(m), Some(f)) => {
            let mut s = format!("Maximum sustainable load under the SLA: {}", level(bp, m));
            if let Some(a) = bp.achieved_requests_per_s {
                let _ = write!(s, " (achieved {})", units::human(a, Dimension::RequestRate));
            }
            let _ = write!(s, "; it breaks at {}", level(bp, f));
            if let Some(c) = bp
                .limiting_criteria
                .iter()
                .find(|c| Some(c.name) == bp.limited_by)
            {
                let _ = write!(s, ", limited by {}: {}", c.name, c.detail);
            }
            let _ = write!(
                s,
                ". Bracketed within {}{}.",
                units::human(bp.relative_gap.unwrap_or(f64::NAN), Dimension::Ratio),
                if bp.converged {
                    ""
                } else {
                    " (not converged: raise --refine-steps for a tighter bound)"
                }
            );
            s
        }
        (Some(m), None) => format!(
            "No step broke the SLA: the server sustains at least {} (the highest level tried); raise the load to find its limit.",
            level(bp, m)
        ),
        (None, Some(f)) => {
            let mut s = format!(
                "The SLA breaks at every level tried (down to {})",
                level(bp, f)
            );
            if let Some(c) = bp
                .limiting_criteria
                .iter()
                .find(|c| Some(c.name) == bp.limited_by)
            {
                let _ = write!(s, ", limited by {}: {}", c.name, c.detail);
            }
            s.push('.');
            s
        }
        (None, None) => "No step was measured: no breaking point.".into(),
    };
    if !bp.server_metrics {
        s.push_str(" Judged on client criteria only (no server metrics).");
    }
    s
}

/// The sweep's steps (load, achieved rate, tier, verdict) and the breaking-point sentence.
pub fn sweep_report(s: &SweepSummary) -> String {
    let header: Vec<String> = ["#", "phase", "load", "achieved", "tier", "verdict"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    let rows: Vec<Vec<String>> = s
        .steps
        .iter()
        .map(|st| {
            vec![
                st.index.to_string(),
                format!("{:?}", st.phase).to_lowercase(),
                st.load.label(),
                units::human(st.achieved_requests_per_s, Dimension::RequestRate),
                st.tier.map_or("-".into(), |t| t.as_str().to_string()),
                if st.broken {
                    format!(
                        "BROKEN ({}){}",
                        st.fired.join(", "),
                        if st.oversaturated {
                            " over-saturated"
                        } else {
                            ""
                        }
                    )
                } else {
                    "ok".into()
                },
            ]
        })
        .collect();
    let mut out = table(&header, &rows);
    let _ = writeln!(out, "sweep ended: {}", s.stop_reason);
    for n in &s.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "{}", breaking_sentence(&s.breaking_point));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::{check_all, parse_thresholds};
    use crate::tiers::{ServerSignals, TierConfig, classify};
    use llmload_core::{Benchmark, Summary};

    fn bench() -> Benchmark {
        let mut b = Benchmark::default();
        let s = Summary {
            count: 10,
            mean: 0.3,
            p95: 0.62,
            ..Default::default()
        };
        b.metrics.ttft_s = Some(s);
        b.profile.kind = "poisson".into();
        b.profile.rate = Some(5.0);
        b.requests.completed = 10;
        b
    }

    #[test]
    fn tier_table_shows_values_and_tiers() {
        let b = bench();
        let s = ServerSignals {
            kv_usage_max: Some(0.9),
            waiting_mean: Some(0.0),
            ..Default::default()
        };
        let with = classify(&TierConfig::default(), &b, Some(&s));
        let without = classify(&TierConfig::default(), &b, None);
        let t = tier_table(&[("poisson 5".into(), &with), ("poisson 6".into(), &without)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("step") && lines[0].contains("TTFT p95"));
        assert!(lines[2].contains("620 ms acceptable") && lines[2].contains("90% degraded"));
        assert!(lines[2].ends_with("DEGRADED"), "{t}");
        assert!(
            lines[3].contains(" - ") && lines[3].ends_with("ACCEPTABLE"),
            "{t}"
        );
        assert!(t.contains("need server metrics"));
    }

    #[test]
    fn thresholds_text() {
        let ts = parse_thresholds(["ttft.p95<1s", "ttft.p95<500ms", "tpot.p95<50ms"]).unwrap();
        let r = check_all(&ts, &[bench()]);
        let t = thresholds_report(&r);
        assert!(t.contains("PASS  ttft.p95<1s"), "{t}");
        assert!(
            t.contains("FAIL  ttft.p95<500ms") && t.contains("ttft_s.p95 = 620 ms"),
            "{t}"
        );
        assert!(t.contains("tpot_s.p95: tpot_s has no samples"), "{t}");
        assert!(
            t.ends_with("thresholds: 1 passed, 2 failed (exit status 99)\n"),
            "{t}"
        );
    }

    #[test]
    fn sentences() {
        let v = crate::breaking::evaluate(&Default::default(), &bench(), None, &[]);
        assert_eq!(verdict_line(&v), "within the SLA");
        let mut b = bench();
        b.metrics.ttft_s.as_mut().unwrap().p95 = 1.5;
        let v = crate::breaking::evaluate(&Default::default(), &b, None, &[]);
        assert_eq!(
            verdict_line(&v),
            "BROKEN: ttft (TTFT p95 1.5 s (limit 1 s))"
        );
        let bp = BreakingPoint {
            dimension: "rate",
            found: true,
            max_sustainable: Some(36.9),
            max_sustainable_rate: Some(36.9),
            max_sustainable_concurrency: None,
            output_tokens_per_s: None,
            reason: None,
            max_sustainable_step: Some(10),
            achieved_requests_per_s: Some(36.5),
            first_failing: Some(38.3),
            first_failing_step: Some(11),
            relative_gap: Some(0.038),
            converged: true,
            tolerance: 0.05,
            limited_by: Some("ttft"),
            limiting_criteria: v.fired().cloned().collect(),
            server_metrics: false,
        };
        assert_eq!(
            breaking_sentence(&bp),
            "Maximum sustainable load under the SLA: 36.9 req/s (achieved 36.5 req/s); it breaks at 38.3 req/s, limited by ttft: TTFT p95 1.5 s (limit 1 s). Bracketed within 3.8%. Judged on client criteria only (no server metrics)."
        );
        let none = BreakingPoint {
            max_sustainable: Some(4.0),
            first_failing: None,
            ..bp.clone()
        };
        assert!(
            breaking_sentence(&none)
                .starts_with("No step broke the SLA: the server sustains at least 4 req/s")
        );
        let all = BreakingPoint {
            max_sustainable: None,
            ..bp
        };
        assert!(breaking_sentence(&all).starts_with(
            "The SLA breaks at every level tried (down to 38.3 req/s), limited by ttft"
        ));
    }
}
