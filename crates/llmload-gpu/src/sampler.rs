//! The GPU sampler: reads a [`GpuSource`] every `interval` on a thread of its own (with its own
//! single-threaded tokio runtime), so that sampling never competes with the load generator's
//! runtime, and keeps per-GPU time series that [`GpuHandle::window`] summarises.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::model::GpuReading;
use crate::source::{GpuSource, GpuUnavailable};
use crate::window::{GpuWindow, Track};

/// Sampler settings.
#[derive(Debug, Clone, Copy)]
pub struct SamplerOptions {
    /// Time between reads (the first read is immediate).
    pub interval: Duration,
    /// Keep at most this many samples per GPU (oldest dropped); `None`: keep all (100 ms
    /// sampling holds ~36,000 samples, ~2 MiB, per GPU per hour).
    pub max_samples: Option<usize>,
}

#[derive(Default)]
struct State {
    source: String,
    tracks: Vec<Track>,
    reads_ok: u64,
    read_errors: u64,
    last_error: Option<String>,
    first_error: Option<String>,
    last_read_cost: Duration,
    total_read_cost: Duration,
}

/// Progress of the sampler, published after every read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplerProgress {
    pub reads_ok: u64,
    pub read_errors: u64,
    pub last_error: Option<String>,
    pub gpus: usize,
}

/// Starts samplers.
pub struct GpuSampler;

impl GpuSampler {
    /// Spawns a sampler reading `source` every `interval`; sample times are seconds since `epoch`.
    pub fn spawn(source: Box<dyn GpuSource>, interval: Duration, epoch: Instant) -> GpuHandle {
        Self::spawn_with(
            source,
            SamplerOptions {
                interval,
                max_samples: None,
            },
            epoch,
        )
    }

    /// [`GpuSampler::spawn`] with all options.
    pub fn spawn_with(
        mut source: Box<dyn GpuSource>,
        opts: SamplerOptions,
        epoch: Instant,
    ) -> GpuHandle {
        let interval = opts.interval.max(Duration::from_millis(1));
        let state = Arc::new(Mutex::new(State {
            source: source.describe(),
            ..Default::default()
        }));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (progress_tx, progress_rx) = watch::channel(SamplerProgress::default());
        let shared = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("llmload-gpu-sampler".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let mut s = lock(&shared);
                        let msg = format!("GPU sampler could not start its runtime: {e}");
                        s.first_error = Some(msg.clone());
                        s.last_error = Some(msg);
                        s.read_errors += 1;
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut ticker = tokio::time::interval(interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut stop_rx => break,
                            _ = ticker.tick() => {}
                        }
                        let t0 = Instant::now();
                        let result = tokio::select! {
                            biased;
                            _ = &mut stop_rx => break,
                            r = source.snapshot() => r,
                        };
                        let t1 = Instant::now();
                        let mid = t0 + (t1 - t0) / 2;
                        let t = secs_since(epoch, mid);
                        let describe = source.describe();
                        let progress = {
                            let mut s = lock(&shared);
                            s.source = describe;
                            s.last_read_cost = t1 - t0;
                            s.total_read_cost += t1 - t0;
                            match result {
                                Ok(readings) => {
                                    s.reads_ok += 1;
                                    record(&mut s.tracks, t, &readings, opts.max_samples);
                                }
                                Err(e) => {
                                    s.read_errors += 1;
                                    let msg = e.to_string();
                                    if s.first_error.is_none() {
                                        s.first_error = Some(msg.clone());
                                    }
                                    s.last_error = Some(msg);
                                }
                            }
                            SamplerProgress {
                                reads_ok: s.reads_ok,
                                read_errors: s.read_errors,
                                last_error: s.last_error.clone(),
                                gpus: s.tracks.len(),
                            }
                        };
                        let _ = progress_tx.send(progress);
                    }
                });
            });
        let thread = match thread {
            Ok(h) => Some(h),
            Err(e) => {
                let mut s = lock(&state);
                let msg = format!("GPU sampler thread could not start: {e}");
                s.first_error = Some(msg.clone());
                s.last_error = Some(msg);
                None
            }
        };
        GpuHandle {
            state,
            stop: Some(stop_tx),
            thread,
            progress: progress_rx,
            interval,
            epoch,
        }
    }
}

fn secs_since(epoch: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(epoch) {
        Some(d) => d.as_secs_f64(),
        None => -(epoch.duration_since(t).as_secs_f64()),
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(tracks: &mut Vec<Track>, t: f64, readings: &[GpuReading], max: Option<usize>) {
    for r in readings {
        let key = r.key();
        let pos = tracks.iter().position(|tr| {
            if tr.uuid.is_empty() {
                format!("index:{}", tr.index) == key
            } else {
                tr.uuid == key
            }
        });
        let tr = match pos {
            Some(i) => &mut tracks[i],
            None => {
                tracks.push(Track::new(r));
                tracks.sort_by_key(|tr| tr.index);
                let i = tracks
                    .iter()
                    .position(|tr| tr.uuid == r.uuid && tr.index == r.index)
                    .unwrap_or(tracks.len() - 1);
                &mut tracks[i]
            }
        };
        tr.push(t, r);
        if let Some(max) = max {
            tr.trim_to(max.max(1));
        }
    }
}

/// A running sampler. Dropping it stops the sampler thread.
pub struct GpuHandle {
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    progress: watch::Receiver<SamplerProgress>,
    interval: Duration,
    epoch: Instant,
}

impl GpuHandle {
    /// Seconds since the epoch now (the clock of sample times).
    pub fn now_s(&self) -> f64 {
        secs_since(self.epoch, Instant::now())
    }

    /// Summary and series of `[start_s, end_s]` (seconds since the epoch). Can be called while
    /// the sampler runs (e.g. at the end of each benchmark of a sweep).
    pub fn window(&self, start_s: f64, end_s: f64) -> GpuWindow {
        let s = lock(&self.state);
        GpuWindow::from_tracks(
            s.source.clone(),
            self.interval.as_secs_f64(),
            &s.tracks,
            start_s,
            end_s,
            s.read_errors,
            s.last_error.clone(),
        )
    }

    /// Where readings come from (`nvml (driver ...)`, `http://... (dcgm-exporter)`, `fake`).
    pub fn source(&self) -> String {
        lock(&self.state).source.clone()
    }

    /// The newest reading of every GPU.
    pub fn latest(&self) -> Vec<GpuReading> {
        lock(&self.state)
            .tracks
            .iter()
            .filter_map(Track::latest)
            .collect()
    }

    /// Reads done so far, failures, and GPUs seen.
    pub fn progress(&self) -> SamplerProgress {
        self.progress.borrow().clone()
    }

    /// Total time spent inside the source's reads so far (cost of sampling, wall time).
    pub fn read_time(&self) -> Duration {
        lock(&self.state).total_read_cost
    }

    /// Waits for the first read. `Ok(n)`: `n` GPUs seen. `Err`: the first read failed or saw no
    /// GPU (the reason is the one to print once and put in results as `gpu_unavailable`); the
    /// sampler keeps trying in the background.
    pub async fn wait_first(&self, timeout: Duration) -> Result<usize, GpuUnavailable> {
        let mut rx = self.progress.clone();
        let wait = async {
            rx.wait_for(|p| p.reads_ok > 0 || p.read_errors > 0)
                .await
                .map(|p| p.clone())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(p)) if p.reads_ok > 0 && p.gpus > 0 => Ok(p.gpus),
            Ok(Ok(p)) if p.reads_ok > 0 => Err(GpuUnavailable::new(format!(
                "no GPU found: {} reports no GPU",
                lock(&self.state).source
            ))),
            Ok(Ok(p)) => Err(GpuUnavailable::new(
                p.last_error
                    .unwrap_or_else(|| "the first GPU read failed".to_string()),
            )),
            Ok(Err(_)) => Err(GpuUnavailable::new(
                lock(&self.state)
                    .first_error
                    .clone()
                    .unwrap_or_else(|| "the GPU sampler stopped".to_string()),
            )),
            Err(_) => Err(GpuUnavailable::new(format!(
                "no GPU reading within {timeout:?} from {}",
                lock(&self.state).source
            ))),
        }
    }

    /// Stops the sampler and waits for its thread (at most one read in flight is abandoned).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for GpuHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FakeSource, GpuError};

    fn fake_reading(i: u64) -> Vec<GpuReading> {
        vec![
            GpuReading {
                index: 1,
                uuid: "GPU-b".into(),
                name: "Fake".into(),
                util_pct: Some(50.0),
                mem_used_bytes: Some(1 << 30),
                mem_total_bytes: Some(80 << 30),
                power_w: Some(400.0),
                energy_j: Some(100.0 * i as f64),
                temp_c: Some(50.0),
                sm_clock_mhz: Some(1980.0),
            },
            GpuReading {
                index: 0,
                uuid: "GPU-a".into(),
                name: "Fake".into(),
                util_pct: Some(i as f64),
                mem_used_bytes: Some(i),
                mem_total_bytes: Some(80 << 30),
                power_w: Some(100.0),
                energy_j: None,
                temp_c: None,
                sm_clock_mhz: None,
            },
        ]
    }

    #[test]
    fn record_orders_tracks_by_index_and_keeps_max() {
        let mut tracks = Vec::new();
        for i in 0..5 {
            record(&mut tracks, i as f64, &fake_reading(i), Some(3));
        }
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].uuid, "GPU-a");
        assert_eq!(tracks[0].t, vec![2.0, 3.0, 4.0]);
        assert_eq!(
            tracks[1].cols[crate::window::ENERGY],
            vec![200.0, 300.0, 400.0]
        );
    }

    #[tokio::test]
    async fn sampler_collects_from_a_fake_and_stops() {
        let src = FakeSource::new(|i| Ok(fake_reading(i)));
        let calls = src.calls();
        let epoch = Instant::now();
        let mut h = GpuSampler::spawn(Box::new(src), Duration::from_millis(10), epoch);
        assert_eq!(h.wait_first(Duration::from_secs(10)).await, Ok(2));
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.stop();
        let n = *calls.lock().unwrap();
        // Generous bounds: the box is loaded.
        assert!(n >= 3, "only {n} reads in 200 ms at 10 ms");
        assert!(n <= 25, "{n} reads in 200 ms at 10 ms");
        let w = h.window(0.0, h.now_s());
        assert_eq!(w.gpus.len(), 2);
        assert_eq!(w.gpus[0].index, 0);
        let b = &w.gpus[1];
        assert_eq!(b.summary.samples as u64, n);
        // Energy from the counter: it grows 100 J per read, so the window holds 100 (n - 1).
        assert_eq!(b.summary.energy_source, Some("counter"));
        assert_eq!(b.summary.energy_j, Some(100.0 * (n - 1) as f64));
        assert!((b.summary.power_mean_w.unwrap() - 400.0).abs() < 1e-9);
        // Sample times increase and lie within [0, now].
        let ts = &b.series.t_s;
        assert!(ts.windows(2).all(|p| p[0] < p[1]));
        // The GPU without a counter: integrated power = 100 W * covered span.
        let a = &w.gpus[0];
        assert_eq!(a.summary.energy_source, Some("power_integral"));
        let span = a.summary.covered_s;
        assert!((a.summary.energy_j.unwrap() - 100.0 * span).abs() < 1e-6);
        assert_eq!(h.progress().read_errors, 0);
    }

    #[tokio::test]
    async fn failing_source_reports_its_reason_and_keeps_trying() {
        let src = FakeSource::new(|i| {
            if i < 2 {
                Err(GpuError::Other("exporter down".into()))
            } else {
                Ok(fake_reading(i))
            }
        });
        let mut h = GpuSampler::spawn(Box::new(src), Duration::from_millis(5), Instant::now());
        let e = h.wait_first(Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(e.reason, "exporter down");
        let mut rx = h.progress.clone();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| p.reads_ok > 0))
            .await
            .expect("recovers")
            .expect("sampler alive");
        h.stop();
        let w = h.window(f64::NEG_INFINITY, f64::INFINITY);
        assert_eq!(w.read_errors, 2);
        assert_eq!(w.gpus.len(), 2);
    }

    #[tokio::test]
    async fn empty_source_means_no_gpu() {
        let h = GpuSampler::spawn(
            Box::new(FakeSource::constant(vec![])),
            Duration::from_millis(5),
            Instant::now(),
        );
        let e = h.wait_first(Duration::from_secs(10)).await.unwrap_err();
        assert!(e.reason.starts_with("no GPU found"), "{}", e.reason);
    }
}
