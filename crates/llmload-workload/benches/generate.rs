//! Generation-rate benchmark of the workload crate (run: `cargo bench -p llmload-workload`).
//!
//! 1. 100,000 synthetic prompts of 1,024 tokens through the real `Workload` (`build` with
//!    `--prompt-tokens 1024`), every 500th prompt re-encoded to check exactness.
//! 2. Synthetic 1024x1024 JPEG: single-thread encode rate, then a paced dispatch loop at
//!    100 req/s pulling requests (each with one unique JPEG) from a producer thread that calls
//!    `next_request` (as the engine does), against the same loop without images: the delay
//!    between a request's scheduled time and the moment it is in hand (dispatch delay caused
//!    by the workload) is reported for both.
//!
//! Arguments (after `--`): `prompts N` (default 100000), `seconds S` for each paced loop
//! (default 5), `only prompts|images`.

use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use clap::Parser;
use llmload_workload::images::{ImageFormat, SyntheticImages};
use llmload_workload::{WorkloadArgs, build};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    w: WorkloadArgs,
}

fn args(flags: &[&str]) -> WorkloadArgs {
    let mut v = vec!["bench"];
    v.extend_from_slice(flags);
    Cli::try_parse_from(v).expect("bench flags").w
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let r = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (r - lo as f64)
}

fn bench_prompts(n: usize) {
    let t0 = Instant::now();
    let (mut w, counter) = build(&args(&["--prompt-tokens", "1024"]), 42).expect("build");
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let mut bytes = 0usize;
    let mut kept = Vec::new();
    for i in 0..n {
        let s = w.next_request().expect("synthetic never ends");
        let text = s.prompt.as_completion_text();
        bytes += text.len();
        if i % 500 == 0 {
            kept.push(text);
        }
    }
    let elapsed = t1.elapsed();
    let t2 = Instant::now();
    let exact = kept.iter().filter(|t| counter.count(t) == 1024).count();
    let verify = t2.elapsed();
    println!(
        "prompts: {n} x 1024 tokens (cl100k_base) in {:.3} s = {:.0} prompts/s, {:.1} M tokens/s, {:.1} MB of text; table setup {:.3} s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        n as f64 * 1024.0 / elapsed.as_secs_f64() / 1e6,
        bytes as f64 / 1e6,
        setup.as_secs_f64()
    );
    println!(
        "prompts: exactness check {exact}/{} re-encoded prompts have exactly 1024 tokens ({:.3} s to re-encode them)",
        kept.len(),
        verify.as_secs_f64()
    );
    assert_eq!(exact, kept.len(), "a prompt missed its length");
}

fn paced(flags: &[&str], rate: f64, seconds: f64) -> (Vec<f64>, usize) {
    let (mut w, _) = build(&args(flags), 7).expect("build");
    // Engine-like: a producer thread keeps a few requests ready.
    let (tx, rx) = sync_channel(8);
    let producer = std::thread::spawn(move || {
        while let Some(s) = w.next_request() {
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    let n = (rate * seconds) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    // Let the producer fill its queue, as the engine does before its schedule starts.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let mut delays = Vec::with_capacity(n);
    let mut image_bytes = 0usize;
    for i in 0..n {
        let due = start + period * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let s = rx.recv().expect("request");
        delays.push(Instant::now().saturating_duration_since(due).as_secs_f64());
        image_bytes += s.images.iter().filter_map(|m| m.bytes).sum::<u64>() as usize;
    }
    drop(rx);
    producer.join().expect("producer");
    delays.sort_by(f64::total_cmp);
    (delays, image_bytes)
}

fn bench_images(seconds: f64) {
    let t = Instant::now();
    let g = SyntheticImages::new(1024, 1024, ImageFormat::Jpeg, 85, 1).expect("generator");
    println!(
        "jpeg: 1024x1024 q85 base picture encoded once in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let n = 10;
    let t = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        bytes += g.encode_full(i).expect("jpeg").len();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "jpeg: full encode with the image crate, single thread: {:.1} ms each, {:.0} images/s, {:.0} KiB each",
        dt * 1000.0 / n as f64,
        n as f64 / dt,
        bytes as f64 / n as f64 / 1024.0
    );
    let n = 500;
    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 0..n {
        bytes += g.generate(i).expect("jpeg").meta.bytes.unwrap_or(0);
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "jpeg: unique image by patching the stamped rows (incl. base64 data URL), single thread: {:.3} ms each, {:.0} images/s, {:.0} KiB each",
        dt * 1000.0 / n as f64,
        n as f64 / dt,
        bytes as f64 / n as f64 / 1024.0
    );
    for (label, flags) in [
        ("text only", vec!["--prompt-tokens", "64"]),
        (
            "1 unique 1024x1024 JPEG",
            vec![
                "--prompt-tokens",
                "64",
                "--images",
                "1",
                "--image-size",
                "1024x1024",
            ],
        ),
    ] {
        let (d, bytes) = paced(&flags, 100.0, seconds);
        println!(
            "paced 100 req/s, {label}: {} requests, wait for request after its due time p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {:.0} KiB images/request",
            d.len(),
            pct(&d, 0.5) * 1e3,
            pct(&d, 0.99) * 1e3,
            d.last().copied().unwrap_or(f64::NAN) * 1e3,
            bytes as f64 / d.len() as f64 / 1024.0
        );
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        argv.iter()
            .position(|a| a == k)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let n: usize = get("prompts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seconds: f64 = get("seconds").and_then(|v| v.parse().ok()).unwrap_or(5.0);
    let only = get("only");
    println!(
        "machine: {} CPUs visible; load average {}",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if only.as_deref() != Some("images") {
        bench_prompts(n);
    }
    if only.as_deref() != Some("prompts") {
        bench_images(seconds);
    }
}
