//! Exact summary statistics (DESIGN §2): percentiles by linear interpolation between closest
//! ranks, numpy's default (`method="linear"`), over every sample.

use serde::{Deserialize, Serialize};

/// `count, mean, stddev, min, p50, p90, p95, p99, p999, max` of a distribution.
/// `stddev` is the population standard deviation (numpy's default, `ddof=0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` exactly. NaN samples are ignored. Sorts the slice in place.
    pub fn from_samples(samples: &mut Vec<f64>) -> Option<Summary> {
        samples.retain(|v| !v.is_nan());
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(f64::total_cmp);
        Some(Self::from_sorted(samples))
    }

    /// Summarises samples already sorted ascending, without NaN. `None` when empty.
    pub fn from_sorted(sorted: &[f64]) -> Summary {
        let n = sorted.len();
        debug_assert!(n > 0);
        // Welford-free two-pass for accuracy.
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        Summary {
            count: n as u64,
            mean,
            stddev: var.sqrt(),
            min: sorted[0],
            p50: percentile(sorted, 50.0),
            p90: percentile(sorted, 90.0),
            p95: percentile(sorted, 95.0),
            p99: percentile(sorted, 99.0),
            p999: percentile(sorted, 99.9),
            max: sorted[n - 1],
        }
    }

    /// A named statistic: `count, mean, stddev, min, max, p50, p90, p95, p99, p999`, and
    /// also `median` and any `pNN` / `pNN.N` for which a field exists.
    pub fn get(&self, stat: &str) -> Option<f64> {
        Some(match stat {
            "count" => self.count as f64,
            "mean" | "avg" => self.mean,
            "stddev" | "std" => self.stddev,
            "min" => self.min,
            "max" => self.max,
            "p50" | "median" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "p999" | "p99.9" => self.p999,
            _ => return None,
        })
    }
}

/// The `q`-th percentile (0..=100) of ascending `sorted` data, by linear interpolation between
/// the closest ranks: rank `h = (n-1)·q/100`, value `x[⌊h⌋] + (h-⌊h⌋)(x[⌊h⌋+1]-x[⌊h⌋])`.
/// Returns NaN for empty input.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * (q / 100.0).clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = h - lo as f64;
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // numpy.percentile([1,2,3,4,5,6,7,8,9,10], [50,90,95,99,99.9])
        let mut v: Vec<f64> = (1..=10).map(|i| i as f64).collect();
        let s = Summary::from_samples(&mut v).unwrap();
        assert_eq!(s.p50, 5.5);
        assert!((s.p90 - 9.1).abs() < 1e-12);
        assert!((s.p95 - 9.55).abs() < 1e-12);
        assert!((s.p99 - 9.91).abs() < 1e-12);
        assert!((s.p999 - 9.991).abs() < 1e-12);
        assert_eq!(s.mean, 5.5);
        // numpy.std(range(1,11)) = 2.8722813232690143
        assert!((s.stddev - 2.872_281_323_269_014_3).abs() < 1e-12);
        assert_eq!((s.min, s.max, s.count), (1.0, 10.0, 10));
    }

    #[test]
    fn single_and_empty() {
        let mut v = vec![3.0];
        let s = Summary::from_samples(&mut v).unwrap();
        assert_eq!((s.p50, s.p999, s.stddev), (3.0, 3.0, 0.0));
        assert!(Summary::from_samples(&mut Vec::new()).is_none());
        let mut nan = vec![f64::NAN];
        assert!(Summary::from_samples(&mut nan).is_none());
    }

    #[test]
    fn unsorted_input() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        let s = Summary::from_samples(&mut v).unwrap();
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.p90, 4.6);
    }
}
