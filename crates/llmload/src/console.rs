//! Console output of `llmload run`: the summary table and the progress display.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use llmload_core::results::Benchmark;
use llmload_core::stats::Summary;
use llmload_load::Progress;

/// The load level of a benchmark, as people say it: `c=8`, `5 req/s`, `sync`.
pub fn load_label(b: &Benchmark) -> String {
    match (
        b.profile.kind.as_str(),
        b.profile.rate,
        b.profile.concurrency,
    ) {
        ("synchronous", _, _) => "sync".into(),
        ("concurrent", _, Some(c)) => format!("c={c}"),
        ("throughput", _, Some(c)) => format!("max c={c}"),
        (k, Some(r), _) => format!("{k} {} r/s", short_number(r)),
        (k, _, _) => k.to_string(),
    }
}

/// A rate for people: 3 significant digits, no trailing zeros (`30.9`, `0.5`, `113`).
pub fn short_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn ms(s: Option<&Summary>, f: impl Fn(&Summary) -> f64) -> String {
    s.map(|s| format!("{:.1}", f(s) * 1e3))
        .unwrap_or_else(|| "-".into())
}

/// One table over all benchmarks: load, requests, errors, throughput, latency statistics.
pub fn summary_table(benchmarks: &[Benchmark]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>6} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "load",
        "done",
        "errors",
        "req/s",
        "out tok/s",
        "tok in",
        "tok out",
        "TTFT p50",
        "TTFT p95",
        "TTFT p99",
        "TPOT p50",
        "TPOT p95",
        "ITL p95",
        "e2e mean",
        "e2e p95",
        "e2e max"
    );
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>6} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "", "", "", "", "", "mean", "mean", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "ms"
    );
    for b in benchmarks {
        let m = &b.metrics;
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>6} {:>8.2} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
            load_label(b),
            b.requests.completed,
            b.requests.errored,
            b.throughput.requests_per_s,
            b.throughput.output_tokens_per_s,
            m.prompt_tokens
                .map(|s| format!("{:.0}", s.mean))
                .unwrap_or_else(|| "-".into()),
            m.output_tokens
                .map(|s| format!("{:.0}", s.mean))
                .unwrap_or_else(|| "-".into()),
            ms(m.ttft_s.as_ref(), |s| s.p50),
            ms(m.ttft_s.as_ref(), |s| s.p95),
            ms(m.ttft_s.as_ref(), |s| s.p99),
            ms(m.tpot_s.as_ref(), |s| s.p50),
            ms(m.tpot_s.as_ref(), |s| s.p95),
            ms(m.itl_s.as_ref(), |s| s.p95),
            ms(m.e2e_latency_s.as_ref(), |s| s.mean),
            ms(m.e2e_latency_s.as_ref(), |s| s.p95),
            ms(m.e2e_latency_s.as_ref(), |s| s.max),
        );
    }
    out
}

/// Details of one benchmark printed after it ends: errors, warnings, dispatch precision.
pub fn benchmark_notes(b: &Benchmark) -> String {
    let mut out = String::new();
    let r = &b.requests;
    let _ = write!(
        out,
        "  {}: {} completed, {} errored, {} cancelled, {} dropped, {} outside the window; {:.1} s window",
        load_label(b),
        r.completed,
        r.errored,
        r.cancelled,
        r.dropped,
        r.outside_window,
        b.window.duration_s
    );
    if let Some(s) = b.window.extra.get("stopped_by").and_then(|v| v.as_str()) {
        let _ = write!(out, ", stopped by {s}");
    }
    out.push('\n');
    let classes: Vec<String> = r
        .errors_by_class
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    if !classes.is_empty() {
        let _ = writeln!(out, "  errors: {}", classes.join(" "));
        for (c, m) in &r.error_examples {
            let _ = writeln!(out, "    {c}: {m}");
        }
    }
    if r.retried_on_fresh_connection > 0 {
        let _ = writeln!(
            out,
            "  {} request(s) were re-sent on a fresh connection after a stale keep-alive connection closed (not server errors)",
            r.retried_on_fresh_connection
        );
    }
    if let Some(g) = b.throughput.goodput_requests_per_s {
        let _ = writeln!(out, "  goodput: {g:.2} req/s meet every SLO");
    }
    for w in &b.warnings {
        let _ = writeln!(out, "  WARNING: {w}");
    }
    out
}

/// Draws progress on stderr until dropped: a live line on a terminal, a plain line every
/// 5 s otherwise.
pub struct ProgressDisplay {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    pub fn start(progress: Arc<Progress>, epoch: Instant, total: usize, quiet: bool) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if quiet {
            return Self { stop, handle: None };
        }
        let tty = std::io::stderr().is_terminal();
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let bar = tty.then(|| {
                let b = indicatif::ProgressBar::new_spinner();
                b.enable_steady_tick(Duration::from_millis(200));
                b
            });
            let mut last_plain = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(if tty { 200 } else { 250 }));
                let bench = progress.benchmark.load(Ordering::Relaxed) as usize + 1;
                let start = progress.bench_start_us.load(Ordering::Relaxed) as f64 / 1e6;
                let el = (epoch.elapsed().as_secs_f64() - start).max(0.0);
                let done = progress.completed.load(Ordering::Relaxed);
                let err = progress.errored.load(Ordering::Relaxed);
                let line = format!(
                    "benchmark {bench}/{total}  {el:>6.1} s  {done} done  {err} errors  {} in flight  {:.1} req/s  {:.0} out tok/s",
                    progress.in_flight.load(Ordering::Relaxed),
                    if el > 0.0 { done as f64 / el } else { 0.0 },
                    if el > 0.0 {
                        progress.output_tokens.load(Ordering::Relaxed) as f64 / el
                    } else {
                        0.0
                    },
                );
                match &bar {
                    Some(b) => b.set_message(line),
                    None => {
                        if last_plain.elapsed() >= Duration::from_secs(5) {
                            eprintln!("{line}");
                            last_plain = Instant::now();
                        }
                    }
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(short_number(30.86924646893983), "30.9");
        assert_eq!(short_number(112.95), "113");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(2.0), "2");
    }
}
