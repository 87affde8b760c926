//! Load profiles and their arrival schedules.
//!
//! Open-loop schedules are generated ahead of time from a seeded RNG, so the same seed gives
//! the same schedule. Offsets are seconds from the benchmark start.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::Serialize;

/// How one benchmark generates load.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Profile {
    /// One request at a time (closed loop of 1).
    Synchronous,
    /// Closed loop: `concurrency` requests always in flight.
    Concurrent { concurrency: u32 },
    /// As many requests in flight as the cap allows (closed loop at the cap).
    Throughput { max_concurrency: u32 },
    /// Open loop, evenly spaced arrivals at `rate` per second.
    Constant { rate: f64 },
    /// Open loop, exponential inter-arrival times (Poisson process) at `rate`.
    Poisson { rate: f64 },
    /// Open loop, gamma inter-arrival times with mean `1/rate` and shape `burstiness`
    /// (vLLM's definition: 1 = Poisson, < 1 burstier, > 1 more regular).
    Gamma { rate: f64, burstiness: f64 },
    /// Open loop on the workload's own timestamps (`RequestSpec::at_s`).
    Trace,
}

impl Profile {
    pub fn kind(&self) -> &'static str {
        match self {
            Profile::Synchronous => "synchronous",
            Profile::Concurrent { .. } => "concurrent",
            Profile::Throughput { .. } => "throughput",
            Profile::Constant { .. } => "constant",
            Profile::Poisson { .. } => "poisson",
            Profile::Gamma { .. } => "gamma",
            Profile::Trace => "trace",
        }
    }

    /// The number of closed-loop workers, for closed-loop profiles.
    pub fn closed_loop_workers(&self) -> Option<u32> {
        match self {
            Profile::Synchronous => Some(1),
            Profile::Concurrent { concurrency } => Some(*concurrency),
            Profile::Throughput { max_concurrency } => Some(*max_concurrency),
            _ => None,
        }
    }

    pub fn rate(&self) -> Option<f64> {
        match self {
            Profile::Constant { rate }
            | Profile::Poisson { rate }
            | Profile::Gamma { rate, .. } => Some(*rate),
            _ => None,
        }
    }
}

/// An endless, seeded sequence of arrival offsets (seconds from the benchmark start).
pub struct Arrivals {
    kind: ArrivalKind,
    rng: ChaCha8Rng,
    /// Position on the full-rate time axis.
    s: f64,
    n: u64,
    ramp_up_s: f64,
}

enum ArrivalKind {
    Constant(f64),
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

impl Arrivals {
    /// `None` for profiles that are not open-loop rate profiles.
    pub fn new(profile: &Profile, seed: u64, ramp_up_s: f64) -> Option<Arrivals> {
        let kind = match *profile {
            Profile::Constant { rate } => ArrivalKind::Constant(1.0 / rate),
            Profile::Poisson { rate } => ArrivalKind::Exp(Exp::new(rate).ok()?),
            Profile::Gamma { rate, burstiness } => {
                // mean = shape * scale = 1 / rate
                ArrivalKind::Gamma(Gamma::new(burstiness, 1.0 / (rate * burstiness)).ok()?)
            }
            _ => return None,
        };
        Some(Arrivals {
            kind,
            rng: ChaCha8Rng::seed_from_u64(seed),
            s: 0.0,
            n: 0,
            ramp_up_s: ramp_up_s.max(0.0),
        })
    }

    /// Maps a time on the full-rate axis to wall offset under a linear ramp from 0 to the full
    /// rate over `T` seconds: the cumulative load `Λ(t)/R` is `t²/2T` for `t < T`, then
    /// `t - T/2`; this is its inverse.
    fn ramp(&self, s: f64) -> f64 {
        let t = self.ramp_up_s;
        if t <= 0.0 {
            s
        } else if s < t / 2.0 {
            (2.0 * t * s).sqrt()
        } else {
            s + t / 2.0
        }
    }
}

impl Iterator for Arrivals {
    type Item = f64;
    fn next(&mut self) -> Option<f64> {
        let first = self.n == 0;
        self.n += 1;
        match &self.kind {
            // Constant: the first request goes at 0, then every 1/rate.
            ArrivalKind::Constant(gap) => {
                if !first {
                    self.s += gap;
                }
            }
            ArrivalKind::Exp(d) => {
                if !first {
                    self.s += d.sample(&mut self.rng);
                }
            }
            ArrivalKind::Gamma(d) => {
                if !first {
                    self.s += d.sample(&mut self.rng);
                }
            }
        }
        Some(self.ramp(self.s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kolmogorov-Smirnov statistic of samples against Exp(rate).
    fn ks_exp(samples: &mut [f64], rate: f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        let mut d: f64 = 0.0;
        for (i, x) in samples.iter().enumerate() {
            let cdf = 1.0 - (-rate * x).exp();
            d = d
                .max((cdf - i as f64 / n).abs())
                .max(((i + 1) as f64 / n - cdf).abs());
        }
        d
    }

    #[test]
    fn poisson_interarrivals_pass_ks() {
        let rate = 1000.0;
        let a: Vec<f64> = Arrivals::new(&Profile::Poisson { rate }, 42, 0.0)
            .unwrap()
            .take(20_001)
            .collect();
        let mut gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
        let n = gaps.len() as f64;
        let d = ks_exp(&mut gaps, rate);
        // Critical value at alpha = 0.01: 1.628 / sqrt(n).
        assert!(d < 1.628 / n.sqrt(), "KS statistic {d} too large");
        // And it rejects a wrong rate.
        let mut gaps2: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(ks_exp(&mut gaps2, rate * 1.1) > 1.628 / n.sqrt());
    }

    #[test]
    fn same_seed_same_schedule() {
        let p = Profile::Poisson { rate: 5.0 };
        let a: Vec<f64> = Arrivals::new(&p, 7, 0.0).unwrap().take(100).collect();
        let b: Vec<f64> = Arrivals::new(&p, 7, 0.0).unwrap().take(100).collect();
        let c: Vec<f64> = Arrivals::new(&p, 8, 0.0).unwrap().take(100).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn constant_is_evenly_spaced() {
        let a: Vec<f64> = Arrivals::new(&Profile::Constant { rate: 4.0 }, 0, 0.0)
            .unwrap()
            .take(5)
            .collect();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn gamma_mean_matches_rate() {
        let p = Profile::Gamma {
            rate: 10.0,
            burstiness: 0.5,
        };
        let a: Vec<f64> = Arrivals::new(&p, 1, 0.0).unwrap().take(50_001).collect();
        let mean = a[50_000] / 50_000.0;
        assert!((mean - 0.1).abs() < 0.005, "mean gap {mean}");
        // Burstier than Poisson: coefficient of variation 1/sqrt(shape) = 1.41.
        let gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((cv - 2f64.sqrt()).abs() < 0.1, "cv {cv}");
    }

    #[test]
    fn ramp_up_is_linear_in_rate() {
        // Constant 100/s with a 10 s ramp: arrivals in [0, 10) number R*T/2 = 500, and the
        // rate in the second half of the ramp is three times the first half's.
        let a: Vec<f64> = Arrivals::new(&Profile::Constant { rate: 100.0 }, 0, 10.0)
            .unwrap()
            .take_while(|t| *t < 20.0)
            .collect();
        let in_ramp = a.iter().filter(|t| **t < 10.0).count();
        assert!((in_ramp as i64 - 500).abs() <= 1, "{in_ramp}");
        let first = a.iter().filter(|t| **t < 5.0).count() as f64;
        let second = a.iter().filter(|t| **t >= 5.0 && **t < 10.0).count() as f64;
        assert!((second / first - 3.0).abs() < 0.05);
        let after = a.iter().filter(|t| **t >= 10.0).count();
        assert!((after as i64 - 1000).abs() <= 1);
    }
}
