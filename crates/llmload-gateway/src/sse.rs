//! Server-sent events on the response path: split a byte stream into events, classify each
//! OpenAI-style chunk (does it carry output? usage?), and optionally drop the usage-only chunk.
//!
//! Parsing works on complete events only (an event ends with a blank line). Bytes of an
//! incomplete event are carried to the next frame. Without stripping, frames are forwarded as
//! they arrive and parsed on the side; with stripping, the bytes of an incomplete trailing
//! event are held until the event completes (servers send whole events per write, so in
//! practice nothing waits).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Presence of a non-empty value (string with text, non-empty array, any object or number).
#[derive(Debug, Default, Clone, Copy)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Present;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Present, E> {
                Ok(Present(!v.is_empty()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Present, E> {
                Ok(Present(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<Present, E> {
                Ok(Present(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Present, E> {
                Ok(Present(true))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Present, E> {
                Ok(Present(true))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Present, E> {
                Ok(Present(true))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Present, E> {
                Ok(Present(true))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Present, A::Error> {
                let mut n = 0usize;
                while a.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Present(n > 0))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Present, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Present(true))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
struct DeltaLite {
    #[serde(default)]
    content: Option<Present>,
    #[serde(default)]
    reasoning_content: Option<Present>,
    #[serde(default)]
    reasoning: Option<Present>,
    #[serde(default)]
    tool_calls: Option<Present>,
}

#[derive(Deserialize)]
struct ChoiceLite {
    #[serde(default)]
    delta: Option<DeltaLite>,
    #[serde(default)]
    text: Option<Present>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChunkLite {
    #[serde(default)]
    choices: Option<Vec<ChoiceLite>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// What one SSE event said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventInfo {
    pub output: bool,
    pub usage: Option<Usage>,
    /// No choices and a usage object: the `include_usage` summary chunk.
    pub usage_only: bool,
    pub done: bool,
    pub error: bool,
    /// The payload was not JSON (nor `[DONE]`).
    pub malformed: bool,
}

/// Classifies one event's `data` payload.
pub fn classify(data: &[u8]) -> EventInfo {
    let mut info = EventInfo::default();
    if data.trim_ascii() == b"[DONE]" {
        info.done = true;
        return info;
    }
    match serde_json::from_slice::<ChunkLite>(data) {
        Ok(c) => {
            let choices = c.choices.unwrap_or_default();
            info.output = choices.iter().any(|ch| {
                ch.text.is_some_and(|p| p.0)
                    || ch.delta.as_ref().is_some_and(|d| {
                        d.content.is_some_and(|p| p.0)
                            || d.reasoning_content.is_some_and(|p| p.0)
                            || d.reasoning.is_some_and(|p| p.0)
                            || d.tool_calls.is_some_and(|p| p.0)
                    })
            });
            info.usage = c.usage;
            info.usage_only = choices.is_empty() && c.usage.is_some();
            info.error = c.error.is_some();
        }
        Err(_) => info.malformed = true,
    }
    info
}

/// Splits complete events off the front of `buf`, calling `f(start, end, info)` for each
/// (byte range of the whole event including its terminating blank line). Returns how many bytes
/// were consumed; the rest is an incomplete event.
pub fn scan(buf: &[u8], mut f: impl FnMut(usize, usize, EventInfo)) -> usize {
    let mut event_start = 0usize;
    let mut line_start = 0usize;
    let mut data: Option<(usize, usize)> = None; // single data line, borrowed
    let mut joined: Option<Vec<u8>> = None; // several data lines
    let mut consumed = 0usize;
    for nl in memchr::memchr_iter(b'\n', buf) {
        let mut line = &buf[line_start..nl];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        let this_start = line_start;
        line_start = nl + 1;
        if line.is_empty() {
            let end = nl + 1;
            if data.is_some() || joined.is_some() {
                let info = match (&joined, data) {
                    (Some(j), _) => classify(j),
                    (None, Some((s, e))) => classify(&buf[s..e]),
                    (None, None) => EventInfo::default(),
                };
                f(event_start, end, info);
            } else if end > event_start {
                // Comment-only or empty event: keep its bytes, no meaning.
                f(event_start, end, EventInfo::default());
            }
            data = None;
            joined = None;
            event_start = end;
            consumed = end;
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let off = usize::from(rest.first() == Some(&b' '));
            let s = this_start + 5 + off;
            let e = this_start + line.len();
            match (&mut joined, data) {
                (Some(j), _) => {
                    j.push(b'\n');
                    j.extend_from_slice(&buf[s..e]);
                }
                (None, Some((ps, pe))) => {
                    let mut j = buf[ps..pe].to_vec();
                    j.push(b'\n');
                    j.extend_from_slice(&buf[s..e]);
                    joined = Some(j);
                    data = None;
                }
                (None, None) => data = Some((s, e)),
            }
        }
    }
    consumed
}

/// Limit on bytes carried for one incomplete event; beyond it the stream is not parsed any
/// further (it is still forwarded) so a hostile backend cannot grow the gateway's memory.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Incremental scanner over a response body.
#[derive(Debug, Default)]
pub struct SseScanner {
    carry: BytesMut,
    strip_usage: bool,
    /// Parsing gave up (event larger than `MAX_EVENT_BYTES`).
    overflow: bool,
}

impl SseScanner {
    pub fn new(strip_usage: bool) -> Self {
        Self {
            carry: BytesMut::new(),
            strip_usage,
            overflow: false,
        }
    }

    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Feeds one frame; `on_event` sees every completed event. Returns the bytes to forward.
    pub fn push(&mut self, frame: Bytes, mut on_event: impl FnMut(EventInfo)) -> Bytes {
        if self.overflow {
            return frame;
        }
        if !self.strip_usage {
            if self.carry.is_empty() {
                let used = scan(&frame, |_, _, i| on_event(i));
                if used < frame.len() {
                    self.carry.extend_from_slice(&frame[used..]);
                }
            } else {
                self.carry.extend_from_slice(&frame);
                let used = scan(&self.carry, |_, _, i| on_event(i));
                let _ = self.carry.split_to(used);
            }
            self.check_overflow();
            return frame;
        }
        // Stripping: forward only complete events, minus usage-only chunks.
        let (buf, from_carry) = if self.carry.is_empty() {
            (frame, false)
        } else {
            self.carry.extend_from_slice(&frame);
            (self.carry.split().freeze(), true)
        };
        let mut drops: Vec<(usize, usize)> = Vec::new();
        let used = scan(&buf, |s, e, i| {
            if i.usage_only {
                drops.push((s, e));
            }
            on_event(i);
        });
        if used < buf.len() {
            self.carry.extend_from_slice(&buf[used..]);
        }
        let _ = from_carry;
        self.check_overflow();
        if self.overflow {
            // Give up parsing: forward everything held.
            let rest = self.carry.split().freeze();
            let mut out = BytesMut::with_capacity(buf.len());
            out.extend_from_slice(&buf[..used]);
            out.extend_from_slice(&rest);
            return out.freeze();
        }
        if drops.is_empty() {
            return buf.slice(..used);
        }
        let mut out = BytesMut::with_capacity(used);
        let mut pos = 0;
        for (s, e) in drops {
            out.extend_from_slice(&buf[pos..s]);
            pos = e;
        }
        out.extend_from_slice(&buf[pos..used]);
        out.freeze()
    }

    fn check_overflow(&mut self) {
        if self.carry.len() > MAX_EVENT_BYTES {
            self.overflow = true;
        }
    }

    /// At the end of the body: whatever incomplete bytes are still held (forwarded as is).
    pub fn finish(&mut self) -> Bytes {
        self.carry.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
    const C2: &str =
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\\n\"}}]}\n\n";
    const U: &str = "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
    const D: &str = "data: [DONE]\n\n";

    #[test]
    fn classify_chunks() {
        let c = |s: &str| classify(s.trim_start_matches("data: ").trim_end().as_bytes());
        assert!(!c(C1).output);
        assert!(c(C2).output);
        let u = c(U);
        assert!(u.usage_only);
        assert_eq!(u.usage.unwrap().completion_tokens, Some(2));
        assert!(c(D).done);
        assert!(c("data: {\"choices\":[{\"text\":\"a\"}]}").output);
        assert!(!c("data: {\"choices\":[{\"text\":\"\"}]}").output);
        assert!(c("data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"r\"}}]}").output);
        assert!(c("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}").output);
        assert!(c("data: {\"error\":{\"message\":\"boom\"}}").error);
        assert!(c("data: {nope").malformed);
        assert!(c("data: \u{0}\u{1}").malformed);
    }

    #[test]
    fn split_across_frames_and_crlf() {
        let all = format!("{C1}{C2}{U}{D}").replace("\n", "\r\n");
        for cut in 0..all.len() {
            let mut s = SseScanner::new(false);
            let mut infos = vec![];
            let a = s.push(Bytes::copy_from_slice(&all.as_bytes()[..cut]), |i| {
                infos.push(i)
            });
            let b = s.push(Bytes::copy_from_slice(&all.as_bytes()[cut..]), |i| {
                infos.push(i)
            });
            assert_eq!([a, b].concat(), all.as_bytes());
            assert_eq!(infos.len(), 4);
            assert_eq!(infos.iter().filter(|i| i.output).count(), 1);
            assert!(infos[3].done);
        }
    }

    #[test]
    fn strip_usage_any_split() {
        let all = format!("{C1}{C2}{U}{D}");
        let want = format!("{C1}{C2}{D}");
        for cut in 0..all.len() {
            let mut s = SseScanner::new(true);
            let mut usage = None;
            let mut out = Vec::new();
            for part in [&all.as_bytes()[..cut], &all.as_bytes()[cut..]] {
                out.extend_from_slice(&s.push(Bytes::copy_from_slice(part), |i| {
                    if i.usage.is_some() {
                        usage = i.usage;
                    }
                }));
            }
            out.extend_from_slice(&s.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut {cut}");
            assert_eq!(usage.unwrap().completion_tokens, Some(2));
        }
    }

    #[test]
    fn multiline_data_and_comments() {
        let s = ": ping\n\ndata: {\"choices\":\ndata: [{\"text\":\"a\"}]}\n\n";
        let mut infos = vec![];
        let used = scan(s.as_bytes(), |_, _, i| infos.push(i));
        assert_eq!(used, s.len());
        assert_eq!(infos.len(), 2);
        assert!(infos[1].output);
    }

    #[test]
    fn overflow_stops_parsing_but_forwards() {
        let mut s = SseScanner::new(true);
        let big = Bytes::from(vec![b'x'; MAX_EVENT_BYTES + 10]);
        let out = s.push(big.clone(), |_| {});
        assert_eq!(out.len(), big.len());
        assert!(s.overflowed());
        let out = s.push(Bytes::from_static(b"more"), |_| {});
        assert_eq!(&out[..], b"more");
    }
}
