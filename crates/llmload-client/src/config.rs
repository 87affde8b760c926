//! Client configuration and the target's endpoints.

use std::time::Duration;

use crate::error::ClientError;

/// Which OpenAI endpoint requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Api {
    /// `POST {base}/v1/chat/completions` with `messages`.
    #[default]
    Chat,
    /// `POST {base}/v1/completions` with `prompt`.
    Completions,
}

impl Api {
    /// The name used in results files (`run.api`).
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Completions => "completions",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Completions => "/completions",
        }
    }
}

/// Everything the client needs to send requests. Build it with [`ClientConfig::new`] and
/// adjust the fields; `Debug` never shows the API key or secret-looking headers.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `http://127.0.0.1:8000`; a `/v1` suffix is accepted too.
    pub base_url: url::Url,
    pub api: Api,
    /// Model name sent in every request (resolve it with [`crate::discover_models`]).
    pub model: String,
    /// `false` = `--no-stream`.
    pub stream: bool,
    /// Ask for `stream_options.include_usage` (token counts from the server).
    pub include_usage: bool,
    /// Send `"ignore_eos": true` (only sent when set).
    pub ignore_eos: bool,
    /// Sent as `Authorization: Bearer ...`; never logged, never in errors or records.
    pub api_key: Option<String>,
    /// Extra request headers (`--header K:V`).
    pub headers: Vec<(String, String)>,
    /// `--body-json`: merged into every body last; a key here replaces ours, a `null` value
    /// removes ours.
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    /// Whole-request limit, from the call to `send` to the end of the response.
    pub request_timeout: Option<Duration>,
    /// Limit for opening one TCP connection.
    pub connect_timeout: Duration,
    /// Keep every output event's arrival time in the record (`chunk_times`).
    pub record_chunks: bool,
    /// Keep the answer text ([`crate::Outcome::answer`]).
    pub capture_answer: bool,
    /// Idle connections kept for reuse (size it to the load's concurrency).
    pub max_connections: usize,
}

impl ClientConfig {
    /// Defaults: chat API, streaming with usage, `ignore_eos`, no timeout, 10 s connect
    /// timeout, 64 pooled connections.
    pub fn new(base_url: url::Url, model: impl Into<String>) -> Self {
        Self {
            base_url,
            api: Api::Chat,
            model: model.into(),
            stream: true,
            include_usage: true,
            ignore_eos: true,
            api_key: None,
            headers: Vec::new(),
            extra_body: serde_json::Map::new(),
            request_timeout: None,
            connect_timeout: Duration::from_secs(10),
            record_chunks: false,
            capture_answer: false,
            max_connections: 64,
        }
    }

    /// The URL requests of this configuration are sent to.
    pub fn request_url(&self) -> Result<url::Url, ClientError> {
        endpoint_url(&self.base_url, self.api.path())
    }
}

/// Whether a header (by name) may carry a secret; its value is then redacted everywhere.
pub(crate) fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || n.contains("key")
        || n.contains("token")
        || n.contains("secret")
        || n.contains("auth")
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if is_secret_header(k) {
                    (k.as_str(), "<redacted>")
                } else {
                    (k.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api", &self.api)
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("include_usage", &self.include_usage)
            .field("ignore_eos", &self.ignore_eos)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("headers", &headers)
            .field("extra_body", &self.extra_body)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("record_chunks", &self.record_chunks)
            .field("capture_answer", &self.capture_answer)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `{base}/v1{path}`: accepts a base with or without a trailing `/v1` (and slashes).
pub(crate) fn endpoint_url(base: &url::Url, path: &str) -> Result<url::Url, ClientError> {
    match base.scheme() {
        "http" => {}
        "https" => {
            return Err(ClientError::Unsupported(format!(
                "{base}: https targets are not supported by this build; use an http:// URL \
                 (for example through a local TLS-terminating proxy)"
            )));
        }
        other => {
            return Err(ClientError::Unsupported(format!(
                "{base}: scheme `{other}` is not supported; --target must start with http://"
            )));
        }
    }
    if base.host_str().is_none() {
        return Err(ClientError::Unsupported(format!(
            "{base}: the URL has no host; pass --target http://HOST:PORT"
        )));
    }
    let mut prefix = base.path().trim_end_matches('/').to_string();
    if !prefix.ends_with("/v1") {
        prefix.push_str("/v1");
    }
    let mut url = base.clone();
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn endpoint_accepts_with_and_without_v1() {
        for base in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
            "http://127.0.0.1:8000/v1/",
        ] {
            assert_eq!(
                endpoint_url(&u(base), "/chat/completions")
                    .unwrap()
                    .as_str(),
                "http://127.0.0.1:8000/v1/chat/completions",
                "{base}"
            );
        }
        assert_eq!(
            endpoint_url(&u("http://h:1/proxy/"), "/models")
                .unwrap()
                .as_str(),
            "http://h:1/proxy/v1/models"
        );
        assert!(endpoint_url(&u("https://h/"), "/models").is_err());
        assert!(endpoint_url(&u("ftp://h/"), "/models").is_err());
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = ClientConfig::new(u("http://h:1"), "m");
        c.api_key = Some("sk-very-secret".into());
        c.headers = vec![
            ("X-Api-Key".into(), "hdr-secret".into()),
            ("X-Trace".into(), "visible".into()),
        ];
        let d = format!("{c:?}");
        assert!(!d.contains("sk-very-secret"), "{d}");
        assert!(!d.contains("hdr-secret"), "{d}");
        assert!(d.contains("visible"));
    }
}
