//! Backends, the pool that picks one per request (model routing, least outstanding requests,
//! per-backend caps, a bounded wait queue) and health state (passive ejection, active probes).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::GatewayError;
use crate::config::{BackendConfig, BackendUrl, parse_backend_url};
use crate::metrics::{BackendLabel, Metrics};

/// Models a backend serves, learned from its `/v1/models`.
#[derive(Debug, Default)]
pub struct ModelList {
    pub ids: HashSet<String>,
    /// The model objects as the backend listed them (for the merged `/v1/models`).
    pub raw: Vec<serde_json::Value>,
}

pub struct Backend {
    pub idx: usize,
    pub label: String,
    pub url: BackendUrl,
    pub api_key: Option<http::HeaderValue>,
    pub max_in_flight: usize,
    in_flight: AtomicUsize,
    up: AtomicBool,
    failures: AtomicU32,
    health_failures: AtomicU32,
    /// `None` until the first successful `/v1/models`.
    models: RwLock<Option<Arc<ModelList>>>,
    in_flight_gauge: Gauge,
    up_gauge: Gauge,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("label", &self.label)
            .field("in_flight", &self.in_flight())
            .field("up", &self.is_up())
            .finish()
    }
}

impl Backend {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
    pub fn models(&self) -> Option<Arc<ModelList>> {
        self.models.read().clone()
    }
    pub fn set_models(&self, m: ModelList) {
        *self.models.write() = Some(Arc::new(m));
    }
    /// Whether this backend is known to serve `model` (`None` when its list is unknown).
    pub fn serves(&self, model: &str) -> Option<bool> {
        self.models.read().as_ref().map(|m| m.ids.contains(model))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// No backend (up or down) lists the model, and every up backend has a known list.
    UnknownModel,
    /// Backends exist for the model but none is in rotation.
    NoBackendUp,
    /// Every eligible backend is at its cap and the gateway queue is full.
    QueueFull,
    /// Waited `queue_timeout` without a free slot.
    QueueTimeout,
}

/// A request's hold on one backend slot; released on drop.
pub struct Slot {
    pub backend: Arc<Backend>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({})", self.backend.label)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.backend.in_flight_gauge.dec();
        if self.pool.queued.load(Ordering::SeqCst) > 0 {
            self.pool.notify.notify_waiters();
        }
    }
}

struct QueueGuard<'a>(&'a Pool);
impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.queue_depth.dec();
    }
}

pub struct Pool {
    pub backends: Vec<Arc<Backend>>,
    notify: Notify,
    queued: AtomicUsize,
    queue_size: usize,
    queue_timeout: Duration,
    eject_after: u32,
    rr: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("backends", &self.backends)
            .field("queued", &self.queued.load(Ordering::SeqCst))
            .finish()
    }
}

impl Pool {
    pub fn new(
        cfgs: &[BackendConfig],
        default_cap: usize,
        queue_size: usize,
        queue_timeout: Duration,
        eject_after: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GatewayError> {
        let mut backends = Vec::with_capacity(cfgs.len());
        let mut labels = HashSet::new();
        for (idx, c) in cfgs.iter().enumerate() {
            let url = parse_backend_url(&c.url)?;
            let label = c
                .name
                .clone()
                .unwrap_or_else(|| format!("{}{}", url.authority, url.prefix));
            if !labels.insert(label.clone()) {
                return Err(GatewayError::Config(format!(
                    "backend {label} is listed twice; give each backend a distinct URL or name"
                )));
            }
            let api_key = match &c.api_key {
                Some(k) => {
                    let mut v =
                        http::HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                            GatewayError::Config(format!(
                                "backend {label}: api_key holds characters not allowed in a header"
                            ))
                        })?;
                    v.set_sensitive(true);
                    Some(v)
                }
                None => None,
            };
            let bl = BackendLabel {
                backend: label.clone(),
            };
            let in_flight_gauge = metrics.in_flight.get_or_create_owned(&bl);
            let up_gauge = metrics.backend_up.get_or_create_owned(&bl);
            up_gauge.set(1);
            backends.push(Arc::new(Backend {
                idx,
                label,
                url,
                api_key,
                max_in_flight: c.max_in_flight.unwrap_or(default_cap),
                in_flight: AtomicUsize::new(0),
                up: AtomicBool::new(true),
                failures: AtomicU32::new(0),
                health_failures: AtomicU32::new(0),
                models: RwLock::new(None),
                in_flight_gauge,
                up_gauge,
            }));
        }
        Ok(Self {
            backends,
            notify: Notify::new(),
            queued: AtomicUsize::new(0),
            queue_size,
            queue_timeout,
            eject_after: eject_after.max(1),
            rr: AtomicUsize::new(0),
            metrics,
        })
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Takes a slot on the least loaded eligible backend, if one has room.
    pub fn try_acquire(
        self: &Arc<Self>,
        model: Option<&str>,
        exclude: Option<usize>,
    ) -> Result<Option<Slot>, AcquireError> {
        let n = self.backends.len();
        // Eligibility: up, not excluded, and serving the model (or with an unknown list when
        // no up backend is known to serve it).
        let mut known_serving_up = false;
        let mut any_serving = false;
        let mut unknown_up = false;
        if let Some(m) = model {
            for b in &self.backends {
                match b.serves(m) {
                    Some(true) => {
                        any_serving = true;
                        if b.is_up() && Some(b.idx) != exclude {
                            known_serving_up = true;
                        }
                    }
                    Some(false) => {}
                    None => {
                        if b.is_up() && Some(b.idx) != exclude {
                            unknown_up = true;
                        }
                    }
                }
            }
        }
        let eligible = |b: &Backend| -> bool {
            if !b.is_up() || Some(b.idx) == exclude {
                return false;
            }
            match model {
                None => true,
                Some(m) => match b.serves(m) {
                    Some(s) => s,
                    None => !known_serving_up,
                },
            }
        };
        if model.is_some() && !known_serving_up && !unknown_up {
            let unknown_lists = self.backends.iter().any(|b| b.models.read().is_none());
            return Err(if any_serving || unknown_lists {
                AcquireError::NoBackendUp
            } else {
                AcquireError::UnknownModel
            });
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut saw_eligible = false;
        // A few rounds in case a compare-and-swap loses a race.
        for _ in 0..4 {
            let mut best: Option<(&Arc<Backend>, usize)> = None;
            for i in 0..n {
                let b = &self.backends[(start + i) % n];
                if !eligible(b) {
                    continue;
                }
                saw_eligible = true;
                let load = b.in_flight.load(Ordering::SeqCst);
                if load >= b.max_in_flight {
                    continue;
                }
                if best.is_none_or(|(_, l)| load < l) {
                    best = Some((b, load));
                }
            }
            let Some((b, load)) = best else { break };
            if b.in_flight
                .compare_exchange(load, load + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                b.in_flight_gauge.inc();
                return Ok(Some(Slot {
                    backend: b.clone(),
                    pool: self.clone(),
                }));
            }
        }
        if !saw_eligible {
            return Err(AcquireError::NoBackendUp);
        }
        Ok(None)
    }

    /// Takes a slot, waiting in the bounded gateway queue when every eligible backend is full.
    pub async fn acquire(
        self: &Arc<Self>,
        model: Option<&str>,
        exclude: Option<usize>,
    ) -> Result<Slot, AcquireError> {
        if let Some(s) = self.try_acquire(model, exclude)? {
            return Ok(s);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.queue_size {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(AcquireError::QueueFull);
        }
        self.metrics.queue_depth.inc();
        let _guard = QueueGuard(self);
        let deadline = Instant::now() + self.queue_timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.try_acquire(model, exclude)? {
                return Ok(s);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(AcquireError::QueueTimeout);
            }
        }
    }

    /// Wakes queued requests (a backend came back, or models changed).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    pub fn mark_down(&self, b: &Backend, why: &str) {
        if b.up.swap(false, Ordering::SeqCst) {
            b.up_gauge.set(0);
            eprintln!("llmload gateway: backend {} ejected: {why}", b.label);
        }
        // Queued requests that can only go to this backend must learn it is gone.
        self.wake();
    }

    pub fn mark_up(&self, b: &Backend) {
        b.failures.store(0, Ordering::SeqCst);
        b.health_failures.store(0, Ordering::SeqCst);
        if !b.up.swap(true, Ordering::SeqCst) {
            b.up_gauge.set(1);
            eprintln!("llmload gateway: backend {} back in rotation", b.label);
        }
        self.wake();
    }

    /// A request to `b` completed without a transport failure.
    pub fn record_success(&self, b: &Backend) {
        if b.failures.load(Ordering::Relaxed) != 0 {
            b.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed at the transport level. `definitive` failures (connection refused)
    /// eject at once; others after `eject_after_failures` in a row.
    pub fn record_failure(&self, b: &Backend, class: &str, definitive: bool) {
        let n = b.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if definitive || n >= self.eject_after {
            self.mark_down(b, &format!("{class} ({n} failure(s) in a row)"));
        }
    }

    /// Result of an active probe. Two failed probes in a row eject; one success restores.
    pub fn record_probe(&self, b: &Backend, ok: bool) {
        if ok {
            b.health_failures.store(0, Ordering::SeqCst);
            if !b.is_up() {
                self.mark_up(b);
            }
        } else {
            let n = b.health_failures.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 2 || !b.is_up() {
                self.mark_down(b, "health check failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(caps: &[usize], queue: usize) -> Arc<Pool> {
        let cfgs: Vec<BackendConfig> = caps
            .iter()
            .enumerate()
            .map(|(i, c)| BackendConfig {
                url: format!("http://127.0.0.1:{}", 10000 + i),
                name: None,
                api_key: None,
                max_in_flight: Some(*c),
            })
            .collect();
        Arc::new(
            Pool::new(
                &cfgs,
                8,
                queue,
                Duration::from_millis(200),
                3,
                Arc::new(Metrics::new()),
            )
            .unwrap(),
        )
    }

    fn models(ids: &[&str]) -> ModelList {
        ModelList {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            raw: vec![],
        }
    }

    #[test]
    fn least_outstanding_and_caps() {
        let p = pool(&[2, 2], 0);
        let a = p.try_acquire(None, None).unwrap().unwrap();
        let b = p.try_acquire(None, None).unwrap().unwrap();
        assert_ne!(a.backend.idx, b.backend.idx);
        let c = p.try_acquire(None, None).unwrap().unwrap();
        let d = p.try_acquire(None, None).unwrap().unwrap();
        assert_eq!(p.backends[0].in_flight(), 2);
        assert_eq!(p.backends[1].in_flight(), 2);
        assert!(p.try_acquire(None, None).unwrap().is_none());
        drop(c);
        assert!(p.try_acquire(None, None).unwrap().is_some());
        drop((a, b, d));
    }

    #[test]
    fn model_routing() {
        let p = pool(&[4, 4], 0);
        p.backends[0].set_models(models(&["a"]));
        p.backends[1].set_models(models(&["b"]));
        for _ in 0..5 {
            let s = p.try_acquire(Some("b"), None).unwrap().unwrap();
            assert_eq!(s.backend.idx, 1);
        }
        assert_eq!(
            p.try_acquire(Some("zzz"), None).unwrap_err(),
            AcquireError::UnknownModel
        );
        assert_eq!(
            p.try_acquire(Some("b"), Some(1)).unwrap_err(),
            AcquireError::NoBackendUp
        );
        p.mark_down(&p.backends[1], "test");
        assert_eq!(
            p.try_acquire(Some("b"), None).unwrap_err(),
            AcquireError::NoBackendUp
        );
        p.mark_up(&p.backends[1]);
        assert!(p.try_acquire(Some("b"), None).unwrap().is_some());
    }

    #[test]
    fn ejection_rules() {
        let p = pool(&[4], 0);
        let b = p.backends[0].clone();
        p.record_failure(&b, "timeout", false);
        p.record_failure(&b, "timeout", false);
        assert!(b.is_up());
        p.record_success(&b);
        p.record_failure(&b, "timeout", false);
        p.record_failure(&b, "timeout", false);
        assert!(b.is_up());
        p.record_failure(&b, "timeout", false);
        assert!(!b.is_up());
        p.record_probe(&b, true);
        assert!(b.is_up());
        p.record_failure(&b, "connect", true);
        assert!(!b.is_up());
    }

    #[tokio::test]
    async fn queue_bounds_and_wakeups() {
        let p = pool(&[1], 1);
        let s = p.acquire(None, None).await.unwrap();
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.acquire(None, None).await.map(|_| ()) });
        while p.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            p.acquire(None, None).await.unwrap_err(),
            AcquireError::QueueFull
        );
        drop(s);
        waiter.await.unwrap().unwrap();
        assert_eq!(p.queued(), 0);
        // Timeout while queued.
        let _s = p.acquire(None, None).await.unwrap();
        assert_eq!(
            p.acquire(None, None).await.unwrap_err(),
            AcquireError::QueueTimeout
        );
        assert_eq!(p.queued(), 0);
    }
}
