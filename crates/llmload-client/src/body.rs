//! Request bodies. Everything that does not depend on the request (model, stream flags,
//! `ignore_eos`, `--body-json`) is serialized once; per request only the prompt and
//! `max_tokens` are written.
//!
//! Large image URLs (a 1024x1024 JPEG is a ~250 KB data URL) are not copied into the body: the
//! body is a short list of segments, and such a URL is a segment that shares the workload's
//! `Arc<str>` (written with vectored I/O). Only URLs that need JSON escaping (never a base64
//! data URL) are copied, escaped.

use std::sync::Arc;

use bytes::Bytes;
use llmload_core::{ContentPart, Prompt, RequestSpec};
use serde_json::{Map, Value};

use crate::config::{Api, ClientConfig};
use crate::json::needs_no_escape;

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
    pub(crate) fn build(&self, spec: &RequestSpec) -> RequestBody {
        let mut out = Segments {
            buf: Vec::with_capacity(self.fixed.len() + prompt_len(&spec.prompt) + 64),
            done: Vec::new(),
        };
        let buf = &mut out.buf;
        buf.push(b'{');
        if !self.prompt_overridden {
            match self.api {
                Api::Chat => {
                    buf.extend_from_slice(b"\"messages\":");
                    write_messages(&mut out, &spec.prompt);
                }
                Api::Completions => {
                    buf.extend_from_slice(b"\"prompt\":");
                    match &spec.prompt {
                        Prompt::Text(t) => write_str(buf, t),
                        p @ Prompt::Messages(_) => write_str(buf, &p.as_completion_text()),
                    }
                }
            }
            out.buf.push(b',');
        }
        let buf = &mut out.buf;
        if let (Some(n), false) = (spec.max_tokens, self.max_tokens_overridden) {
            buf.extend_from_slice(b"\"max_tokens\":");
            buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            buf.push(b',');
        }
        buf.extend_from_slice(self.fixed.as_bytes());
        buf.push(b'}');
        out.finish()
    }
}

/// URLs at least this long go into the body as a shared segment instead of a copy.
const SHARE_MIN: usize = 4096;

/// Builds a body: bytes written so far, plus finished segments before them.
struct Segments {
    buf: Vec<u8>,
    done: Vec<Bytes>,
}

impl Segments {
    /// A JSON string literal; a long one that needs no escaping becomes a shared segment.
    fn write_url(&mut self, url: &Arc<str>) {
        if url.len() < SHARE_MIN || !needs_no_escape(url.as_bytes()) {
            write_str(&mut self.buf, url);
            return;
        }
        self.buf.push(b'"');
        let written = std::mem::replace(&mut self.buf, Vec::with_capacity(256));
        self.done.push(Bytes::from(written));
        self.done
            .push(Bytes::from_owner(SharedUrl(Arc::clone(url))));
        self.buf.push(b'"');
    }

    fn finish(mut self) -> RequestBody {
        let last = Bytes::from(self.buf);
        if self.done.is_empty() {
            return RequestBody::one(last);
        }
        self.done.push(last);
        let len = self.done.iter().map(Bytes::len).sum();
        RequestBody {
            first: Bytes::new(),
            rest: self.done,
            len,
        }
    }
}

/// The bytes of a shared URL (owner of a body segment).
struct SharedUrl(Arc<str>);

impl AsRef<[u8]> for SharedUrl {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The body of one request: one buffer, or (when it carries large image URLs) a few segments
/// that share those URLs with the workload. Cheap to clone (reference counts only). The wire
/// bytes are the segments in order (written with the head in one vectored write).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestBody {
    /// The only segment, when `rest` is empty (no per-request `Vec` for text requests).
    first: Bytes,
    rest: Vec<Bytes>,
    /// Body length in bytes.
    len: usize,
}

impl RequestBody {
    fn one(b: Bytes) -> Self {
        Self {
            len: b.len(),
            first: b,
            rest: Vec::new(),
        }
    }

    /// Body length in bytes (the Content-Length).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The segments, in wire order (empty segments possible).
    pub(crate) fn segments(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// How many segments [`Self::segments`] yields.
    pub(crate) fn segment_count(&self) -> usize {
        1 + self.rest.len()
    }

    /// The whole body in one buffer.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.first.clone();
        }
        let mut v = Vec::with_capacity(self.len);
        for s in self.segments() {
            v.extend_from_slice(s);
        }
        Bytes::from(v)
    }
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
                        // A long URL becomes a shared segment, not part of this buffer.
                        ContentPart::ImageUrl { url } if url.len() >= SHARE_MIN => 48,
                        ContentPart::ImageUrl { url } => url.len() + 48,
                    })
                    .sum::<usize>()
                    + 32
            })
            .sum(),
    }
}

/// A JSON string literal (serde_json's escaping). Text that needs no escape (every synthetic
/// prompt) is copied as is: serde_json's per-byte escaping was a fifth of the producer
/// thread's work per request.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s.as_bytes()) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail and a &str always serializes.
    serde_json::to_writer(&mut *buf, s).expect("serializing a str into a Vec cannot fail");
}

fn write_messages(out: &mut Segments, prompt: &Prompt) {
    match prompt {
        Prompt::Text(t) => {
            out.buf
                .extend_from_slice(b"[{\"role\":\"user\",\"content\":");
            write_str(&mut out.buf, t);
            out.buf.extend_from_slice(b"}]");
        }
        Prompt::Messages(msgs) => {
            out.buf.push(b'[');
            for (i, m) in msgs.iter().enumerate() {
                if i > 0 {
                    out.buf.push(b',');
                }
                out.buf.extend_from_slice(b"{\"role\":");
                write_str(&mut out.buf, &m.role);
                out.buf.extend_from_slice(b",\"content\":");
                match m.content.as_slice() {
                    // One text part goes as a plain string: every server takes that form.
                    [ContentPart::Text { text }] => write_str(&mut out.buf, text),
                    parts => {
                        out.buf.push(b'[');
                        for (j, p) in parts.iter().enumerate() {
                            if j > 0 {
                                out.buf.push(b',');
                            }
                            match p {
                                ContentPart::Text { text } => {
                                    out.buf.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                                    write_str(&mut out.buf, text);
                                    out.buf.push(b'}');
                                }
                                ContentPart::ImageUrl { url } => {
                                    out.buf.extend_from_slice(
                                        b"{\"type\":\"image_url\",\"image_url\":{\"url\":",
                                    );
                                    out.write_url(url);
                                    out.buf.extend_from_slice(b"}}");
                                }
                            }
                        }
                        out.buf.push(b']');
                    }
                }
                out.buf.push(b'}');
            }
            out.buf.push(b']');
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

    fn parse(b: &RequestBody) -> Value {
        serde_json::from_slice(&b.to_bytes()).unwrap()
    }

    /// The non-empty segments, checking that they add up to the length.
    fn frames(b: RequestBody) -> Vec<Bytes> {
        let out: Vec<Bytes> = b.segments().filter(|s| !s.is_empty()).cloned().collect();
        assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), b.len());
        assert_eq!(b.segments().count(), b.segment_count());
        out
    }

    fn data_url(n: usize) -> String {
        let mut u = String::from("data:image/jpeg;base64,");
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        u.extend((0..n).map(|i| alphabet[(i * 7 + i / 64) % 64] as char));
        u.push_str("==");
        u
    }

    fn image_spec(urls: &[&str]) -> RequestSpec {
        let mut spec = RequestSpec::text("", None, Some(8));
        let mut content: Vec<ContentPart> =
            urls.iter().map(|u| ContentPart::image_url(*u)).collect();
        content.push(ContentPart::Text { text: "hi".into() });
        spec.prompt = Prompt::Messages(vec![ChatMessage {
            role: "user".into(),
            content,
        }]);
        spec
    }

    #[test]
    fn large_data_urls_are_shared_segments_and_the_bytes_are_unchanged() {
        let t = BodyTemplate::new(&cfg(Api::Chat)).unwrap();
        let (a, b) = (data_url(250_000), data_url(5_000));
        let spec = image_spec(&[&a, &b]);
        let body = t.build(&spec);
        // Byte for byte what the copying writer produced: parts in order, no whitespace.
        let expected = format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"{a}"}}}},{{"type":"image_url","image_url":{{"url":"{b}"}}}},{{"type":"text","text":"hi"}}]}}],"max_tokens":8,{}}}"#,
            t.fixed
        );
        assert_eq!(body.to_bytes(), expected.as_bytes());
        assert_eq!(body.len(), expected.len());
        // Each URL is its own segment pointing at the workload's string: no copy.
        let Prompt::Messages(m) = &spec.prompt else {
            unreachable!()
        };
        let urls: Vec<&Arc<str>> = m[0]
            .content
            .iter()
            .filter_map(|p| match p {
                ContentPart::ImageUrl { url } => Some(url),
                _ => None,
            })
            .collect();
        let segs: Vec<&Bytes> = body.segments().filter(|s| !s.is_empty()).collect();
        assert_eq!(segs.len(), 5, "text, url, text, url, text");
        assert_eq!(segs[1].as_ptr(), urls[0].as_ptr());
        assert_eq!(segs[3].as_ptr(), urls[1].as_ptr());
        // Sharing holds the URL alive, not a copy of it.
        assert_eq!(Arc::strong_count(urls[0]), 2);
        // The segments written are the same bytes; a clone (retry) sends them again.
        let again = body.clone();
        let sent: Vec<u8> = frames(body).concat();
        assert_eq!(sent, expected.as_bytes());
        assert_eq!(frames(again).concat(), expected.as_bytes());
        assert_eq!(
            Arc::strong_count(urls[0]),
            1,
            "segments released after sending"
        );
    }

    #[test]
    fn short_or_escaped_urls_are_copied_and_escaped_like_serde_json() {
        let t = BodyTemplate::new(&cfg(Api::Chat)).unwrap();
        let mut odd = data_url(8_000);
        odd.insert_str(100, "\"\\\n\u{1}é");
        for url in [odd.as_str(), "https://example.com/a b.jpg"] {
            let body = t.build(&image_spec(&[url]));
            assert_eq!(body.segments().filter(|s| !s.is_empty()).count(), 1);
            let v = parse(&body);
            assert_eq!(v["messages"][0]["content"][0]["image_url"]["url"], url);
            let text = String::from_utf8(body.to_bytes().to_vec()).unwrap();
            assert!(text.contains(&serde_json::to_string(url).unwrap()));
            assert_eq!(frames(body).concat(), text.as_bytes());
        }
    }

    #[test]
    fn text_bodies_are_one_segment() {
        let t = BodyTemplate::new(&cfg(Api::Chat)).unwrap();
        let body = t.build(&RequestSpec::text("hello", Some(1), Some(2)));
        let f = frames(body.clone());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0], body.to_bytes());
    }

    #[test]
    fn needs_no_escape_matches_serde_json_escaping() {
        for b in 0u8..=255 {
            let s = [b'a', b, b'z'];
            let Ok(st) = std::str::from_utf8(&s) else {
                continue;
            };
            let escaped = serde_json::to_string(st).unwrap();
            assert_eq!(
                needs_no_escape(&s),
                escaped.len() == st.len() + 2,
                "byte {b:#04x}"
            );
        }
        // Multi-byte UTF-8 is written verbatim by serde_json.
        assert!(needs_no_escape("é€😀".as_bytes()));
        // A bad byte anywhere in a long input: in a 16-byte step, across steps, in the tail.
        let mut long = vec![b'A'; 1000];
        assert!(needs_no_escape(&long));
        for i in [0, 15, 16, 17, 63, 64, 991, 992, 995, 999] {
            long[i] = b'"';
            assert!(!needs_no_escape(&long), "quote at {i}");
            long[i] = b'A';
        }
    }

    proptest::proptest! {
        #[test]
        fn string_literals_are_serde_jsons(s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}])*") {
            let mut mine = Vec::new();
            write_str(&mut mine, &s);
            proptest::prop_assert_eq!(mine, serde_json::to_vec(&s).unwrap());
        }
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
                    ContentPart::image_url("data:image/png;base64,AAAA"),
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
