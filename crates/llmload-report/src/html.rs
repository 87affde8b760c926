//! The HTML report: one self-contained page (inline CSS, inline SVG, no script, no external
//! resource), readable on a laptop and printable.

use std::fmt::Write as _;

use llmload_core::Results;

use crate::chart::{Band, Chart, Marker, TIER_COLORS, esc};
use crate::markdown::{SUMMARY_HEADER, breaking_point_sentence, summary_rows};
use crate::series::StepSeries;
use crate::view::{
    BreakingPoint, LoadAxis, ServerSeries, SlaTiers, SweepInfo, TierBounds, error_rate,
    gpu_utilization, num, step_label,
};

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1360px;padding:16px 24px;color:#1a1a1a;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}h3{font-size:1em;margin:1em 0 .3em}
dl.run{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:.9em}dl.run dt{color:#555}dl.run dd{margin:0;font-family:ui-monospace,monospace}
table.summary{border-collapse:collapse;font-size:.85em;font-variant-numeric:tabular-nums}
table.summary th,table.summary td{border:1px solid #ddd;padding:3px 7px;text-align:right}
table.summary th{background:#f3f3f3}table.summary td.l{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #e3e3e3;max-width:100%;height:auto}
svg .ctitle{font-size:13px;font-weight:600}svg .legend,svg .tick,svg .axis{font-size:11px;fill:#333}
svg .grid{stroke:#eee}svg .frame{stroke:#999}svg .bandlabel{font-size:10px;text-anchor:end}
svg .marker{stroke:#c62828;stroke-width:1.5;stroke-dasharray:4 3}svg .markerlabel{font-size:10px;fill:#c62828}
.note{color:#555;font-size:.9em}.bp{font-weight:600}.warn{color:#8a4b00}
@media print{body{max-width:none;padding:0}section{break-inside:avoid}svg.chart{border:none}}
"#;

fn tier_bands(t: &TierBounds, scale: f64, top: f64, higher_better: bool) -> Vec<Band> {
    let names = ["excellent", "acceptable", "degraded", "breaking"];
    let edges = if higher_better {
        // Decode rate tiers become TPOT tiers: TPOT = 1/rate.
        [
            0.0,
            scale / t.excellent,
            scale / t.acceptable,
            scale / t.degraded,
            top,
        ]
    } else {
        [
            0.0,
            t.excellent * scale,
            t.acceptable * scale,
            t.degraded * scale,
            top,
        ]
    };
    (0..4)
        .filter(|&i| edges[i + 1] > edges[i])
        .map(|i| Band {
            y0: edges[i],
            y1: edges[i + 1],
            color: TIER_COLORS[i].to_string(),
            label: names[i].to_string(),
        })
        .collect()
}

struct LoadPoints<'a> {
    results: &'a Results,
    axis: LoadAxis,
    order: Vec<usize>,
}

impl LoadPoints<'_> {
    fn points(&self, f: impl Fn(usize) -> Option<f64>) -> Vec<(f64, f64)> {
        self.order
            .iter()
            .map(|&i| {
                (
                    self.axis.x(i, &self.results.benchmarks[i]),
                    f(i).unwrap_or(f64::NAN),
                )
            })
            .collect()
    }

    fn stat(&self, metric: &str, stat: &str, scale: f64) -> Vec<(f64, f64)> {
        self.points(|i| {
            self.results.benchmarks[i]
                .metrics
                .get(metric)
                .and_then(|s| s.get(stat))
                .map(|v| v * scale)
        })
    }
}

/// The load charts (one point per step).
pub fn load_charts(results: &Results) -> Vec<Chart> {
    let axis = LoadAxis::of(results);
    let mut order: Vec<usize> = (0..results.benchmarks.len()).collect();
    order.sort_by(|&a, &b| {
        axis.x(a, &results.benchmarks[a])
            .total_cmp(&axis.x(b, &results.benchmarks[b]))
    });
    let lp = LoadPoints {
        results,
        axis,
        order,
    };
    let tiers = SlaTiers::of(results);
    let bp = BreakingPoint::of(results);
    let markers: Vec<Marker> = bp
        .as_ref()
        .and_then(|b| b.x(axis))
        .map(|x| Marker {
            x,
            label: if bp.as_ref().and_then(|b| b.found) == Some(false) {
                format!("no break up to {}", num(x))
            } else {
                format!("breaking point {}", num(x))
            },
        })
        .into_iter()
        .collect();
    let xl = axis.label();
    let mut charts = Vec::new();

    let mut c = Chart::new("ttft", "Time to first token vs load", xl, "TTFT (s)");
    for st in ["p50", "p95", "p99"] {
        c.line(&format!("TTFT {st}"), lp.stat("ttft_s", st, 1.0), true);
    }
    c.bands = tier_bands(&tiers.ttft_s, 1.0, f64::MAX, false);
    c.markers = markers.clone();
    charts.push(c);

    let mut c = Chart::new("tpot", "Time per output token vs load", xl, "TPOT (ms)");
    for st in ["p50", "p95", "p99"] {
        c.line(&format!("TPOT {st}"), lp.stat("tpot_s", st, 1000.0), true);
    }
    c.bands = tier_bands(&tiers.decode_rate, 1000.0, f64::MAX, true);
    c.markers = markers.clone();
    charts.push(c);

    let mut c = Chart::new("e2e", "End-to-end latency vs load", xl, "e2e latency (s)");
    for st in ["p50", "p95", "p99"] {
        c.line(
            &format!("e2e {st}"),
            lp.stat("e2e_latency_s", st, 1.0),
            true,
        );
    }
    c.markers = markers.clone();
    charts.push(c);

    let mut c = Chart::new("otps", "Output tokens/s vs load", xl, "output tokens/s");
    c.line(
        "output tokens/s",
        lp.points(|i| Some(results.benchmarks[i].throughput.output_tokens_per_s)),
        true,
    );
    c.markers = markers.clone();
    charts.push(c);

    let mut c = Chart::new("rps", "Achieved vs requested requests/s", xl, "requests/s");
    c.line(
        "achieved req/s",
        lp.points(|i| Some(results.benchmarks[i].throughput.requests_per_s)),
        true,
    );
    if results.benchmarks.iter().any(|b| b.profile.rate.is_some()) {
        let l = c.line(
            "requested req/s",
            lp.points(|i| results.benchmarks[i].profile.rate),
            false,
        );
        l.dashed = true;
    }
    if results
        .benchmarks
        .iter()
        .any(|b| b.throughput.goodput_requests_per_s.is_some())
    {
        c.line(
            "goodput req/s",
            lp.points(|i| results.benchmarks[i].throughput.goodput_requests_per_s),
            true,
        );
    }
    c.markers = markers.clone();
    charts.push(c);

    let mut c = Chart::new("errors", "Error rate vs load", xl, "errors (%)");
    c.line(
        "error rate %",
        lp.points(|i| error_rate(&results.benchmarks[i]).map(|e| e * 100.0)),
        true,
    );
    c.bands = vec![
        Band {
            y0: 0.0,
            y1: 1.0,
            color: TIER_COLORS[1].into(),
            label: "SLA (< 1 %)".into(),
        },
        Band {
            y0: 1.0,
            y1: f64::MAX,
            color: TIER_COLORS[3].into(),
            label: "breaking".into(),
        },
    ];
    c.markers = markers;
    charts.push(c);
    charts
}

/// The per-step time-series charts of step `i`.
pub fn step_charts(results: &Results, i: usize, inflight: Option<&StepSeries>) -> Vec<Chart> {
    let b = &results.benchmarks[i];
    let tiers = SlaTiers::of(results);
    let server = ServerSeries::of(b);
    let mut out = Vec::new();
    let mut c = Chart::new(
        &format!("step{}-requests", i + 1),
        &format!("Step {}: requests over time", i + 1),
        "seconds into the step",
        "requests",
    );
    if let Some(s) = inflight.filter(|s| !s.mean.v.is_empty()) {
        c.line(&s.mean.name, zip(&s.mean.t, &s.mean.v), false);
        let l = c.line(&s.max.name, zip(&s.max.t, &s.max.v), false);
        l.dashed = true;
    }
    if let Some(w) = &server.waiting {
        c.line(&w.name, zip(&w.t, &w.v), false);
    }
    if let Some(r) = &server.running {
        c.line(&r.name, zip(&r.t, &r.v), false);
    }
    if c.has_data() {
        out.push(c);
    }
    let mut c = Chart::new(
        &format!("step{}-util", i + 1),
        &format!("Step {}: KV cache and GPU utilisation", i + 1),
        "seconds into the step",
        "%",
    );
    if let Some(kv) = &server.kv_cache_pct {
        c.line(&kv.name, zip(&kv.t, &kv.v), false);
        c.bands = tier_bands(&tiers.kv_cache_pct, 1.0, f64::MAX, false);
    }
    for g in gpu_utilization(b) {
        c.line(&g.name, zip(&g.t, &g.v), false);
    }
    if c.has_data() {
        out.push(c);
    }
    out
}

fn zip(t: &[f64], v: &[f64]) -> Vec<(f64, f64)> {
    t.iter().copied().zip(v.iter().copied()).collect()
}

/// The whole page. `inflight` holds one series per step (from `requests.jsonl`) when read.
pub fn render_html(results: &Results, inflight: Option<&[StepSeries]>) -> String {
    let run = &results.run;
    let mut o = String::with_capacity(256 * 1024);
    let title = if run.model.is_empty() {
        "llmload report".to_string()
    } else {
        format!("llmload report: {}", run.model)
    };
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    let _ = write!(o, "<header><h1>{}</h1><dl class=\"run\">", esc(&title));
    let mut info = vec![
        ("run", run.id.clone()),
        ("started", run.started_at.clone()),
        ("target", run.target.clone()),
        ("model", run.model.clone()),
        ("api", run.api.clone()),
        (
            "tool",
            format!("{} {}", results.tool.name, results.tool.version),
        ),
    ];
    if !run.labels.is_empty() {
        let l: Vec<String> = run.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        info.push(("labels", l.join(", ")));
    }
    if let Some(sw) = SweepInfo::of(results) {
        if let Some(m) = sw.mode {
            info.push(("sweep", m));
        }
        if sw.oversaturated == Some(true) {
            info.push((
                "sweep note",
                "over-saturation detected; escalation stopped".into(),
            ));
        }
    }
    for (k, v) in info {
        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    o.push_str("</dl></header>\n");

    // Summary table.
    o.push_str("<section id=\"summary\"><h2>Summary</h2><table class=\"summary\"><thead><tr>");
    for h in SUMMARY_HEADER {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>");
    for row in summary_rows(results) {
        o.push_str("<tr>");
        for (j, c) in row.iter().enumerate() {
            let class = if j == 1 || j == 13 {
                " class=\"l\""
            } else {
                ""
            };
            let _ = write!(o, "<td{class}>{}</td>", esc(c));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    if let Some(s) = breaking_point_sentence(results) {
        let _ = write!(o, "<p class=\"bp\">{}</p>", esc(&s.replace("**", "")));
    }
    o.push_str("</section>\n");

    if !results.benchmarks.is_empty() {
        o.push_str(
            "<section id=\"load\"><h2>Against load</h2><p class=\"note\">One point per step. \
Bands: SLA tiers (excellent, acceptable, degraded, breaking); dashed red line: breaking point.</p><div class=\"charts\">",
        );
        for c in load_charts(results) {
            if c.has_data() {
                o.push_str(&c.render());
            }
        }
        o.push_str("</div></section>\n");
    }

    o.push_str("<section id=\"steps\"><h2>Per step over time</h2>");
    if inflight.is_none() {
        o.push_str("<p class=\"note\">No requests.jsonl beside results.json: requests in flight are not drawn.</p>");
    }
    for (i, b) in results.benchmarks.iter().enumerate() {
        let charts = step_charts(results, i, inflight.and_then(|s| s.get(i)));
        let _ = write!(o, "<h3>Step {}: {}</h3>", i + 1, esc(&step_label(b)));
        for w in &b.warnings {
            let _ = write!(o, "<p class=\"warn\">⚠ {}</p>", esc(w));
        }
        if charts.is_empty() {
            o.push_str("<p class=\"note\">No time series recorded for this step.</p>");
            continue;
        }
        o.push_str("<div class=\"charts\">");
        for c in charts {
            o.push_str(&c.render());
        }
        o.push_str("</div>");
    }
    o.push_str("</section>\n");
    o.push_str(
        "<footer><p class=\"note\">TTFT = first output event − dispatch; TPOT = (last − first token) / (output tokens − 1); \
e2e = last token − dispatch; error rate = errored / (completed + errored), cancelled excluded. Statistics are exact over all \
requests of a step; time series are downsampled for drawing only. Definitions: docs/metrics.md and docs/reports.md.</p></footer>\n</body></html>\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmload_core::Benchmark;

    #[test]
    fn decode_rate_tiers_become_tpot_bands_in_ms() {
        let t = SlaTiers::default();
        let b = tier_bands(&t.decode_rate, 1000.0, 1e9, true);
        let edges: Vec<(f64, f64, &str)> =
            b.iter().map(|b| (b.y0, b.y1, b.label.as_str())).collect();
        assert_eq!(
            edges,
            vec![
                (0.0, 20.0, "excellent"),
                (20.0, 50.0, "acceptable"),
                (50.0, 100.0, "degraded"),
                (100.0, 1e9, "breaking")
            ]
        );
        let b = tier_bands(&t.ttft_s, 1.0, 1e9, false);
        assert_eq!((b[1].y0, b[1].y1, b[3].y0), (0.5, 1.0, 2.0));
    }

    fn step(kind: &str, rate: Option<f64>, conc: Option<u64>, achieved: f64) -> Benchmark {
        let mut b = Benchmark::default();
        b.profile.kind = kind.into();
        b.profile.rate = rate;
        b.profile.concurrency = conc;
        b.throughput.requests_per_s = achieved;
        b
    }

    #[test]
    fn load_axis_places_sync_and_throughput_steps_at_their_achieved_rate() {
        let mut r: Results = serde_json::from_str(
            r#"{"schema":"llmload.results/v1","tool":{"name":"llmload","version":"0"},
            "run":{"id":"","started_at":"","target":"","model":"","api":""},"benchmarks":[]}"#,
        )
        .unwrap();
        r.benchmarks = vec![
            step("synchronous", None, None, 0.4),
            step("throughput", None, Some(256), 9.0),
            step("poisson", Some(2.0), None, 1.9),
        ];
        let axis = LoadAxis::of(&r);
        assert_eq!(axis, LoadAxis::Rate);
        let xs: Vec<f64> = r
            .benchmarks
            .iter()
            .enumerate()
            .map(|(i, b)| axis.x(i, b))
            .collect();
        assert_eq!(xs, vec![0.4, 9.0, 2.0]);
        r.benchmarks = vec![
            step("synchronous", None, None, 0.4),
            step("concurrent", None, Some(8), 3.0),
        ];
        let axis = LoadAxis::of(&r);
        assert_eq!(axis, LoadAxis::Concurrency);
        assert_eq!(axis.x(1, &r.benchmarks[1]), 8.0);
        assert_eq!(axis.x(0, &r.benchmarks[0]), 1.0);
        // The charts sort steps by x.
        let charts = load_charts(&r);
        let d = charts[4].render();
        assert!(d.contains("achieved req/s"));
    }
}
