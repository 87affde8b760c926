//! Errors of the client's setup calls (building a client, discovering models, preflight).
//!
//! Failures of benchmark requests are never errors: they are measured and classified in the
//! request record (see [`crate::Client::send`]).

/// An error of [`crate::Client::new`], [`crate::discover_models`] or [`crate::preflight`].
/// Messages say what is wrong and which flag changes it; they never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work (scheme, host, header, body).
    #[error("{0}")]
    Unsupported(String),
    /// A `--header` is not a valid HTTP header.
    #[error("invalid --header `{name}`: {reason}")]
    InvalidHeader { name: String, reason: String },
    /// The target cannot be reached.
    #[error("cannot reach {url}: {detail}; check --target and that the server is running")]
    Unreachable { url: String, detail: String },
    /// The target answered, but not like an OpenAI-compatible server.
    #[error(
        "{url} answered HTTP {status}, which is not what an OpenAI-compatible server answers: {body}; \
         check that --target points at the server's base URL (e.g. http://host:8000)"
    )]
    NotOpenAi {
        url: String,
        status: u16,
        body: String,
    },
    /// 401/403.
    #[error(
        "{url} refused our credentials (HTTP {status}: {body}); pass the server's key with \
         --api-key or the OPENAI_API_KEY environment variable"
    )]
    Auth {
        url: String,
        status: u16,
        body: String,
    },
    /// `--model` names a model the server does not serve.
    #[error("the server does not serve model `{model}`; it offers: {}; pass one of them with --model", .available.join(", "))]
    UnknownModel {
        model: String,
        available: Vec<String>,
    },
    /// GET /v1/models listed no model.
    #[error("{url} lists no models; pass --model explicitly")]
    NoModels { url: String },
    /// The preflight request failed.
    #[error("the test request to {url} failed ({class}): {message}")]
    Probe {
        url: String,
        class: llmload_core::ErrorClass,
        message: String,
    },
    /// The request timed out.
    #[error("{url} did not answer within {secs:.1} s; raise the timeout or check the server")]
    Timeout { url: String, secs: f64 },
}

/// At most `max` bytes of `bytes` as text (lossy UTF-8), with an ellipsis when cut.
pub(crate) fn snippet(bytes: &[u8], max: usize) -> String {
    let cut = bytes.len() > max;
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    // Keep messages on one line.
    s = s.replace(['\r', '\n'], " ");
    let s = s.trim().to_string();
    if cut { format!("{s}...") } else { s }
}

/// Remove every occurrence of `secret` from `text` (servers sometimes echo keys back).
pub(crate) fn scrub(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(k) if k.len() >= 4 && text.contains(k) => text.replace(k, "<redacted>"),
        _ => text,
    }
}

/// Whether `haystack` mentions `field` as a whole identifier.
fn mentions(haystack: &str, field: &str) -> bool {
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let h = haystack.as_bytes();
    let mut from = 0;
    while let Some(pos) = haystack[from..].find(field) {
        let start = from + pos;
        let end = start + field.len();
        let before_ok = start == 0 || !is_ident(h[start - 1]);
        let after_ok = end >= h.len() || !is_ident(h[end]);
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
        if from >= haystack.len() {
            break;
        }
    }
    false
}

/// For a 400/422 body: which field we sent the server named, and the flag that changes it.
pub(crate) fn rejected_field_hint(
    body: &str,
    extra_keys: &[String],
    stream: bool,
) -> Option<(String, String)> {
    for k in extra_keys {
        if mentions(body, k) {
            return Some((k.clone(), format!("remove or fix `{k}` in --body-json")));
        }
    }
    let fixed: [(&str, &str); 6] = [
        ("ignore_eos", "pass --no-ignore-eos"),
        (
            "stream_options",
            "pass --no-include-usage (token counts then come from the tokenizer)",
        ),
        (
            "include_usage",
            "pass --no-include-usage (token counts then come from the tokenizer)",
        ),
        (
            "max_tokens",
            "check --output-tokens against the model's context; a server that wants \
             `max_completion_tokens` takes --body-json '{\"max_tokens\": null, \"max_completion_tokens\": N}'",
        ),
        (
            "model",
            "check --model (GET /v1/models lists what the server serves)",
        ),
        (
            "messages",
            "the server may not serve the chat API: try --api completions",
        ),
    ];
    for (f, hint) in fixed {
        if mentions(body, f) {
            return Some((f.to_string(), hint.to_string()));
        }
    }
    if stream && mentions(body, "stream") {
        return Some(("stream".into(), "pass --no-stream".into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_cuts_and_flattens() {
        assert_eq!(snippet(b"ab\r\ncd", 100), "ab  cd");
        assert_eq!(snippet(b"abcdef", 3), "abc...");
        // A cut inside a UTF-8 character stays valid text.
        let s = snippet("é".repeat(10).as_bytes(), 3);
        assert!(s.starts_with('é'));
    }

    #[test]
    fn mentions_whole_identifiers_only() {
        assert!(mentions("unknown field ignore_eos", "ignore_eos"));
        assert!(mentions("'stream': bad", "stream"));
        assert!(!mentions("stream_options not allowed", "stream"));
        assert!(!mentions("max_tokens_x", "max_tokens"));
        assert!(mentions("x max_tokens", "max_tokens"));
    }

    #[test]
    fn hints_name_the_flag() {
        let (f, h) = rejected_field_hint(
            r#"{"error":"Extra inputs are not permitted: ignore_eos"}"#,
            &[],
            true,
        )
        .unwrap();
        assert_eq!(f, "ignore_eos");
        assert!(h.contains("--no-ignore-eos"));
        let (f, h) =
            rejected_field_hint("unknown parameter top_k", &["top_k".to_string()], true).unwrap();
        assert_eq!(f, "top_k");
        assert!(h.contains("--body-json"));
        let (f, _) = rejected_field_hint("stream_options only with stream", &[], true).unwrap();
        assert_eq!(f, "stream_options");
        assert!(rejected_field_hint("something else", &[], true).is_none());
    }

    #[test]
    fn scrub_removes_the_key() {
        assert_eq!(
            scrub("bad key sk-abcdef".into(), Some("sk-abcdef")),
            "bad key <redacted>"
        );
        assert_eq!(scrub("x".into(), None), "x");
    }
}
