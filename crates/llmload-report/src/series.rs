//! Requests in flight over time, per step, derived from `requests.jsonl` (dispatch and end of
//! every request) and downsampled for drawing: the step is cut into at most `points` equal
//! bins and each bin gets the time-weighted mean and the maximum of the in-flight count.
//! Drawing data only: no statistic of the results is computed from it.

use std::io::Read;
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

/// Bytes read per block of `requests.jsonl`; each block is split across threads.
const BLOCK: usize = 32 << 20;

/// Reads `requests.jsonl` and builds one [`StepSeries`] per benchmark of `results`.
///
/// Only `benchmark`, `t_dispatch` and `t_end` are needed, so each line is scanned for those
/// three keys (the first occurrence of each: serde writes them before any free-text field);
/// a line the scan cannot read is parsed as JSON, and a line that is not JSON is an error
/// naming its number. Blocks are scanned on all cores.
pub fn in_flight_from_jsonl(
    path: &Path,
    results: &Results,
    points: usize,
) -> Result<Vec<StepSeries>, ReportError> {
    let mut file = std::fs::File::open(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let n = results.benchmarks.len();
    let mut intervals: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n];
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + 4096);
    let mut carry: Vec<u8> = Vec::new();
    let mut lines_before = 0usize;
    let mut eof = false;
    while !eof {
        buf.clear();
        buf.extend_from_slice(&carry);
        carry.clear();
        let mut chunk = vec![0u8; BLOCK];
        let mut filled = 0;
        while filled < BLOCK {
            let k = file
                .read(&mut chunk[filled..])
                .map_err(|source| ReportError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
            if k == 0 {
                eof = true;
                break;
            }
            filled += k;
        }
        buf.extend_from_slice(&chunk[..filled]);
        if !eof {
            // Keep the partial last line for the next block.
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => {
                    carry.extend_from_slice(&buf[i + 1..]);
                    buf.truncate(i + 1);
                }
                None => {
                    // One line longer than a block: read on.
                    carry.extend_from_slice(&buf);
                    continue;
                }
            }
        }
        let parts = split_lines(&buf, threads);
        let scanned: Vec<ScanResult> = std::thread::scope(|sc| {
            let handles: Vec<_> = parts
                .iter()
                .map(|part| sc.spawn(move || scan_block(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err((0, "scanner panicked".into())))
                })
                .collect()
        });
        let mut offset = lines_before;
        for (part, res) in parts.iter().zip(scanned) {
            match res {
                Ok(v) => {
                    for (b, d, e) in v {
                        // Records of steps the results do not list are ignored (a cut run).
                        if let Some(iv) = intervals.get_mut(b)
                            && d.is_finite()
                            && e.is_finite()
                        {
                            iv.push((d, e.max(d)));
                        }
                    }
                }
                Err((line, detail)) => {
                    return Err(ReportError::Record {
                        path: path.to_path_buf(),
                        line: offset + line,
                        detail,
                    });
                }
            }
            offset += memchr::memchr_iter(b'\n', part).count();
        }
        lines_before = offset;
    }
    Ok(intervals
        .into_iter()
        .map(|iv| in_flight(&iv, points))
        .collect())
}

/// Splits `buf` into about `n` parts at line boundaries.
fn split_lines(buf: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut start = 0;
    for k in 1..n {
        let target = buf.len() * k / n;
        if target <= start {
            continue;
        }
        match memchr::memchr(b'\n', &buf[target..]) {
            Some(i) => {
                let end = target + i + 1;
                parts.push(&buf[start..end]);
                start = end;
            }
            None => break,
        }
    }
    parts.push(&buf[start..]);
    parts
}

/// `(benchmark, t_dispatch, t_end)` of each line of a block, or the 1-based line number
/// within the block and the parse error of the first bad line.
type ScanResult = Result<Vec<(usize, f64, f64)>, (usize, String)>;

/// Key finders, built once per block.
struct Keys {
    benchmark: memchr::memmem::Finder<'static>,
    dispatch: memchr::memmem::Finder<'static>,
    end: memchr::memmem::Finder<'static>,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            benchmark: memchr::memmem::Finder::new(b"\"benchmark\":"),
            dispatch: memchr::memmem::Finder::new(b"\"t_dispatch\":"),
            end: memchr::memmem::Finder::new(b"\"t_end\":"),
        }
    }
}

/// Scans the lines of a block; an error carries the 1-based line number within the block.
fn scan_block(block: &[u8]) -> ScanResult {
    let keys = Keys::new();
    let mut out = Vec::with_capacity(block.len() / 300 + 1);
    let mut start = 0;
    let mut lineno = 0;
    let mut ends = memchr::memchr_iter(b'\n', block);
    loop {
        let end = ends.next();
        let line = &block[start..end.unwrap_or(block.len())];
        lineno += 1;
        let t = line.trim_ascii();
        if !t.is_empty() {
            match scan_line(&keys, t) {
                Some(v) => out.push(v),
                None => {
                    let r: Light =
                        serde_json::from_slice(t).map_err(|e| (lineno, e.to_string()))?;
                    out.push((r.benchmark, r.t_dispatch, r.t_end));
                }
            }
        }
        match end {
            Some(e) => start = e + 1,
            None => break,
        }
    }
    Ok(out)
}

fn scan_line(keys: &Keys, line: &[u8]) -> Option<(usize, f64, f64)> {
    if line.first() != Some(&b'{') || line.last() != Some(&b'}') {
        return None;
    }
    let b = number_after(line, &keys.benchmark)?;
    let d = number_after(line, &keys.dispatch)?;
    let e = number_after(line, &keys.end)?;
    let b: usize = b.parse().ok()?;
    Some((b, d.parse().ok()?, e.parse().ok()?))
}

/// The number token following the first match of `key` in `line`.
fn number_after<'a>(line: &'a [u8], key: &memchr::memmem::Finder<'_>) -> Option<&'a str> {
    let i = key.find(line)? + key.needle().len();
    let rest = &line[i..];
    let start = rest.iter().position(|c| !c.is_ascii_whitespace())?;
    let rest = &rest[start..];
    let end = rest
        .iter()
        .position(|c| matches!(c, b',' | b'}' | b' ' | b'\t' | b'\r'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()
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
    fn lines_are_scanned_and_odd_ones_parsed() {
        assert_eq!(
            scan_line(&Keys::new(), br#"{"id":1,"benchmark":2,"t_sched":0.5,"t_dispatch":1.5,"t_end":3e0,"in_window":true}"#),
            Some((2, 1.5, 3.0))
        );
        // Reordered keys and spaces still scan; a string value is not a number.
        assert_eq!(
            scan_line(
                &Keys::new(),
                br#"{"t_end": 4.0, "t_dispatch": 1.0, "benchmark": 0}"#
            ),
            Some((0, 1.0, 4.0))
        );
        assert_eq!(
            scan_line(
                &Keys::new(),
                br#"{"benchmark":"x","t_dispatch":1,"t_end":2}"#
            ),
            None
        );
        let block = b"{\"benchmark\":0,\"t_dispatch\":1,\"t_end\":2}\n\n{\"t_end\" :2, \"benchmark\":1, \"t_dispatch\":1}\n";
        assert_eq!(
            scan_block(block).unwrap(),
            vec![(0, 1.0, 2.0), (1, 1.0, 2.0)]
        );
        let err =
            scan_block(b"{\"benchmark\":0,\"t_dispatch\":1,\"t_end\":2}\nnope\n").unwrap_err();
        assert_eq!(err.0, 2);
    }

    #[test]
    fn split_lines_keeps_lines_whole() {
        let buf = b"aaaa\nbb\ncccccc\nd\n";
        for n in 1..6 {
            let parts = split_lines(buf, n);
            assert_eq!(parts.concat(), buf.to_vec());
            assert!(parts.iter().all(|p| p.is_empty() || p.ends_with(b"\n")));
        }
    }

    #[test]
    fn empty_and_instant() {
        assert!(in_flight(&[], 10).mean.v.is_empty());
        let s = in_flight(&[(1.0, 1.0)], 10);
        assert_eq!(s.mean.v, vec![1.0]);
    }
}
