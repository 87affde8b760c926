#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::{check_golden, data, temp_dir};
use llmload_report::{
    Format, RenderOptions, csv_out, html, load_results, markdown, render, render_default, series,
};

#[test]
fn markdown_matches_golden() {
    let r = load_results(&data("sweep")).unwrap();
    check_golden("sweep.md", &markdown::render_markdown(&r.results));
}

#[test]
fn benchmarks_csv_matches_golden() {
    let r = load_results(&data("sweep/results.json")).unwrap();
    let csv = csv_out::benchmarks_csv(&r.results).unwrap();
    check_golden("sweep.csv", &csv);
    // One header and one row per step, all with the same number of cells.
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 5);
    let n = rows[0].split(',').count();
    assert!(n > 130, "{n} columns");
    assert!(rows.iter().all(|l| l.split(',').count() == n));
    assert!(rows[0].contains("ttft_s.p999") && rows[0].contains("errors.timeout"));
}

#[test]
fn roi_pair_markdown_matches_golden() {
    let r = load_results(&data("int4-1gpu")).unwrap();
    check_golden("int4-1gpu.md", &markdown::render_markdown(&r.results));
}

fn sweep_html() -> String {
    let r = load_results(&data("sweep")).unwrap();
    let s = series::in_flight_from_jsonl(
        r.requests.as_ref().unwrap(),
        &r.results,
        series::DEFAULT_POINTS,
    )
    .unwrap();
    html::render_html(&r.results, Some(&s))
}

/// Every `<svg class="chart" ...>...</svg>` of a page.
pub fn charts(page: &str) -> Vec<&str> {
    page.split("<svg class=\"chart\"")
        .skip(1)
        .map(|s| &s[..s.find("</svg>").unwrap()])
        .collect()
}

#[test]
fn html_structure() {
    let page = sweep_html();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<section id=\"summary\">"));
    assert!(page.contains("<section id=\"load\">"));
    assert!(page.contains("<section id=\"steps\">"));
    // The summary table: header + 5 rows.
    let table = &page[page.find("<table class=\"summary\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 6);
    let cs = charts(&page);
    let ids: Vec<&str> = cs
        .iter()
        .map(|c| c.split("id=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    for id in ["ttft", "tpot", "e2e", "otps", "rps", "errors"] {
        assert!(ids.contains(&id), "missing chart {id}: {ids:?}");
    }
    for i in 1..=5 {
        assert!(
            ids.contains(&format!("step{i}-requests").as_str()),
            "{ids:?}"
        );
    }
    // Server and GPU series only where recorded (steps 3 and 5).
    assert!(ids.contains(&"step3-util") && ids.contains(&"step5-util"));
    assert!(!ids.contains(&"step1-util"));
    // Every chart has at least one non-empty series path.
    for c in &cs {
        let d = c
            .split("class=\"series\"")
            .nth(1)
            .and_then(|s| s.split("d=\"").nth(1))
            .map(|s| &s[..s.find('"').unwrap()])
            .unwrap_or("");
        assert!(
            d.starts_with('M') && d.len() > 5,
            "empty series in {}",
            &c[..80]
        );
    }
    // SLA bands on TTFT and the breaking point marker at 4.6 req/s.
    let ttft = cs.iter().find(|c| c.contains("id=\"ttft\"")).unwrap();
    assert!(ttft.contains("class=\"band\"") && ttft.contains(">acceptable<"));
    assert!(ttft.contains("breaking point 4.6"));
    // Server waiting queue and KV cache and GPU utilisation are drawn on step 5.
    let s5 = cs.iter().find(|c| c.contains("id=\"step5-util\"")).unwrap();
    assert!(s5.contains("KV cache usage %") && s5.contains("GPU 0 util %"));
    let r5 = cs
        .iter()
        .find(|c| c.contains("id=\"step5-requests\""))
        .unwrap();
    assert!(r5.contains("server waiting") && r5.contains("in flight (mean)"));
}

#[test]
fn html_has_no_network_references() {
    let page = sweep_html();
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("http://") && !lower.contains("https://"));
    assert!(!lower.contains("<script"));
    assert!(!lower.contains(" src=") && !lower.contains(" href=") && !lower.contains("@import"));
    assert!(!lower.contains("<link") && !lower.contains("<img") && !lower.contains("<iframe"));
    // url(...) only for in-page fragments (clip paths).
    for (i, _) in lower.match_indices("url(") {
        assert_eq!(&lower[i + 4..i + 5], "#", "external url( at byte {i}");
    }
    // The target address is still shown, as text.
    assert!(page.contains("http&#58;//127.0.0.1:8000"));
}

#[test]
fn html_without_records_says_so() {
    let r = load_results(&data("int4-1gpu")).unwrap();
    assert!(r.requests.is_none());
    let page = html::render_html(&r.results, None);
    assert!(page.contains("No requests.jsonl"));
    assert_eq!(charts(&page).len(), 6);
}

#[test]
fn render_writes_requested_formats() {
    let out = temp_dir("render");
    let written = render(
        &data("sweep"),
        &RenderOptions {
            formats: vec![Format::Csv, Format::Html, Format::Markdown],
            out: Some(out.clone()),
            requests_csv: true,
        },
    )
    .unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["report.html", "report.md", "benchmarks.csv", "requests.csv"]
    );
    let req = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    assert_eq!(req.lines().count(), 1 + 1252);
    assert!(req.lines().any(|l| l.contains(",timeout,")));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn render_default_writes_html_and_markdown_beside_results() {
    let dir = temp_dir("default");
    std::fs::copy(data("sweep/results.json"), dir.join("results.json")).unwrap();
    let written = render_default(&dir).unwrap();
    assert_eq!(
        written,
        vec![dir.join("report.html"), dir.join("report.md")]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_get_clear_errors() {
    let e = load_results(&data("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("results directory"), "{e}");
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("results.json"),
        "{\"schema\": \"llmload.results/v1\"}",
    )
    .unwrap();
    let e = load_results(&dir).unwrap_err().to_string();
    assert!(e.contains("missing field"), "{e}");
    std::fs::write(
        dir.join("results.json"),
        std::fs::read_to_string(data("sweep/results.json")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("requests.jsonl"),
        "{\"benchmark\": 0, \"t_dispatch\": 1.0, \"t_end\": 2.0}\nnot json\n",
    )
    .unwrap();
    let e = render_default(&dir).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
    let e = Format::parse("pdf").unwrap_err().to_string();
    assert!(e.contains("--format"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
