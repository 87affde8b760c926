//! Scraping `/metrics` during a run: one tokio task, one HTTP/1.1 GET per URL and tick with a
//! short timeout, gzip accepted; parsed values stored compactly (shared key table, one `f64`
//! per series per scrape) with the run-clock times the request was sent and answered. A failing
//! scrape is recorded (time, URL, error) and never stops the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use url::Url;

use crate::parse::{Format, MAX_BODY_BYTES, decode_body, parse_as};
use crate::snapshot::{Interner, KeepFilter, Snapshot};

/// Why one scrape failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScrapeError {
    #[error(
        "unsupported URL {0}: only http:// is supported for scraping (put TLS in front with a local proxy, or scrape the plain-HTTP port)"
    )]
    Scheme(String),
    #[error("URL {0} has no host")]
    NoHost(String),
    #[error("connect to {url}: {error}")]
    Connect { url: String, error: String },
    #[error("HTTP error from {url}: {error}")]
    Http { url: String, error: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer within {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u128 },
    #[error("{url}: {error}")]
    Parse { url: String, error: String },
}

/// A fetched body and the format its `Content-Type` announced.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Bytes,
    pub content_type: Option<String>,
}

impl Fetched {
    /// The format to parse with: the one the header names, else detected from the text.
    pub fn format(&self, text: &str) -> Format {
        self.content_type
            .as_deref()
            .and_then(Format::from_content_type)
            .unwrap_or_else(|| Format::detect(text))
    }
}

/// `GET url` over HTTP/1.1 with `Accept-Encoding: gzip`, bounded by `timeout` as a whole.
pub async fn fetch(url: &Url, timeout: Duration) -> Result<Fetched, ScrapeError> {
    match tokio::time::timeout(timeout, fetch_inner(url)).await {
        Ok(r) => r,
        Err(_) => Err(ScrapeError::Timeout {
            url: url.to_string(),
            timeout_ms: timeout.as_millis(),
        }),
    }
}

async fn fetch_inner(url: &Url) -> Result<Fetched, ScrapeError> {
    if url.scheme() != "http" {
        return Err(ScrapeError::Scheme(url.to_string()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ScrapeError::NoHost(url.to_string()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    // IPv6 literals come bracketed from host_str(); connect wants them bare.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| ScrapeError::Connect {
            url: url.to_string(),
            error: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let http_err = |e: hyper::Error| ScrapeError::Http {
        url: url.to_string(),
        error: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http_err)?;
    let conn_task = tokio::spawn(conn);
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let req = hyper::Request::get(path)
        .header(header::HOST, host_header)
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(
            header::ACCEPT,
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
        )
        .header(header::USER_AGENT, concat!("llmload/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ScrapeError::Http {
            url: url.to_string(),
            error: e.to_string(),
        })?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ScrapeError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| ScrapeError::Http {
                url: url.to_string(),
                error: format!("reading the body: {e}"),
            })?
            .to_bytes();
        Ok(Fetched { body, content_type })
    }
    .await;
    conn_task.abort();
    result
}

/// Decodes and parses a fetched body into a snapshot with `interner`.
pub fn snapshot_of(
    url: &Url,
    fetched: &Fetched,
    interner: &mut Interner,
) -> Result<(Snapshot, usize), ScrapeError> {
    let perr = |e: crate::parse::ParseError| ScrapeError::Parse {
        url: url.to_string(),
        error: e.to_string(),
    };
    let text = decode_body(&fetched.body).map_err(perr)?;
    let format = fetched.format(&text);
    let expo = parse_as(&text, format).map_err(perr)?;
    Ok((interner.ingest(&expo), text.len()))
}

/// Fetches one exposition, then decodes and parses it on the blocking pool (off the async
/// workers that dispatch requests). Returns the interner with the result.
async fn fetch_snapshot(
    url: &Url,
    timeout: Duration,
    mut interner: Interner,
) -> (Interner, Result<(Snapshot, usize), ScrapeError>) {
    let fetched = match fetch(url, timeout).await {
        Ok(f) => f,
        Err(e) => return (interner, Err(e)),
    };
    let u = url.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let r = snapshot_of(&u, &fetched, &mut interner);
        (interner, r)
    })
    .await;
    match joined {
        Ok(x) => x,
        // The blocking task panicked or was cancelled (runtime shutting down): the interner
        // is lost with it; start a fresh one.
        Err(e) => (
            Interner::default(),
            Err(ScrapeError::Parse {
                url: url.to_string(),
                error: format!("parser task failed: {e}"),
            }),
        ),
    }
}

/// One successful scrape.
#[derive(Debug, Clone)]
pub struct ScrapeRecord {
    /// Run-clock seconds (since the epoch given to [`Scraper::spawn`]) when the request left.
    pub t_sent: f64,
    /// Run-clock seconds when the body had been read.
    pub t_recv: f64,
    pub snapshot: Snapshot,
    /// Size of the exposition text (after gunzip).
    pub bytes: usize,
}

impl ScrapeRecord {
    pub fn t_mid(&self) -> f64 {
        (self.t_sent + self.t_recv) / 2.0
    }
}

/// One failed scrape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapeFailure {
    /// Run-clock seconds when the request left.
    pub t: f64,
    pub url: String,
    pub error: String,
}

/// Everything scraped from one URL.
#[derive(Debug, Clone)]
pub struct TargetSeries {
    pub url: String,
    pub scrapes: Vec<ScrapeRecord>,
    pub failures: Vec<ScrapeFailure>,
}

/// Everything scraped during a run, per URL.
#[derive(Debug, Clone, Default)]
pub struct ScrapeSeries {
    pub targets: Vec<TargetSeries>,
}

impl ScrapeSeries {
    /// Successful scrapes over all targets.
    pub fn scrape_count(&self) -> usize {
        self.targets.iter().map(|t| t.scrapes.len()).sum()
    }
    pub fn failure_count(&self) -> usize {
        self.targets.iter().map(|t| t.failures.len()).sum()
    }
}

/// How a scraper runs.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    pub interval: Duration,
    /// Whole-request timeout of one scrape.
    pub timeout: Duration,
    pub keep: KeepFilter,
}

impl ScrapeConfig {
    /// `interval`, and a timeout of the interval clamped to 0.5-5 s.
    pub fn new(interval: Duration) -> ScrapeConfig {
        ScrapeConfig {
            interval,
            timeout: interval.clamp(Duration::from_millis(500), Duration::from_secs(5)),
            keep: KeepFilter::default(),
        }
    }
}

/// The default metrics URL of a target: its base URL with path `/metrics` (query dropped).
pub fn default_metrics_url(target: &Url) -> Url {
    let mut u = target.clone();
    u.set_path("/metrics");
    u.set_query(None);
    u.set_fragment(None);
    u
}

struct Shared {
    series: Mutex<ScrapeSeries>,
    kick: Notify,
    epoch: Instant,
    config: ScrapeConfig,
}

/// Spawns scrapers.
pub struct Scraper;

impl Scraper {
    /// Scrapes every URL each `interval` on its own tokio task (must be called inside a tokio
    /// runtime). Times are seconds since `epoch` (the run clock).
    pub fn spawn(urls: Vec<Url>, interval: Duration, epoch: Instant) -> ScrapeHandle {
        Scraper::spawn_with(urls, ScrapeConfig::new(interval), epoch)
    }

    pub fn spawn_with(urls: Vec<Url>, config: ScrapeConfig, epoch: Instant) -> ScrapeHandle {
        let shared = Arc::new(Shared {
            series: Mutex::new(ScrapeSeries {
                targets: urls
                    .iter()
                    .map(|u| TargetSeries {
                        url: u.to_string(),
                        scrapes: Vec::new(),
                        failures: Vec::new(),
                    })
                    .collect(),
            }),
            kick: Notify::new(),
            epoch,
            config,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (count_tx, count_rx) = watch::channel(0u64);
        let task = tokio::spawn(run_loop(Arc::clone(&shared), urls, stop_rx, count_tx));
        ScrapeHandle {
            shared,
            task: Some(task),
            stop_tx,
            count_rx,
        }
    }
}

async fn scrape_once(
    shared: &Shared,
    urls: &[Url],
    interners: &mut [Interner],
    count_tx: &watch::Sender<u64>,
) {
    let epoch = shared.epoch;
    let timeout = shared.config.timeout;
    let futs = urls
        .iter()
        .zip(interners.iter_mut())
        .map(|(u, slot)| async move {
            let t_sent = epoch.elapsed().as_secs_f64();
            let (it, r) = fetch_snapshot(u, timeout, std::mem::take(slot)).await;
            *slot = it;
            let t_recv = epoch.elapsed().as_secs_f64();
            (t_sent, t_recv, r)
        });
    let results = futures_util::future::join_all(futs).await;
    {
        let mut series = shared.series.lock();
        for (i, (t_sent, t_recv, r)) in results.into_iter().enumerate() {
            let target = &mut series.targets[i];
            match r {
                Ok((snapshot, bytes)) => target.scrapes.push(ScrapeRecord {
                    t_sent,
                    t_recv,
                    snapshot,
                    bytes,
                }),
                Err(e) => target.failures.push(ScrapeFailure {
                    t: t_sent,
                    url: target.url.clone(),
                    error: e.to_string(),
                }),
            }
        }
    }
    count_tx.send_modify(|c| *c += 1);
}

async fn run_loop(
    shared: Arc<Shared>,
    urls: Vec<Url>,
    mut stop_rx: watch::Receiver<bool>,
    count_tx: watch::Sender<u64>,
) {
    let mut interners: Vec<Interner> = urls
        .iter()
        .map(|_| Interner::new(shared.config.keep))
        .collect();
    let mut ticker = tokio::time::interval(shared.config.interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shared.kick.notified() => {}
            r = stop_rx.changed() => {
                let _ = r;
                // A last scrape so that the final window has a closing point.
                scrape_once(&shared, &urls, &mut interners, &count_tx).await;
                return;
            }
        }
        scrape_once(&shared, &urls, &mut interners, &count_tx).await;
    }
}

/// A running scraper. Dropping it stops the task without a final scrape.
pub struct ScrapeHandle {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    stop_tx: watch::Sender<bool>,
    count_rx: watch::Receiver<u64>,
}

impl ScrapeHandle {
    /// Seconds on the run clock now.
    pub fn now_s(&self) -> f64 {
        self.shared.epoch.elapsed().as_secs_f64()
    }

    /// A copy of what was scraped so far.
    pub fn series(&self) -> ScrapeSeries {
        self.shared.series.lock().clone()
    }

    /// Scrapes every URL now (out of the regular ticks) and waits until each has a scrape (or
    /// a failed attempt) sent after this call, at most the scrape timeout plus one second. Call
    /// it when a measurement window starts, so that the window's baseline is taken then.
    pub async fn scrape_now(&self) {
        let t = self.now_s();
        self.scrape_sent_after(t).await;
    }

    /// Waits until every URL has a scrape or failure sent at or after `t`, kicking the task.
    async fn scrape_sent_after(&self, t: f64) {
        let deadline =
            tokio::time::Instant::now() + self.shared.config.timeout + Duration::from_secs(1);
        let mut rx = self.count_rx.clone();
        loop {
            rx.borrow_and_update();
            let done = {
                let s = self.shared.series.lock();
                s.targets.iter().all(|tg| {
                    tg.scrapes.iter().rev().any(|r| r.t_sent >= t)
                        || tg.failures.iter().rev().any(|f| f.t >= t)
                })
            };
            if done {
                return;
            }
            self.shared.kick.notify_one();
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// The server-side figures of the window `[start_s, end_s]` of the run clock. When no
    /// scrape has been sent since `end_s` (and `end_s` is past), scrapes at once and waits for
    /// it, so that the window has a closing point.
    pub async fn window(&self, start_s: f64, end_s: f64) -> crate::window::ServerWindow {
        if self.now_s() >= end_s {
            self.scrape_sent_after(end_s).await;
        }
        let s = self.shared.series.lock();
        crate::window::ServerWindow::compute(&s, start_s, end_s)
    }

    /// Stops the task after one last scrape and returns everything scraped.
    pub async fn stop(mut self) -> ScrapeSeries {
        let _ = self.stop_tx.send(true);
        if let Some(mut task) = self.task.take() {
            let limit = self.shared.config.timeout + Duration::from_secs(2);
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                // The last scrape hung past its own timeout: the series so far stands.
                task.abort();
            }
        }
        std::mem::take(&mut *self.shared.series.lock())
    }
}

impl Drop for ScrapeHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
