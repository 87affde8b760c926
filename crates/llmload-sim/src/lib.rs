//! `llmload sim`: a vLLM-compatible simulated inference server (see docs/sim.md).
//!
//! Layers, from the bottom: [`model`] (step time from the H100 calibration), [`engine`] (a
//! V1-style scheduler with KV blocks, preemption and prefix caching), [`sim`] (front-end
//! workers + engine + vLLM's metrics in virtual time, deterministic), [`runtime`] (drives the
//! simulation in real time, `--speedup` times faster) and the HTTP server (OpenAI API as vLLM
//! serves it, `/metrics`, faults). [`spawn`] embeds it; [`cli`] is `llmload sim`.

pub mod cli;
pub mod engine;
pub mod experiment;
pub mod faults;
pub mod image;
pub mod metrics;
pub mod model;
pub mod profile;
pub mod runtime;
mod server;
pub mod sim;
pub mod tokenize;

use std::net::SocketAddr;
use std::sync::Arc;

pub use faults::Faults;
pub use metrics::{EngineGauges, HttpMetrics};
pub use profile::{DEFAULT_PROFILE, Profile};
pub use runtime::ClockStats;
pub use sim::SimCounters;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("profile {origin}: {message}")]
    Profile { origin: String, message: String },
    #[error(
        "unknown profile {name:?}; built-in profiles: {known} (see `llmload sim --list-profiles`)"
    )]
    UnknownProfile { name: String, known: String },
    #[error("cannot read profile file {path}: {source}")]
    ProfileFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot bind {addr}: {source} (choose another --port or --host)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid option: {0}")]
    Config(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub profile: Profile,
    /// Served model name (default: the profile's `served_model_name`).
    pub model_name: Option<String>,
    /// Address to bind; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Simulated time runs this many times faster than the wall clock (1 = real time).
    pub speedup: f64,
    pub seed: u64,
    /// Number of API-server processes (default: the profile's, 1).
    pub api_servers: Option<u32>,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            profile: Profile::builtin(DEFAULT_PROFILE)
                .expect("the default profile is built in and valid"),
            model_name: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            speedup: 1.0,
            seed: 0,
            api_servers: None,
            faults: Faults::default(),
        }
    }
}

/// A running simulator. Dropping it stops the server (without waiting); call
/// [`SimHandle::shutdown`] to stop gracefully.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub profile_name: String,
    pub model_name: String,
    state: Arc<server::AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    /// `http://addr` (what `--target` takes).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulator's ground-truth counters (what `/metrics` shows, exactly).
    pub fn counters(&self) -> SimCounters {
        self.state.rt.with_sim(|s| s.counters())
    }

    /// Requests running/waiting in the engine and KV-cache usage now.
    pub fn gauges(&self) -> EngineGauges {
        self.state.rt.with_sim(|s| s.gauges())
    }

    /// Requests inside the server (front end or engine) not yet fully answered.
    pub fn in_flight(&self) -> usize {
        self.state.rt.with_sim(|s| s.in_flight())
    }

    /// HTTP request counts by handler (what `http_requests_total` shows).
    pub fn http_metrics(&self) -> HttpMetrics {
        self.state.http_metrics()
    }

    /// How late the engine thread's wake-ups were against their deadlines.
    pub fn clock_stats(&self) -> ClockStats {
        self.state.rt.clock_stats()
    }

    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Replaces the faults (a changed `unready_for_s` restarts the not-ready period now).
    pub fn set_faults(&self, f: Faults) -> Result<(), SimError> {
        f.validate().map_err(SimError::Config)?;
        let rearm = f.unready_for_s != self.state.faults().unready_for_s;
        self.state.set_faults(f, rearm);
        Ok(())
    }

    /// The `/metrics` text as served now.
    pub fn exposition(&self) -> String {
        let http = self.state.http_metrics();
        self.state.rt.with_sim(|sim| {
            metrics::render(&metrics::ExpositionInput {
                model_name: &self.state.model,
                engine: sim.metrics(),
                gauges: sim.gauges(),
                http: &http,
                cache_config: &self.state.cache_config,
                created_unix: self.state.created_unix,
            })
        })
    }

    /// Stops accepting connections, lets open responses finish, stops the engine.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let res = match self.task.take() {
            Some(t) => match t.await {
                Ok(r) => r.map_err(SimError::Io),
                Err(e) => Err(SimError::Io(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        };
        let rt = self.state.rt.clone();
        tokio::task::spawn_blocking(move || rt.shutdown())
            .await
            .ok();
        res
    }

    /// Resolves when the server stops (for `llmload sim`).
    pub async fn wait(&mut self) -> Result<(), SimError> {
        match self.task.take() {
            Some(t) => match t.await {
                Ok(r) => r.map_err(SimError::Io),
                Err(e) => Err(SimError::Io(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Starts the simulator: binds `cfg.addr`, starts the engine thread and the HTTP server on the
/// current tokio runtime.
pub async fn spawn(cfg: SimConfig) -> Result<SimHandle, SimError> {
    if !(cfg.speedup.is_finite() && cfg.speedup > 0.0) {
        return Err(SimError::Config(format!(
            "--speedup must be a positive number, got {}",
            cfg.speedup
        )));
    }
    if let Some(0) = cfg.api_servers {
        return Err(SimError::Config("--api-servers must be at least 1".into()));
    }
    cfg.faults.validate().map_err(SimError::Config)?;
    // Build the BPE encoder (~0.35 s) in the background now rather than in the first request.
    drop(tokio::task::spawn_blocking(tokenize::warm_up));
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| SimError::Bind {
            addr: cfg.addr.to_string(),
            source: e,
        })?;
    let addr = listener.local_addr()?;
    let model = cfg
        .model_name
        .clone()
        .unwrap_or_else(|| cfg.profile.served_model_name.clone());
    let sim = sim::Sim::new(&cfg.profile, cfg.api_servers, cfg.seed);
    let rt = runtime::Runtime::start(sim, cfg.speedup);
    let profile_name = cfg.profile.name.clone();
    let state = Arc::new(server::AppState::new(
        rt,
        Arc::new(cfg.profile),
        model.clone(),
        cfg.faults,
        cfg.seed,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(SimHandle {
        addr,
        profile_name,
        model_name: model,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}
