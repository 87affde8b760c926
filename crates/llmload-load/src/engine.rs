//! The dispatcher: runs one benchmark of a plan against a [`Transport`], on schedule, and
//! hands every finished request to the collector (aggregation and the records sink).
//!
//! Open-loop profiles are paced by a dedicated OS thread (sleep, then spin for the last
//! ~150 µs), which spawns each request onto the tokio runtime at its scheduled instant: the
//! schedule does not drift with runtime load, and how late a request really left is recorded
//! per request (`dispatch_delay`, split into client queue time under a cap and the generator's
//! own lag). Closed-loop profiles run one task per worker.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmload_core::results::{Benchmark, ProfileInfo};
use llmload_core::{Aggregator, ErrorClass, RequestRecord, RequestSpec, Workload};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handoff::{Outbox, Pop, SpecQueue, image_bytes};
use crate::plan::{BenchmarkPlan, ERROR_RATE_MIN_SAMPLE};
use crate::profile::{Arrivals, Profile};

/// Dispatch lag (p99) above which the results warn that the generator fell behind.
pub const LAG_WARN_S: f64 = 0.005;

/// What the transport measured for one request.
#[derive(Debug, Default)]
pub struct Sent {
    /// Stamps relative to the run epoch; the engine fills `id`, `benchmark`, `t_sched`,
    /// `client_queue_s`, `in_flight_at_dispatch` and `in_window`.
    pub record: RequestRecord,
    /// Inter-event gaps of the output-bearing events (pooled into ITL).
    pub gaps: Vec<f64>,
    /// The answer text, when the workload wants responses.
    pub answer: Option<String>,
    /// What the transport left for [`Transport::settle`] (sent with `settle_later`): until
    /// then the record has everything but its output-token count (`output_tokens`,
    /// `multi_token_events`), which the tokenizer has yet to make.
    pub pending: Option<Box<dyn std::any::Any + Send>>,
}

/// Sends one request and measures it. Implementations never fail: a failure is a measurement.
///
/// The engine is generic over it (no boxed future per request: the client's request future
/// is ~2.7 KB, and allocating and moving it for every request was measurable).
///
/// A request is prepared first, on the engine's producer thread (the client renders its JSON
/// body there), so that the thread that times requests only sends them.
pub trait Transport: Send + Sync + 'static {
    /// A request ready to send.
    type Ready: Send + Sync + 'static;

    fn prepare(&self, spec: RequestSpec) -> Self::Ready;

    /// The request a ready one was made from.
    fn spec(ready: &Self::Ready) -> &RequestSpec;

    /// With `settle_later`, the transport may leave work that needs no clock and can take long
    /// (the tokenizer's count of an answer without usage) in [`Sent::pending`], for
    /// [`Transport::settle`].
    fn send<'a>(
        &'a self,
        ready: &'a Self::Ready,
        epoch: Instant,
        cancel: &'a CancellationToken,
        settle_later: bool,
    ) -> impl Future<Output = Sent> + Send + 'a;

    /// Finishes a request sent with `settle_later` (the engine's collector thread calls it);
    /// nothing to do when [`Sent::pending`] is `None`.
    fn settle(&self, sent: &mut Sent);
}

/// Receives every finished request record, in completion order (requests.jsonl).
pub trait RecordSink: Send {
    fn write(&mut self, rec: &RequestRecord);
    fn flush(&mut self);
}

/// A records sink shared with the engine's collector thread.
pub type SharedSink = Arc<Mutex<dyn RecordSink>>;

/// A sink that keeps nothing.
pub struct NullSink;

impl NullSink {
    pub fn shared() -> SharedSink {
        Arc::new(Mutex::new(NullSink))
    }
}
impl RecordSink for NullSink {
    fn write(&mut self, _rec: &RequestRecord) {}
    fn flush(&mut self) {}
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub benchmark: AtomicU32,
    pub scheduled: AtomicU64,
    pub completed: AtomicU64,
    pub errored: AtomicU64,
    pub in_flight: AtomicU32,
    pub output_tokens: AtomicU64,
    /// Run-clock second at which the current benchmark started, in microseconds.
    pub bench_start_us: AtomicU64,
}

/// Runs benchmarks against one target with one workload.
pub struct Engine<T: Transport> {
    transport: Arc<T>,
    /// Requests made ready ahead of dispatch; kept across the benchmarks of a run.
    specs: Arc<SpecQueue<Box<T::Ready>>>,
    workload: Arc<Mutex<Box<dyn Workload>>>,
    /// The workload builds follow-ups from answers (multi-turn sessions).
    wants_answers: bool,
    epoch: Instant,
    next_id: AtomicU64,
    pub progress: Arc<Progress>,
    /// Fired by Ctrl-C / SIGTERM: stop scheduling and cancel in-flight requests.
    interrupt: CancellationToken,
}

/// How a benchmark ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub benchmark: Benchmark,
    /// Why it stopped (`max_requests`, `max_seconds`, `max_errors`, `max_error_rate`,
    /// `workload_exhausted`, `interrupted`).
    pub stopped_by: String,
}

impl<T: Transport> Engine<T> {
    pub fn new(
        transport: Arc<T>,
        workload: Box<dyn Workload>,
        epoch: Instant,
        interrupt: CancellationToken,
    ) -> Self {
        // A workload that builds follow-ups from answers (multi-turn sessions) gets a shallow
        // queue: a follow-up turn waits behind every request made ready before it.
        let wants_answers = workload.wants_responses();
        // Ready requests are boxed: a pointer moves through the queue and into the request
        // task, not the whole request (a few hundred bytes, moved several times).
        let weigh: fn(&Box<T::Ready>) -> u64 = |r| image_bytes(T::spec(r));
        let specs = Arc::new(SpecQueue::with_depth(
            if wants_answers {
                2
            } else {
                SpecQueue::<Box<T::Ready>>::CAP
            },
            weigh,
        ));
        Self {
            transport,
            specs,
            workload: Arc::new(Mutex::new(workload)),
            wants_answers,
            epoch,
            next_id: AtomicU64::new(0),
            progress: Arc::new(Progress::default()),
            interrupt,
        }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The workload's self-description for the results file.
    pub fn describe_workload(&self) -> serde_json::Value {
        self.workload
            .lock()
            .map(|w| w.describe())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Runs one benchmark to its stop condition. Every finished request goes to `sink`, from
    /// the engine's collector thread (it is locked for the whole benchmark).
    pub async fn run_benchmark(
        &self,
        index: usize,
        plan: &BenchmarkPlan,
        sink: SharedSink,
    ) -> Outcome {
        let bench_start = Instant::now();
        let bench_start_s = bench_start.duration_since(self.epoch).as_secs_f64();
        let p = &self.progress;
        p.benchmark.store(index as u32, Ordering::Relaxed);
        p.bench_start_us
            .store((bench_start_s * 1e6) as u64, Ordering::Relaxed);
        for c in [&p.scheduled, &p.completed, &p.errored, &p.output_tokens] {
            c.store(0, Ordering::Relaxed);
        }

        let stop_sched = self.interrupt.child_token();
        let cancel = self.interrupt.child_token();
        let specs = self.specs.clone();
        specs.reopen();
        let outbox = Arc::new(Outbox::new());
        let shared = Arc::new(Shared {
            transport: self.transport.clone(),
            epoch: self.epoch,
            bench_start,
            index,
            first_id: self.next_id.load(Ordering::Relaxed),
            issued: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            stop_sched: stop_sched.clone(),
            cancel: cancel.clone(),
            progress: self.progress.clone(),
            max_requests: plan.stop.max_requests,
            max_errors: plan.stop.max_errors,
            max_error_rate: plan.stop.max_error_rate,
            finished: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stopped_by: std::sync::OnceLock::new(),
            workload: self.wants_answers.then(|| self.workload.clone()),
            settle_later: !self.wants_answers,
            specs: specs.clone(),
            outbox: outbox.clone(),
        });

        // Producer: keeps requests ready, off the dispatch path, on its own thread (a JPEG
        // per request must not delay the runtime). It refills when half of them were taken.
        let producer = {
            let workload = self.workload.clone();
            let sh = shared.clone();
            tokio::task::spawn_blocking(move || {
                while let Some(room) = sh.specs.wait_for_room() {
                    for _ in 0..room {
                        if sh.specs.full_of_images() {
                            break;
                        }
                        if sh.stop_sched.is_cancelled() {
                            return;
                        }
                        let next = match workload.lock() {
                            Ok(mut w) => w.next_request(),
                            Err(_) => None,
                        };
                        let Some(spec) = next else {
                            sh.specs.close();
                            return;
                        };
                        sh.specs.push(Box::new(sh.transport.prepare(spec)));
                    }
                }
            })
        };

        // Collector: its own thread, fed in batches (aggregation and the records file stay off
        // the runtime that times the requests).
        let collector = {
            let outbox = outbox.clone();
            let mut agg = Aggregator::new(plan.slos.clone());
            let plan = plan.clone();
            let first_id = shared.first_id;
            let sink = sink.clone();
            let sh = shared.clone();
            tokio::task::spawn_blocking(move || {
                let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
                let mut last_flush = Instant::now();
                let mut spare = (Vec::new(), Vec::new());
                loop {
                    let mut batch = outbox.take(spare);
                    for _ in 0..batch.dropped {
                        agg.push_dropped();
                    }
                    for sent in &mut batch.records {
                        if sent.pending.is_some() {
                            sh.transport.settle(sent);
                            if sent.record.error.is_none() {
                                sh.progress.output_tokens.fetch_add(
                                    sent.record.output_tokens.unwrap_or(0),
                                    Ordering::Relaxed,
                                );
                            }
                        }
                        let local = sent.record.id - first_id;
                        let t_rel = sent.record.t_dispatch - bench_start_s;
                        sent.record.in_window = plan.in_window(local, t_rel);
                        agg.push(&sent.record, &sent.gaps);
                        sink.write(&sent.record);
                    }
                    if batch.last {
                        break;
                    }
                    if last_flush.elapsed() > Duration::from_millis(200) {
                        sink.flush();
                        last_flush = Instant::now();
                    }
                    batch.records.clear();
                    batch.spent.clear();
                    spare = (batch.records, batch.spent);
                }
                sink.flush();
                agg
            })
        };

        // Stop at max_seconds: stop scheduling and cancel what is in flight.
        let deadline = plan.stop.max_seconds.map(|s| {
            let stop = stop_sched.clone();
            let cancel = cancel.clone();
            let at = tokio::time::Instant::from_std(bench_start + Duration::from_secs_f64(s));
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => { stop.cancel(); cancel.cancel(); true }
                    _ = stop.cancelled() => false,
                }
            })
        });

        // Dispatch.
        let tracker = TaskTracker::new();
        let dispatcher: tokio::task::JoinHandle<()> = match plan.profile.closed_loop_workers() {
            Some(workers) => {
                let mut handles = Vec::with_capacity(workers as usize);
                for w in 0..workers {
                    let sh = shared.clone();
                    let delay = if plan.ramp_up_s > 0.0 {
                        plan.ramp_up_s * f64::from(w) / f64::from(workers)
                    } else {
                        0.0
                    };
                    handles.push(tracker.spawn(closed_loop_worker(sh, delay)));
                }
                tokio::spawn(async move {
                    for h in handles {
                        let _ = h.await;
                    }
                })
            }
            None => {
                let sh = shared.clone();
                let handle = tokio::runtime::Handle::current();
                let tracker2 = tracker.clone();
                let cap = plan
                    .max_concurrency
                    .map(|c| Arc::new(Semaphore::new(c as usize)));
                let drop_over_cap = plan.drop_over_cap;
                let arrivals: Box<dyn Iterator<Item = f64> + Send> =
                    match Arrivals::new(&plan.profile, plan.seed, plan.ramp_up_s) {
                        Some(a) => Box::new(a),
                        // Trace: offsets come from the requests themselves.
                        None => Box::new(std::iter::repeat(f64::NAN)),
                    };
                let max_seconds = plan.stop.max_seconds;
                tokio::task::spawn_blocking(move || {
                    pacer(
                        sh,
                        arrivals,
                        handle,
                        tracker2,
                        cap,
                        drop_over_cap,
                        max_seconds,
                    )
                })
            }
        };

        let _ = dispatcher.await;
        tracker.close();
        tracker.wait().await;
        stop_sched.cancel();
        specs.shutdown();
        let _ = producer.await;
        outbox.finish();
        let agg = match collector.await {
            Ok(agg) => agg,
            // Only a panic in aggregation could get here; report an empty benchmark, not crash.
            Err(_) => Aggregator::new(plan.slos.clone()),
        };
        let stopped_by = shared.stopped_by.get().copied();
        let deadline_hit = match deadline {
            Some(h) => {
                h.abort();
                h.await.unwrap_or(false)
            }
            None => false,
        };
        let issued = shared.issued.load(Ordering::Relaxed);
        self.next_id.fetch_add(issued, Ordering::Relaxed);

        let stopped_by = if self.interrupt.is_cancelled() {
            "interrupted"
        } else if let Some(s) = stopped_by {
            s
        } else if deadline_hit {
            "max_seconds"
        } else if plan.stop.max_requests.is_some_and(|m| issued >= m) {
            "max_requests"
        } else if specs.exhausted() {
            "workload_exhausted"
        } else {
            "max_seconds"
        };

        let mut info = ProfileInfo {
            kind: plan.profile.kind().to_string(),
            rate: plan.profile.rate(),
            concurrency: plan
                .profile
                .closed_loop_workers()
                .map(u64::from)
                .or(plan.max_concurrency.map(u64::from)),
            seed: Some(plan.seed),
            ..Default::default()
        };
        if let Profile::Gamma { burstiness, .. } = plan.profile {
            info.extra.insert("burstiness".into(), json!(burstiness));
        }
        if plan.ramp_up_s > 0.0 {
            info.extra.insert("ramp_up_s".into(), json!(plan.ramp_up_s));
        }
        if plan.max_concurrency.is_some() && plan.profile.rate().is_some() {
            info.extra
                .insert("max_concurrency".into(), json!(plan.max_concurrency));
            info.extra
                .insert("drop_over_cap".into(), json!(plan.drop_over_cap));
        }
        let mut b = agg.finish(info);
        b.window
            .extra
            .insert("stopped_by".into(), json!(stopped_by));
        b.window
            .extra
            .insert("benchmark_start_s".into(), json!(bench_start_s));
        if let Some(w) = plan.warmup {
            b.window.extra.insert("warmup".into(), json!(w));
        }
        if let Some(c) = plan.cooldown {
            b.window.extra.insert("cooldown".into(), json!(c));
        }
        if let Some(r) = plan.profile.rate() {
            b.throughput
                .extra
                .insert("offered_requests_per_s".into(), json!(r));
        }
        if let Some(lag) = b.metrics.extra.get("generator_lag_s").copied().flatten()
            && lag.p99 > LAG_WARN_S
        {
            b.warnings.push(format!(
                "the load generator fell behind its schedule: dispatch lag p99 {:.1} ms (max {:.1} ms) is above {:.0} ms, so the load offered was lower and later than asked; use fewer/lighter requests or a faster machine",
                lag.p99 * 1e3,
                lag.max * 1e3,
                LAG_WARN_S * 1e3
            ));
        }
        Outcome {
            benchmark: b,
            stopped_by: stopped_by.to_string(),
        }
    }
}

struct Shared<T: Transport> {
    transport: Arc<T>,
    epoch: Instant,
    bench_start: Instant,
    index: usize,
    first_id: u64,
    issued: AtomicU64,
    in_flight: AtomicU32,
    stop_sched: CancellationToken,
    cancel: CancellationToken,
    progress: Arc<Progress>,
    max_requests: Option<u64>,
    max_errors: Option<u64>,
    max_error_rate: Option<f64>,
    /// Requests finished (completed or errored; not cancelled) and errored, for the stop
    /// conditions: counted where each request ends, so a stop is exact and immediate.
    finished: AtomicU64,
    errors: AtomicU64,
    stopped_by: std::sync::OnceLock<&'static str>,
    /// The workload, when it wants the answers (multi-turn conversations).
    workload: Option<Arc<Mutex<Box<dyn Workload>>>>,
    /// Output tokens the tokenizer must count are counted by the collector, not where the
    /// request ends (unless the workload reads the answers).
    settle_later: bool,
    specs: Arc<SpecQueue<Box<T::Ready>>>,
    outbox: Arc<Outbox<Box<T::Ready>>>,
}

impl<T: Transport> Shared<T> {
    /// Takes the next request number, or `None` once `max_requests` have been issued.
    fn ticket(&self) -> Option<u64> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.max_requests.is_some_and(|m| n >= m) {
            self.issued.fetch_sub(1, Ordering::Relaxed);
            self.stop_sched.cancel();
            return None;
        }
        self.progress.scheduled.fetch_add(1, Ordering::Relaxed);
        Some(n)
    }

    /// Where a request ends: live counters, the stop conditions, the workload's follow-up,
    /// then the hand-over to the collector of its record and of the request itself (`spent`,
    /// freed there).
    fn finish(&self, sent: Sent, spent: Option<Box<T::Ready>>) {
        let p = &self.progress;
        // An unsettled request's output tokens join the live count once settled (collector).
        let (finished, errors) = match sent.record.error {
            None => {
                p.completed.fetch_add(1, Ordering::Relaxed);
                p.output_tokens
                    .fetch_add(sent.record.output_tokens.unwrap_or(0), Ordering::Relaxed);
                (
                    self.finished.fetch_add(1, Ordering::Relaxed) + 1,
                    self.errors.load(Ordering::Relaxed),
                )
            }
            Some(ErrorClass::Cancelled) => (0, 0),
            Some(_) => {
                p.errored.fetch_add(1, Ordering::Relaxed);
                (
                    self.finished.fetch_add(1, Ordering::Relaxed) + 1,
                    self.errors.fetch_add(1, Ordering::Relaxed) + 1,
                )
            }
        };
        if finished > 0 && self.stopped_by.get().is_none() {
            let hit_errors = self.max_errors.is_some_and(|m| errors >= m);
            let hit_rate = self.max_error_rate.is_some_and(|f| {
                finished >= ERROR_RATE_MIN_SAMPLE && errors as f64 / finished as f64 > f
            });
            if hit_errors || hit_rate {
                let _ = self.stopped_by.set(if hit_errors {
                    "max_errors"
                } else {
                    "max_error_rate"
                });
                self.stop_sched.cancel();
                self.cancel.cancel();
            }
        }
        if let (Some(w), Some(answer)) = (&self.workload, &sent.answer)
            && sent.record.error.is_none()
            && let Ok(mut w) = w.lock()
        {
            w.on_response(sent.record.tag.as_deref(), answer);
        }
        self.outbox.push(sent, spent);
    }

    fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Sends one request and fills the engine's part of its record.
    async fn send_one(
        &self,
        n: u64,
        ready: &T::Ready,
        t_sched: Option<f64>,
        queue_s: Option<f64>,
    ) -> Sent {
        let spec = T::spec(ready);
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.progress.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut sent = self
            .transport
            .send(ready, self.epoch, &self.cancel, self.settle_later)
            .await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.progress.in_flight.fetch_sub(1, Ordering::Relaxed);
        let r = &mut sent.record;
        r.id = self.first_id + n;
        r.benchmark = self.index;
        r.t_sched = t_sched.unwrap_or(r.t_dispatch);
        r.client_queue_s = queue_s;
        r.in_flight_at_dispatch = in_flight;
        if r.tag.is_none() {
            r.tag = spec.tag.clone();
        }
        if r.image_count.is_none() && !spec.images.is_empty() {
            r.image_count = Some(spec.images.len() as u32);
            r.image_bytes = Some(spec.images.iter().filter_map(|i| i.bytes).sum());
        }
        if r.prompt_tokens_client.is_none() {
            r.prompt_tokens_client = spec.prompt_tokens;
        }
        if r.max_tokens.is_none() {
            r.max_tokens = spec.max_tokens;
        }
        if self.workload.is_none() {
            sent.answer = None;
        }
        sent
    }

    /// A request that never left: cancelled while queued, with zero duration.
    fn cancelled_in_queue(&self, n: u64, t_sched: f64) -> Sent {
        let now = self.now_s();
        Sent {
            record: RequestRecord {
                id: self.first_id + n,
                benchmark: self.index,
                t_sched,
                t_dispatch: now,
                t_end: now,
                client_queue_s: Some(now - t_sched),
                error: Some(ErrorClass::Cancelled),
                error_message: Some(
                    "cancelled while waiting for a slot under --max-concurrency".into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

async fn closed_loop_worker<T: Transport>(sh: Arc<Shared<T>>, start_delay_s: f64) {
    if start_delay_s > 0.0 {
        let at = sh.bench_start + Duration::from_secs_f64(start_delay_s);
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            _ = sh.stop_sched.cancelled() => return,
        }
    }
    loop {
        if sh.stop_sched.is_cancelled() {
            return;
        }
        let Some(spec) = sh.specs.pop(&sh.stop_sched).await else {
            return;
        };
        let Some(n) = sh.ticket() else {
            sh.specs.unpop(spec);
            return;
        };
        let sent = sh.send_one(n, &spec, None, None).await;
        sh.finish(sent, Some(spec));
    }
}

/// Sleeps until `target` precisely: OS sleep until ~150 µs before, then spin. Returns false
/// if `stop` fired first.
fn precise_sleep_until(target: Instant, stop: &CancellationToken) -> bool {
    const SPIN: Duration = Duration::from_micros(150);
    loop {
        if stop.is_cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= target {
            return true;
        }
        let rem = target - now;
        if rem > SPIN {
            std::thread::sleep((rem - SPIN).min(Duration::from_millis(20)));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pacer<T: Transport>(
    sh: Arc<Shared<T>>,
    arrivals: Box<dyn Iterator<Item = f64> + Send>,
    handle: tokio::runtime::Handle,
    tracker: TaskTracker,
    cap: Option<Arc<Semaphore>>,
    drop_over_cap: bool,
    max_seconds: Option<f64>,
) {
    for offset in arrivals {
        if sh.stop_sched.is_cancelled() {
            return;
        }
        // The next request, ready before its time comes.
        let spec = loop {
            match sh.specs.try_pop() {
                Pop::Ready(s) => break Some(s),
                Pop::Closed => break None,
                Pop::Empty => {
                    if sh.stop_sched.is_cancelled() {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        };
        let Some(spec) = spec else { return };
        let offset = if offset.is_nan() {
            T::spec(&spec).at_s.unwrap_or(0.0)
        } else {
            offset
        };
        if max_seconds.is_some_and(|m| offset >= m) {
            sh.specs.unpop(spec);
            return;
        }
        let target = sh.bench_start + Duration::from_secs_f64(offset.max(0.0));
        if !precise_sleep_until(target, &sh.stop_sched) {
            sh.specs.unpop(spec);
            return;
        }
        let Some(n) = sh.ticket() else {
            sh.specs.unpop(spec);
            return;
        };
        let t_sched = target.duration_since(sh.epoch).as_secs_f64();
        match &cap {
            None => {
                let sh = sh.clone();
                handle.spawn(tracker.track_future(async move {
                    let sent = sh.send_one(n, &spec, Some(t_sched), None).await;
                    sh.finish(sent, Some(spec));
                }));
            }
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(permit) => {
                    let sh = sh.clone();
                    handle.spawn(tracker.track_future(async move {
                        let sent = sh.send_one(n, &spec, Some(t_sched), Some(0.0)).await;
                        drop(permit);
                        sh.finish(sent, Some(spec));
                    }));
                }
                Err(_) if drop_over_cap => {
                    sh.outbox.push_dropped();
                }
                Err(_) => {
                    let sh = sh.clone();
                    let sem = sem.clone();
                    handle.spawn(tracker.track_future(async move {
                        let permit = tokio::select! {
                            p = sem.acquire_owned() => p.ok(),
                            _ = sh.cancel.cancelled() => None,
                        };
                        let sent = match permit {
                            Some(permit) => {
                                let queue = (sh.now_s() - t_sched).max(0.0);
                                let sent = sh.send_one(n, &spec, Some(t_sched), Some(queue)).await;
                                drop(permit);
                                sent
                            }
                            None => sh.cancelled_in_queue(n, t_sched),
                        };
                        sh.finish(sent, Some(spec));
                    }));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PhaseLen;
    use llmload_core::RequestSpec;
    use std::collections::HashSet;
    use std::thread::ThreadId;

    /// A transport whose requests take a fixed time, with a scripted failure pattern.
    struct Fake {
        ttft: Duration,
        total: Duration,
        fail_every: Option<u64>,
        n: AtomicU64,
        /// Requests sent with `settle_later`, and the threads that sent and settled them.
        unsettled: AtomicU64,
        sent_on: Mutex<HashSet<ThreadId>>,
        settled_on: Mutex<HashSet<ThreadId>>,
    }

    impl Fake {
        fn new(ttft_ms: u64, total_ms: u64) -> Arc<Fake> {
            Self::build(ttft_ms, total_ms, None)
        }

        /// Every `every`-th request fails with HTTP 500.
        fn failing(ttft_ms: u64, total_ms: u64, every: u64) -> Arc<Fake> {
            Self::build(ttft_ms, total_ms, Some(every))
        }

        fn build(ttft_ms: u64, total_ms: u64, fail_every: Option<u64>) -> Arc<Fake> {
            Arc::new(Fake {
                ttft: Duration::from_millis(ttft_ms),
                total: Duration::from_millis(total_ms),
                fail_every,
                n: AtomicU64::new(0),
                unsettled: AtomicU64::new(0),
                sent_on: Mutex::default(),
                settled_on: Mutex::default(),
            })
        }
    }

    impl Transport for Fake {
        type Ready = RequestSpec;

        fn prepare(&self, spec: RequestSpec) -> RequestSpec {
            spec
        }

        fn spec(ready: &RequestSpec) -> &RequestSpec {
            ready
        }

        async fn send(
            &self,
            spec: &RequestSpec,
            epoch: Instant,
            cancel: &CancellationToken,
            settle_later: bool,
        ) -> Sent {
            let mut sent = self.measure(spec, epoch, cancel).await;
            self.sent_on
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            if settle_later && sent.record.error.is_none() {
                // Leave the output-token count for `settle`, as the client does when the
                // tokenizer must count.
                self.unsettled.fetch_add(1, Ordering::Relaxed);
                let n = sent.record.output_tokens.take();
                sent.pending = Some(Box::new(n));
            }
            sent
        }

        fn settle(&self, sent: &mut Sent) {
            let Some(p) = sent.pending.take() else { return };
            self.settled_on
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            sent.record.output_tokens = *p.downcast::<Option<u64>>().unwrap();
        }
    }

    impl Fake {
        async fn measure(
            &self,
            _spec: &RequestSpec,
            epoch: Instant,
            cancel: &CancellationToken,
        ) -> Sent {
            let n = self.n.fetch_add(1, Ordering::Relaxed);
            let t0 = epoch.elapsed().as_secs_f64();
            let mut r = RequestRecord {
                t_dispatch: t0,
                ..Default::default()
            };
            if self.fail_every.is_some_and(|k| n % k == k - 1) {
                r.t_end = epoch.elapsed().as_secs_f64();
                r.status = Some(500);
                r.error = Some(ErrorClass::Http5xx);
                return Sent {
                    record: r,
                    ..Default::default()
                };
            }
            tokio::select! {
                _ = tokio::time::sleep(self.total) => {
                    r.t_first_token = Some(t0 + self.ttft.as_secs_f64());
                    r.t_first_output = r.t_first_token;
                    r.t_last_token = Some(epoch.elapsed().as_secs_f64());
                    r.t_end = epoch.elapsed().as_secs_f64();
                    r.output_tokens = Some(4);
                    r.prompt_tokens = Some(8);
                    r.output_events = 4;
                }
                _ = cancel.cancelled() => {
                    r.t_end = epoch.elapsed().as_secs_f64();
                    r.error = Some(ErrorClass::Cancelled);
                }
            }
            Sent {
                record: r,
                gaps: vec![0.001; 3],
                ..Default::default()
            }
        }
    }

    struct Fixed(u64);
    impl Workload for Fixed {
        fn next_request(&mut self) -> Option<RequestSpec> {
            if self.0 == 0 {
                return None;
            }
            self.0 -= 1;
            Some(RequestSpec::text("hello", Some(1), Some(4)))
        }
        fn describe(&self) -> serde_json::Value {
            json!({"kind": "fixed"})
        }
    }

    struct Collect(Vec<RequestRecord>);
    impl RecordSink for Collect {
        fn write(&mut self, rec: &RequestRecord) {
            self.0.push(rec.clone());
        }
        fn flush(&mut self) {}
    }

    fn engine(t: Arc<Fake>, n: u64) -> Engine<Fake> {
        Engine::new(
            t,
            Box::new(Fixed(n)),
            Instant::now(),
            CancellationToken::new(),
        )
    }

    fn accounting(b: &Benchmark) {
        let r = &b.requests;
        assert_eq!(
            r.completed + r.errored + r.cancelled + r.dropped + r.outside_window,
            r.scheduled,
            "{r:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_profile_accounts_for_every_request() {
        let profiles = [
            Profile::Synchronous,
            Profile::Concurrent { concurrency: 4 },
            Profile::Throughput {
                max_concurrency: 16,
            },
            Profile::Constant { rate: 200.0 },
            Profile::Poisson { rate: 200.0 },
            Profile::Gamma {
                rate: 200.0,
                burstiness: 0.5,
            },
        ];
        for p in profiles {
            let e = engine(Fake::new(1, 5), 1000);
            let mut plan = BenchmarkPlan::new(p.clone());
            plan.stop.max_requests = Some(30);
            let sink = Arc::new(Mutex::new(Collect(Vec::new())));
            let out = e.run_benchmark(0, &plan, sink.clone()).await;
            let b = &out.benchmark;
            accounting(b);
            assert_eq!(b.requests.scheduled, 30, "{p:?}");
            assert_eq!(b.requests.completed, 30, "{p:?}");
            assert_eq!(sink.lock().unwrap().0.len(), 30);
            assert_eq!(out.stopped_by, "max_requests");
            let mut ids: Vec<u64> = sink.lock().unwrap().0.iter().map(|r| r.id).collect();
            ids.sort_unstable();
            assert_eq!(ids, (0..30).collect::<Vec<_>>());
            assert_eq!(b.metrics.itl_s.unwrap().count, 90);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_seconds_cancels_in_flight() {
        let e = engine(Fake::new(10, 400), 1000);
        let mut plan = BenchmarkPlan::new(Profile::Concurrent { concurrency: 3 });
        plan.stop.max_seconds = Some(0.6);
        let out = e.run_benchmark(0, &plan, NullSink::shared()).await;
        let b = &out.benchmark;
        accounting(b);
        assert_eq!(out.stopped_by, "max_seconds");
        assert_eq!(b.requests.completed, 3);
        assert_eq!(b.requests.cancelled, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupt_keeps_what_was_measured() {
        let interrupt = CancellationToken::new();
        let e = Engine::new(
            Fake::new(1, 50),
            Box::new(Fixed(1000)),
            Instant::now(),
            interrupt.clone(),
        );
        let mut plan = BenchmarkPlan::new(Profile::Concurrent { concurrency: 2 });
        plan.stop.max_requests = Some(1000);
        let i2 = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(275)).await;
            i2.cancel();
        });
        let sink = Arc::new(Mutex::new(Collect(Vec::new())));
        let out = e.run_benchmark(0, &plan, sink.clone()).await;
        assert_eq!(out.stopped_by, "interrupted");
        let b = &out.benchmark;
        accounting(b);
        assert!(b.requests.completed >= 4, "{:?}", b.requests);
        assert_eq!(b.requests.cancelled, 2);
        assert_eq!(sink.lock().unwrap().0.len() as u64, b.requests.scheduled);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_stop_the_benchmark() {
        let t = Fake::failing(1, 2, 2);
        let e = engine(t.clone(), 1000);
        let mut plan = BenchmarkPlan::new(Profile::Synchronous);
        plan.stop.max_requests = Some(1000);
        plan.stop.max_errors = Some(5);
        let out = e.run_benchmark(0, &plan, NullSink::shared()).await;
        accounting(&out.benchmark);
        assert_eq!(out.stopped_by, "max_errors");
        assert_eq!(out.benchmark.requests.errored, 5);
        assert_eq!(out.benchmark.requests.errors_by_class["http_5xx"], 5);
        // Verdicts are known where requests end, so counts settled later change nothing here.
        assert!(t.unsettled.load(Ordering::Relaxed) > 0);
    }

    /// Output-token counts are settled by the collector, off the runtime's threads, and every
    /// count comes out as when settled at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_settle_on_the_collector() {
        let t = Fake::failing(1, 2, 2);
        let e = engine(t.clone(), 1000);
        let mut plan = BenchmarkPlan::new(Profile::Concurrent { concurrency: 4 });
        plan.stop.max_requests = Some(40);
        let sink = Arc::new(Mutex::new(Collect(Vec::new())));
        let out = e.run_benchmark(0, &plan, sink.clone()).await;
        let b = &out.benchmark;
        accounting(b);
        assert_eq!(t.unsettled.load(Ordering::Relaxed), 20);
        assert_eq!((b.requests.completed, b.requests.errored), (20, 20));
        assert_eq!(b.requests.errors_by_class["http_5xx"], 20);
        assert_eq!(b.tokens.output_total, 80);
        let p = &e.progress;
        assert_eq!(p.completed.load(Ordering::Relaxed), 20);
        assert_eq!(p.errored.load(Ordering::Relaxed), 20);
        assert_eq!(p.output_tokens.load(Ordering::Relaxed), 80);
        let recs = &sink.lock().unwrap().0;
        assert_eq!(recs.len(), 40);
        assert!(
            recs.iter()
                .all(|r| r.error.is_some() || r.output_tokens == Some(4))
        );
        let sent_on = t.sent_on.lock().unwrap();
        let settled_on = t.settled_on.lock().unwrap();
        assert!(!settled_on.is_empty());
        assert!(
            sent_on.is_disjoint(&settled_on),
            "{sent_on:?} {settled_on:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warmup_and_cooldown_are_outside_the_window() {
        let e = engine(Fake::new(1, 2), 1000);
        let mut plan = BenchmarkPlan::new(Profile::Synchronous);
        plan.stop.max_requests = Some(20);
        plan.warmup = Some(PhaseLen::Requests(5));
        plan.cooldown = Some(PhaseLen::Requests(3));
        let sink = Arc::new(Mutex::new(Collect(Vec::new())));
        let out = e.run_benchmark(0, &plan, sink.clone()).await;
        let b = &out.benchmark;
        accounting(b);
        assert_eq!(b.requests.completed, 12);
        assert_eq!(b.requests.outside_window, 8);
        let inside: Vec<u64> = sink
            .lock()
            .unwrap()
            .0
            .iter()
            .filter(|r| r.in_window)
            .map(|r| r.id)
            .collect();
        assert_eq!(inside, (5..17).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cap_queues_or_drops_over_the_cap() {
        // 200 req/s of 100 ms requests need ~20 in flight; a cap of 2 queues (or drops) the rest.
        for drop in [false, true] {
            let e = engine(Fake::new(1, 100), 1000);
            let mut plan = BenchmarkPlan::new(Profile::Constant { rate: 200.0 });
            plan.stop.max_requests = Some(20);
            plan.max_concurrency = Some(2);
            plan.drop_over_cap = drop;
            let out = e.run_benchmark(0, &plan, NullSink::shared()).await;
            let b = &out.benchmark;
            accounting(b);
            assert_eq!(b.concurrency.max, 2);
            if drop {
                assert!(b.requests.dropped >= 10, "{:?}", b.requests);
            } else {
                assert_eq!(b.requests.completed, 20);
                let q = b.metrics.extra["client_queue_s"].unwrap();
                // The last queued request waited for ~9 earlier pairs of 100 ms.
                assert!(q.max > 0.5, "{q:?}");
                // Queue time is not generator lag.
                assert!(b.metrics.extra["generator_lag_s"].unwrap().p50 < 0.05);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_dispatches_on_schedule() {
        let e = engine(Fake::new(1, 20), 1000);
        let mut plan = BenchmarkPlan::new(Profile::Constant { rate: 100.0 });
        plan.stop.max_requests = Some(50);
        let sink = Arc::new(Mutex::new(Collect(Vec::new())));
        let out = e.run_benchmark(0, &plan, sink.clone()).await;
        let mut recs = std::mem::take(&mut sink.lock().unwrap().0);
        recs.sort_by_key(|r| r.id);
        let t0 = recs[0].t_sched;
        for (i, r) in recs.iter().enumerate() {
            assert!((r.t_sched - t0 - i as f64 * 0.01).abs() < 1e-6);
            // Generous: a loaded 2-core CI box; the precise bar is a benchmark.
            assert!(
                r.dispatch_delay() < 0.05,
                "request {i} late by {}",
                r.dispatch_delay()
            );
        }
        let rate = out.benchmark.throughput.requests_per_s;
        assert!(rate > 70.0 && rate < 110.0, "{rate}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_made_ready_carry_over_to_the_next_benchmark() {
        // A finite workload of 25: benchmarks of 10, 10 and the last 5; nothing made ready
        // ahead of the first is thrown away at its end.
        for profile in [
            Profile::Concurrent { concurrency: 3 },
            Profile::Constant { rate: 500.0 },
        ] {
            let e = engine(Fake::new(1, 2), 25);
            let mut plan = BenchmarkPlan::new(profile.clone());
            plan.stop.max_requests = Some(10);
            let mut got = Vec::new();
            for i in 0..3 {
                let out = e.run_benchmark(i, &plan, NullSink::shared()).await;
                got.push((out.benchmark.requests.completed, out.stopped_by));
            }
            assert_eq!(
                got,
                [
                    (10, "max_requests".to_string()),
                    (10, "max_requests".to_string()),
                    (5, "workload_exhausted".to_string())
                ],
                "{profile:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exhausted_workload_ends_the_benchmark() {
        let e = engine(Fake::new(1, 2), 7);
        let mut plan = BenchmarkPlan::new(Profile::Concurrent { concurrency: 3 });
        plan.stop.max_requests = Some(100);
        let out = e.run_benchmark(0, &plan, NullSink::shared()).await;
        assert_eq!(out.stopped_by, "workload_exhausted");
        assert_eq!(out.benchmark.requests.completed, 7);
    }
}
