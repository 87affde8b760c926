//! GPU time series and what a benchmark window makes of them (`benchmark.gpu` in results.json).
//!
//! Definitions (also in docs/gpu.md):
//! - sample time `t_s`: seconds since the run's epoch (the same monotonic clock as request
//!   records), taken at the midpoint of the read;
//! - a window `[start_s, end_s]` holds the samples with `start_s <= t_s <= end_s`;
//! - means are **time-weighted**: the series is read as piecewise linear between samples and
//!   integrated (trapezoids) over the part of the window that samples cover
//!   (`covered_s = min(end_s, last t) - max(start_s, first t)`, using samples just outside the
//!   window to interpolate at its edges); with a single covering sample the mean is its value;
//! - `energy_j`: the energy counter's last sample inside the window minus its first, plus the
//!   integral of power over the parts of the window before the first and after the last of them
//!   (`energy_source: "counter"`); with fewer than two counter samples inside the window, or a
//!   counter that went backwards, the integral of power over the covered span
//!   (`"power_integral"`);
//! - maxima and peaks are over the samples inside the window.

use serde::Serialize;

use crate::model::GpuReading;

/// Column order of [`Track::cols`].
pub(crate) const UTIL: usize = 0;
pub(crate) const MEM: usize = 1;
pub(crate) const POWER: usize = 2;
pub(crate) const ENERGY: usize = 3;
pub(crate) const TEMP: usize = 4;
pub(crate) const SM: usize = 5;
pub(crate) const NCOLS: usize = 6;

/// The stored history of one GPU (NaN = missing).
#[derive(Debug, Clone, Default)]
pub struct Track {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub mem_total_bytes: Option<u64>,
    pub t: Vec<f64>,
    pub cols: [Vec<f64>; NCOLS],
}

fn nan_or(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

impl Track {
    pub fn new(r: &GpuReading) -> Self {
        Self {
            index: r.index,
            uuid: r.uuid.clone(),
            name: r.name.clone(),
            mem_total_bytes: r.mem_total_bytes,
            ..Default::default()
        }
    }

    pub fn push(&mut self, t: f64, r: &GpuReading) {
        if r.mem_total_bytes.is_some() {
            self.mem_total_bytes = r.mem_total_bytes;
        }
        if self.name.is_empty() {
            self.name.clone_from(&r.name);
        }
        self.t.push(t);
        self.cols[UTIL].push(nan_or(r.util_pct));
        self.cols[MEM].push(nan_or(r.mem_used_bytes.map(|b| b as f64)));
        self.cols[POWER].push(nan_or(r.power_w));
        self.cols[ENERGY].push(nan_or(r.energy_j));
        self.cols[TEMP].push(nan_or(r.temp_c));
        self.cols[SM].push(nan_or(r.sm_clock_mhz));
    }

    /// Drops the oldest samples so that at most `max` remain.
    pub fn trim_to(&mut self, max: usize) {
        if self.t.len() > max {
            let cut = self.t.len() - max;
            self.t.drain(..cut);
            for c in &mut self.cols {
                c.drain(..cut);
            }
        }
    }

    /// The last reading held; the energy counter is the last one read (it may be read less
    /// often than the rest).
    pub fn latest(&self) -> Option<GpuReading> {
        let i = self.t.len().checked_sub(1)?;
        let get = |c: usize| Some(self.cols[c][i]).filter(|v| !v.is_nan());
        let energy = self.cols[ENERGY]
            .iter()
            .rev()
            .copied()
            .find(|v| !v.is_nan());
        Some(GpuReading {
            index: self.index,
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            util_pct: get(UTIL),
            mem_used_bytes: get(MEM).map(|b| b as u64),
            mem_total_bytes: self.mem_total_bytes,
            power_w: get(POWER),
            energy_j: energy,
            temp_c: get(TEMP),
            sm_clock_mhz: get(SM),
        })
    }
}

/// The points `(t, v)` of a column that have a value.
fn points(t: &[f64], col: &[f64]) -> Vec<(f64, f64)> {
    t.iter()
        .zip(col)
        .filter(|(_, v)| !v.is_nan())
        .map(|(&t, &v)| (t, v))
        .collect()
}

/// Linear interpolation inside `[p[0].0, p[last].0]` (`p` sorted by time, not empty).
fn interp(p: &[(f64, f64)], t: f64) -> f64 {
    let i = p.partition_point(|&(ti, _)| ti < t);
    if i == 0 {
        return p[0].1;
    }
    if i >= p.len() {
        return p[p.len() - 1].1;
    }
    if p[i].0 == t {
        return p[i].1;
    }
    let (t0, v0) = p[i - 1];
    let (t1, v1) = p[i];
    if t1 <= t0 {
        v1
    } else {
        v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    }
}

/// The span of `[a, b]` covered by the points: `(lo, hi)`, or None when they do not reach it.
fn covered(p: &[(f64, f64)], a: f64, b: f64) -> Option<(f64, f64)> {
    let first = p.first()?.0;
    let last = p.last()?.0;
    let lo = a.max(first);
    let hi = b.min(last);
    (hi >= lo).then_some((lo, hi))
}

/// Integral of the piecewise-linear series over `[a, b]` clipped to the points' span, and the
/// length of that span.
pub(crate) fn integrate(p: &[(f64, f64)], a: f64, b: f64) -> Option<(f64, f64)> {
    let (lo, hi) = covered(p, a, b)?;
    if hi == lo {
        return Some((0.0, 0.0));
    }
    let mut sum = 0.0;
    let mut prev_t = lo;
    let mut prev_v = interp(p, lo);
    let start = p.partition_point(|&(t, _)| t <= lo);
    for &(t, v) in &p[start..] {
        if t >= hi {
            break;
        }
        sum += (t - prev_t) * (prev_v + v) / 2.0;
        prev_t = t;
        prev_v = v;
    }
    let v_hi = interp(p, hi);
    sum += (hi - prev_t) * (prev_v + v_hi) / 2.0;
    Some((sum, hi - lo))
}

/// Time-weighted mean over `[a, b]` (see the module docs).
pub(crate) fn time_mean(p: &[(f64, f64)], a: f64, b: f64) -> Option<f64> {
    let (lo, _) = covered(p, a, b)?;
    let (integral, span) = integrate(p, a, b)?;
    Some(if span > 0.0 {
        integral / span
    } else {
        interp(p, lo)
    })
}

/// Per-GPU summary of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GpuSummary {
    /// Samples inside the window.
    pub samples: usize,
    /// Seconds of the window covered by samples.
    pub covered_s: f64,
    pub util_mean_pct: Option<f64>,
    pub util_max_pct: Option<f64>,
    pub mem_used_mean_bytes: Option<f64>,
    pub mem_used_peak_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub power_mean_w: Option<f64>,
    pub power_max_w: Option<f64>,
    pub energy_j: Option<f64>,
    /// `counter` (NVML / DCGM energy counter) or `power_integral`.
    pub energy_source: Option<&'static str>,
    pub temp_mean_c: Option<f64>,
    pub temp_max_c: Option<f64>,
    pub sm_clock_mean_mhz: Option<f64>,
}

/// The samples of one GPU inside a window, as compact arrays (null = missing).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GpuSeries {
    pub t_s: Vec<f64>,
    pub util_pct: Vec<Option<f64>>,
    pub mem_used_bytes: Vec<Option<u64>>,
    pub power_w: Vec<Option<f64>>,
    pub energy_j: Vec<Option<f64>>,
    pub temp_c: Vec<Option<f64>>,
    pub sm_clock_mhz: Vec<Option<f64>>,
}

/// One GPU in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuWindowGpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub summary: GpuSummary,
    pub series: GpuSeries,
}

/// Sums over all GPUs of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GpuTotals {
    pub gpu_count: usize,
    /// Mean over GPUs of their time-weighted mean utilisation.
    pub util_mean_pct: Option<f64>,
    /// Sum over GPUs of their peak memory.
    pub mem_used_peak_bytes: Option<u64>,
    /// Sum over GPUs of their mean power.
    pub power_mean_w: Option<f64>,
    /// Sum over GPUs of their energy (null if any GPU has none).
    pub energy_j: Option<f64>,
}

/// Figures that combine GPU telemetry with the client's totals of the same window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuDerived {
    pub output_tokens: u64,
    pub requests: u64,
    pub duration_s: f64,
    /// `gpu_count * duration_s`.
    pub gpu_seconds: f64,
    /// `output_tokens / gpu_seconds`.
    pub output_tokens_per_gpu_s: Option<f64>,
    /// `output_tokens / totals.energy_j`.
    pub output_tokens_per_joule: Option<f64>,
    /// `totals.energy_j / requests`.
    pub joules_per_request: Option<f64>,
    /// `1000 * gpu_seconds / requests`.
    pub gpu_seconds_per_1k_requests: Option<f64>,
}

/// `benchmark.gpu` in results.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuWindow {
    /// Where readings came from: `nvml (driver ...)`, `http://.../metrics (dcgm-exporter)`, `fake`.
    pub source: String,
    pub interval_s: f64,
    pub start_s: f64,
    pub end_s: f64,
    /// Failed reads over the sampler's whole life, and the last failure.
    pub read_errors: u64,
    pub last_error: Option<String>,
    pub gpus: Vec<GpuWindowGpu>,
    pub totals: GpuTotals,
    /// Set by [`GpuWindow::set_client_totals`].
    pub derived: Option<GpuDerived>,
}

fn opt_round_t(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// Means, energies and derived figures are rounded to 6 decimals (micro-units), so that a constant series reads
/// back as that constant rather than as 99.99999999999999.
fn round6(v: Option<f64>) -> Option<f64> {
    v.map(|x| (x * 1e6).round() / 1e6)
}

fn max_of(vals: impl Iterator<Item = f64>) -> Option<f64> {
    vals.filter(|v| !v.is_nan())
        .fold(None, |m, v| Some(m.map_or(v, |m: f64| m.max(v))))
}

/// Summarises one track over `[start, end]`.
pub fn summarize(track: &Track, start: f64, end: f64) -> (GpuSummary, GpuSeries) {
    let lo = track.t.partition_point(|&t| t < start);
    let hi = track.t.partition_point(|&t| t <= end);
    let inside = lo..hi.max(lo);
    let col_in = |c: usize| &track.cols[c][inside.clone()];
    let pts = |c: usize| points(&track.t, &track.cols[c]);

    let all_t: Vec<(f64, f64)> = track.t.iter().map(|&t| (t, 0.0)).collect();
    let covered_s = covered(&all_t, start, end).map_or(0.0, |(l, h)| h - l);

    let util = pts(UTIL);
    let mem = pts(MEM);
    let power = pts(POWER);
    let temp = pts(TEMP);
    let sm = pts(SM);
    let energy = pts(ENERGY);

    // The counter's delta between its first and last samples inside the window, plus the
    // integral of power over the window's parts before the first and after the last of them
    // (the counter may be read less often than power: NVML's costs ~4 ms of CPU per read).
    let counter_energy = {
        let inner: Vec<(f64, f64)> = energy
            .iter()
            .copied()
            .filter(|&(t, _)| t >= start && t <= end)
            .collect();
        match (inner.first(), inner.last()) {
            (Some(&(c0, e0)), Some(&(c1, e1))) if inner.len() >= 2 && e1 >= e0 => {
                let before = integrate(&power, start, c0).map_or(0.0, |x| x.0);
                let after = integrate(&power, c1, end).map_or(0.0, |x| x.0);
                Some(e1 - e0 + before + after)
            }
            // Fewer than two counter samples in the window, or a counter reset.
            _ => None,
        }
    };
    let (energy_j, energy_source) = match counter_energy {
        Some(e) => (Some(e), Some("counter")),
        None => match integrate(&power, start, end) {
            Some((e, _)) => (Some(e), Some("power_integral")),
            None => (None, None),
        },
    };

    let energy_j = round6(energy_j);
    let summary = GpuSummary {
        samples: inside.len(),
        covered_s,
        util_mean_pct: round6(time_mean(&util, start, end)),
        util_max_pct: max_of(col_in(UTIL).iter().copied()),
        mem_used_mean_bytes: round6(time_mean(&mem, start, end)),
        mem_used_peak_bytes: max_of(col_in(MEM).iter().copied()).map(|b| b as u64),
        mem_total_bytes: track.mem_total_bytes,
        power_mean_w: round6(time_mean(&power, start, end)),
        power_max_w: max_of(col_in(POWER).iter().copied()),
        energy_j,
        energy_source,
        temp_mean_c: round6(time_mean(&temp, start, end)),
        temp_max_c: max_of(col_in(TEMP).iter().copied()),
        sm_clock_mean_mhz: round6(time_mean(&sm, start, end)),
    };
    let opt = |v: &f64| (!v.is_nan()).then_some(*v);
    let series = GpuSeries {
        t_s: track.t[inside.clone()]
            .iter()
            .map(|&t| opt_round_t(t))
            .collect(),
        util_pct: col_in(UTIL).iter().map(opt).collect(),
        mem_used_bytes: col_in(MEM)
            .iter()
            .map(|v| opt(v).map(|b| b as u64))
            .collect(),
        power_w: col_in(POWER).iter().map(opt).collect(),
        energy_j: col_in(ENERGY).iter().map(opt).collect(),
        temp_c: col_in(TEMP).iter().map(opt).collect(),
        sm_clock_mhz: col_in(SM).iter().map(opt).collect(),
    };
    (summary, series)
}

impl GpuWindow {
    /// Builds a window from tracks.
    pub fn from_tracks(
        source: String,
        interval_s: f64,
        tracks: &[Track],
        start_s: f64,
        end_s: f64,
        read_errors: u64,
        last_error: Option<String>,
    ) -> Self {
        let gpus: Vec<GpuWindowGpu> = tracks
            .iter()
            .map(|t| {
                let (summary, series) = summarize(t, start_s, end_s);
                GpuWindowGpu {
                    index: t.index,
                    uuid: t.uuid.clone(),
                    name: t.name.clone(),
                    summary,
                    series,
                }
            })
            .collect();
        let n = gpus.len();
        let all = |f: &dyn Fn(&GpuSummary) -> Option<f64>| -> Option<Vec<f64>> {
            if n == 0 {
                return None;
            }
            gpus.iter().map(|g| f(&g.summary)).collect()
        };
        let totals = GpuTotals {
            gpu_count: n,
            util_mean_pct: all(&|s| s.util_mean_pct).map(|v| v.iter().sum::<f64>() / n as f64),
            mem_used_peak_bytes: all(&|s| s.mem_used_peak_bytes.map(|b| b as f64))
                .map(|v| v.iter().sum::<f64>() as u64),
            power_mean_w: all(&|s| s.power_mean_w).map(|v| v.iter().sum()),
            energy_j: all(&|s| s.energy_j).map(|v| v.iter().sum()),
        };
        Self {
            source,
            interval_s,
            start_s,
            end_s,
            read_errors,
            last_error,
            gpus,
            totals,
            derived: None,
        }
    }

    /// Computes the derived figures from the client's totals over the same window
    /// (`output_tokens`, completed `requests`, `duration_s` = the benchmark's duration), stores
    /// them in `derived` and returns them.
    pub fn set_client_totals(
        &mut self,
        output_tokens: u64,
        requests: u64,
        duration_s: f64,
    ) -> &GpuDerived {
        let d = self.derive(output_tokens, requests, duration_s);
        self.derived.insert(d)
    }

    /// The derived figures, without storing them.
    pub fn derive(&self, output_tokens: u64, requests: u64, duration_s: f64) -> GpuDerived {
        let gpu_seconds = self.totals.gpu_count as f64 * duration_s.max(0.0);
        let pos = |x: f64| (x > 0.0 && x.is_finite()).then_some(x);
        let d = GpuDerived {
            output_tokens,
            requests,
            duration_s,
            gpu_seconds,
            output_tokens_per_gpu_s: pos(gpu_seconds).map(|g| output_tokens as f64 / g),
            output_tokens_per_joule: self
                .totals
                .energy_j
                .and_then(pos)
                .map(|e| output_tokens as f64 / e),
            joules_per_request: self
                .totals
                .energy_j
                .filter(|_| requests > 0)
                .map(|e| e / requests as f64),
            gpu_seconds_per_1k_requests: (requests > 0 && gpu_seconds > 0.0)
                .then(|| 1000.0 * gpu_seconds / requests as f64),
        };
        GpuDerived {
            output_tokens_per_gpu_s: round6(d.output_tokens_per_gpu_s),
            output_tokens_per_joule: round6(d.output_tokens_per_joule),
            joules_per_request: round6(d.joules_per_request),
            gpu_seconds_per_1k_requests: round6(d.gpu_seconds_per_1k_requests),
            ..d
        }
    }

    /// As a JSON value for `Benchmark::gpu`.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(util: f64, mem: u64, power: f64, energy: Option<f64>) -> GpuReading {
        GpuReading {
            index: 0,
            uuid: "GPU-a".into(),
            name: "Fake".into(),
            util_pct: Some(util),
            mem_used_bytes: Some(mem),
            mem_total_bytes: Some(1000),
            power_w: Some(power),
            energy_j: energy,
            temp_c: Some(40.0),
            sm_clock_mhz: Some(1000.0),
        }
    }

    #[test]
    fn integrate_and_interpolate_are_exact_on_a_ramp() {
        // v = 10 t on [0, 4], sampled at integers.
        let p: Vec<(f64, f64)> = (0..=4).map(|i| (i as f64, 10.0 * i as f64)).collect();
        let (i, span) = integrate(&p, 0.5, 3.5).unwrap();
        // integral of 10t from 0.5 to 3.5 = 5 (3.5^2 - 0.5^2) = 60
        assert!((i - 60.0).abs() < 1e-9, "{i}");
        assert_eq!(span, 3.0);
        assert!((time_mean(&p, 0.5, 3.5).unwrap() - 20.0).abs() < 1e-9);
        // Clipped to the sampled span.
        let (i, span) = integrate(&p, -10.0, 2.0).unwrap();
        assert!((i - 20.0).abs() < 1e-9);
        assert_eq!(span, 2.0);
        assert!(integrate(&p, 5.0, 6.0).is_none());
        // One point covering: mean is its value.
        assert_eq!(time_mean(&p, 4.0, 9.0), Some(40.0));
    }

    #[test]
    fn window_summary_exact_with_counter_and_power_integral() {
        let mut tr = Track::new(&reading(0.0, 0, 0.0, None));
        // t = 0..=10 s, util steps 0,10,...,100; power 100 W constant then 300 W from t=5;
        // energy counter 1000 J + 200 J/s.
        for i in 0..=10 {
            let t = i as f64;
            let power = if i < 5 { 100.0 } else { 300.0 };
            tr.push(
                t,
                &reading(10.0 * t, 100 + i as u64, power, Some(1000.0 + 200.0 * t)),
            );
        }
        let (s, series) = summarize(&tr, 2.0, 8.0);
        assert_eq!(s.samples, 7);
        assert_eq!(series.t_s, vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(s.covered_s, 6.0);
        assert!((s.util_mean_pct.unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(s.util_max_pct, Some(80.0));
        assert_eq!(s.mem_used_peak_bytes, Some(108));
        // power: 100 on [2,4], ramp 100->300 on [4,5], 300 on [5,8]: (200 + 200 + 900) / 6
        assert!((s.power_mean_w.unwrap() - 1300.0 / 6.0).abs() < 1e-6);
        assert_eq!(s.power_max_w, Some(300.0));
        assert_eq!(s.energy_source, Some("counter"));
        assert!((s.energy_j.unwrap() - 1200.0).abs() < 1e-9);

        // Without a counter: the power integral.
        let mut tr2 = tr.clone();
        tr2.cols[ENERGY].iter_mut().for_each(|v| *v = f64::NAN);
        let (s2, _) = summarize(&tr2, 2.0, 8.0);
        assert_eq!(s2.energy_source, Some("power_integral"));
        assert!((s2.energy_j.unwrap() - 1300.0).abs() < 1e-9);

        // Window edges between samples: counter interpolated at 2.5 and 7.5.
        let (s3, _) = summarize(&tr, 2.5, 7.5);
        assert!((s3.energy_j.unwrap() - 1000.0).abs() < 1e-9);
        assert_eq!(s3.samples, 5);
    }

    #[test]
    fn sparse_counter_plus_power_at_the_edges() {
        // Power 200 W every second on [0, 12]; the counter (200 J/s) read only at 0, 5 and 10.
        let mut tr = Track::new(&reading(0.0, 0, 0.0, None));
        for i in 0..=12 {
            let t = i as f64;
            let counter = (i % 5 == 0 && i <= 10).then_some(200.0 * t);
            tr.push(t, &reading(0.0, 0, 200.0, counter));
        }
        let (s, _) = summarize(&tr, 1.0, 12.0);
        assert_eq!(s.energy_source, Some("counter"));
        assert_eq!(s.energy_j, Some(2200.0));
        let (s, _) = summarize(&tr, 0.5, 3.5);
        assert_eq!(s.energy_j, Some(600.0));
    }

    #[test]
    fn counter_reset_falls_back_to_power() {
        let mut tr = Track::new(&reading(0.0, 0, 0.0, None));
        tr.push(0.0, &reading(0.0, 0, 50.0, Some(5000.0)));
        tr.push(1.0, &reading(0.0, 0, 50.0, Some(10.0)));
        let (s, _) = summarize(&tr, 0.0, 1.0);
        assert_eq!(s.energy_source, Some("power_integral"));
        assert_eq!(s.energy_j, Some(50.0));
    }

    #[test]
    fn derived_figures() {
        let mut tracks = Vec::new();
        for idx in 0..2u32 {
            let mut tr = Track::new(&reading(0.0, 0, 0.0, None));
            tr.index = idx;
            for i in 0..=10 {
                let t = i as f64;
                tr.push(t, &reading(50.0, 10, 250.0, Some(250.0 * t)));
            }
            tracks.push(tr);
        }
        let mut w = GpuWindow::from_tracks("fake".into(), 1.0, &tracks, 0.0, 10.0, 0, None);
        assert_eq!(w.totals.gpu_count, 2);
        assert_eq!(w.totals.energy_j, Some(5000.0));
        assert_eq!(w.totals.power_mean_w, Some(500.0));
        let d = w.set_client_totals(10_000, 200, 10.0).clone();
        assert_eq!(d.gpu_seconds, 20.0);
        assert_eq!(d.output_tokens_per_gpu_s, Some(500.0));
        assert_eq!(d.output_tokens_per_joule, Some(2.0));
        assert_eq!(d.joules_per_request, Some(25.0));
        assert_eq!(d.gpu_seconds_per_1k_requests, Some(100.0));
        let v = w.to_value();
        assert_eq!(v["derived"]["output_tokens_per_joule"], 2.0);
        assert_eq!(v["gpus"][0]["series"]["t_s"].as_array().unwrap().len(), 11);
        // Zero requests / zero duration: no division by zero.
        let d0 = w.derive(0, 0, 0.0);
        assert_eq!(d0.output_tokens_per_gpu_s, None);
        assert_eq!(d0.gpu_seconds_per_1k_requests, None);
    }
}
