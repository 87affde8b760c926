//! The whole flow (planner, breaking point, tiers) against a small deterministic simulation of
#![allow(clippy::unwrap_used)] // test helpers
//! a server with a known capacity: `C` parallel slots, each request holding a slot for a fixed
//! `D` seconds (an M/D/C queue under Poisson load), FIFO. Capacity = C / D requests per second.
//! Each step runs 60 simulated seconds; records go through the real `Aggregator`.

use llmload_core::aggregate::Aggregator;
use llmload_core::results::ProfileInfo;
use llmload_core::{Benchmark, RequestRecord};
use llmload_sla::breaking::{RequestPoint, points_from_records};
use llmload_sla::{Arrival, Load, ServerSignals, SweepConfig, SweepPlanner, SweepSummary};

const SLOTS: usize = 8;
const PREFILL: f64 = 0.04;
const TOKENS: u64 = 50;
const GAP: f64 = 0.003;
const STEP_S: f64 = 60.0;

fn service() -> f64 {
    PREFILL + (TOKENS - 1) as f64 * GAP
}

fn capacity() -> f64 {
    SLOTS as f64 / service()
}

/// SplitMix64 uniform in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Server {
    free_at: Vec<f64>,
}

impl Server {
    /// FIFO: the request arriving at `t` takes the earliest free slot. Returns (start, end).
    fn admit(&mut self, t: f64) -> (f64, f64) {
        let (i, free) = self
            .free_at
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one slot");
        let start = t.max(free);
        let end = start + service();
        self.free_at[i] = end;
        (start, end)
    }
}

fn record(id: u64, t: f64, start: f64, end: f64) -> RequestRecord {
    RequestRecord {
        id,
        t_sched: t,
        t_dispatch: t,
        t_first_token: Some(start + PREFILL),
        t_first_output: Some(start + PREFILL),
        t_last_token: Some(end),
        t_end: end,
        prompt_tokens: Some(100),
        output_tokens: Some(TOKENS),
        output_events: TOKENS as u32,
        in_window: true,
        ..Default::default()
    }
}

/// Runs one step of the simulation: the benchmark, its request points and vLLM-like server
/// signals (everything admitted runs; the waiting queue stays 0, as measured on vLLM 0.25).
fn simulate(load: &Load, seed: u64) -> (Benchmark, Vec<RequestPoint>, ServerSignals) {
    let mut srv = Server {
        free_at: vec![0.0; SLOTS],
    };
    let mut rng = Rng(seed);
    let mut recs = Vec::new();
    let profile;
    match *load {
        Load::Rate { rate, arrival } => {
            profile = ProfileInfo {
                kind: match arrival {
                    Arrival::Poisson => "poisson",
                    Arrival::Constant => "constant",
                }
                .into(),
                rate: Some(rate),
                ..Default::default()
            };
            let mut t = 0.0;
            while t < STEP_S {
                let (s, e) = srv.admit(t);
                recs.push(record(recs.len() as u64, t, s, e));
                t += match arrival {
                    Arrival::Poisson => -(1.0 - rng.next()).ln() / rate,
                    Arrival::Constant => 1.0 / rate,
                };
            }
        }
        Load::Synchronous | Load::Throughput { .. } | Load::Concurrency { .. } => {
            let workers = match *load {
                Load::Throughput { max_concurrency } => max_concurrency,
                Load::Concurrency { concurrency } => concurrency,
                _ => 1,
            } as usize;
            profile = ProfileInfo {
                kind: "concurrent".into(),
                concurrency: Some(workers as u64),
                ..Default::default()
            };
            let mut ready = vec![0.0f64; workers];
            loop {
                let (w, t) = ready
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("at least one worker");
                if t >= STEP_S {
                    break;
                }
                let (s, e) = srv.admit(t);
                recs.push(record(recs.len() as u64, t, s, e));
                ready[w] = e;
            }
        }
    }
    let mut agg = Aggregator::new(vec![]);
    let gaps = vec![GAP; TOKENS as usize - 1];
    for r in &recs {
        agg.push(r, &gaps);
    }
    let b = agg.finish(profile);
    let running = (0..=STEP_S as usize)
        .map(|s| {
            let t = s as f64;
            let n = recs
                .iter()
                .filter(|r| r.t_dispatch <= t && r.t_end > t)
                .count();
            (t, n as f64)
        })
        .collect();
    let signals = ServerSignals {
        kv_usage_max: Some(0.1),
        waiting_mean: Some(0.0),
        waiting_max: Some(0.0),
        waiting_share_above_zero: Some(0.0),
        running,
        ..Default::default()
    };
    (b, points_from_records(&recs), signals)
}

fn sweep(with_server: bool) -> (Vec<Load>, SweepSummary) {
    let mut p = SweepPlanner::new(SweepConfig::auto()).unwrap();
    let mut loads = Vec::new();
    while let Some(step) = p.next_step() {
        let (b, pts, sig) = simulate(&step.load, 1000 + step.index as u64);
        let out = p
            .record(&step, &b, with_server.then_some(&sig), &pts)
            .unwrap();
        assert_eq!(out.sla.server_metrics, with_server);
        loads.push(step.load);
    }
    (loads, p.finish())
}

fn check(with_server: bool) {
    let cap = capacity();
    let (loads, s) = sweep(with_server);
    let bp = &s.breaking_point;
    let m = bp.max_sustainable.expect("a sustainable rate");
    for st in &s.steps {
        eprintln!(
            "{:<24} achieved {:>7.2} broken {:<5} fired {:?}",
            st.load.label(),
            st.achieved_requests_per_s,
            st.broken,
            st.fired
        );
    }
    eprintln!(
        "capacity {cap:.2}, max sustainable {m:.2}, stop: {}",
        s.stop_reason
    );
    assert!(
        (m - cap).abs() / cap <= 0.10,
        "max sustainable {m:.2} vs capacity {cap:.2}: {s:#?}"
    );
    assert!(bp.found && bp.converged, "{bp:#?}");
    assert!(loads.len() <= 16, "{} steps", loads.len());
    // The synchronous and throughput steps measured what the model implies.
    let rs = s.synchronous_rate.unwrap();
    assert!((rs - 1.0 / service()).abs() / rs < 0.02, "{rs}");
    let rt = s.throughput_rate.unwrap();
    assert!((rt - cap).abs() / cap < 0.03, "{rt}");
    assert_eq!(bp.server_metrics, with_server);
}

#[test]
fn breaking_point_of_a_queueing_server_with_server_metrics() {
    check(true);
}

#[test]
fn breaking_point_of_a_queueing_server_client_criteria_only() {
    check(false);
}

#[test]
fn over_capacity_step_is_oversaturated_and_under_is_not() {
    let cap = capacity();
    let over = Load::Rate {
        rate: cap * 1.2,
        arrival: Arrival::Poisson,
    };
    let (b, pts, sig) = simulate(&over, 7);
    let v = llmload_sla::evaluate(&Default::default(), &b, Some(&sig), &pts);
    assert!(v.oversaturated && v.broken, "{v:#?}");
    assert!(v.fired().any(|c| c.name == "rate_shortfall"), "{v:#?}");
    for rho in [0.3, 0.6, 0.8] {
        let under = Load::Rate {
            rate: cap * rho,
            arrival: Arrival::Poisson,
        };
        for seed in 0..5 {
            let (b, pts, sig) = simulate(&under, seed);
            let v = llmload_sla::evaluate(&Default::default(), &b, Some(&sig), &pts);
            assert!(!v.broken, "rho {rho} seed {seed}: {v:#?}");
        }
    }
}
