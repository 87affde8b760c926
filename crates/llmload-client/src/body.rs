//! Request bodies. Everything that does not depend on the request (model, stream flags,
//! `ignore_eos`, `--body-json`) is serialized once; per request only the prompt and
//! `max_tokens` are written.

use llmload_core::{ContentPart, Prompt, RequestSpec};
use serde_json::{Map, Value};

use crate::config::{Api, ClientConfig};

#[derive(Debug, Clone)]
pub(crate) struct BodyTemplate {
    api: Api,
    /// `"k":v` pairs, comma-joined, never empty (holds at least `model`).
    fixed: String,
    /// `--body-json` sets (or removes) the prompt key.
    prompt_overridden: bool,
    /// `--body-json` sets (or removes) `max_tokens`.
    max_tokens_overridden: bool,
    /// Keys of `--body-json` (for error hints).
    pub(crate) extra_keys: Vec<String>,
}

impl BodyTemplate {
    pub(crate) fn new(cfg: &ClientConfig) -> Result<Self, serde_json::Error> {
        let mut map = Map::new();
        map.insert("model".into(), Value::String(cfg.model.clone()));
        map.insert("stream".into(), Value::Bool(cfg.stream));
        if cfg.stream && cfg.include_usage {
            map.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
        if cfg.ignore_eos {
            map.insert("ignore_eos".into(), Value::Bool(true));
        }
        let prompt_key = match cfg.api {
            Api::Chat => "messages",
            Api::Completions => "prompt",
        };
        let mut prompt_overridden = false;
        let mut max_tokens_overridden = false;
        for (k, v) in &cfg.extra_body {
            if k == prompt_key {
                prompt_overridden = true;
            }
            if k == "max_tokens" {
                max_tokens_overridden = true;
            }
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
        let mut fixed = String::new();
        for (k, v) in &map {
            if !fixed.is_empty() {
                fixed.push(',');
            }
            fixed.push_str(&serde_json::to_string(k)?);
            fixed.push(':');
            fixed.push_str(&serde_json::to_string(v)?);
        }
        Ok(Self {
            api: cfg.api,
            fixed,
            prompt_overridden,
            max_tokens_overridden,
            extra_keys: cfg.extra_body.keys().cloned().collect(),
        })
    }

    /// The body of one request.
    #[cfg(test)]
    pub(crate) fn build(&self, spec: &RequestSpec) -> Vec<u8> {
        let mut buf = Vec::new();
        self.build_into(spec, &mut buf);
        buf
    }

    /// The body of `spec`, written into `buf` (cleared first).
    pub(crate) fn build_into(&self, spec: &RequestSpec, buf: &mut Vec<u8>) {
        buf.clear();
        buf.reserve(self.fixed.len() + prompt_len(&spec.prompt) + 64);
        let buf = &mut *buf;
        buf.push(b'{');
        if !self.prompt_overridden {
            match self.api {
                Api::Chat => {
                    buf.extend_from_slice(b"\"messages\":");
                    write_messages(buf, &spec.prompt);
                }
                Api::Completions => {
                    buf.extend_from_slice(b"\"prompt\":");
                    match &spec.prompt {
                        Prompt::Text(t) => write_str(buf, t),
                        p @ Prompt::Messages(_) => write_str(buf, &p.as_completion_text()),
                    }
                }
            }
            buf.push(b',');
        }
        if let (Some(n), false) = (spec.max_tokens, self.max_tokens_overridden) {
            buf.extend_from_slice(b"\"max_tokens\":");
            write_u64(buf, u64::from(n));
            buf.push(b',');
        }
        buf.extend_from_slice(self.fixed.as_bytes());
        buf.push(b'}');
    }
}

/// `n` in decimal, without allocating.
fn write_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&d[i..]);
}

fn prompt_len(p: &Prompt) -> usize {
    match p {
        Prompt::Text(t) => t.len() + 40,
        Prompt::Messages(m) => m
            .iter()
            .map(|m| {
                m.content
                    .iter()
                    .map(|c| match c {
                        ContentPart::Text { text } => text.len() + 32,
                        ContentPart::ImageUrl { url } => url.len() + 48,
                    })
                    .sum::<usize>()
                    + 32
            })
            .sum(),
    }
}

/// A JSON string literal (serde_json's escaping).
fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail and a &str always serializes.
    serde_json::to_writer(&mut *buf, s).expect("serializing a str into a Vec cannot fail");
}

fn write_messages(buf: &mut Vec<u8>, prompt: &Prompt) {
    match prompt {
        Prompt::Text(t) => {
            buf.extend_from_slice(b"[{\"role\":\"user\",\"content\":");
            write_str(buf, t);
            buf.extend_from_slice(b"}]");
        }
        Prompt::Messages(msgs) => {
            buf.push(b'[');
            for (i, m) in msgs.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(b"{\"role\":");
                write_str(buf, &m.role);
                buf.extend_from_slice(b",\"content\":");
                match m.content.as_slice() {
                    // One text part goes as a plain string: every server takes that form.
                    [ContentPart::Text { text }] => write_str(buf, text),
                    parts => {
                        buf.push(b'[');
                        for (j, p) in parts.iter().enumerate() {
                            if j > 0 {
                                buf.push(b',');
                            }
                            match p {
                                ContentPart::Text { text } => {
                                    buf.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                                    write_str(buf, text);
                                    buf.push(b'}');
                                }
                                ContentPart::ImageUrl { url } => {
                                    buf.extend_from_slice(
                                        b"{\"type\":\"image_url\",\"image_url\":{\"url\":",
                                    );
                                    write_str(buf, url);
                                    buf.extend_from_slice(b"}}");
                                }
                            }
                        }
                        buf.push(b']');
                    }
                }
                buf.push(b'}');
            }
            buf.push(b']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmload_core::ChatMessage;
    use serde_json::json;

    fn cfg(api: Api) -> ClientConfig {
        let mut c = ClientConfig::new(url::Url::parse("http://h:1").unwrap(), "m1");
        c.api = api;
        c
    }

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn chat_text_body() {
        let t = BodyTemplate::new(&cfg(Api::Chat)).unwrap();
        let b = t.build(&RequestSpec::text("hi \"there\"\n", Some(3), Some(16)));
        assert_eq!(
            parse(&b),
            json!({"model":"m1","stream":true,"stream_options":{"include_usage":true},
                   "ignore_eos":true,"max_tokens":16,
                   "messages":[{"role":"user","content":"hi \"there\"\n"}]})
        );
    }

    #[test]
    fn chat_parts_and_images() {
        let t = BodyTemplate::new(&cfg(Api::Chat)).unwrap();
        let mut spec = RequestSpec::text("", None, None);
        spec.prompt = Prompt::Messages(vec![
            ChatMessage::text("system", "be brief"),
            ChatMessage {
                role: "user".into(),
                content: vec![
                    ContentPart::Text {
                        text: "what is this".into(),
                    },
                    ContentPart::ImageUrl {
                        url: "data:image/png;base64,AAAA".into(),
                    },
                ],
            },
        ]);
        let v = parse(&t.build(&spec));
        assert_eq!(
            v["messages"],
            json!([{"role":"system","content":"be brief"},
                   {"role":"user","content":[{"type":"text","text":"what is this"},
                     {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}])
        );
        assert!(v.get("max_tokens").is_none());
    }

    #[test]
    fn completions_no_stream_no_eos() {
        let mut c = cfg(Api::Completions);
        c.stream = false;
        c.ignore_eos = false;
        let t = BodyTemplate::new(&c).unwrap();
        let v = parse(&t.build(&RequestSpec::text("abc", None, Some(4))));
        assert_eq!(
            v,
            json!({"model":"m1","stream":false,"prompt":"abc","max_tokens":4})
        );
    }

    #[test]
    fn extra_body_overrides_and_removes() {
        let mut c = cfg(Api::Chat);
        c.include_usage = false;
        c.extra_body = json!({"temperature":0.5,"ignore_eos":null,"max_tokens":null,
                              "max_completion_tokens":7,"model":"other"})
        .as_object()
        .unwrap()
        .clone();
        let t = BodyTemplate::new(&c).unwrap();
        let v = parse(&t.build(&RequestSpec::text("x", None, Some(16))));
        assert_eq!(
            v,
            json!({"model":"other","stream":true,"temperature":0.5,"max_completion_tokens":7,
                   "messages":[{"role":"user","content":"x"}]})
        );
        assert_eq!(t.extra_keys.len(), 5);
    }

    #[test]
    fn extra_body_can_replace_messages() {
        let mut c = cfg(Api::Chat);
        c.extra_body = json!({"messages":[{"role":"user","content":"fixed"}]})
            .as_object()
            .unwrap()
            .clone();
        let t = BodyTemplate::new(&c).unwrap();
        let v = parse(&t.build(&RequestSpec::text("x", None, Some(2))));
        assert_eq!(v["messages"][0]["content"], "fixed");
        assert_eq!(v["max_tokens"], 2);
    }
}
