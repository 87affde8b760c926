//! The two queues between the request tasks and the engine's own threads, built so that the
//! request path never wakes another thread per request:
//!
//! - [`SpecQueue`]: requests made ready by the producer thread ahead of dispatch. Taking one is
//!   a short uncontended lock; the producer is woken only when the queue has drained to half,
//!   and refills it to the top (one wake-up per half queue of requests, not per request).
//! - [`Outbox`]: finished requests on their way to the collector thread (aggregation and the
//!   records file), with the requests they were made from, which the collector frees. Handing
//!   one over is a push under a short lock; the collector wakes on its own every
//!   [`Outbox::TICK`] or when [`Outbox::WAKE_AT`] records are waiting.
//!
//! Before this, each request cost a channel message that woke the collector task and, every 16
//! requests, a futex wake-up of the producer: at 50,000 requests/s that was a measurable share
//! of the client's CPU (docs/performance/client.md).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use llmload_core::RequestSpec;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::Sent;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind (a queue), still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`SpecQueue::try_pop`] found.
#[derive(Debug)]
pub enum Pop<R> {
    Ready(R),
    /// Nothing ready yet; the producer is still at work.
    Empty,
    /// The queue is empty and nothing more will come in this benchmark (the workload is
    /// exhausted, or the benchmark is over).
    Closed,
}

struct SpecState<R> {
    items: VecDeque<R>,
    /// Image bytes held by the ready requests.
    image_bytes: u64,
    /// The workload is exhausted: nothing more will ever be pushed.
    closed: bool,
    /// The benchmark is over: the producer must return. Cleared by [`SpecQueue::reopen`] for
    /// the next benchmark, which takes the requests left ready (none are thrown away: a
    /// finite dataset loses no rows between the steps of a sweep).
    shutdown: bool,
    /// The producer sleeps until the queue drains to half.
    producer_waiting: bool,
    /// Closed-loop workers waiting on an empty queue.
    waiting: usize,
}

/// Requests made ready ahead of dispatch (many consumers, one producer). `R` is a request as
/// the transport prepared it (its body already rendered).
pub struct SpecQueue<R> {
    /// Requests kept ready at most, and the level at which the producer refills.
    cap: usize,
    low: usize,
    /// The image bytes a ready request holds.
    weigh: fn(&R) -> u64,
    state: Mutex<SpecState<R>>,
    /// The producer's wake-up.
    room: Condvar,
    /// Consumers' wake-up when the queue was empty.
    ready: Notify,
}

/// The image bytes a request carries.
pub fn image_bytes(spec: &RequestSpec) -> u64 {
    spec.images.iter().filter_map(|i| i.bytes).sum()
}

impl SpecQueue<RequestSpec> {
    /// A queue of plain requests, [`SpecQueue::CAP`] deep.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::with_depth(Self::CAP, image_bytes)
    }
}

impl<R> SpecQueue<R> {
    /// Requests kept ready by default: a futex wake-up of the producer costs about as much
    /// as a whole request at 60,000 requests/s on 2 cores, so it refills 512 at a time.
    pub const CAP: usize = 1024;
    /// Ready image bytes at most (a JPEG per request adds up): the producer stops at this
    /// and refills at half of it.
    pub const IMAGE_BYTES_CAP: u64 = 64 << 20;

    /// A queue of `cap` requests (at least 2). Workloads whose next requests depend on
    /// answers (multi-turn sessions) want a shallow one: a follow-up turn waits behind every
    /// request made ready before it.
    pub fn with_depth(cap: usize, weigh: fn(&R) -> u64) -> Self {
        let cap = cap.max(2);
        Self {
            cap,
            low: cap / 2,
            weigh,
            state: Mutex::new(SpecState {
                items: VecDeque::new(),
                image_bytes: 0,
                closed: false,
                shutdown: false,
                producer_waiting: false,
                waiting: 0,
            }),
            room: Condvar::new(),
            ready: Notify::new(),
        }
    }

    fn needs_refill(&self, s: &SpecState<R>) -> bool {
        s.items.len() <= self.low && s.image_bytes <= Self::IMAGE_BYTES_CAP / 2
    }

    /// Producer side: waits until the queue needs a refill (drained to half), then returns
    /// how many requests it may add; `None` once [`SpecQueue::shutdown`] was called.
    pub fn wait_for_room(&self) -> Option<usize> {
        let mut s = lock(&self.state);
        loop {
            if s.shutdown {
                return None;
            }
            if self.needs_refill(&s) {
                s.producer_waiting = false;
                return Some(self.cap - s.items.len());
            }
            s.producer_waiting = true;
            // The timeout is a safety net only: every path that matters notifies.
            s = self
                .room
                .wait_timeout(s, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Producer side: whether the ready requests already hold [`SpecQueue::IMAGE_BYTES_CAP`].
    pub fn full_of_images(&self) -> bool {
        lock(&self.state).image_bytes >= Self::IMAGE_BYTES_CAP
    }

    /// Producer side: adds one ready request, waking one waiting consumer if any.
    pub fn push(&self, spec: R) {
        self.insert(spec, false);
    }

    /// Gives back a request taken but not sent (the benchmark stopped in between): it goes
    /// first to the next benchmark.
    pub fn unpop(&self, spec: R) {
        self.insert(spec, true);
    }

    fn insert(&self, spec: R, front: bool) {
        let wake = {
            let mut s = lock(&self.state);
            s.image_bytes += (self.weigh)(&spec);
            if front {
                s.items.push_front(spec);
            } else {
                s.items.push_back(spec);
            }
            s.waiting > 0
        };
        if wake {
            self.ready.notify_one();
        }
    }

    /// Producer side: the workload is exhausted; consumers get [`Pop::Closed`] once the queue
    /// is empty.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_waiters();
    }

    /// Whether the producer found the workload exhausted.
    pub fn exhausted(&self) -> bool {
        lock(&self.state).closed
    }

    /// The benchmark is over: the producer returns from [`SpecQueue::wait_for_room`] and an
    /// empty queue reports closed. What is ready stays for the next benchmark.
    pub fn shutdown(&self) {
        lock(&self.state).shutdown = true;
        self.room.notify_all();
        self.ready.notify_waiters();
    }

    /// A new benchmark starts: the producer may fill again.
    pub fn reopen(&self) {
        let mut s = lock(&self.state);
        s.shutdown = false;
        s.producer_waiting = false;
    }

    /// Takes a ready request without waiting.
    pub fn try_pop(&self) -> Pop<R> {
        let (pop, wake_producer) = {
            let mut s = lock(&self.state);
            match s.items.pop_front() {
                Some(spec) => {
                    s.image_bytes -= (self.weigh)(&spec);
                    let wake = s.producer_waiting && self.needs_refill(&s);
                    if wake {
                        s.producer_waiting = false;
                    }
                    (Pop::Ready(spec), wake)
                }
                None if s.closed || s.shutdown => (Pop::Closed, false),
                None => (Pop::Empty, false),
            }
        };
        if wake_producer {
            self.room.notify_one();
        }
        pop
    }

    /// Takes the next request, waiting for the producer if none is ready; `None` when the
    /// queue is closed and empty or `stop` fired.
    pub async fn pop(&self, stop: &CancellationToken) -> Option<R> {
        loop {
            match self.try_pop() {
                Pop::Ready(spec) => return Some(spec),
                Pop::Closed => return None,
                Pop::Empty => {}
            }
            // Slow path: register as a waiter first, then look again: a push or a close in
            // between then reaches this waiter (each push wakes one registered waiter).
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            lock(&self.state).waiting += 1;
            let got = match self.try_pop() {
                Pop::Ready(spec) => Some(Some(spec)),
                Pop::Closed => Some(None),
                Pop::Empty => None,
            };
            let stopped = match got {
                Some(_) => false,
                None => {
                    tokio::select! {
                        _ = &mut notified => false,
                        _ = stop.cancelled() => true,
                    }
                }
            };
            lock(&self.state).waiting -= 1;
            if let Some(r) = got {
                return r;
            }
            if stopped {
                return None;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).items.len()
    }
}

struct OutState<R> {
    items: Vec<Sent>,
    /// Requests sent (their bodies and prompts), freed by the collector.
    spent: Vec<R>,
    dropped: u64,
    /// No more records will come.
    finished: bool,
    /// The collector sleeps on the condvar.
    sleeping: bool,
}

/// Finished requests on their way to the collector thread, with the requests they were made
/// from (`R`): those are freed there too. Freeing them where they were sent cost the timing
/// thread ~0.3 µs per request (the producer thread allocated them, and glibc frees a block
/// of another thread's arena under that arena's lock).
pub struct Outbox<R> {
    state: Mutex<OutState<R>>,
    cv: Condvar,
}

/// One hand-over from the outbox to the collector.
pub struct Batch<R> {
    pub records: Vec<Sent>,
    /// Sent requests to free (clear the vector).
    pub spent: Vec<R>,
    pub dropped: u64,
    /// Nothing more will come after this batch.
    pub last: bool,
}

impl<R> Default for Outbox<R> {
    fn default() -> Self {
        Self {
            state: Mutex::new(OutState {
                items: Vec::new(),
                spent: Vec::new(),
                dropped: 0,
                finished: false,
                sleeping: false,
            }),
            cv: Condvar::new(),
        }
    }
}

impl<R> Outbox<R> {
    /// The collector's longest sleep: how late a record can reach the records file (before
    /// its periodic flush) when requests are few.
    pub const TICK: Duration = Duration::from_millis(10);
    /// Records waiting at which a sleeping collector is woken early (bounds the memory held).
    pub const WAKE_AT: usize = 1024;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, sent: Sent, spent: Option<R>) {
        let wake = {
            let mut s = lock(&self.state);
            s.items.push(sent);
            if let Some(r) = spent {
                s.spent.push(r);
            }
            let wake = s.sleeping && s.items.len() >= Self::WAKE_AT;
            if wake {
                s.sleeping = false;
            }
            wake
        };
        if wake {
            self.cv.notify_one();
        }
    }

    /// A request dropped over the concurrency cap (`--drop-over-cap`).
    pub fn push_dropped(&self) {
        lock(&self.state).dropped += 1;
    }

    /// No more records will come: the collector takes what is left and ends.
    pub fn finish(&self) {
        lock(&self.state).finished = true;
        self.cv.notify_one();
    }

    /// Collector side: waits up to [`Outbox::TICK`] for records, then takes all of them.
    /// `spare` (emptied) become the next buffers, so steady state allocates nothing.
    pub fn take(&self, spare: (Vec<Sent>, Vec<R>)) -> Batch<R> {
        let mut s = lock(&self.state);
        if s.items.is_empty() && s.dropped == 0 && !s.finished {
            s.sleeping = true;
            s = self
                .cv
                .wait_timeout(s, Self::TICK)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            s.sleeping = false;
        }
        let records = std::mem::replace(&mut s.items, spare.0);
        let spent = std::mem::replace(&mut s.spent, spare.1);
        let dropped = std::mem::take(&mut s.dropped);
        Batch {
            records,
            spent,
            dropped,
            last: s.finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spec(i: u32) -> RequestSpec {
        RequestSpec::text(format!("p{i}"), Some(1), Some(i))
    }

    #[test]
    fn producer_refills_at_half_and_consumers_take_in_order() {
        let q = SpecQueue::with_depth(8, image_bytes);
        assert_eq!(q.wait_for_room(), Some(8));
        for i in 0..8 {
            q.push(spec(i));
        }
        for i in 0..4 {
            match q.try_pop() {
                Pop::Ready(s) => assert_eq!(s.max_tokens, Some(i)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(q.len(), 4);
        assert_eq!(q.wait_for_room(), Some(4));
        q.close();
        let mut n = 0;
        while let Pop::Ready(_) = q.try_pop() {
            n += 1;
        }
        assert_eq!(n, 4);
        assert!(matches!(q.try_pop(), Pop::Closed));
    }

    #[test]
    fn image_bytes_bound_the_queue() {
        let q = SpecQueue::new();
        let big = || {
            let mut s = spec(0);
            s.images.push(llmload_core::ImageMeta {
                width: None,
                height: None,
                bytes: Some(SpecQueue::<RequestSpec>::IMAGE_BYTES_CAP / 4),
                mime: None,
            });
            s
        };
        for _ in 0..4 {
            assert!(!q.full_of_images());
            q.push(big());
        }
        assert!(q.full_of_images());
        // Few requests, but too many bytes for a refill until half of them are gone.
        q.try_pop();
        assert!(!q.needs_refill(&lock(&q.state)));
        q.try_pop();
        assert!(q.needs_refill(&lock(&q.state)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_consumers_are_woken_by_each_push_and_by_close() {
        let q = Arc::new(SpecQueue::new());
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (q, stop) = (q.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = 0;
                while q.pop(&stop).await.is_some() {
                    got += 1;
                }
                got
            }));
        }
        let p = q.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..1000 {
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                p.push(spec(i));
            }
            p.close();
        })
        .await
        .unwrap();
        let mut total = 0;
        for t in tasks {
            total += tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a consumer was never woken")
                .unwrap();
        }
        assert_eq!(total, 1000);
    }

    #[tokio::test]
    async fn stop_releases_a_waiting_consumer_and_shutdown_the_producer() {
        let q = Arc::new(SpecQueue::new());
        let stop = CancellationToken::new();
        let (q2, s2) = (q.clone(), stop.clone());
        let t = tokio::spawn(async move { q2.pop(&s2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
        assert!(t.await.unwrap().is_none());
        for i in 0..SpecQueue::<RequestSpec>::CAP as u32 {
            q.push(spec(i));
        }
        let p = q.clone();
        let producer = std::thread::spawn(move || p.wait_for_room());
        std::thread::sleep(Duration::from_millis(20));
        q.shutdown();
        assert_eq!(producer.join().unwrap(), None);
        // What was ready stays for the next benchmark.
        q.reopen();
        assert_eq!(q.len(), SpecQueue::<RequestSpec>::CAP);
        assert!(matches!(q.try_pop(), Pop::Ready(_)));
    }

    #[test]
    fn outbox_hands_over_everything_then_says_last() {
        let o = Arc::new(Outbox::<u64>::new());
        let o2 = o.clone();
        let pusher = std::thread::spawn(move || {
            for i in 0..5000u64 {
                let mut s = Sent::default();
                s.record.id = i;
                o2.push(s, (i % 2 == 0).then_some(i));
                if i % 7 == 0 {
                    o2.push_dropped();
                }
            }
            o2.finish();
        });
        let (mut ids, mut spent, mut dropped) = (Vec::new(), Vec::new(), 0);
        let mut spare = (Vec::new(), Vec::new());
        loop {
            let mut b = o.take(spare);
            ids.extend(b.records.iter().map(|s| s.record.id));
            spent.append(&mut b.spent);
            dropped += b.dropped;
            if b.last {
                break;
            }
            b.records.clear();
            spare = (b.records, b.spent);
        }
        pusher.join().unwrap();
        assert_eq!(ids, (0..5000).collect::<Vec<_>>());
        assert_eq!(spent, (0..5000).step_by(2).collect::<Vec<_>>());
        assert_eq!(dropped, 715);
    }
}
