//! llmload-gateway: an OpenAI-compatible streaming gateway in front of model servers.
//!
//! It proxies `/v1/chat/completions`, `/v1/completions` and `/v1/models` to a set of backends
//! (routing by model, least outstanding requests, per-backend caps with a bounded queue,
//! health checks and ejection, one retry before the first response byte), streams SSE through
//! frame by frame, and exports the metrics users chart (`gateway_time_to_first_token_seconds`,
//! `gateway_tokens_per_second`, `gateway_requests_total`, `gateway_queue_depth`, ...).
//!
//! Embed with [`spawn`]; the CLI entry point is [`cli::run`]. See `docs/gateway.md`.

pub mod access_log;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
mod health;
pub mod metrics;
pub mod proxy;
mod server;
pub mod sse;
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::ApiKeys;
pub use backend::{Backend, Pool};
pub use config::{BackendConfig, GatewayConfig};
pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("configuration error: {0}")]
    Config(String),
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? pick another with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A running gateway. Dropping the handle does not stop it; call [`GatewayHandle::shutdown`].
pub struct GatewayHandle {
    /// Address of the client-facing listener (useful with port 0).
    pub addr: SocketAddr,
    /// Address of the admin listener, when configured.
    pub admin_addr: Option<SocketAddr>,
    shared: Arc<proxy::Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl GatewayHandle {
    /// The metrics registry (the same text `/metrics` serves is [`Metrics::render`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Backends with their live state (in flight, up).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.shared.pool
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })
}

/// Builds the upstream HTTP client used for proxying and health checks.
fn upstream_client(cfg: &GatewayConfig) -> proxy::UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build(http)
}

/// Starts a gateway: binds the listeners, probes every backend once (health and models), then
/// serves in background tasks until [`GatewayHandle::shutdown`].
pub async fn spawn(cfg: GatewayConfig) -> Result<GatewayHandle, GatewayError> {
    cfg.validate()?;
    let keys = match &cfg.api_keys_file {
        Some(p) => Some(ApiKeys::from_file(p)?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let pool = Arc::new(Pool::new(
        &cfg.backends,
        cfg.max_in_flight_per_backend,
        cfg.queue_size,
        cfg.queue_timeout,
        cfg.eject_after_failures,
        metrics.clone(),
    )?);
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let admin = match cfg.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin_addr = match &admin {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let log = match &cfg.access_log {
        Some(p) => Some(access_log::AccessLog::open(p, metrics.clone()).await?),
        None => None,
    };
    let client = upstream_client(&cfg);
    let shared = Arc::new(proxy::Shared::new(cfg, pool, client, metrics, keys, log));
    health::probe_all(&shared, true, true).await;

    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(server::serve(
        listener,
        shared.clone(),
        proxy::handle,
        rx.clone(),
    )));
    if let Some(l) = admin {
        tasks.push(tokio::spawn(server::serve(
            l,
            shared.clone(),
            proxy::handle_admin,
            rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(health::health_loop(shared.clone(), rx)));
    Ok(GatewayHandle {
        addr,
        admin_addr,
        shared,
        shutdown: tx,
        tasks,
    })
}
