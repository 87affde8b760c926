//! What one benchmark should do: profile, stop conditions, warm-up and cool-down.

use llmload_core::aggregate::Slo;
use serde::Serialize;

use crate::profile::Profile;

/// A warm-up or cool-down length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseLen {
    Seconds(f64),
    Requests(u64),
}

impl std::str::FromStr for PhaseLen {
    type Err = String;
    /// `30s`, `30` (seconds), `1.5s`, `100r` or `100req` (requests).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let err = || {
            format!(
                "invalid phase length `{s}`: use seconds (`30`, `30s`, `1.5s`) or a request count (`100req`)"
            )
        };
        if let Some(n) = t.strip_suffix("req").or_else(|| t.strip_suffix('r')) {
            return n
                .trim()
                .parse::<u64>()
                .map(PhaseLen::Requests)
                .map_err(|_| err());
        }
        let n = t.strip_suffix('s').unwrap_or(t);
        match n.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(PhaseLen::Seconds(v)),
            _ => Err(err()),
        }
    }
}

/// When a benchmark ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StopConditions {
    /// Requests scheduled in this benchmark (warm-up and cool-down included).
    pub max_requests: Option<u64>,
    /// Seconds from the benchmark start; requests still in flight then are cancelled.
    pub max_seconds: Option<f64>,
    /// Stop once this many requests failed.
    pub max_errors: Option<u64>,
    /// Stop once the error share of finished requests exceeds this (0..1), judged after at
    /// least [`ERROR_RATE_MIN_SAMPLE`] finished requests.
    pub max_error_rate: Option<f64>,
}

/// Finished requests needed before `max_error_rate` is judged.
pub const ERROR_RATE_MIN_SAMPLE: u64 = 20;

/// One benchmark's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchmarkPlan {
    pub profile: Profile,
    pub stop: StopConditions,
    pub warmup: Option<PhaseLen>,
    pub cooldown: Option<PhaseLen>,
    /// Cap on requests in flight for rate profiles.
    pub max_concurrency: Option<u32>,
    /// With a cap: drop arrivals over the cap (counted) instead of queueing them.
    pub drop_over_cap: bool,
    /// Linear ramp of the rate (open loop) or of the workers (closed loop), seconds.
    pub ramp_up_s: f64,
    pub seed: u64,
    pub slos: Vec<Slo>,
}

impl BenchmarkPlan {
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            stop: StopConditions::default(),
            warmup: None,
            cooldown: None,
            max_concurrency: None,
            drop_over_cap: false,
            ramp_up_s: 0.0,
            seed: 42,
            slos: Vec::new(),
        }
    }

    /// Checks the plan for contradictions, with messages that name the flags.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.stop;
        if s.max_requests.is_none() && s.max_seconds.is_none() && self.profile != Profile::Trace {
            return Err("no stop condition: give --max-requests N and/or --max-seconds S".into());
        }
        if let Some(r) = self.profile.rate()
            && !(r.is_finite() && r > 0.0)
        {
            return Err(format!(
                "--rate must be a positive number of requests per second, got {r}"
            ));
        }
        if let Profile::Gamma { burstiness, .. } = self.profile
            && !(burstiness.is_finite() && burstiness > 0.0)
        {
            return Err(format!("--burstiness must be positive, got {burstiness}"));
        }
        if let Some(w) = self.profile.closed_loop_workers()
            && w == 0
        {
            return Err("--concurrency must be at least 1".into());
        }
        if self.max_concurrency == Some(0) {
            return Err("--max-concurrency must be at least 1".into());
        }
        if self.drop_over_cap && self.max_concurrency.is_none() {
            return Err("--drop-over-cap needs --max-concurrency C".into());
        }
        if let Some(PhaseLen::Seconds(_)) = self.cooldown
            && s.max_seconds.is_none()
        {
            return Err(
                "--cooldown in seconds needs --max-seconds (the end must be known); give a request count instead, e.g. --cooldown 20req"
                    .into(),
            );
        }
        if let Some(PhaseLen::Requests(_)) = self.cooldown
            && s.max_requests.is_none()
        {
            return Err("--cooldown as a request count needs --max-requests".into());
        }
        if let Some(f) = s.max_error_rate
            && !(0.0..=1.0).contains(&f)
        {
            return Err(format!(
                "--max-error-rate must be between 0 and 1 (or a percentage like 5%), got {f}"
            ));
        }
        if let (Some(PhaseLen::Requests(w)), Some(m)) = (self.warmup, s.max_requests) {
            let c = match self.cooldown {
                Some(PhaseLen::Requests(c)) => c,
                _ => 0,
            };
            if w + c >= m {
                return Err(format!(
                    "warm-up ({w}) plus cool-down ({c}) requests leave nothing to measure out of --max-requests {m}"
                ));
            }
        }
        Ok(())
    }

    /// Whether the request with benchmark-local `index`, dispatched `t_rel` seconds after the
    /// benchmark start, counts in the statistics.
    pub fn in_window(&self, index: u64, t_rel: f64) -> bool {
        match self.warmup {
            Some(PhaseLen::Seconds(w)) if t_rel < w => return false,
            Some(PhaseLen::Requests(n)) if index < n => return false,
            _ => {}
        }
        match self.cooldown {
            Some(PhaseLen::Seconds(c)) => {
                if let Some(m) = self.stop.max_seconds
                    && t_rel >= m - c
                {
                    return false;
                }
            }
            Some(PhaseLen::Requests(c)) => {
                if let Some(m) = self.stop.max_requests
                    && index + c >= m
                {
                    return false;
                }
            }
            None => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_parsing() {
        assert_eq!("30".parse::<PhaseLen>(), Ok(PhaseLen::Seconds(30.0)));
        assert_eq!("1.5s".parse::<PhaseLen>(), Ok(PhaseLen::Seconds(1.5)));
        assert_eq!("100req".parse::<PhaseLen>(), Ok(PhaseLen::Requests(100)));
        assert_eq!("7r".parse::<PhaseLen>(), Ok(PhaseLen::Requests(7)));
        assert!("-1".parse::<PhaseLen>().is_err());
        assert!("abc".parse::<PhaseLen>().unwrap_err().contains("100req"));
    }

    #[test]
    fn window_by_count_and_time() {
        let mut p = BenchmarkPlan::new(Profile::Synchronous);
        p.stop.max_requests = Some(10);
        p.warmup = Some(PhaseLen::Requests(2));
        p.cooldown = Some(PhaseLen::Requests(3));
        let w: Vec<bool> = (0..10).map(|i| p.in_window(i, 0.0)).collect();
        assert_eq!(
            w,
            [
                false, false, true, true, true, true, true, false, false, false
            ]
        );
        p.stop.max_seconds = Some(10.0);
        p.warmup = Some(PhaseLen::Seconds(1.0));
        p.cooldown = Some(PhaseLen::Seconds(2.0));
        assert!(!p.in_window(5, 0.99));
        assert!(p.in_window(5, 1.0));
        assert!(p.in_window(5, 7.99));
        assert!(!p.in_window(5, 8.0));
    }

    #[test]
    fn validation_names_flags() {
        let p = BenchmarkPlan::new(Profile::Poisson { rate: 1.0 });
        assert!(p.validate().unwrap_err().contains("--max-requests"));
        let mut p = BenchmarkPlan::new(Profile::Poisson { rate: -1.0 });
        p.stop.max_requests = Some(1);
        assert!(p.validate().unwrap_err().contains("--rate"));
        let mut p = BenchmarkPlan::new(Profile::Synchronous);
        p.stop.max_requests = Some(5);
        p.cooldown = Some(PhaseLen::Seconds(1.0));
        assert!(p.validate().unwrap_err().contains("--max-seconds"));
        p.cooldown = None;
        p.drop_over_cap = true;
        assert!(p.validate().unwrap_err().contains("--max-concurrency"));
    }
}
