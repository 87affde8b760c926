//! `llmload compare`: runs side by side with steps aligned by load, deltas and ratios, overlay
//! charts, the ROI of a deployment choice, and the regression gate.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::chart::{Chart, esc};
use crate::flat;
use crate::import::{RunData, StepData};
use crate::markdown::md_table;
use crate::view::{fixed, num};

/// Metrics shown side by side (and checked by the gate) when none are chosen.
pub const DEFAULT_METRICS: [&str; 6] = [
    "ttft.p95",
    "tpot.p95",
    "e2e_latency.p95",
    "output_tokens_per_s",
    "requests_per_s",
    "error_rate",
];

/// Metrics the regression gate checks by default.
pub const DEFAULT_GATE_METRICS: [&str; 4] = [
    "ttft.p95",
    "tpot.p95",
    "e2e_latency.p95",
    "output_tokens_per_s",
];

/// Rates within this relative distance are the same step.
pub const RATE_TOLERANCE: f64 = 0.02;

/// The SLA a step must meet to count as capacity when no breaking point was recorded
/// (DESIGN §5 default breaking point, client-side criteria).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaCriteria {
    pub ttft_p95_s: f64,
    pub error_rate: f64,
}

impl Default for SlaCriteria {
    fn default() -> Self {
        Self {
            ttft_p95_s: 1.0,
            error_rate: 0.01,
        }
    }
}

impl SlaCriteria {
    /// Whether a step meets it: `Some(true/false)`, `None` when its TTFT p95 is unknown.
    pub fn met_by(&self, s: &StepData) -> Option<bool> {
        let ttft = s.get("ttft.p95")?;
        let err_ok = s.get("error_rate").is_none_or(|e| e < self.error_rate);
        Some(ttft < self.ttft_p95_s && err_ok)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum KeyClass {
    Concurrency,
    Rate,
    Other,
}

fn key_of(s: &StepData) -> (KeyClass, f64) {
    match (s.rate, s.concurrency) {
        (Some(r), _) => (KeyClass::Rate, r),
        (None, Some(c)) => (KeyClass::Concurrency, c),
        _ => (KeyClass::Other, 0.0),
    }
}

fn same_step(a: &StepData, b: &StepData) -> bool {
    let (ka, va) = key_of(a);
    let (kb, vb) = key_of(b);
    if ka != kb {
        return false;
    }
    match ka {
        KeyClass::Rate => (va - vb).abs() <= RATE_TOLERANCE * va.abs().max(vb.abs()),
        KeyClass::Concurrency => va == vb,
        KeyClass::Other => a.kind == b.kind,
    }
}

/// One aligned load level: the step index of each run at it (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedRow {
    pub label: String,
    pub steps: Vec<Option<usize>>,
}

/// Aligns the steps of all runs by rate (within 2 %), concurrency, or kind.
pub fn align(runs: &[RunData]) -> Vec<AlignedRow> {
    let mut rows: Vec<(StepData, AlignedRow)> = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        for (si, s) in run.steps.iter().enumerate() {
            let found = rows
                .iter_mut()
                .find(|(rep, row)| row.steps[ri].is_none() && same_step(rep, s));
            match found {
                Some((_, row)) => row.steps[ri] = Some(si),
                None => {
                    let mut steps = vec![None; runs.len()];
                    steps[ri] = Some(si);
                    rows.push((
                        s.clone(),
                        AlignedRow {
                            label: s.label(),
                            steps,
                        },
                    ));
                }
            }
        }
    }
    rows.sort_by(|(a, _), (b, _)| {
        let (ka, va) = key_of(a);
        let (kb, vb) = key_of(b);
        ka.partial_cmp(&kb)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(va.total_cmp(&vb))
    });
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Capacity of a deployment under the SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// Requests per second sustained under the SLA.
    pub rps: f64,
    /// Output tokens per second at that load.
    pub out_tps: f64,
    /// How it was determined, in words.
    pub basis: String,
}

/// ROI figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roi {
    pub gpus: Option<f64>,
    /// Cost of one GPU for one hour (label `gpu_hour_cost`).
    pub gpu_hour_cost: Option<f64>,
    /// `gpus × gpu_hour_cost`.
    pub cost_per_hour: Option<f64>,
    pub capacity: Option<Capacity>,
    pub out_tps_per_gpu: Option<f64>,
    pub rps_per_gpu: Option<f64>,
    /// `cost_per_hour / (out_tps × 3600) × 1e6` at capacity.
    pub cost_per_1m_at_capacity: Option<f64>,
    /// Output tokens/s measured at `--at-rate` and the cost per 1M output tokens there.
    pub at_rate: Option<(f64, Option<f64>, Option<bool>)>,
    pub missing: Vec<String>,
}

fn label_f64(run: &RunData, keys: &[&str]) -> Option<f64> {
    keys.iter()
        .find_map(|k| run.labels.get(*k))
        .and_then(|v| v.trim().trim_start_matches('$').parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// The capacity of a run: its recorded breaking point, else the highest step meeting `sla`.
pub fn capacity(run: &RunData, sla: &SlaCriteria) -> Option<Capacity> {
    if let Some(bp) = &run.breaking_point
        && let Some(rate) = bp.rate
    {
        let (out_tps, how) = match bp.output_tokens_per_s {
            Some(t) => (t, "recorded with it".to_string()),
            None => {
                // Output tokens per request at the nearest step at or below the rate.
                let step = run
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.rate.is_some_and(|r| r <= rate * (1.0 + RATE_TOLERANCE)))
                    .max_by(|a, b| a.1.rate.unwrap_or(0.0).total_cmp(&b.1.rate.unwrap_or(0.0)))
                    .or_else(|| run.steps.iter().enumerate().next());
                let (i, s) = step?;
                let per_req = s
                    .get("output_tokens.mean")
                    .or_else(|| Some(s.get("output_tokens_per_s")? / s.get("requests_per_s")?))?;
                (
                    rate * per_req,
                    format!(
                        "rate × {} mean output tokens per request of step {}",
                        num(per_req),
                        i + 1
                    ),
                )
            }
        };
        return Some(Capacity {
            rps: rate,
            out_tps,
            basis: format!(
                "breaking point recorded by the sweep{}; output tok/s {how}",
                bp.limiting
                    .as_ref()
                    .map(|l| format!(" (limited by {l})"))
                    .unwrap_or_default()
            ),
        });
    }
    let best = run
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| sla.met_by(s) == Some(true))
        .filter_map(|(i, s)| Some((i, s.get("requests_per_s")?, s)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let (i, rps, s) = best;
    let no_err = s.get("error_rate").is_none();
    Some(Capacity {
        rps,
        out_tps: s.get("output_tokens_per_s")?,
        basis: format!(
            "no breaking point recorded: highest step meeting TTFT p95 < {} s and error rate < {} % (step {}, {}){}",
            num(sla.ttft_p95_s),
            num(sla.error_rate * 100.0),
            i + 1,
            s.label(),
            if no_err {
                "; error rate not recorded by this run"
            } else {
                ""
            }
        ),
    })
}

fn per_1m(cost_h: f64, tps: f64) -> Option<f64> {
    (tps > 0.0).then(|| cost_h / (tps * 3600.0) * 1e6)
}

/// ROI of one run.
pub fn roi(run: &RunData, sla: &SlaCriteria, at_rate: Option<f64>) -> Roi {
    let mut r = Roi {
        gpus: label_f64(run, &["gpus", "gpu_count"]),
        gpu_hour_cost: label_f64(run, &["gpu_hour_cost"]),
        capacity: capacity(run, sla),
        ..Default::default()
    };
    if r.gpus.is_none() {
        r.missing.push("gpus (label gpus=N)".into());
    }
    if r.gpu_hour_cost.is_none() {
        r.missing
            .push("gpu_hour_cost (label gpu_hour_cost=USD per GPU-hour)".into());
    }
    if r.capacity.is_none() {
        r.missing.push(format!(
            "capacity: no breaking point and no step met TTFT p95 < {} s, error rate < {} %",
            num(sla.ttft_p95_s),
            num(sla.error_rate * 100.0)
        ));
    }
    r.cost_per_hour = r.gpus.zip(r.gpu_hour_cost).map(|(g, c)| g * c);
    if let Some(c) = &r.capacity {
        r.out_tps_per_gpu = r.gpus.map(|g| c.out_tps / g);
        r.rps_per_gpu = r.gpus.map(|g| c.rps / g);
        r.cost_per_1m_at_capacity = r.cost_per_hour.and_then(|h| per_1m(h, c.out_tps));
    }
    if let Some(x) = at_rate {
        let probe = StepData {
            rate: Some(x),
            ..Default::default()
        };
        match run.steps.iter().find(|s| same_step(s, &probe)) {
            Some(s) => {
                let tps = s.get("output_tokens_per_s").unwrap_or(f64::NAN);
                r.at_rate = Some((
                    tps,
                    r.cost_per_hour.and_then(|h| per_1m(h, tps)),
                    sla.met_by(s),
                ));
            }
            None => r
                .missing
                .push(format!("no step at {} req/s (--at-rate)", num(x))),
        }
    }
    r
}

/// The answer in words: how many replicas of the smaller deployment match the larger one's
/// capacity under the SLA, and at what cost ratio.
pub fn answer(runs: &[RunData], rois: &[Roi]) -> Option<String> {
    let known: Vec<usize> = (0..runs.len())
        .filter(|&i| rois[i].gpus.is_some() && rois[i].capacity.is_some())
        .collect();
    if known.len() < 2 {
        return None;
    }
    let gpus = |i: usize| rois[i].gpus.unwrap_or(0.0);
    let cap = |i: usize| rois[i].capacity.as_ref().map(|c| c.rps).unwrap_or(0.0);
    let small = *known
        .iter()
        .min_by(|&&a, &&b| gpus(a).total_cmp(&gpus(b)).then(cap(b).total_cmp(&cap(a))))?;
    let large = *known
        .iter()
        .max_by(|&&a, &&b| gpus(a).total_cmp(&gpus(b)).then(cap(a).total_cmp(&cap(b))))?;
    if small == large || cap(small) <= 0.0 {
        return None;
    }
    let (s, l) = (&runs[small], &runs[large]);
    let (rs, rl) = (cap(small), cap(large));
    let (gs, gl) = (gpus(small), gpus(large));
    let mut o = format!(
        "{} sustains {} req/s under the SLA on {} GPU(s) ({} req/s per GPU); {} sustains {} req/s on {} GPU(s) ({} req/s per GPU).",
        s.name,
        num(rs),
        num(gs),
        num(rs / gs),
        l.name,
        num(rl),
        num(gl),
        num(rl / gl)
    );
    let n = (rl / rs).ceil().max(1.0);
    let _ = write!(
        o,
        " {} replica(s) of {} ({} GPUs, {} req/s) match the capacity of {}",
        num(n),
        s.name,
        num(n * gs),
        num(n * rs),
        l.name
    );
    match (rois[small].cost_per_hour, rois[large].cost_per_hour) {
        (Some(cs), Some(cl)) if cl > 0.0 => {
            let ratio = n * cs / cl;
            let _ = write!(
                o,
                " at {}× its cost ({}/h vs {}/h): {} {} %.",
                fixed(Some(ratio), 2),
                money(n * cs),
                money(cl),
                if ratio <= 1.0 {
                    "cheaper by"
                } else {
                    "dearer by"
                },
                fixed(Some((1.0 - ratio).abs() * 100.0), 1)
            );
            let m = (cl / cs).floor();
            if m >= 1.0 {
                let _ = write!(
                    o,
                    " For the cost of one {} ({}/h) you can run {} replica(s) of {}: {} req/s under the SLA, {}× the capacity.",
                    l.name,
                    money(cl),
                    num(m),
                    s.name,
                    num(m * rs),
                    fixed(Some(m * rs / rl), 2)
                );
            }
        }
        _ => {
            let _ = write!(
                o,
                " using {}× its GPUs (no gpu_hour_cost label: cost ratio not computed).",
                fixed(Some(n * gs / gl), 2)
            );
        }
    }
    Some(o)
}

fn money(v: f64) -> String {
    format!("${v:.2}")
}

/// Options of a comparison.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Canonical metric keys shown side by side.
    pub metrics: Vec<String>,
    pub at_rate: Option<f64>,
    pub sla: SlaCriteria,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            metrics: DEFAULT_METRICS.iter().map(|s| s.to_string()).collect(),
            at_rate: None,
            sla: SlaCriteria::default(),
        }
    }
}

fn fmt_metric(key: &str, v: Option<f64>) -> String {
    let Some(v) = v else { return "-".into() };
    if key == "error_rate" {
        return format!("{:.2} %", v * 100.0);
    }
    if flat::higher_is_better(key) || key.starts_with("concurrency") || key.contains("tokens.") {
        return fixed(Some(v), 2);
    }
    // Latencies: milliseconds read better below 10 s.
    if v < 10.0 {
        format!("{:.1} ms", v * 1000.0)
    } else {
        format!("{v:.2} s")
    }
}

fn metric_title(key: &str) -> String {
    match key {
        "error_rate" => "error rate".into(),
        "requests_per_s" => "achieved req/s".into(),
        "output_tokens_per_s" => "output tok/s".into(),
        "total_tokens_per_s" => "total tok/s".into(),
        other => other.to_string(),
    }
}

/// The comparison as Markdown (also what the console prints).
pub fn render_markdown(runs: &[RunData], opts: &CompareOptions) -> String {
    let mut o = String::from("# llmload compare\n\n");
    if runs.is_empty() {
        o.push_str("No runs to compare.\n");
        return o;
    }
    let run_rows: Vec<Vec<String>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                r.name.clone(),
                r.source.as_str().into(),
                r.model.clone(),
                r.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.steps.len().to_string(),
            ]
        })
        .collect();
    md_table(
        &mut o,
        &["#", "run", "source", "model", "labels", "steps"],
        &run_rows,
    );
    o.push('\n');
    let rows = align(runs);
    let base = &runs[0];
    for key in &opts.metrics {
        let _ = writeln!(o, "## {}\n", metric_title(key));
        let mut header = vec!["load".to_string(), format!("{} (#1)", base.name)];
        for (i, r) in runs.iter().enumerate().skip(1) {
            header.push(format!("{} (#{})", r.name, i + 1));
            header.push(format!("Δ #{} − #1", i + 1));
            header.push(format!("#{} / #1", i + 1));
        }
        let mut table = Vec::new();
        for row in &rows {
            let val = |ri: usize| row.steps[ri].and_then(|si| runs[ri].steps[si].get(key));
            let b = val(0);
            let mut cells = vec![row.label.clone(), fmt_metric(key, b)];
            for ri in 1..runs.len() {
                let v = val(ri);
                cells.push(fmt_metric(key, v));
                match (b, v) {
                    (Some(b), Some(v)) => {
                        let d = v - b;
                        cells.push(if key == "error_rate" {
                            format!("{:+.2} pt", d * 100.0)
                        } else {
                            let s = fmt_metric(key, Some(d.abs()));
                            format!("{}{s}", if d < 0.0 { "−" } else { "+" })
                        });
                        cells.push(if b != 0.0 {
                            format!("{:.2}×", v / b)
                        } else {
                            "-".into()
                        });
                    }
                    _ => {
                        cells.push("-".into());
                        cells.push("-".into());
                    }
                }
            }
            table.push(cells);
        }
        md_table(&mut o, &header, &table);
        o.push('\n');
    }
    let rois: Vec<Roi> = runs
        .iter()
        .map(|r| roi(r, &opts.sla, opts.at_rate))
        .collect();
    let _ = writeln!(o, "## ROI\n");
    let mut header: Vec<String> = [
        "#",
        "run",
        "GPUs",
        "$/GPU-h",
        "$/h",
        "capacity req/s",
        "out tok/s at capacity",
        "out tok/s per GPU",
        "req/s per GPU",
        "$ per 1M out tok",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(x) = opts.at_rate {
        header.push(format!("out tok/s at {} req/s", num(x)));
        header.push(format!("$ per 1M at {} req/s", num(x)));
    }
    let mut table = Vec::new();
    for (i, (r, roi)) in runs.iter().zip(&rois).enumerate() {
        let cap = roi.capacity.as_ref();
        let mut cells = vec![
            (i + 1).to_string(),
            r.name.clone(),
            roi.gpus.map(num).unwrap_or_else(|| "-".into()),
            roi.gpu_hour_cost
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
            roi.cost_per_hour
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
            fixed(cap.map(|c| c.rps), 2),
            fixed(cap.map(|c| c.out_tps), 1),
            fixed(roi.out_tps_per_gpu, 1),
            fixed(roi.rps_per_gpu, 3),
            fixed(roi.cost_per_1m_at_capacity, 4),
        ];
        if opts.at_rate.is_some() {
            match roi.at_rate {
                Some((tps, cost, meets)) => {
                    cells.push(format!(
                        "{}{}",
                        fixed(Some(tps), 1),
                        if meets == Some(false) {
                            " (fails SLA)"
                        } else {
                            ""
                        }
                    ));
                    cells.push(fixed(cost, 4));
                }
                None => {
                    cells.push("-".into());
                    cells.push("-".into());
                }
            }
        }
        table.push(cells);
    }
    md_table(&mut o, &header, &table);
    o.push('\n');
    for (i, (r, roi)) in runs.iter().zip(&rois).enumerate() {
        if let Some(c) = &roi.capacity {
            let _ = writeln!(o, "- #{} {}: capacity from {}.", i + 1, r.name, c.basis);
        }
        if !roi.missing.is_empty() {
            let _ = writeln!(
                o,
                "- #{} {}: not computed without {}.",
                i + 1,
                r.name,
                roi.missing.join("; ")
            );
        }
    }
    o.push('\n');
    if let Some(a) = answer(runs, &rois) {
        let _ = writeln!(o, "**Answer.** {a}\n");
    }
    let _ = writeln!(
        o,
        "Cost per 1M output tokens = GPUs × $/GPU-h ÷ (output tok/s × 3600) × 10⁶. Capacity = the \
breaking point a sweep recorded, else the highest step meeting TTFT p95 < {} s and error rate < {} %.\n",
        num(opts.sla.ttft_p95_s),
        num(opts.sla.error_rate * 100.0)
    );
    for (i, r) in runs.iter().enumerate() {
        if r.unmapped.is_empty() && r.notes.is_empty() {
            continue;
        }
        let _ = writeln!(o, "### #{} {} ({})\n", i + 1, r.name, r.source.as_str());
        if !r.unmapped.is_empty() {
            let _ = writeln!(
                o,
                "Not in this format (not estimated): {}.\n",
                r.unmapped.join("; ")
            );
        }
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
        o.push('\n');
    }
    o
}

/// Overlay charts: one line per run.
pub fn overlay_charts(runs: &[RunData], opts: &CompareOptions) -> Vec<Chart> {
    let rate_axis = runs
        .iter()
        .any(|r| r.steps.iter().any(|s| s.rate.is_some()));
    let x_of = |s: &StepData, i: usize| -> f64 {
        if rate_axis {
            s.rate.or(s.get("requests_per_s")).unwrap_or(f64::NAN)
        } else {
            s.concurrency.unwrap_or((i + 1) as f64)
        }
    };
    let xl = if rate_axis {
        "offered rate (req/s)"
    } else {
        "concurrency"
    };
    let mut charts = Vec::new();
    for key in &opts.metrics {
        let (scale, unit) = if key == "error_rate" {
            (100.0, "%")
        } else if flat::higher_is_better(key)
            || key.contains("tokens.")
            || key.starts_with("concurrency")
        {
            (1.0, "")
        } else {
            (1000.0, "ms")
        };
        let id = format!("cmp-{}", key.replace('.', "-"));
        let y = if unit.is_empty() {
            metric_title(key)
        } else {
            format!("{} ({unit})", metric_title(key))
        };
        let mut c = Chart::new(&id, &format!("{} vs load", metric_title(key)), xl, &y);
        for (ri, r) in runs.iter().enumerate() {
            let mut pts: Vec<(f64, f64)> = r
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        x_of(s, i),
                        s.get(key).map(|v| v * scale).unwrap_or(f64::NAN),
                    )
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            c.line(&format!("#{} {}", ri + 1, r.name), pts, true);
        }
        // The capacity SLA, where the chart shows its metric.
        let sla_top = match key.as_str() {
            "ttft.p95" => Some(opts.sla.ttft_p95_s * 1000.0),
            "error_rate" => Some(opts.sla.error_rate * 100.0),
            _ => None,
        };
        if let Some(top) = sla_top {
            c.bands.push(crate::chart::Band {
                y0: 0.0,
                y1: top,
                color: crate::chart::TIER_COLORS[0].to_string(),
                label: "within SLA".into(),
            });
        }
        if c.has_data() {
            charts.push(c);
        }
    }
    charts
}

/// The comparison as one self-contained HTML page (tables from the Markdown, overlay charts).
pub fn render_html(runs: &[RunData], opts: &CompareOptions) -> String {
    let md = render_markdown(runs, opts);
    let mut o = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>llmload compare</title><style>\
body{font-family:system-ui,sans-serif;max-width:1360px;margin:0 auto;padding:16px 24px}\
table{border-collapse:collapse;font-size:.85em;font-variant-numeric:tabular-nums;margin:.5em 0}\
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f3f3f3}\
.charts{display:flex;flex-wrap:wrap;gap:12px}svg.chart{border:1px solid #e3e3e3;max-width:100%;height:auto}\
svg .ctitle{font-size:13px;font-weight:600}svg .legend,svg .tick,svg .axis{font-size:11px}svg .grid{stroke:#eee}svg .frame{stroke:#999}\
@media print{section{break-inside:avoid}}</style></head><body>\n",
    );
    o.push_str("<h1>llmload compare</h1><section class=\"charts\">");
    for c in overlay_charts(runs, opts) {
        o.push_str(&c.render());
    }
    o.push_str("</section>\n<section>");
    let body = md.strip_prefix("# llmload compare\n").unwrap_or(&md);
    o.push_str(&markdown_to_html(body));
    o.push_str("</section></body></html>\n");
    o
}

/// Minimal Markdown-to-HTML for the text this module writes (headings, tables, bullets,
/// paragraphs, bold).
fn markdown_to_html(md: &str) -> String {
    let mut o = String::new();
    let mut in_table = false;
    let mut in_list = false;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            if in_list {
                o.push_str("</ul>");
                in_list = false;
            }
            if t.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = t.trim_matches('|').split(" | ").map(str::trim).collect();
            if !in_table {
                o.push_str("<table><tr>");
                for c in cells {
                    let _ = write!(o, "<th>{}</th>", esc(c));
                }
                o.push_str("</tr>");
                in_table = true;
            } else {
                o.push_str("<tr>");
                for c in cells {
                    let _ = write!(o, "<td>{}</td>", esc(&c.replace("\\|", "|")));
                }
                o.push_str("</tr>");
            }
            continue;
        }
        if in_table {
            o.push_str("</table>");
            in_table = false;
        }
        if let Some(item) = t.strip_prefix("- ") {
            if !in_list {
                o.push_str("<ul>");
                in_list = true;
            }
            let _ = write!(o, "<li>{}</li>", esc(item));
            continue;
        }
        if in_list {
            o.push_str("</ul>");
            in_list = false;
        }
        if t.is_empty() {
            continue;
        }
        let level = t.chars().take_while(|c| *c == '#').count();
        if level > 0 {
            let _ = write!(o, "<h{level}>{}</h{level}>", esc(t[level..].trim()));
        } else {
            let _ = write!(o, "<p>{}</p>", esc(&t.replace("**", "")));
        }
    }
    if in_table {
        o.push_str("</table>");
    }
    if in_list {
        o.push_str("</ul>");
    }
    o
}

/// One metric of one aligned step, old against new.
#[derive(Debug, Clone, PartialEq)]
pub struct GateCheck {
    pub step: String,
    pub metric: String,
    pub old: f64,
    pub new: f64,
    /// Relative change in the "worse" direction (positive = worse); infinite from a zero
    /// baseline.
    pub worse_by: f64,
    pub regressed: bool,
}

/// Result of the regression gate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateResult {
    pub checks: Vec<GateCheck>,
    /// What could not be compared, by name.
    pub skipped: Vec<String>,
}

impl GateResult {
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.regressed)
    }
}

/// Compares NEW against the baseline OLD: a metric regressed when it got worse by more than
/// `max_regression` (a fraction: 0.10 = 10 %) relative to OLD at the same load step.
pub fn gate(old: &RunData, new: &RunData, metrics: &[String], max_regression: f64) -> GateResult {
    let runs = [old.clone(), new.clone()];
    let mut res = GateResult::default();
    for row in align(&runs) {
        let (Some(a), Some(b)) = (row.steps[0], row.steps[1]) else {
            res.skipped.push(format!(
                "step {} is only in the {} run",
                row.label,
                if row.steps[0].is_some() {
                    "baseline"
                } else {
                    "new"
                }
            ));
            continue;
        };
        for m in metrics {
            let (Some(o), Some(n)) = (old.steps[a].get(m), new.steps[b].get(m)) else {
                res.skipped
                    .push(format!("{m} at {}: not in both runs", row.label));
                continue;
            };
            let delta = if flat::higher_is_better(m) {
                o - n
            } else {
                n - o
            };
            let worse_by = if o != 0.0 {
                delta / o.abs()
            } else if delta > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            res.checks.push(GateCheck {
                step: row.label.clone(),
                metric: m.clone(),
                old: o,
                new: n,
                worse_by,
                regressed: worse_by > max_regression,
            });
        }
    }
    res
}

/// The gate's table and verdict as Markdown.
pub fn render_gate(res: &GateResult, max_regression: f64) -> String {
    let mut o = String::from("## Regression gate\n\n");
    let rows: Vec<Vec<String>> = res
        .checks
        .iter()
        .map(|c| {
            vec![
                c.step.clone(),
                c.metric.clone(),
                fmt_metric(&c.metric, Some(c.old)),
                fmt_metric(&c.metric, Some(c.new)),
                if c.worse_by.is_finite() {
                    format!("{:+.1} %", c.worse_by * 100.0)
                } else {
                    "from 0".into()
                },
                if c.regressed { "REGRESSED" } else { "ok" }.into(),
            ]
        })
        .collect();
    md_table(
        &mut o,
        &["load", "metric", "baseline", "new", "worse by", "verdict"],
        &rows,
    );
    o.push('\n');
    for s in &res.skipped {
        let _ = writeln!(o, "- not compared: {s}");
    }
    let n = res.checks.iter().filter(|c| c.regressed).count();
    let _ = writeln!(
        o,
        "\n{}: {n} of {} checks got worse by more than {} %.",
        if n > 0 { "FAIL" } else { "PASS" },
        res.checks.len(),
        num(max_regression * 100.0)
    );
    o
}

/// Applies `--label RUN_INDEX:key=value` (1-based run index) to the runs.
pub fn apply_labels(runs: &mut [RunData], labels: &[String]) -> Result<(), String> {
    for l in labels {
        let (idx, kv) = l
            .split_once(':')
            .ok_or_else(|| format!("--label {l:?}: write RUN_INDEX:key=value, e.g. 2:gpus=4"))?;
        let i: usize = idx
            .trim()
            .parse()
            .map_err(|_| format!("--label {l:?}: {idx:?} is not a run index (1, 2, ...)"))?;
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--label {l:?}: write RUN_INDEX:key=value, e.g. 2:gpus=4"))?;
        let n = runs.len();
        let run = i
            .checked_sub(1)
            .and_then(|i| runs.get_mut(i))
            .ok_or_else(|| format!("--label {l:?}: run index {i} out of range 1..={n}"))?;
        run.labels
            .insert(k.trim().to_string(), v.trim().to_string());
        if k.trim() == "name" {
            run.name = v.trim().to_string();
        }
    }
    Ok(())
}

/// Parses `10%`, `10 %` or `0.1` into a fraction.
pub fn parse_margin(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        p.trim()
            .parse::<f64>()
            .map(|v| v / 100.0)
            .map_err(|_| format!("--max-regression {s:?}: not a percentage (e.g. 10%)"))?
    } else {
        let v: f64 = t.parse().map_err(|_| {
            format!("--max-regression {s:?}: write a percentage like 10% or a fraction like 0.1")
        })?;
        if v >= 1.0 {
            return Err(format!(
                "--max-regression {s:?} is ambiguous: write {s}% for a percentage, or a fraction below 1"
            ));
        }
        v
    };
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("--max-regression {s:?} must be 0 or more"));
    }
    Ok(v)
}

/// Keys of every figure any run has (for `--metric` error messages).
pub fn known_keys(runs: &[RunData]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in runs {
        for s in &r.steps {
            for k in s.values.keys() {
                *m.entry(k.clone()).or_insert(0) += 1;
            }
        }
    }
    m
}
