//! Requests in flight over time, per step, derived from `requests.jsonl` (dispatch and end of
//! every request) and downsampled for drawing: the step is cut into at most `points` equal
//! bins and each bin gets the time-weighted mean and the maximum of the in-flight count.
//! Drawing data only: no statistic of the results is computed from it.

use std::io::{BufRead, BufReader};
use std::path::Path;

use llmload_core::Results;
use serde::Deserialize;

use crate::ReportError;
use crate::view::Series;

/// Bins per step chart.
pub const DEFAULT_POINTS: usize = 300;

/// In-flight series of one step.
#[derive(Debug, Clone, Default)]
pub struct StepSeries {
    /// Time-weighted mean in flight per bin (x: bin centre, seconds from the first dispatch).
    pub mean: Series,
    /// Maximum in flight per bin.
    pub max: Series,
    /// Requests of the step found in the records.
    pub requests: u64,
}

#[derive(Deserialize)]
struct Light {
    benchmark: usize,
    t_dispatch: f64,
    t_end: f64,
}

/// Reads `requests.jsonl` and builds one [`StepSeries`] per benchmark of `results`.
pub fn in_flight_from_jsonl(
    path: &Path,
    results: &Results,
    points: usize,
) -> Result<Vec<StepSeries>, ReportError> {
    let file = std::fs::File::open(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let n = results.benchmarks.len();
    let mut intervals: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n];
    let mut line = String::new();
    let mut lineno = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|source| ReportError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            break;
        }
        lineno += 1;
        let s = line.trim();
        if s.is_empty() {
            continue;
        }
        let r: Light = serde_json::from_str(s).map_err(|e| ReportError::Record {
            path: path.to_path_buf(),
            line: lineno,
            detail: e.to_string(),
        })?;
        // Records of steps the results do not list are ignored (a cut run).
        if let Some(v) = intervals.get_mut(r.benchmark)
            && r.t_dispatch.is_finite()
            && r.t_end.is_finite()
        {
            v.push((r.t_dispatch, r.t_end.max(r.t_dispatch)));
        }
    }
    Ok(intervals
        .into_iter()
        .map(|iv| in_flight(&iv, points))
        .collect())
}

/// Downsampled in-flight count of `[dispatch, end)` intervals.
pub fn in_flight(intervals: &[(f64, f64)], points: usize) -> StepSeries {
    let mut out = StepSeries {
        mean: Series {
            name: "in flight (mean)".into(),
            ..Default::default()
        },
        max: Series {
            name: "in flight (max)".into(),
            ..Default::default()
        },
        requests: intervals.len() as u64,
    };
    if intervals.is_empty() || points == 0 {
        return out;
    }
    let mut events: Vec<(f64, i32)> = Vec::with_capacity(intervals.len() * 2);
    for &(a, b) in intervals {
        events.push((a, 1));
        events.push((b, -1));
    }
    // Ends before starts at the same instant (back-to-back requests do not overlap).
    events.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let t0 = events[0].0;
    let t1 = events[events.len() - 1].0;
    let span = t1 - t0;
    if span <= 0.0 {
        out.mean.t.push(0.0);
        out.mean.v.push(intervals.len() as f64);
        out.max.t.push(0.0);
        out.max.v.push(intervals.len() as f64);
        return out;
    }
    let w = span / points as f64;
    let mut area = vec![0.0f64; points];
    let mut maxv = vec![0i64; points];
    let mut cur: i64 = 0;
    let mut last = t0;
    let bin_of = |t: f64| (((t - t0) / w) as usize).min(points - 1);
    for (t, d) in events {
        // Spread `cur` over [last, t) across the bins it covers.
        if t > last {
            let (mut b, eb) = (bin_of(last), bin_of(t));
            let mut s = last;
            while b < eb {
                let edge = t0 + (b + 1) as f64 * w;
                area[b] += cur as f64 * (edge - s);
                maxv[b] = maxv[b].max(cur);
                s = edge;
                b += 1;
            }
            if t > s {
                area[eb] += cur as f64 * (t - s);
                maxv[eb] = maxv[eb].max(cur);
            }
            last = t;
        }
        cur += i64::from(d);
        let b = bin_of(t);
        maxv[b] = maxv[b].max(cur);
    }
    for i in 0..points {
        let centre = (i as f64 + 0.5) * w;
        out.mean.t.push(centre);
        out.mean.v.push(area[i] / w);
        out.max.t.push(centre);
        out.max.v.push(maxv[i] as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_mean_and_max_per_bin() {
        // Two requests: [0, 2) and [1, 3); 3 bins of 1 s: in flight 1, 2, 1.
        let s = in_flight(&[(0.0, 2.0), (1.0, 3.0)], 3);
        assert_eq!(s.mean.t, vec![0.5, 1.5, 2.5]);
        for (a, b) in s.mean.v.iter().zip([1.0, 2.0, 1.0]) {
            assert!((a - b).abs() < 1e-9, "{:?}", s.mean.v);
        }
        assert_eq!(s.max.v, vec![1.0, 2.0, 1.0]);
    }

    #[test]
    fn time_weighted_within_a_bin() {
        // One bin of 4 s, a request for 1 s of it: mean 0.25, max 1.
        let s = in_flight(&[(0.0, 1.0), (3.99, 4.0)], 1);
        assert!((s.mean.v[0] - (1.0 + 0.01) / 4.0).abs() < 1e-9);
        assert_eq!(s.max.v[0], 1.0);
    }

    #[test]
    fn empty_and_instant() {
        assert!(in_flight(&[], 10).mean.v.is_empty());
        let s = in_flight(&[(1.0, 1.0)], 10);
        assert_eq!(s.mean.v, vec![1.0]);
    }
}
