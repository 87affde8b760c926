//! Histogram math on cumulative buckets, as Prometheus does it.

use serde::Serialize;

/// A cumulative histogram: `(upper bound, cumulative count)` sorted by bound, the last bound
/// `+Inf` when the exposition had one; `_sum` and `_count`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// Where a quantile estimate stands relative to the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantileKind {
    /// Interpolated inside a finite bucket with a finite lower bound.
    Estimate,
    /// In the first bucket: the true quantile is at most the first bound (the value shown is
    /// interpolated from 0 as Prometheus does).
    AtMost,
    /// In the `+Inf` bucket: the true quantile is at least this value (the last finite bound).
    AtLeast,
}

/// A quantile estimated from buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantile {
    pub q: f64,
    /// What Prometheus' `histogram_quantile` returns.
    pub value: f64,
    pub kind: QuantileKind,
    /// The bound the truth is known to respect: the first bucket's upper bound (`at_most`),
    /// the last finite bound (`at_least`), or `value` itself (`estimate`).
    pub bound: f64,
}

impl Quantile {
    /// `0.041`, `<= 0.3` (first bucket: its bound), `>= 80` (+Inf bucket) style rendering with the given formatter for the number.
    pub fn display_with(&self, f: impl Fn(f64) -> String) -> String {
        match self.kind {
            QuantileKind::Estimate => f(self.value),
            QuantileKind::AtMost => format!("<= {}", f(self.bound)),
            QuantileKind::AtLeast => format!(">= {}", f(self.bound)),
        }
    }
}

impl Histogram {
    /// Builds from `(le, cumulative count)` pairs in any order; pairs with the same bound are
    /// added (series of several engines or instances merged).
    pub fn from_buckets(mut pairs: Vec<(f64, f64)>, sum: f64, count: f64) -> Histogram {
        pairs.retain(|(le, _)| !le.is_nan());
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut buckets: Vec<(f64, f64)> = Vec::with_capacity(pairs.len());
        for (le, c) in pairs {
            match buckets.last_mut() {
                Some(last) if last.0 == le => last.1 += c,
                _ => buckets.push((le, c)),
            }
        }
        Histogram {
            buckets,
            sum,
            count,
        }
    }

    /// `_sum / _count`; `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// Adds another histogram's buckets, sum and count (same bounds are merged; differing bounds
    /// are kept, which is only meaningful when both have identical layouts).
    pub fn merge(&mut self, other: &Histogram) {
        let mut pairs = std::mem::take(&mut self.buckets);
        pairs.extend_from_slice(&other.buckets);
        let merged = Histogram::from_buckets(pairs, self.sum + other.sum, self.count + other.count);
        *self = merged;
    }

    /// The observation count from the `+Inf` bucket when present, else `_count`.
    pub fn observations(&self) -> f64 {
        match self.buckets.last() {
            Some(&(le, c)) if le == f64::INFINITY => c,
            _ => self.count,
        }
    }

    /// Prometheus' `histogram_quantile(q, ...)`: linear interpolation inside the bucket holding
    /// rank `q * count`; the lowest bucket interpolates from 0 when its bound is positive; a
    /// rank in the `+Inf` bucket returns the last finite bound. Returns `None` where Prometheus
    /// returns NaN (no `+Inf` bucket, fewer than two buckets, no observations) and for `q`
    /// outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let b = &self.buckets;
        if b.len() < 2 {
            return None;
        }
        if b[b.len() - 1].0 != f64::INFINITY {
            return None;
        }
        // Prometheus makes the counts monotonic before use (bucketQuantile's ensureMonotonic).
        let mut counts: Vec<f64> = Vec::with_capacity(b.len());
        let mut max = f64::NEG_INFINITY;
        for &(_, c) in b {
            max = if c > max { c } else { max };
            counts.push(max);
        }
        let observations = counts[counts.len() - 1];
        if observations.is_nan() || observations <= 0.0 {
            return None;
        }
        let mut rank = q * observations;
        // First bucket whose cumulative count >= rank.
        let idx = counts.partition_point(|&c| c < rank);
        let idx = idx.min(b.len() - 1);
        if idx == b.len() - 1 {
            return Some(Quantile {
                q,
                value: b[b.len() - 2].0,
                kind: QuantileKind::AtLeast,
                bound: b[b.len() - 2].0,
            });
        }
        if idx == 0 && b[0].0 <= 0.0 {
            return Some(Quantile {
                q,
                value: b[0].0,
                kind: QuantileKind::AtMost,
                bound: b[0].0,
            });
        }
        let mut start = 0.0;
        let end = b[idx].0;
        let mut count = counts[idx];
        if idx > 0 {
            start = b[idx - 1].0;
            count -= counts[idx - 1];
            rank -= counts[idx - 1];
        }
        let value = if count > 0.0 {
            start + (end - start) * (rank / count)
        } else {
            end
        };
        Some(Quantile {
            q,
            value,
            kind: if idx == 0 {
                QuantileKind::AtMost
            } else {
                QuantileKind::Estimate
            },
            bound: if idx == 0 { b[0].0 } else { value },
        })
    }

    /// Bucket-by-bucket difference `self - before` (a window between two scrapes). When any
    /// cumulative count went down, the histogram was reset (server restart) and `self` is
    /// returned as the delta.
    pub fn delta(&self, before: &Histogram) -> Histogram {
        let reset = self.count < before.count
            || self.buckets.iter().any(|&(le, c)| {
                before
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .is_some_and(|&(_, bc)| c < bc)
            });
        if reset {
            return self.clone();
        }
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let bc = before
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0.0, |b| b.1);
                (le, c - bc)
            })
            .collect();
        Histogram {
            buckets,
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }
}

/// Counter delta with resets handled: a counter that went down restarted, so its new value is
/// the increase.
pub fn counter_delta(before: f64, after: f64) -> f64 {
    if after < before {
        after
    } else {
        after - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: &[(f64, f64)]) -> Histogram {
        let count = b.last().map_or(0.0, |x| x.1);
        Histogram::from_buckets(b.to_vec(), 0.0, count)
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        // 10 observations: 2 in (0,1], 6 in (1,2], 2 in (2,+Inf).
        let hist = h(&[(1.0, 2.0), (2.0, 8.0), (f64::INFINITY, 10.0)]);
        // rank 5 -> bucket (1,2]: 1 + (2-1) * (5-2)/6 = 1.5
        let q = hist.quantile(0.5).expect("defined");
        assert_eq!(q.value, 1.0 + (2.0 - 1.0) * ((5.0 - 2.0) / 6.0));
        assert_eq!(q.kind, QuantileKind::Estimate);
        // rank 1 -> first bucket, from 0: 0 + 1 * 1/2
        let q = hist.quantile(0.1).expect("defined");
        assert_eq!(q.value, 0.5);
        assert_eq!(q.kind, QuantileKind::AtMost);
        assert_eq!(q.bound, 1.0);
        assert_eq!(q.display_with(|v| format!("{v}")), "<= 1");
        // rank 9.5 -> +Inf bucket: last finite bound
        let q = hist.quantile(0.95).expect("defined");
        assert_eq!(q.value, 2.0);
        assert_eq!(q.kind, QuantileKind::AtLeast);
        // rank exactly 8 -> bucket (1,2] upper edge
        let q = hist.quantile(0.8).expect("defined");
        assert_eq!(q.value, 2.0);
    }

    #[test]
    fn quantile_edge_cases() {
        assert!(
            h(&[(1.0, 0.0), (f64::INFINITY, 0.0)])
                .quantile(0.5)
                .is_none()
        );
        assert!(
            h(&[(1.0, 3.0), (2.0, 3.0)]).quantile(0.5).is_none(),
            "no +Inf"
        );
        assert!(h(&[(f64::INFINITY, 3.0)]).quantile(0.5).is_none());
        let hist = h(&[(1.0, 2.0), (f64::INFINITY, 2.0)]);
        assert!(hist.quantile(1.5).is_none());
        assert!(hist.quantile(-0.1).is_none());
        // Non-positive first bound: the bound itself.
        let neg = h(&[(-1.0, 2.0), (0.0, 4.0), (f64::INFINITY, 4.0)]);
        let q = neg.quantile(0.25).expect("defined");
        assert_eq!((q.value, q.kind), (-1.0, QuantileKind::AtMost));
        // q = 0: first bucket with count >= 0 is the first one.
        let q = hist.quantile(0.0).expect("defined");
        assert_eq!(q.value, 0.0);
        // Non-monotonic counts are made monotonic.
        let bad = h(&[(1.0, 4.0), (2.0, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!(bad.quantile(0.5).expect("defined").value, 0.5);
    }

    #[test]
    fn delta_and_reset() {
        let a = Histogram::from_buckets(vec![(1.0, 2.0), (f64::INFINITY, 3.0)], 4.0, 3.0);
        let b = Histogram::from_buckets(vec![(1.0, 5.0), (f64::INFINITY, 9.0)], 10.0, 9.0);
        let d = b.delta(&a);
        assert_eq!(d.buckets, vec![(1.0, 3.0), (f64::INFINITY, 6.0)]);
        assert_eq!((d.sum, d.count), (6.0, 6.0));
        // Reset: after has fewer observations than before.
        let r = a.delta(&b);
        assert_eq!(r, a);
        assert_eq!(counter_delta(10.0, 25.0), 15.0);
        assert_eq!(counter_delta(10.0, 4.0), 4.0);
        assert_eq!(b.mean(), Some(10.0 / 9.0));
        assert_eq!(Histogram::default().mean(), None);
    }

    #[test]
    fn merge_adds_same_bounds() {
        let mut a = Histogram::from_buckets(vec![(1.0, 2.0), (f64::INFINITY, 3.0)], 4.0, 3.0);
        let b = Histogram::from_buckets(vec![(f64::INFINITY, 9.0), (1.0, 5.0)], 10.0, 9.0);
        a.merge(&b);
        assert_eq!(a.buckets, vec![(1.0, 7.0), (f64::INFINITY, 12.0)]);
        assert_eq!((a.sum, a.count), (14.0, 12.0));
    }
}
