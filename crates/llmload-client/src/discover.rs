//! Before a run: which models the target serves (`GET /v1/models`) and whether one request
//! goes through ([`preflight`]), with errors that say what to change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::IoSlice;

use llmload_core::{RequestRecord, RequestSpec, TokenCounter};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, base_headers, render_head};
use crate::config::{ClientConfig, endpoint_url};
use crate::error::{ClientError, scrub, snippet};
use crate::http1::{Body, Conn, HttpError};

/// Where a setup call goes and with which credentials.
#[derive(Clone)]
pub struct Target<'a> {
    pub base_url: &'a url::Url,
    pub api_key: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub timeout: Duration,
}

impl<'a> Target<'a> {
    /// The target of a client configuration (timeout: its connect timeout plus 20 s).
    pub fn of(cfg: &'a ClientConfig) -> Self {
        Self {
            base_url: &cfg.base_url,
            api_key: cfg.api_key.as_deref(),
            headers: &cfg.headers,
            timeout: cfg.connect_timeout + Duration::from_secs(20),
        }
    }
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// Largest answer accepted from a setup call.
const SETUP_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One GET on a fresh connection: status and body.
async fn get(url: &url::Url, t: &Target<'_>) -> Result<(u16, Vec<u8>), ClientError> {
    let u = url.to_string();
    let fut = async {
        let host = url
            .host_str()
            .ok_or_else(|| ClientError::Unsupported(format!("{u}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ClientError::Unreachable {
                url: u.clone(),
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut pq = url.path().to_string();
        if let Some(q) = url.query() {
            pq.push('?');
            pq.push_str(q);
        }
        let headers = base_headers(url, t.api_key, t.headers, false)?;
        let head = render_head("GET", &pq, &headers, false);
        let mut conn = Conn::new(tcp);
        conn.write_request(&mut [IoSlice::new(&head)])
            .await
            .map_err(|e| ClientError::Unreachable {
                url: u.clone(),
                detail: format!("sending the request failed: {}", e.error),
            })?;
        let resp = conn
            .read_head()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: u.clone(),
                detail: match e {
                    HttpError::Malformed(m) => {
                        format!("the answer is not HTTP/1.1 (is it an https:// port?): {m}")
                    }
                    e => format!("the connection failed: {e}"),
                },
            })?;
        let mut body = Body::new(&resp);
        let mut scratch = Vec::new();
        let (bytes, _) = body
            .read_all(&mut conn, &mut scratch, SETUP_BODY_LIMIT)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: u.clone(),
                detail: format!("the answer broke off: {e}"),
            })?;
        Ok((resp.status, bytes.to_vec()))
    };
    match tokio::time::timeout(t.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout {
            url: u,
            secs: t.timeout.as_secs_f64(),
        }),
    }
}

/// The models the target serves (`GET {base}/v1/models`), in the server's order.
pub async fn discover_models(t: &Target<'_>) -> Result<Vec<String>, ClientError> {
    let url = endpoint_url(t.base_url, "/models")?;
    let (status, body) = get(&url, t).await?;
    let text = || scrub(snippet(&body, 300), t.api_key);
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(ClientError::Auth {
                url: url.to_string(),
                status,
                body: text(),
            });
        }
        _ => {
            return Err(ClientError::NotOpenAi {
                url: url.to_string(),
                status,
                body: text(),
            });
        }
    }
    let list: ModelList = serde_json::from_slice(&body).map_err(|e| ClientError::NotOpenAi {
        url: url.to_string(),
        status,
        body: format!("{} (expected {{\"data\": [{{\"id\": ...}}]}}: {e})", text()),
    })?;
    Ok(list.data.into_iter().map(|m| m.id).collect())
}

/// What [`preflight`] found.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// Models the server offers.
    pub models: Vec<String>,
    /// The model to use: `cfg.model` if set (and served), else the server's first.
    pub model: String,
    /// The test request's record, when one was sent.
    pub probe: Option<RequestRecord>,
}

/// Check the target before a run: it answers `GET /v1/models` like an OpenAI-compatible
/// server, it serves `cfg.model` (an empty `cfg.model` picks the first model offered), and,
/// with `send_probe`, one small request (`max_tokens` 1, same body options as the run)
/// succeeds. Each failure is a [`ClientError`] naming the URL and the flag to change.
pub async fn preflight(
    cfg: &ClientConfig,
    tokens: Option<Arc<dyn TokenCounter>>,
    send_probe: bool,
) -> Result<Preflight, ClientError> {
    let target = Target::of(cfg);
    let models = discover_models(&target).await?;
    let model = if cfg.model.is_empty() {
        models
            .first()
            .cloned()
            .ok_or_else(|| ClientError::NoModels {
                url: endpoint_url(&cfg.base_url, "/models")
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
            })?
    } else if models.iter().any(|m| m == &cfg.model) {
        cfg.model.clone()
    } else {
        return Err(ClientError::UnknownModel {
            model: cfg.model.clone(),
            available: models,
        });
    };
    let mut probe = None;
    if send_probe {
        let mut c = cfg.clone();
        c.model = model.clone();
        c.max_connections = 1;
        c.request_timeout = Some(c.request_timeout.unwrap_or(Duration::from_secs(120)));
        let client = Client::new(c, tokens)?;
        let spec = RequestSpec::text("Say hello.", None, Some(1));
        let out = client
            .send(&spec, Instant::now(), &CancellationToken::new())
            .await;
        if let Some(class) = out.record.error {
            return Err(ClientError::Probe {
                url: client.url().to_string(),
                class,
                message: out.record.error_message.clone().unwrap_or_default(),
            });
        }
        probe = Some(out.record);
    }
    Ok(Preflight {
        models,
        model,
        probe,
    })
}
