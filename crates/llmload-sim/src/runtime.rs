//! Drives the virtual-time [`Sim`] in real time on its own OS thread: virtual time runs
//! `speedup` times faster than the wall clock; every event is released at its wall-clock time
//! (absolute deadlines, so lateness never accumulates). The HTTP handlers submit requests and
//! receive their deliveries through channels.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::sim::{Delivery, Sim, SimRequest};

enum Cmd {
    Submit(SimRequest, UnboundedSender<Delivery>),
    Abort(u64),
    Shutdown,
}

/// How closely the engine thread keeps its schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClockStats {
    /// Events released (wake-ups for a due event).
    pub wakeups: u64,
    /// Mean and maximum lateness of a wake-up against its wall-clock deadline, seconds.
    pub mean_late_s: f64,
    pub max_late_s: f64,
}

#[derive(Default)]
struct ClockAcc {
    n: u64,
    sum: f64,
    max: f64,
}

/// The engine thread and its shared state.
pub struct Runtime {
    tx: Mutex<Sender<Cmd>>,
    sim: Arc<Mutex<Sim>>,
    clock: Arc<Mutex<ClockAcc>>,
    start: Instant,
    speedup: f64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding the lock leaves consistent-enough data for metrics; keep serving
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runtime {
    pub fn start(sim: Sim, speedup: f64) -> Arc<Self> {
        let (tx, rx) = channel();
        let sim = Arc::new(Mutex::new(sim));
        let clock = Arc::new(Mutex::new(ClockAcc::default()));
        let start = Instant::now();
        let speedup = if speedup.is_finite() && speedup > 0.0 {
            speedup
        } else {
            1.0
        };
        let (s2, c2) = (sim.clone(), clock.clone());
        let thread = std::thread::Builder::new()
            .name("llmload-sim-engine".into())
            .spawn(move || engine_loop(rx, s2, c2, start, speedup))
            .ok();
        Arc::new(Runtime {
            tx: Mutex::new(tx),
            sim,
            clock,
            start,
            speedup,
            thread: Mutex::new(thread),
        })
    }

    /// Virtual seconds since start.
    pub fn virtual_now(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * self.speedup
    }

    pub fn speedup(&self) -> f64 {
        self.speedup
    }

    pub fn submit(&self, r: SimRequest, to: UnboundedSender<Delivery>) -> bool {
        lock(&self.tx).send(Cmd::Submit(r, to)).is_ok()
    }

    pub fn abort(&self, id: u64) {
        let _ = lock(&self.tx).send(Cmd::Abort(id));
    }

    /// Runs `f` on the simulator (metrics, gauges).
    pub fn with_sim<R>(&self, f: impl FnOnce(&Sim) -> R) -> R {
        f(&lock(&self.sim))
    }

    pub fn clock_stats(&self) -> ClockStats {
        let c = lock(&self.clock);
        ClockStats {
            wakeups: c.n,
            mean_late_s: if c.n == 0 { 0.0 } else { c.sum / c.n as f64 },
            max_late_s: c.max,
        }
    }

    pub fn shutdown(&self) {
        let _ = lock(&self.tx).send(Cmd::Shutdown);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn engine_loop(
    rx: Receiver<Cmd>,
    sim: Arc<Mutex<Sim>>,
    clock: Arc<Mutex<ClockAcc>>,
    start: Instant,
    speedup: f64,
) {
    let vnow = || start.elapsed().as_secs_f64() * speedup;
    let mut sinks: crate::engine::IdMap<u64, UnboundedSender<Delivery>> = Default::default();
    let mut buf: Vec<Delivery> = Vec::new();
    let mut merged: Vec<Delivery> = Vec::new();
    let mut index: crate::engine::IdMap<u64, usize> = Default::default();
    loop {
        let next = {
            let mut s = lock(&sim);
            let now = vnow();
            // lateness of the earliest due event: how far the step clock trails the wall clock
            if let Some(d) = s.next_event_time()
                && now >= d
            {
                let late = (now - d) / speedup;
                let mut c = lock(&clock);
                c.n += 1;
                c.sum += late;
                c.max = c.max.max(late);
            }
            s.advance_to(now);
            s.drain_deliveries(&mut buf);
            // one message per stream per release: when the thread runs behind, the events a
            // stream got in several steps leave as one (as vLLM's front end merges them)
            merged.clear();
            index.clear();
            for d in buf.drain(..) {
                match index.get(&d.id) {
                    Some(&i) => {
                        let m: &mut Delivery = &mut merged[i];
                        m.tokens += d.tokens;
                        m.completion_tokens = d.completion_tokens;
                        m.finish = d.finish;
                        m.t = d.t;
                    }
                    None => {
                        index.insert(d.id, merged.len());
                        merged.push(d);
                    }
                }
            }
            let mut gone = Vec::new();
            for d in merged.drain(..) {
                let done = d.finish.is_some();
                let id = d.id;
                if let Some(tx) = sinks.get(&id) {
                    if tx.send(d).is_err() {
                        gone.push(id);
                    } else if done {
                        sinks.remove(&id);
                    }
                }
            }
            for id in gone {
                sinks.remove(&id);
                s.abort(id);
            }
            s.next_event_time()
        };
        let timeout = match next {
            Some(t) => {
                let wall = start + Duration::from_secs_f64((t / speedup).max(0.0));
                wall.saturating_duration_since(Instant::now())
            }
            None => Duration::from_secs(3600),
        };
        let first = if timeout.is_zero() {
            match rx.try_recv() {
                Ok(c) => Some(c),
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv_timeout(timeout) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        if first.is_none() {
            continue;
        }
        let mut s = lock(&sim);
        s.advance_to(vnow());
        let mut cmd = first;
        while let Some(c) = cmd {
            match c {
                Cmd::Submit(r, tx) => {
                    sinks.insert(r.id, tx);
                    s.submit(r);
                }
                Cmd::Abort(id) => {
                    sinks.remove(&id);
                    s.abort(id);
                }
                Cmd::Shutdown => return,
            }
            cmd = rx.try_recv().ok();
        }
    }
}
