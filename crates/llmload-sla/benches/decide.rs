//! Cost of the decisions per step: `cargo bench -p llmload-sla --bench decide`.
//! Prints the median of several runs of each operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use llmload_core::{Benchmark, Summary};
use llmload_sla::breaking::RequestPoint;
use llmload_sla::threshold::{check, parse_thresholds};
use llmload_sla::{BreakingConfig, ServerSignals, SweepConfig, SweepPlanner, TierConfig};

fn median_us(mut f: impl FnMut(), runs: usize) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[runs / 2]
}

fn points(n: usize) -> Vec<RequestPoint> {
    let mut x = 0x1234_5678_u64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let t = i as f64 * 60.0 / n as f64;
            RequestPoint {
                t_dispatch: t,
                ttft: Some(0.2 + 0.1 * u),
                latency: Some(2.0 + u),
            }
        })
        .collect()
}

fn bench() -> Benchmark {
    let s = Summary {
        count: 1000,
        mean: 0.3,
        p50: 0.3,
        p95: 0.5,
        p99: 0.7,
        max: 1.0,
        ..Default::default()
    };
    let mut b = Benchmark::default();
    b.profile.kind = "poisson".into();
    b.profile.rate = Some(100.0);
    b.window.duration_s = 62.0;
    b.requests.completed = 6000;
    b.metrics.ttft_s = Some(s);
    b.metrics.tpot_s = Some(s);
    b.metrics.decode_rate_tokens_per_s = Some(s);
    b.metrics.request_latency_s = Some(s);
    b
}

fn main() {
    let b = bench();
    let sig = ServerSignals {
        waiting_share_above_zero: Some(0.0),
        running: (0..600).map(|i| (i as f64 * 0.1, 50.0)).collect(),
        kv_usage_max: Some(0.3),
        waiting_mean: Some(0.0),
        ..Default::default()
    };
    let cfg = BreakingConfig::default();
    for n in [1_000usize, 10_000, 100_000] {
        let pts = points(n);
        let us = median_us(
            || {
                black_box(llmload_sla::evaluate(&cfg, &b, Some(&sig), black_box(&pts)));
            },
            9,
        );
        println!(
            "evaluate (breaking point), {n:>6} requests in the step: {:>9.0} us",
            us
        );
    }
    let tiers = TierConfig::default();
    let us = median_us(
        || {
            black_box(llmload_sla::classify(&tiers, &b, Some(&sig)));
        },
        101,
    );
    println!("classify (SLA tiers):                           {us:>9.1} us");
    let ts = parse_thresholds([
        "ttft.p95<2s",
        "ttft.p99<3s",
        "e2e.p95<5s",
        "error_rate<5%",
        "decode_rate.mean>30",
        "requests_per_s>=10",
        "itl.p99<=80ms",
        "output_tokens_per_s>1000",
        "concurrency.mean<100",
        "tpot.p95<50ms",
    ])
    .unwrap();
    let us = median_us(
        || {
            black_box(check(&ts, &b));
        },
        101,
    );
    println!("check (10 thresholds, one benchmark):           {us:>9.1} us");
    let pts = points(10_000);
    let us = median_us(
        || {
            let mut p = SweepPlanner::new(SweepConfig::auto()).unwrap();
            let mut k = 0;
            while let Some(step) = p.next_step() {
                let mut bb = b.clone();
                bb.throughput.requests_per_s = 5.0 + 10.0 * k as f64;
                if let llmload_sla::Load::Rate { rate, .. } = step.load {
                    bb.profile.rate = Some(rate);
                    bb.metrics.ttft_s.as_mut().unwrap().p95 = if rate > 60.0 { 3.0 } else { 0.5 };
                }
                p.record(&step, &bb, Some(&sig), &pts).unwrap();
                k += 1;
            }
            black_box(p.finish());
        },
        5,
    );
    println!("whole planner loop (auto sweep, 10k requests per step): {us:>9.0} us");
}
