//! Gateway configuration: defaults, the TOML file format, and backend URL parsing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::GatewayError;

/// One upstream model server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL, `http://host:port` (a trailing `/v1` is accepted and ignored).
    pub url: String,
    /// Label used in metrics and logs; defaults to `host:port` of the URL.
    #[serde(default)]
    pub name: Option<String>,
    /// API key sent upstream as `Authorization: Bearer ...` (never logged or exported).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Per-backend cap on requests in flight (overrides `max_in_flight_per_backend`).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

impl BackendConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: None,
            api_key: None,
            max_in_flight: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BackendEntry {
    Url(String),
    Full(BackendConfig),
}

/// Full gateway configuration. Every field has a default; see `docs/gateway.md`.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Client-facing listener (default 127.0.0.1:9000).
    pub listen: SocketAddr,
    /// Optional separate listener for `/metrics` and `/health`. When set, the main listener
    /// does not serve `/metrics`.
    pub admin_listen: Option<SocketAddr>,
    pub backends: Vec<BackendConfig>,
    /// File with one API key per line (blank lines and `#` comments ignored).
    pub api_keys_file: Option<PathBuf>,
    /// Maximum request body size in bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// Default per-backend cap on requests in flight.
    pub max_in_flight_per_backend: usize,
    /// Requests allowed to wait in the gateway when every eligible backend is at its cap;
    /// beyond it the gateway answers 429 with `Retry-After`.
    pub queue_size: usize,
    /// How long a request may wait in the gateway queue before a 503.
    pub queue_timeout: Duration,
    pub connect_timeout: Duration,
    /// Time from sending the request upstream to the response head.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed between two chunks of a response body.
    pub idle_timeout: Duration,
    /// Time a client has to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Time a client has to send the complete request body after its head.
    pub body_read_timeout: Duration,
    /// Interval of active health checks.
    pub health_interval: Duration,
    /// Path probed by active health checks (`/health` for vLLM).
    pub health_path: String,
    /// Interval of `/v1/models` refreshes.
    pub models_refresh_interval: Duration,
    /// Consecutive request failures (timeouts, broken streams) that eject a backend.
    /// A refused connection ejects at once.
    pub eject_after_failures: u32,
    /// Add `stream_options.include_usage` upstream for streamed requests that did not ask for
    /// it, and strip the usage chunk from the client's stream.
    pub inject_usage: bool,
    /// JSON access log destination: a file path, or `-` for stdout.
    pub access_log: Option<PathBuf>,
    /// Maximum concurrent client connections; further connections are closed at once.
    pub max_connections: usize,
    /// Maximum size of a request head (bytes); larger heads get 431.
    pub max_header_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            admin_listen: None,
            backends: Vec::new(),
            api_keys_file: None,
            max_body_bytes: 10 * 1024 * 1024,
            max_in_flight_per_backend: 256,
            queue_size: 1024,
            queue_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(5),
            health_path: "/health".to_string(),
            models_refresh_interval: Duration::from_secs(30),
            eject_after_failures: 3,
            inject_usage: true,
            access_log: None,
            max_connections: 8192,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// The TOML file: every key optional, seconds as numbers.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    #[serde(default)]
    backends: Vec<BackendEntry>,
    api_keys_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_in_flight_per_backend: Option<usize>,
    queue_size: Option<usize>,
    queue_timeout_s: Option<f64>,
    connect_timeout_s: Option<f64>,
    first_byte_timeout_s: Option<f64>,
    idle_timeout_s: Option<f64>,
    header_read_timeout_s: Option<f64>,
    body_read_timeout_s: Option<f64>,
    health_interval_s: Option<f64>,
    health_path: Option<String>,
    models_refresh_interval_s: Option<f64>,
    eject_after_failures: Option<u32>,
    inject_usage: Option<bool>,
    access_log: Option<PathBuf>,
    max_connections: Option<usize>,
    max_header_bytes: Option<usize>,
}

pub(crate) fn secs(name: &str, v: f64) -> Result<Duration, GatewayError> {
    if !v.is_finite() || v <= 0.0 || v > 1.0e7 {
        return Err(GatewayError::Config(format!(
            "{name} must be a positive number of seconds, got {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl GatewayConfig {
    /// Reads a TOML configuration file on top of the defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            GatewayError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::from_toml_str(&text)
            .map_err(|e| GatewayError::Config(format!("config file {}: {e}", path.display())))
    }

    /// Parses TOML text on top of the defaults.
    pub fn from_toml_str(text: &str) -> Result<Self, GatewayError> {
        let f: FileConfig =
            toml::from_str(text).map_err(|e| GatewayError::Config(e.to_string()))?;
        let mut c = GatewayConfig::default();
        if let Some(v) = f.listen {
            c.listen = v;
        }
        c.admin_listen = f.admin_listen;
        c.backends = f
            .backends
            .into_iter()
            .map(|b| match b {
                BackendEntry::Url(u) => BackendConfig::new(u),
                BackendEntry::Full(b) => b,
            })
            .collect();
        c.api_keys_file = f.api_keys_file;
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = f.$field {
                    c.$field = v;
                }
            };
        }
        macro_rules! set_secs {
            ($src:ident, $field:ident) => {
                if let Some(v) = f.$src {
                    c.$field = secs(stringify!($src), v)?;
                }
            };
        }
        set!(max_body_bytes);
        set!(max_in_flight_per_backend);
        set!(queue_size);
        set!(health_path);
        set!(eject_after_failures);
        set!(inject_usage);
        set!(max_connections);
        set!(max_header_bytes);
        set_secs!(queue_timeout_s, queue_timeout);
        set_secs!(connect_timeout_s, connect_timeout);
        set_secs!(first_byte_timeout_s, first_byte_timeout);
        set_secs!(idle_timeout_s, idle_timeout);
        set_secs!(header_read_timeout_s, header_read_timeout);
        set_secs!(body_read_timeout_s, body_read_timeout);
        set_secs!(health_interval_s, health_interval);
        set_secs!(models_refresh_interval_s, models_refresh_interval);
        c.access_log = f.access_log;
        Ok(c)
    }

    /// Checks the values that cannot be checked by types alone.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.backends.is_empty() {
            return Err(GatewayError::Config(
                "no backend configured: pass --backend http://host:port (repeatable) or list \
                 `backends` in the --config file"
                    .into(),
            ));
        }
        for b in &self.backends {
            parse_backend_url(&b.url)?;
            if b.max_in_flight == Some(0) {
                return Err(GatewayError::Config(format!(
                    "backend {}: max_in_flight must be at least 1",
                    b.url
                )));
            }
        }
        if self.max_in_flight_per_backend == 0 {
            return Err(GatewayError::Config(
                "--max-in-flight-per-backend must be at least 1".into(),
            ));
        }
        if self.max_header_bytes < 8192 {
            return Err(GatewayError::Config(
                "max_header_bytes must be at least 8192".into(),
            ));
        }
        if !self.health_path.starts_with('/') {
            return Err(GatewayError::Config(format!(
                "--health-path must start with '/', got {:?}",
                self.health_path
            )));
        }
        Ok(())
    }
}

/// A parsed backend base URL: scheme+authority and a path prefix without trailing slash.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendUrl {
    pub authority: http::uri::Authority,
    pub prefix: String,
}

impl BackendUrl {
    /// Full URI for a path (starting with `/`) plus optional query.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        let pq = format!("{}{}", self.prefix, path_and_query);
        http::Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

/// Parses `http://host:port[/prefix][/v1]`.
pub fn parse_backend_url(url: &str) -> Result<BackendUrl, GatewayError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| GatewayError::Config(format!("--backend {url:?} is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(GatewayError::Config(format!(
                "--backend {url}: https backends are not supported (this gateway speaks plain \
                 HTTP to backends; put it next to them, or terminate TLS in front of them)"
            )));
        }
        _ => {
            return Err(GatewayError::Config(format!(
                "--backend {url:?}: expected http://host:port"
            )));
        }
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| GatewayError::Config(format!("--backend {url:?}: missing host")))?;
    if uri.query().is_some() {
        return Err(GatewayError::Config(format!(
            "--backend {url:?}: a query string is not allowed"
        )));
    }
    let mut prefix = uri.path().trim_end_matches('/').to_string();
    if prefix.ends_with("/v1") {
        prefix.truncate(prefix.len() - 3);
    }
    Ok(BackendUrl { authority, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls() {
        let b = parse_backend_url("http://127.0.0.1:8000").unwrap();
        assert_eq!(b.authority.as_str(), "127.0.0.1:8000");
        assert_eq!(b.prefix, "");
        let b = parse_backend_url("http://h:1/v1/").unwrap();
        assert_eq!(b.prefix, "");
        let b = parse_backend_url("http://h:1/llm/v1").unwrap();
        assert_eq!(b.prefix, "/llm");
        assert_eq!(
            b.uri("/v1/models?x=1").unwrap().to_string(),
            "http://h:1/llm/v1/models?x=1"
        );
        assert!(parse_backend_url("https://h:1").is_err());
        assert!(parse_backend_url("h:1").is_err());
        assert!(parse_backend_url("http://h:1/?a=b").is_err());
        assert!(parse_backend_url("not a url").is_err());
    }

    #[test]
    fn toml_file() {
        let c = GatewayConfig::from_toml_str(
            r#"
            listen = "127.0.0.1:9100"
            admin_listen = "127.0.0.1:9101"
            backends = ["http://a:8000", { url = "http://b:8000", name = "b", max_in_flight = 4 }]
            queue_size = 7
            idle_timeout_s = 1.5
            inject_usage = false
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.admin_listen.unwrap().port(), 9101);
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[1].max_in_flight, Some(4));
        assert_eq!(c.queue_size, 7);
        assert_eq!(c.idle_timeout, Duration::from_millis(1500));
        assert!(!c.inject_usage);
        c.validate().unwrap();
        assert!(GatewayConfig::from_toml_str("nonsense = 1").is_err());
        assert!(GatewayConfig::from_toml_str("idle_timeout_s = -1").is_err());
        assert!(GatewayConfig::default().validate().is_err());
    }
}
