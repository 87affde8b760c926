//! Planner sequences against synthetic servers.
#![allow(clippy::unwrap_used)] // test helpers

use llmload_core::{Benchmark, Summary};
use llmload_sla::breaking::RequestPoint;
use llmload_sla::{Arrival, Load, Phase, SweepConfig, SweepMode, SweepPlanner, SweepSummary};

fn flat(x: f64) -> Summary {
    Summary {
        count: 100,
        mean: x,
        stddev: 0.0,
        min: x,
        p50: x,
        p90: x,
        p95: x,
        p99: x,
        p999: x,
        max: x,
    }
}

fn bench(rate: Option<f64>, rps: f64, ttft_p95: f64) -> Benchmark {
    let mut b = Benchmark::default();
    b.profile.kind = if rate.is_some() {
        "poisson"
    } else {
        "concurrent"
    }
    .into();
    b.profile.rate = rate;
    b.window.duration_s = 61.0;
    b.requests.completed = (rps * 60.0).round() as u64;
    b.throughput.requests_per_s = b.requests.completed as f64 / 60.0;
    b.metrics.ttft_s = Some(flat(ttft_p95));
    b.metrics.request_latency_s = Some(flat(1.0));
    b
}

/// A server whose TTFT p95 explodes above 37.3 req/s (or concurrency 37).
fn capacity_server(load: &Load) -> Benchmark {
    const CAP: f64 = 37.3;
    match *load {
        Load::Synchronous => bench(None, 2.0, 0.1),
        Load::Throughput { .. } => bench(None, 45.0, 8.0),
        Load::Rate { rate, .. } => bench(Some(rate), rate, if rate > CAP { 5.0 } else { 0.3 }),
        Load::Concurrency { concurrency } => {
            let c = f64::from(concurrency);
            bench(None, c.min(37.0), if c > 37.0 { 3.0 } else { 0.2 })
        }
    }
}

fn drive(
    cfg: SweepConfig,
    server: impl Fn(&Load) -> (Benchmark, Vec<RequestPoint>),
) -> (Vec<Load>, SweepSummary) {
    let mut p = SweepPlanner::new(cfg).unwrap();
    let mut loads = Vec::new();
    while let Some(step) = p.next_step() {
        assert_eq!(step.index, loads.len());
        assert!(loads.len() < 100, "the planner does not end");
        let (b, pts) = server(&step.load);
        p.record(&step, &b, None, &pts).unwrap();
        loads.push(step.load);
    }
    (loads, p.finish())
}

fn rates(loads: &[Load]) -> Vec<f64> {
    loads
        .iter()
        .filter_map(|l| match l {
            Load::Rate { rate, .. } => Some(*rate),
            _ => None,
        })
        .collect()
}

#[test]
fn default_sweep_order_and_bisection_finds_37_3() {
    let (loads, s) = drive(SweepConfig::auto(), |l| (capacity_server(l), vec![]));
    assert_eq!(loads[0], Load::Synchronous);
    assert_eq!(
        loads[1],
        Load::Throughput {
            max_concurrency: 256
        }
    );
    // 8 rates evenly spaced from the synchronous (2) to the throughput (45) rate.
    let sweep: Vec<f64> = rates(&loads[2..10]);
    let expect: Vec<f64> = (1..=8).map(|i| 2.0 + 43.0 * i as f64 / 8.0).collect();
    for (a, e) in sweep.iter().zip(&expect) {
        assert!((a - e).abs() < 1e-9, "{sweep:?} vs {expect:?}");
    }
    assert!(matches!(
        loads[2],
        Load::Rate {
            arrival: Arrival::Poisson,
            ..
        }
    ));
    assert_eq!(
        s.steps[..10]
            .iter()
            .filter(|x| x.phase == Phase::Sweep)
            .count(),
        8
    );
    // Refinement converged on 37.3 within 5 %, within the budget.
    let bp = &s.breaking_point;
    assert!(bp.found && bp.converged, "{bp:#?}");
    let m = bp.max_sustainable.unwrap();
    assert!(m <= 37.3 && (37.3 - m) / 37.3 < 0.05, "{m}");
    assert!(bp.first_failing.unwrap() > 37.3);
    assert!(bp.relative_gap.unwrap() <= 0.05);
    assert!(loads.len() <= 10 + 6);
    assert_eq!(bp.limited_by, Some("ttft"));
    assert_eq!(bp.limiting_criteria[0].name, "ttft");
    assert!(s.stop_reason.starts_with("converged"), "{}", s.stop_reason);
    assert_eq!(s.synchronous_rate, Some(2.0));
    assert_eq!(s.throughput_rate, Some(45.0));
    assert!(!bp.server_metrics);
    assert!(s.notes.iter().any(|n| n.contains("client criteria only")));
    // The results entries.
    let [(k1, v1), (k2, v2)] = s.extra_entries();
    assert_eq!((k1.as_str(), k2.as_str()), ("sweep", "breaking_point"));
    assert!(v1["steps"].as_array().unwrap().len() == loads.len());
    assert!(v1.get("breaking_point").is_none());
    assert_eq!(v2["limited_by"], "ttft");
    assert_eq!(v2["max_sustainable_rate"], v2["max_sustainable"]);
    assert!(v2["max_sustainable_concurrency"].is_null());
    assert!(v2["reason"].as_str().unwrap().starts_with("ttft: TTFT p95"));
    assert_eq!(v1["oversaturated"], false);
    // Synchronous and the rates up to the sustainable one; not throughput, not failing steps.
    let ok = s.sustainable_steps();
    assert_eq!(ok[..7], [0, 2, 3, 4, 5, 6, 7]);
    assert!(ok.contains(&bp.max_sustainable_step.unwrap()));
    assert!(!ok.contains(&1) && !ok.contains(&bp.first_failing_step.unwrap()));
}

#[test]
fn explicit_rates_are_run_ascending_then_refined() {
    let mut cfg = SweepConfig::new(SweepMode::Rates {
        rates: vec![40.0, 10.0, 20.0, 30.0, 50.0],
        arrival: Arrival::Constant,
    });
    cfg.tolerance = 0.02;
    let (loads, s) = drive(cfg, |l| (capacity_server(l), vec![]));
    assert_eq!(rates(&loads)[..5], [10.0, 20.0, 30.0, 40.0, 50.0]);
    assert!(matches!(
        loads[0],
        Load::Rate {
            arrival: Arrival::Constant,
            ..
        }
    ));
    // Bisect 30..40: 35, 37.5 (fail), 36.25, 36.875 -> gap 1.7 % < 2 %.
    assert_eq!(rates(&loads)[5..], [35.0, 37.5, 36.25, 36.875]);
    let m = s.breaking_point.max_sustainable.unwrap();
    assert!((37.3 - m) / 37.3 < 0.02);
    assert!(s.notes.iter().any(|n| n.contains("sorted")));
}

#[test]
fn concurrency_ladder_bisects_integers() {
    let cfg = SweepConfig::new(SweepMode::Concurrency {
        levels: vec![1, 10, 50, 100],
    });
    let (loads, s) = drive(cfg, |l| (capacity_server(l), vec![]));
    let levels: Vec<u32> = loads
        .iter()
        .map(|l| match l {
            Load::Concurrency { concurrency } => *concurrency,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(levels, [1, 10, 50, 100, 30, 40, 35, 37, 38]);
    let bp = &s.breaking_point;
    assert_eq!(bp.dimension, "concurrency");
    assert_eq!(
        (bp.max_sustainable, bp.first_failing),
        (Some(37.0), Some(38.0))
    );
    assert!(bp.converged);
}

#[test]
fn refinement_budget_and_switch() {
    let mut cfg = SweepConfig::new(SweepMode::Rates {
        rates: vec![10.0, 20.0, 40.0],
        arrival: Arrival::Poisson,
    });
    cfg.refine_budget = 2;
    let (loads, s) = drive(cfg.clone(), |l| (capacity_server(l), vec![]));
    assert_eq!(rates(&loads), [10.0, 20.0, 40.0, 30.0, 35.0]);
    assert!(s.stop_reason.contains("budget"), "{}", s.stop_reason);
    assert!(!s.breaking_point.converged);
    assert_eq!(s.breaking_point.max_sustainable, Some(35.0));
    cfg.refine = false;
    let (loads, s) = drive(cfg, |l| (capacity_server(l), vec![]));
    assert_eq!(loads.len(), 3);
    assert!(s.stop_reason.contains("refinement off"));
}

#[test]
fn never_breaking_reports_a_lower_bound() {
    let cfg = SweepConfig::new(SweepMode::Rates {
        rates: vec![1.0, 2.0, 4.0],
        arrival: Arrival::Poisson,
    });
    let (loads, s) = drive(cfg, |l| (capacity_server(l), vec![]));
    assert_eq!(loads.len(), 3);
    let bp = &s.breaking_point;
    assert!(!bp.found && bp.first_failing.is_none());
    assert_eq!(bp.max_sustainable, Some(4.0));
    assert!(s.stop_reason.contains("every level passed"));
}

#[test]
fn breaking_everywhere_bisects_down_then_stops() {
    let cfg = SweepConfig::new(SweepMode::Rates {
        rates: vec![40.0, 80.0],
        arrival: Arrival::Poisson,
    });
    let (loads, s) = drive(cfg, |l| {
        let mut b = capacity_server(l);
        b.metrics.ttft_s = Some(flat(9.0));
        (b, vec![])
    });
    assert_eq!(rates(&loads), [40.0, 80.0, 20.0, 10.0, 5.0]);
    assert!(s.breaking_point.max_sustainable.is_none());
    assert!(
        s.stop_reason.contains("every rate tried"),
        "{}",
        s.stop_reason
    );
}

/// Open-loop points whose TTFT and in-flight count grow through the step (a backlog).
fn backlog_points(rate: f64) -> Vec<RequestPoint> {
    let n = (rate * 60.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            RequestPoint {
                t_dispatch: t,
                ttft: Some(0.1 + 0.012 * t),
                latency: Some(1.0 + 0.1 * t),
            }
        })
        .collect()
}

#[test]
fn oversaturated_step_stops_the_escalation() {
    let cfg = SweepConfig::new(SweepMode::Rates {
        rates: vec![5.0, 10.0, 20.0, 40.0, 80.0],
        arrival: Arrival::Poisson,
    });
    let (loads, s) = drive(cfg, |l| {
        let Load::Rate { rate, .. } = *l else {
            panic!()
        };
        if rate >= 20.0 {
            // TTFT p95 still under 1 s: the backlog shows in the trends and the completions.
            (bench(Some(rate), rate, 0.8), backlog_points(rate))
        } else {
            (bench(Some(rate), rate, 0.2), vec![])
        }
    });
    let r = rates(&loads);
    assert_eq!(r[..3], [5.0, 10.0, 20.0]);
    assert!(!r.contains(&40.0) && !r.contains(&80.0), "{r:?}");
    assert!(s.steps[2].oversaturated);
    // A backlog also means completions fall behind the arrivals.
    assert_eq!(s.steps[2].fired, vec!["saturation_trend", "rate_shortfall"]);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("2 higher level(s) skipped"))
    );
    assert!(s.breaking_point.limited_by.is_some());
    assert!(s.breaking_point.max_sustainable.unwrap() >= 10.0);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut p = SweepPlanner::new(SweepConfig::auto()).unwrap();
    let step = p.next_step().unwrap();
    assert_eq!(p.next_step(), Some(step), "pending step is repeated");
    let mut other = step;
    other.index = 5;
    assert!(p.record(&other, &Benchmark::default(), None, &[]).is_err());
    p.record(&step, &capacity_server(&step.load), None, &[])
        .unwrap();
    assert!(p.record(&step, &Benchmark::default(), None, &[]).is_err());
    assert!(
        SweepPlanner::new(SweepConfig::new(SweepMode::Rates {
            rates: vec![],
            arrival: Arrival::Poisson
        }))
        .is_err()
    );
    assert!(
        SweepPlanner::new(SweepConfig::new(SweepMode::Rates {
            rates: vec![-1.0],
            arrival: Arrival::Poisson
        }))
        .is_err()
    );
    assert!(
        SweepPlanner::new(SweepConfig::new(SweepMode::Concurrency { levels: vec![0] })).is_err()
    );
}

#[test]
fn synchronous_step_without_completions_stops() {
    let mut p = SweepPlanner::new(SweepConfig::auto()).unwrap();
    let step = p.next_step().unwrap();
    p.record(&step, &Benchmark::default(), None, &[]).unwrap();
    assert_eq!(p.next_step(), None);
    assert!(
        p.finish()
            .stop_reason
            .contains("synchronous step completed no request")
    );
}
