//! Optional JSON access log: one line per proxied request, written by a background task so the
//! request path never blocks on I/O. Lines are dropped (and counted in
//! `gateway_access_log_dropped_total`) if the writer falls behind.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::GatewayError;
use crate::metrics::Metrics;

/// One access log line. API keys and request bodies are never part of it.
#[derive(Serialize, Debug)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub model: Option<&'a str>,
    pub backend: &'a str,
    /// HTTP status, or `stream_broken`, `idle_timeout`, `client_closed`.
    pub status: &'a str,
    pub http_status: u16,
    pub attempts: u32,
    pub ttft_s: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// `usage` (server's usage chunk), `events` (counted output events), or `none`.
    pub token_source: &'a str,
    pub duration_s: f64,
}

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
    metrics: Arc<Metrics>,
}

const CHANNEL: usize = 16 * 1024;

impl AccessLog {
    /// Opens `path` (`-` = stdout) for appending and starts the writer task.
    pub async fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Self, GatewayError> {
        let (tx, mut rx) = mpsc::channel::<String>(CHANNEL);
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = if path == Path::new("-") {
            Box::new(tokio::io::stdout())
        } else {
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| {
                    GatewayError::Config(format!(
                        "cannot open --access-log {}: {e}",
                        path.display()
                    ))
                })?;
            Box::new(f)
        };
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(line) = rx.recv().await {
                buf.extend_from_slice(line.as_bytes());
                while let Ok(line) = rx.try_recv() {
                    buf.extend_from_slice(line.as_bytes());
                    if buf.len() > 256 * 1024 {
                        break;
                    }
                }
                if let Err(e) = out.write_all(&buf).await {
                    eprintln!("llmload gateway: access log write failed, logging stops: {e}");
                    return;
                }
                let _ = out.flush().await;
                buf.clear();
            }
        });
        Ok(Self { tx, metrics })
    }

    pub fn write(&self, rec: AccessRecord<'_>) {
        let Ok(mut line) = serde_json::to_string(&rec) else {
            return;
        };
        line.push('\n');
        if self.tx.try_send(line).is_err() {
            self.metrics.access_log_dropped.inc();
        }
    }
}
