//! `llmload gateway`: command-line arguments and entry point.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::GatewayError;
use crate::config::{BackendConfig, GatewayConfig, secs};

/// Run an OpenAI-compatible gateway in front of one or more model servers.
///
/// Streams /v1/chat/completions and /v1/completions through to the backends (chunk by chunk),
/// merges /v1/models, and exports Prometheus metrics on /metrics:
/// gateway_time_to_first_token_seconds, gateway_tokens_per_second, gateway_requests_total,
/// gateway_queue_depth, gateway_requests_in_flight, gateway_inter_token_latency_seconds,
/// gateway_e2e_latency_seconds, gateway_upstream_errors_total, gateway_backend_up.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = "Examples:
  llmload gateway --backend http://10.0.0.5:8000 --backend http://10.0.0.6:8000
  llmload gateway --listen 0.0.0.0:9000 --api-keys-file keys.txt --admin-listen 127.0.0.1:9100 \\
      --backend http://127.0.0.1:8000
  llmload gateway --config gateway.toml --access-log -

Flags given on the command line override the --config file. See docs/gateway.md.")]
pub struct GatewayArgs {
    /// Address to serve clients on [default: 127.0.0.1:9000]. Binding a non-loopback address
    /// exposes the gateway to the network: pair it with --api-keys-file.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Separate address for /metrics and /health (then the main listener does not serve
    /// /metrics).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Backend base URL, http://host:port (repeatable; a trailing /v1 is accepted).
    #[arg(long = "backend", value_name = "URL")]
    pub backends: Vec<String>,

    /// TOML configuration file (same keys as the flags, with `_s` suffixes for seconds).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// File with accepted API keys, one per line; clients must send `Authorization: Bearer
    /// <key>`. Keys are kept only as SHA-256 digests and never logged.
    #[arg(long, value_name = "FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Largest request body accepted, in bytes (413 beyond) [default: 10485760].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Requests in flight allowed per backend [default: 256].
    #[arg(long, value_name = "N")]
    pub max_in_flight_per_backend: Option<usize>,

    /// Requests allowed to wait in the gateway when all backends are at their cap; beyond it
    /// the gateway answers 429 with Retry-After [default: 1024].
    #[arg(long, value_name = "N")]
    pub queue_size: Option<usize>,

    /// Seconds a request may wait in the gateway queue before a 503 [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub queue_timeout: Option<f64>,

    /// Seconds allowed to connect to a backend [default: 2].
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<f64>,

    /// Seconds allowed from sending a request upstream to the response head [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub first_byte_timeout: Option<f64>,

    /// Longest silence between two chunks of a response, in seconds [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<f64>,

    /// Seconds a client has to send a complete request head [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub header_read_timeout: Option<f64>,

    /// Seconds a client has to send the whole request body [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub body_read_timeout: Option<f64>,

    /// Seconds between active health checks [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub health_interval: Option<f64>,

    /// Path probed by health checks [default: /health]; use /v1/models for servers without
    /// /health.
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,

    /// Seconds between refreshes of each backend's /v1/models [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub models_refresh_interval: Option<f64>,

    /// Consecutive failures (timeouts, broken streams) that eject a backend; a refused
    /// connection ejects at once [default: 3].
    #[arg(long, value_name = "N")]
    pub eject_after_failures: Option<u32>,

    /// Do not add stream_options.include_usage upstream (token counts then come from counting
    /// output events when the client did not ask for usage).
    #[arg(long)]
    pub no_inject_usage: bool,

    /// Write one JSON line per request to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
}

impl GatewayArgs {
    /// The effective configuration: defaults, then the --config file, then flags.
    pub fn to_config(&self) -> Result<GatewayConfig, GatewayError> {
        let mut c = match &self.config {
            Some(p) => GatewayConfig::from_toml_file(p)?,
            None => GatewayConfig::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = Some(v);
        }
        if !self.backends.is_empty() {
            c.backends = self.backends.iter().map(BackendConfig::new).collect();
        }
        if let Some(v) = &self.api_keys_file {
            c.api_keys_file = Some(v.clone());
        }
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.max_in_flight_per_backend {
            c.max_in_flight_per_backend = v;
        }
        if let Some(v) = self.queue_size {
            c.queue_size = v;
        }
        let dur = |name: &str, v: Option<f64>, d: &mut std::time::Duration| {
            if let Some(v) = v {
                *d = secs(name, v)?;
            }
            Ok::<(), GatewayError>(())
        };
        dur("--queue-timeout", self.queue_timeout, &mut c.queue_timeout)?;
        dur(
            "--connect-timeout",
            self.connect_timeout,
            &mut c.connect_timeout,
        )?;
        dur(
            "--first-byte-timeout",
            self.first_byte_timeout,
            &mut c.first_byte_timeout,
        )?;
        dur("--idle-timeout", self.idle_timeout, &mut c.idle_timeout)?;
        dur(
            "--header-read-timeout",
            self.header_read_timeout,
            &mut c.header_read_timeout,
        )?;
        dur(
            "--body-read-timeout",
            self.body_read_timeout,
            &mut c.body_read_timeout,
        )?;
        dur(
            "--health-interval",
            self.health_interval,
            &mut c.health_interval,
        )?;
        dur(
            "--models-refresh-interval",
            self.models_refresh_interval,
            &mut c.models_refresh_interval,
        )?;
        if let Some(v) = &self.health_path {
            c.health_path = v.clone();
        }
        if let Some(v) = self.eject_after_failures {
            c.eject_after_failures = v;
        }
        if self.no_inject_usage {
            c.inject_usage = false;
        }
        if let Some(v) = &self.access_log {
            c.access_log = Some(v.clone());
        }
        c.validate()?;
        Ok(c)
    }
}

/// Runs the gateway until Ctrl-C (or SIGTERM). Returns the process exit code.
pub async fn run(args: GatewayArgs) -> Result<i32, GatewayError> {
    let cfg = args.to_config()?;
    if !cfg.listen.ip().is_loopback() && cfg.api_keys_file.is_none() {
        eprintln!(
            "llmload gateway: warning: listening on {} without --api-keys-file: anyone who can \
             reach this address can use the backends",
            cfg.listen
        );
    }
    let backends: Vec<String> = cfg.backends.iter().map(|b| b.url.clone()).collect();
    let h = crate::spawn(cfg).await?;
    let up = h.pool().backends.iter().filter(|b| b.is_up()).count();
    eprintln!(
        "llmload gateway: listening on http://{} ({} of {} backends up: {})",
        h.addr,
        up,
        backends.len(),
        backends.join(", ")
    );
    match h.admin_addr {
        Some(a) => eprintln!("llmload gateway: metrics on http://{a}/metrics"),
        None => eprintln!("llmload gateway: metrics on http://{}/metrics", h.addr),
    }
    wait_for_signal().await;
    eprintln!("llmload gateway: shutting down (waiting up to 10 s for requests in flight)");
    h.shutdown().await;
    Ok(0)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: GatewayArgs,
    }

    #[test]
    fn flags_override_defaults() {
        let t = T::try_parse_from([
            "x",
            "--backend",
            "http://127.0.0.1:8000",
            "--backend",
            "http://127.0.0.1:8001/v1",
            "--idle-timeout",
            "2.5",
            "--queue-size",
            "3",
            "--no-inject-usage",
        ])
        .unwrap();
        let c = t.a.to_config().unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.idle_timeout.as_secs_f64(), 2.5);
        assert_eq!(c.queue_size, 3);
        assert!(!c.inject_usage);
        let t = T::try_parse_from(["x", "--backend", "http://h:1", "--idle-timeout", "0"]).unwrap();
        assert!(t.a.to_config().is_err());
        let t = T::try_parse_from(["x"]).unwrap();
        let e = t.a.to_config().unwrap_err().to_string();
        assert!(e.contains("--backend"), "{e}");
    }
}
