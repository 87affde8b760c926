//! Active health checks and model list refreshes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{Backend, ModelList};
use crate::proxy::Shared;

const MAX_MODELS_BODY: usize = 8 * 1024 * 1024;

async fn get(shared: &Shared, b: &Backend, path: &str) -> Result<(StatusCode, Bytes), String> {
    let uri = b.url.uri(path).map_err(|e| e.to_string())?;
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri;
    if let Some(k) = &b.api_key {
        req.headers_mut().insert(header::AUTHORIZATION, k.clone());
    }
    let timeout = shared.cfg.connect_timeout + Duration::from_secs(3);
    let fut = async {
        let resp = shared
            .client
            .request(req)
            .await
            .map_err(|e| format!("{e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_MODELS_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// Parses an OpenAI `/v1/models` answer.
pub fn parse_models(body: &[u8]) -> Option<ModelList> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = v.get("data")?.as_array()?;
    let mut m = ModelList::default();
    for item in data {
        if let Some(id) = item.get("id").and_then(|x| x.as_str()) {
            m.ids.insert(id.to_string());
            m.raw.push(item.clone());
        }
    }
    Some(m)
}

async fn refresh_models(shared: &Shared, b: &Backend) -> bool {
    match get(shared, b, "/v1/models").await {
        Ok((s, body)) if s.is_success() => match parse_models(&body) {
            Some(m) => {
                let changed = b.models().map(|old| old.ids != m.ids).unwrap_or(true);
                b.set_models(m);
                if changed {
                    shared.pool.wake();
                }
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// One probe of one backend: the health path, then (when asked, or when the backend is coming
/// back) its model list.
async fn probe(shared: Arc<Shared>, b: Arc<Backend>, with_models: bool, initial: bool) {
    let ok =
        matches!(get(&shared, &b, &shared.cfg.health_path).await, Ok((s, _)) if s.is_success());
    if ok && (with_models || !b.is_up() || b.models().is_none()) {
        refresh_models(&shared, &b).await;
    }
    if initial {
        if ok {
            shared.pool.mark_up(&b);
        } else {
            shared.pool.mark_down(&b, "initial health check failed");
        }
    } else {
        shared.pool.record_probe(&b, ok);
    }
}

pub(crate) async fn probe_all(shared: &Arc<Shared>, with_models: bool, initial: bool) {
    let mut set = tokio::task::JoinSet::new();
    for b in &shared.pool.backends {
        set.spawn(probe(shared.clone(), b.clone(), with_models, initial));
    }
    while set.join_next().await.is_some() {}
}

pub(crate) async fn health_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut last_models = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.cfg.health_interval) => {}
            _ = shutdown.changed() => return,
        }
        let with_models = last_models.elapsed() >= shared.cfg.models_refresh_interval;
        if with_models {
            last_models = Instant::now();
        }
        tokio::select! {
            _ = probe_all(&shared, with_models, false) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_parse() {
        let m = parse_models(
            br#"{"object":"list","data":[{"id":"a","object":"model"},{"id":"b"},{"x":1}]}"#,
        )
        .unwrap();
        assert_eq!(m.ids.len(), 2);
        assert_eq!(m.raw.len(), 2);
        assert!(parse_models(b"{}").is_none());
        assert!(parse_models(b"garbage").is_none());
    }
}
