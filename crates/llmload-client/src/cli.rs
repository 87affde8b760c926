//! Command-line pieces: [`ClientArgs`] (the client flags, to flatten into `llmload run` and
//! friends) and the `llmload probe` verb ([`ProbeArgs`], [`run`]): check a target and send a
//! few requests, printing every stamp.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use llmload_core::{RequestSpec, TokenCounter};
use tokio_util::sync::CancellationToken;

use crate::config::{Api, ClientConfig};
use crate::discover::{Target, discover_models, preflight};
use crate::error::ClientError;
use crate::{Client, Outcome};

/// Flags of the OpenAI-compatible client (flatten with `#[command(flatten)]`).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted).
    #[arg(long, value_name = "URL")]
    pub target: Option<url::Url>,

    /// Model name; by default the first model the server lists at GET /v1/models.
    #[arg(long)]
    pub model: Option<String>,

    /// Endpoint: chat (/v1/chat/completions) or completions (/v1/completions).
    #[arg(long, value_enum, default_value_t = Api::Chat)]
    pub api: Api,

    /// Do not stream: TTFT is then the arrival of the whole answer (not meaningful).
    #[arg(long)]
    pub no_stream: bool,

    /// Do not send stream_options.include_usage (output tokens are then counted with the
    /// tokenizer).
    #[arg(long)]
    pub no_include_usage: bool,

    /// Do not send "ignore_eos": true (answers may then stop before max_tokens).
    #[arg(long)]
    pub no_ignore_eos: bool,

    /// API key, sent as "Authorization: Bearer KEY"; never written anywhere.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,

    /// Extra request header, repeatable: --header 'X-Team: a' --header 'X-Trace: 1'.
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// JSON object merged into every request body last (sampling parameters etc.); a key
    /// replaces ours, null removes ours: --body-json '{"temperature":0.7}'.
    #[arg(long, value_name = "JSON", value_parser = parse_body_json)]
    pub body_json: Option<serde_json::Map<String, serde_json::Value>>,

    /// Limit for one whole request in seconds (connection setup included); none by default.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub request_timeout: Option<Duration>,

    /// Limit for opening one connection, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Keep every output event's arrival time in requests.jsonl (chunk_times).
    #[arg(long)]
    pub record_chunks: bool,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not K:V (e.g. --header 'X-Team: a')"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("`{s}` has an empty header name"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

fn parse_body_json(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err("must be a JSON object, e.g. '{\"temperature\":0.7}'".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl ClientArgs {
    /// The configuration for `target` (the caller resolves a missing `--target`, e.g. by
    /// starting the simulator) with `max_connections` pooled connections. `model` is
    /// `--model` or empty: resolve it with [`preflight`] or [`discover_models`].
    pub fn to_config(&self, target: url::Url, max_connections: usize) -> ClientConfig {
        let mut c = ClientConfig::new(target, self.model.clone().unwrap_or_default());
        c.api = self.api;
        c.stream = !self.no_stream;
        c.include_usage = !self.no_include_usage;
        c.ignore_eos = !self.no_ignore_eos;
        c.api_key = self.api_key.clone().filter(|k| !k.is_empty());
        c.headers = self.headers.clone();
        c.extra_body = self.body_json.clone().unwrap_or_default();
        c.request_timeout = self.request_timeout;
        c.connect_timeout = self.connect_timeout;
        c.record_chunks = self.record_chunks;
        c.max_connections = max_connections.max(1);
        c
    }
}

/// `llmload probe`: check a target and send a few requests, one at a time, printing each
/// request's stamps and metrics.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  llmload probe --target http://127.0.0.1:8000
  llmload probe --target http://gpu-box:8000/v1 --model my-model -n 5 --max-tokens 64
  llmload probe --target http://127.0.0.1:8000 --list-models
  OPENAI_API_KEY=sk-... llmload probe --target http://host:8000 --json")]
pub struct ProbeArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Prompt text sent as one user message (or as `prompt` with --api completions).
    #[arg(long, default_value = "Write a short poem about the sea.")]
    pub prompt: String,

    /// max_tokens of each request.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: u32,

    /// Number of requests (sent one after the other, on one kept-alive connection).
    #[arg(short = 'n', long, default_value_t = 3)]
    pub count: u32,

    /// Only list the models the server serves.
    #[arg(long)]
    pub list_models: bool,

    /// Print each request record as one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}", x * 1e3))
        .unwrap_or_else(|| "-".into())
}

/// Run `llmload probe`. Exit code 0 when every request succeeded, 1 otherwise; a target that
/// cannot be used is an `Err` (with the message to print).
pub async fn run(
    args: ProbeArgs,
    tokens: Option<Arc<dyn TokenCounter>>,
) -> Result<i32, ClientError> {
    let target = args.client.target.clone().ok_or_else(|| {
        ClientError::Unsupported(
            "llmload probe needs --target URL (the server's base URL, e.g. http://127.0.0.1:8000)"
                .into(),
        )
    })?;
    let mut cfg = args.client.to_config(target, 1);
    cfg.capture_answer = true;
    let mut out = std::io::stdout();
    if args.list_models {
        let models = discover_models(&Target::of(&cfg)).await?;
        for m in models {
            let _ = writeln!(out, "{m}");
        }
        return Ok(0);
    }
    let pf = preflight(&cfg, tokens.clone(), false).await?;
    cfg.model = pf.model.clone();
    let client = Client::new(cfg, tokens)?;
    if !args.json {
        let _ = writeln!(
            out,
            "target {}  model {}  (server lists: {})",
            client.url(),
            pf.model,
            pf.models.join(", ")
        );
        let _ = writeln!(
            out,
            "{:>3} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>6} {:>9} {:>7}  error",
            "#",
            "status",
            "ttft_ms",
            "ttfot_ms",
            "e2e_ms",
            "tpot_ms",
            "out_tok",
            "events",
            "multi",
            "source",
            "retries"
        );
    }
    let epoch = Instant::now();
    let cancel = CancellationToken::new();
    let mut failed = 0;
    for i in 0..args.count {
        let spec = RequestSpec::text(args.prompt.clone(), None, Some(args.max_tokens));
        let Outcome { mut record, .. } = client.send(&spec, epoch, &cancel).await;
        record.id = u64::from(i);
        if record.error.is_some() {
            failed += 1;
        }
        if args.json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&record).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
        } else {
            let _ = writeln!(
                out,
                "{:>3} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>6} {:>9} {:>7}  {}",
                i,
                record
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                ms(record.ttft()),
                ms(record.ttfot()),
                ms(record.e2e_latency()),
                ms(record.tpot()),
                record
                    .output_tokens
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                record.output_events,
                record.multi_token_events,
                record.token_source.as_str(),
                record.retries,
                match (record.error, &record.error_message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    _ => String::new(),
                }
            );
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        p: ProbeArgs,
    }

    #[test]
    fn flags_map_to_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--target",
            "http://127.0.0.1:9/v1",
            "--api",
            "completions",
            "--no-ignore-eos",
            "--no-stream",
            "--header",
            "X-A: b",
            "--body-json",
            r#"{"temperature":0.5}"#,
            "--request-timeout",
            "2.5",
            "--api-key",
            "sk-x",
        ])
        .unwrap();
        let a = &cli.p.client;
        let c = a.to_config(a.target.clone().unwrap(), 8);
        assert_eq!(c.api, Api::Completions);
        assert!(!c.ignore_eos && !c.stream && c.include_usage);
        assert_eq!(c.headers, vec![("X-A".to_string(), "b".to_string())]);
        assert_eq!(c.extra_body["temperature"], 0.5);
        assert_eq!(c.request_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(c.max_connections, 8);
        assert_eq!(c.api_key.as_deref(), Some("sk-x"));
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(Cli::try_parse_from(["x", "--header", "nocolon"]).is_err());
        assert!(Cli::try_parse_from(["x", "--body-json", "[1]"]).is_err());
        assert!(Cli::try_parse_from(["x", "--body-json", "{"]).is_err());
        assert!(Cli::try_parse_from(["x", "--request-timeout", "-1"]).is_err());
    }
}
