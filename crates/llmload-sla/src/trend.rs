//! Robust trend tests for "keeps growing through the step".
//!
//! A series of `(t, value)` points is sorted by time and reduced to at most `bins`
//! equal-count bins (median time, median value each), which tames both outliers and the
//! short-range autocorrelation of queueing series. On the bins:
//! - the **Theil–Sen** slope (median of pairwise slopes) gives the size of the trend;
//! - the **Mann–Kendall** statistic (with the tie correction) gives its significance;
//! - the trend is *rising* when Mann–Kendall's z exceeds `z_crit` (one-sided; 2.326 is the
//!   1 % level), the rise over the series (`slope × span`) is at least `min_absolute_rise` and
//!   at least `min_relative_rise` × the median level, and the Theil–Sen slope of the later half
//!   of the bins is still positive (a trend that stopped — a ramp into a steady state — is not
//!   a growing backlog).

use serde::Serialize;

/// When a series counts as rising.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrendRule {
    pub bins: usize,
    pub z_crit: f64,
    pub min_relative_rise: f64,
    pub min_absolute_rise: f64,
    /// Fewer points than this: no verdict.
    pub min_points: usize,
}

impl TrendRule {
    /// For TTFT against dispatch time: +50 % of the median level and at least 50 ms.
    pub const TTFT: TrendRule = TrendRule {
        bins: 20,
        z_crit: 2.326,
        min_relative_rise: 0.5,
        min_absolute_rise: 0.05,
        min_points: 10,
    };
    /// For requests in flight (server `running` or the client's count): +25 % and at least 2.
    pub const CONCURRENCY: TrendRule = TrendRule {
        bins: 20,
        z_crit: 2.326,
        min_relative_rise: 0.25,
        min_absolute_rise: 2.0,
        min_points: 8,
    };
}

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    pub points: usize,
    pub bins: usize,
    /// Theil–Sen slope over the bins, value units per second.
    pub slope: f64,
    /// `slope × (last bin time − first bin time)`.
    pub rise: f64,
    /// Median of all values.
    pub level: f64,
    /// `rise / level` (infinite when the level is 0 and the rise positive).
    pub relative_rise: f64,
    /// Mann–Kendall z (continuity-corrected).
    pub z: f64,
    /// Theil–Sen slope over the later half of the bins.
    pub late_slope: f64,
    pub rising: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Equal-count bins of time-sorted points: (median t, median v) each.
pub fn bin(points: &[(f64, f64)], bins: usize) -> Vec<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = p.len();
    let k = bins.max(1).min(n);
    (0..k)
        .map(|i| {
            let chunk = &p[i * n / k..(i + 1) * n / k];
            let mut ts: Vec<f64> = chunk.iter().map(|x| x.0).collect();
            let mut vs: Vec<f64> = chunk.iter().map(|x| x.1).collect();
            (median(&mut ts), median(&mut vs))
        })
        .collect()
}

/// Theil–Sen slope: the median of the slopes of all pairs with distinct times.
pub fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            let dt = points[j].0 - points[i].0;
            if dt != 0.0 {
                slopes.push((points[j].1 - points[i].1) / dt);
            }
        }
    }
    if slopes.is_empty() {
        0.0
    } else {
        median(&mut slopes)
    }
}

/// Mann–Kendall z of values in time order (tie-corrected variance, continuity correction).
pub fn mann_kendall_z(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += match values[j].total_cmp(&values[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let nf = n as f64;
    let mut var = nf * (nf - 1.0) * (2.0 * nf + 5.0);
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        var -= t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    var /= 18.0;
    if var <= 0.0 {
        return 0.0;
    }
    match s.cmp(&0) {
        std::cmp::Ordering::Greater => (s as f64 - 1.0) / var.sqrt(),
        std::cmp::Ordering::Less => (s as f64 + 1.0) / var.sqrt(),
        std::cmp::Ordering::Equal => 0.0,
    }
}

/// Tests a series for a rising trend. `None` when there are fewer than `rule.min_points`.
pub fn analyze(points: &[(f64, f64)], rule: &TrendRule) -> Option<Trend> {
    let finite = points
        .iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .count();
    if finite < rule.min_points.max(3) {
        return None;
    }
    let b = bin(points, rule.bins);
    let slope = theil_sen(&b);
    let span = b.last().map_or(0.0, |x| x.0) - b.first().map_or(0.0, |x| x.0);
    let rise = slope * span;
    let mut all: Vec<f64> = points
        .iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .map(|x| x.1)
        .collect();
    let level = median(&mut all).abs();
    let relative_rise = if level > 0.0 {
        rise / level
    } else if rise > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let values: Vec<f64> = b.iter().map(|x| x.1).collect();
    let z = mann_kendall_z(&values);
    let late_slope = theil_sen(&b[b.len() / 2..]);
    let rising = z > rule.z_crit
        && rise >= rule.min_absolute_rise
        && relative_rise >= rule.min_relative_rise
        && late_slope > 0.0;
    Some(Trend {
        points: finite,
        bins: b.len(),
        slope,
        rise,
        level,
        relative_rise,
        z,
        late_slope,
        rising,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64) for test noise.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Exponential with mean `m`.
        pub(crate) fn exp(&mut self, m: f64) -> f64 {
            -m * (1.0 - self.next_f64()).ln()
        }
    }

    #[test]
    fn theil_sen_and_mann_kendall_basics() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        assert!((theil_sen(&line) - 2.0).abs() < 1e-12);
        let v: Vec<f64> = line.iter().map(|x| x.1).collect();
        // S = 45 for 10 strictly increasing values; var = 10·9·25/18 = 125.
        assert!((mann_kendall_z(&v) - 44.0 / 125f64.sqrt()).abs() < 1e-12);
        assert_eq!(mann_kendall_z(&[1.0, 1.0, 1.0, 1.0]), 0.0);
        let mut with_outlier = line.clone();
        with_outlier[3].1 = 1e6;
        assert!((theil_sen(&with_outlier) - 2.0).abs() < 0.3);
    }

    #[test]
    fn flat_noisy_series_never_rise() {
        // Heavy-tailed noise (exponential) around a flat level, with bursts: 200 seeds.
        for seed in 0..200 {
            let mut r = Rng(seed);
            let mut t = 0.0;
            let pts: Vec<(f64, f64)> = (0..1500)
                .map(|i| {
                    t += r.exp(0.02);
                    let burst = if (i / 50) % 7 == 3 { 0.3 } else { 0.0 };
                    (t, 0.2 + r.exp(0.1) + burst)
                })
                .collect();
            let tr = analyze(&pts, &TrendRule::TTFT).unwrap();
            assert!(!tr.rising, "seed {seed}: {tr:?}");
        }
    }

    #[test]
    fn clear_upward_trend_is_found() {
        for seed in 0..50 {
            let mut r = Rng(seed);
            let pts: Vec<(f64, f64)> = (0..600)
                .map(|i| {
                    let t = i as f64 * 0.05; // 30 s
                    (t, 0.1 + 0.08 * t + r.exp(0.15))
                })
                .collect();
            let tr = analyze(&pts, &TrendRule::TTFT).unwrap();
            assert!(tr.rising, "seed {seed}: {tr:?}");
            assert!((tr.slope - 0.08).abs() < 0.03, "{tr:?}");
        }
    }

    #[test]
    fn ramp_into_steady_state_is_not_rising() {
        // Rises during the first fifth, then flat with noise.
        let mut r = Rng(7);
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                let t = i as f64 * 0.03;
                let level = if t < 6.0 { 0.1 + 0.1 * t } else { 0.7 };
                (t, level + r.exp(0.05))
            })
            .collect();
        let tr = analyze(&pts, &TrendRule::TTFT).unwrap();
        assert!(!tr.rising, "{tr:?}");
    }

    #[test]
    fn small_or_tiny_trends_do_not_count() {
        assert!(analyze(&[(0.0, 1.0), (1.0, 2.0)], &TrendRule::TTFT).is_none());
        // Significant but tiny: +10 % of the level.
        let pts: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 1.0 + 0.0005 * i as f64))
            .collect();
        let tr = analyze(&pts, &TrendRule::TTFT).unwrap();
        assert!(tr.z > 3.0 && !tr.rising, "{tr:?}");
    }
}
