//! Parser throughput on the real vLLM expositions of tests/data (harness = false).
//!
//! `cargo bench -p llmload-prom --bench parse` prints MB/s of exposition text for: parse only,
//! parse + snapshot (what the scraper does per scrape), gunzip + parse, and the cost of a
//! window delta. Each figure is the best of several rounds of ~0.3 s (a loaded shared machine
//! only ever slows a round down).

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use llmload_prom::{Interner, KeepFilter, decode_body, parse};

fn corpus() -> Vec<(String, String)> {
    // LLMLOAD_PROM_BENCH_DATA overrides the fixture directory (to run the built binary
    // elsewhere).
    let dir = std::env::var("LLMLOAD_PROM_BENCH_DATA")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data").to_string());
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.display().to_string();
            if name.contains("vllm-docs") {
                continue; // invalid on purpose
            }
            if let Ok(t) = std::fs::read_to_string(&p) {
                out.push((name, t));
            }
        }
    }
    out.sort();
    out
}

/// CPU time of this thread, in seconds (excludes time the thread waited for a core).
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Runs `f` over the corpus repeatedly; returns the best MB/s of `rounds` rounds, by wall
/// clock and by this thread's CPU time.
fn measure(bytes: usize, rounds: usize, mut f: impl FnMut()) -> (f64, f64) {
    let (mut best, mut best_cpu): (f64, f64) = (0.0, 0.0);
    for _ in 0..rounds {
        let start = Instant::now();
        let cpu0 = thread_cpu_s();
        let mut n = 0usize;
        while start.elapsed() < Duration::from_millis(300) {
            f();
            n += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_s() - cpu0;
        best = best.max((bytes * n) as f64 / secs / 1e6);
        best_cpu = best_cpu.max((bytes * n) as f64 / cpu / 1e6);
    }
    (best, best_cpu)
}

fn main() {
    let files = corpus();
    let total: usize = files.iter().map(|(_, t)| t.len()).sum();
    let samples: usize = files
        .iter()
        .map(|(_, t)| parse(t).map(|e| e.samples.len()).unwrap_or(0))
        .sum();
    println!(
        "corpus: {} files, {} bytes, {} samples ({:.0} bytes/sample)",
        files.len(),
        total,
        samples,
        total as f64 / samples.max(1) as f64
    );
    let rounds = 5;
    let parse_mbs = measure(total, rounds, || {
        for (_, t) in &files {
            let e = parse(black_box(t)).expect("fixture parses");
            black_box(e.samples.len());
        }
    });
    println!(
        "parse only:            {:8.1} MB/s wall, {:8.1} MB/s per CPU-second",
        parse_mbs.0, parse_mbs.1
    );

    let mut interners: Vec<Interner> = files
        .iter()
        .map(|_| Interner::new(KeepFilter::default()))
        .collect();
    let ingest_mbs = measure(total, rounds, || {
        for ((_, t), it) in files.iter().zip(interners.iter_mut()) {
            let e = parse(black_box(t)).expect("fixture parses");
            black_box(it.ingest(&e));
        }
    });
    println!(
        "parse + snapshot:      {:8.1} MB/s wall, {:8.1} MB/s per CPU-second (a scrape's cost)",
        ingest_mbs.0, ingest_mbs.1
    );

    let gz: Vec<Vec<u8>> = files
        .iter()
        .map(|(_, t)| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(t.as_bytes()).expect("in memory");
            enc.finish().expect("in memory")
        })
        .collect();
    let gz_mbs = measure(total, rounds, || {
        for g in &gz {
            let t = decode_body(black_box(g)).expect("gunzip");
            let e = parse(&t).expect("fixture parses");
            black_box(e.samples.len());
        }
    });
    println!(
        "gunzip + parse:        {:8.1} MB/s wall, {:8.1} MB/s per CPU-second (uncompressed text)",
        gz_mbs.0, gz_mbs.1
    );

    // One scrape of the largest fixture: time per scrape and per window delta.
    let (name, big) = files
        .iter()
        .max_by_key(|(_, t)| t.len())
        .expect("corpus not empty");
    let mut it = Interner::new(KeepFilter::default());
    let a = it.ingest(&parse(big).expect("parses"));
    let b = it.ingest(&parse(big).expect("parses"));
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(300) {
        black_box(b.delta_since(black_box(&a)));
        n += 1;
    }
    println!(
        "window delta ({} series of {}): {:.1} µs; {} bytes of values per stored scrape",
        a.len(),
        name.rsplit('/').next().unwrap_or(name),
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n),
        a.value_bytes()
    );
    if parse_mbs.0 < 100.0 {
        println!("WARNING: parse throughput below the 100 MB/s bar on this run");
    }
}
