//! Performance bar of issue 7: a run of 1,000,000 request records renders results and HTML in
//! < 5 s, and the HTML stays < 5 MB.
//!
//! `cargo bench -p llmload-report --bench render_1m` (set `RECORDS=N` to change the count).
//! Builds a synthetic 10-step run in memory and writes its requests.jsonl to a temp directory
//! (not timed: during `llmload run` the engine writes records as they complete), then times:
//! 1. results: aggregate every step exactly from the 1M in-memory records (llmload-core's
//!    Aggregator, as `llmload run` does at the end) and write results.json;
//! 2. reports: `render_default` (HTML with the in-flight series read back from
//!    requests.jsonl, and Markdown).

use std::io::{BufWriter, Write};
use std::time::Instant;

use llmload_core::results::ProfileInfo;
use llmload_core::{Aggregator, RequestRecord, Results, ResultsRun, ResultsTool};

fn main() {
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let steps = 10usize;
    let dir = std::env::temp_dir().join(format!("llmload-report-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let req_path = dir.join("requests.jsonl");

    // Synthetic records: 10 steps of rising load, deterministic LCG noise.
    let t0 = Instant::now();
    let mut records: Vec<RequestRecord> = Vec::with_capacity(n);
    {
        let mut w =
            BufWriter::with_capacity(1 << 20, std::fs::File::create(&req_path).expect("create"));
        let mut seed: u64 = 42;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let per = n / steps;
        let mut t = 0.0f64;
        for i in 0..n {
            let b = (i / per).min(steps - 1);
            let rate = 50.0 * (b + 1) as f64;
            t += -(1.0 - rnd()).ln() / rate;
            let ttft = 0.05 + 0.02 * b as f64 * rnd();
            let tpot = 0.012 + 0.004 * rnd();
            let out = 128u64;
            let rec = RequestRecord {
                id: i as u64,
                benchmark: b,
                t_sched: t,
                t_dispatch: t + 0.0003,
                t_first_token: Some(t + 0.0003 + ttft),
                t_first_output: Some(t + 0.0003 + ttft),
                t_last_token: Some(t + 0.0003 + ttft + tpot * 127.0),
                t_end: t + 0.0005 + ttft + tpot * 127.0,
                prompt_tokens: Some(512),
                output_tokens: Some(out),
                max_tokens: Some(128),
                output_events: 128,
                status: Some(200),
                finish_reason: Some("length".into()),
                in_flight_at_dispatch: 10,
                in_window: true,
                ..Default::default()
            };
            serde_json::to_writer(&mut w, &rec).expect("write");
            w.write_all(b"\n").expect("write");
            records.push(rec);
        }
        w.flush().expect("flush");
    }
    let jsonl_mb = std::fs::metadata(&req_path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    eprintln!(
        "generated {n} records ({jsonl_mb:.0} MB requests.jsonl) in {:.2} s (not timed)",
        t0.elapsed().as_secs_f64()
    );

    // 1. Results from the records.
    let c1 = cpu();
    let t1 = Instant::now();
    let mut aggs: Vec<Aggregator> = (0..steps).map(|_| Aggregator::new(vec![])).collect();
    for r in &records {
        let b = r.benchmark;
        aggs[b].push(r, &[]);
    }
    let benchmarks = aggs
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.finish(ProfileInfo {
                kind: "poisson".into(),
                rate: Some(50.0 * (i + 1) as f64),
                ..Default::default()
            })
        })
        .collect();
    let results = Results {
        schema: llmload_core::SCHEMA.into(),
        tool: ResultsTool::default(),
        run: ResultsRun {
            id: "bench".into(),
            model: "bench-model".into(),
            api: "chat".into(),
            ..Default::default()
        },
        benchmarks,
        extra: Default::default(),
    };
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results).expect("serialize"),
    )
    .expect("write results");
    let results_s = t1.elapsed().as_secs_f64();
    let results_cpu = cpu() - c1;

    // Read-back alone (diagnostic): the part of the reports that grows with the records.
    let t_scan = Instant::now();
    let scanned =
        llmload_report::series::in_flight_from_jsonl(&req_path, &results, 300).expect("scan");
    let scan_s = t_scan.elapsed().as_secs_f64();
    let t_read = Instant::now();
    let raw = std::fs::read(&req_path).expect("read");
    let read_s = t_read.elapsed().as_secs_f64();
    drop(raw);
    eprintln!(
        "diagnostic: in-flight scan of requests.jsonl {scan_s:.2} s ({} steps); plain read of the file {read_s:.2} s",
        scanned.len()
    );

    // 2. Reports.
    let c2 = cpu();
    let t2 = Instant::now();
    let written = llmload_report::render_default(&dir).expect("render");
    let render_s = t2.elapsed().as_secs_f64();
    let render_cpu = cpu() - c2;
    let html_bytes = std::fs::metadata(&written[0]).map(|m| m.len()).unwrap_or(0);

    // 3. Reports with the in-flight series built from in-memory intervals (what `llmload run`
    //    can pass to `render_with_series` instead of re-reading requests.jsonl).
    let c3 = cpu();
    let t3 = Instant::now();
    let mut iv: Vec<Vec<(f64, f64)>> = vec![Vec::new(); steps];
    for r in &records {
        iv[r.benchmark].push((r.t_dispatch, r.t_end));
    }
    let series: Vec<_> = iv
        .iter()
        .map(|v| llmload_report::series::in_flight(v, llmload_report::series::DEFAULT_POINTS))
        .collect();
    llmload_report::render_with_series(
        &dir,
        &llmload_report::RenderOptions::default(),
        Some(series),
    )
    .expect("render");
    let mem_s = t3.elapsed().as_secs_f64();
    let mem_cpu = cpu() - c3;

    println!("records: {n}");
    println!(
        "results (aggregate 1M in-memory records + write results.json): {results_s:.2} s wall, {results_cpu:.2} s CPU"
    );
    println!(
        "reports (HTML + Markdown, in-flight series from requests.jsonl): {render_s:.2} s wall, {render_cpu:.2} s CPU"
    );
    println!("total: {:.2} s (bar: < 5 s)", results_s + render_s);
    println!(
        "reports with in-memory in-flight series (render_with_series): {mem_s:.2} s wall, {mem_cpu:.2} s CPU"
    );
    println!("HTML size: {:.2} MB (bar: < 5 MB)", html_bytes as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU seconds (user + system) of this process so far, all threads; 0 where unknown.
fn cpu() -> f64 {
    cpu_seconds().map(|(u, s)| u + s).unwrap_or(0.0)
}

/// User and system CPU seconds of this process (Linux `/proc/self/stat`, 100 ticks/s).
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0;
    Some((
        f.get(11)?.parse::<f64>().ok()? / ticks,
        f.get(12)?.parse::<f64>().ok()? / ticks,
    ))
}
