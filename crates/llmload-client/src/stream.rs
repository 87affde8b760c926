//! What the OpenAI chunks of one response say: output events and their arrival times,
//! finish reason, usage, errors sent inside the stream.

use llmload_core::ErrorClass;

pub(crate) use crate::chunk::Usage;
use crate::chunk::{self, Chunk};
use crate::error::snippet;

/// How interpreting one event went.
#[derive(Debug, PartialEq)]
pub(crate) enum Flow {
    Continue,
    /// `[DONE]`.
    Done,
    /// The stream is unusable from here (error object, malformed JSON).
    Fail,
}

/// The accumulated state of one response.
#[derive(Debug, Default, Clone)]
pub(crate) struct ResponseState {
    pub t_first_token: Option<f64>,
    pub t_first_output: Option<f64>,
    pub t_last_token: Option<f64>,
    pub chunk_times: Vec<f64>,
    pub gaps: Vec<f64>,
    pub output_events: u32,
    pub multi_token_events: u32,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub done: bool,
    /// Per-event usage seen on output events (`continuous_usage_stats`).
    continuous: bool,
    last_completion_tokens: Option<u64>,
    /// Keep texts (for the tokenizer fallback and/or the answer).
    pub keep_text: bool,
    /// The answer is wanted whatever the usage says (`capture_answer`).
    pub capture: bool,
    pub record_chunks: bool,
    pub answer: String,
    pub other_text: String,
    pub error: Option<(ErrorClass, String)>,
}

/// What one event carried.
#[derive(Default)]
struct EventOutput {
    reasoning: bool,
    output: bool,
}

impl ResponseState {
    pub(crate) fn new(keep_text: bool, record_chunks: bool) -> Self {
        Self {
            keep_text,
            record_chunks,
            ..Default::default()
        }
    }

    /// The answer text is wanted even when the server counts the tokens.
    pub(crate) fn capturing(mut self, capture: bool) -> Self {
        self.capture = capture;
        self
    }

    /// Room for `events` output events (saves regrowing the vectors per request).
    pub(crate) fn with_capacity(mut self, events: usize) -> Self {
        let n = events.min(1 << 14);
        self.gaps.reserve_exact(n.saturating_sub(1));
        if self.record_chunks {
            self.chunk_times.reserve_exact(n);
        }
        self
    }

    /// One SSE event's data, arrived at `t`.
    pub(crate) fn on_event(&mut self, data: &[u8], name: &[u8], t: f64) -> Flow {
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.done = true;
            return Flow::Done;
        }
        let chunk = match chunk::parse(trimmed) {
            Ok(c) => c,
            Err(e) => {
                self.error = Some((
                    ErrorClass::Protocol,
                    format!(
                        "malformed JSON in stream event ({e}): {}",
                        snippet(data, 200)
                    ),
                ));
                return Flow::Fail;
            }
        };
        if let Some(flow) = self.check_error(&chunk, name, data) {
            return flow;
        }
        let out = self.apply_choices(&chunk);
        if out.output || out.reasoning {
            self.output_event(t, out.output);
        }
        if let Some(u) = chunk.usage {
            if let Some(ct) = u.completion_tokens {
                if out.output || out.reasoning {
                    self.continuous = true;
                    let prev = self.last_completion_tokens.unwrap_or(0);
                    if ct > prev + 1 {
                        self.multi_token_events += 1;
                    }
                }
                self.last_completion_tokens = Some(ct);
            }
            self.usage = Some(u);
        }
        Flow::Continue
    }

    /// A whole non-streaming body, arrived at `t`.
    pub(crate) fn on_body(&mut self, body: &[u8], t: f64) -> Flow {
        let chunk = match chunk::parse(body) {
            Ok(c) => c,
            Err(e) => {
                self.error = Some((
                    ErrorClass::Protocol,
                    format!("malformed JSON response ({e}): {}", snippet(body, 200)),
                ));
                return Flow::Fail;
            }
        };
        if let Some(flow) = self.check_error(&chunk, b"", body) {
            return flow;
        }
        if chunk.choices.is_none() {
            self.error = Some((
                ErrorClass::Protocol,
                format!("response has no `choices`: {}", snippet(body, 200)),
            ));
            return Flow::Fail;
        }
        // A whole answer that comes with the server's token count: its text is needed only
        // when captured (the tokenizer is the fallback for a missing count).
        let keep = self.keep_text;
        if !self.capture && chunk.usage.is_some_and(|u| u.completion_tokens.is_some()) {
            self.keep_text = false;
        }
        let out = self.apply_choices(&chunk);
        self.keep_text = keep;
        if out.output || out.reasoning {
            self.output_event(t, out.output);
        }
        self.usage = chunk.usage;
        self.done = true;
        Flow::Done
    }

    fn check_error(&mut self, chunk: &Chunk<'_>, name: &[u8], raw: &[u8]) -> Option<Flow> {
        let (msg, code) = if let Some(err) = &chunk.error {
            let msg = match err {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => o
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string()),
                other => other.to_string(),
            };
            let code = err.get("code").and_then(code_of);
            (msg, code)
        } else if chunk.object.as_deref() == Some("error") {
            (
                chunk.message.as_deref().unwrap_or("").to_string(),
                chunk.code.as_ref().and_then(code_of),
            )
        } else if name == b"error" {
            (snippet(raw, 300), None)
        } else {
            return None;
        };
        let class = code
            .and_then(ErrorClass::from_status)
            .unwrap_or(ErrorClass::StreamBroken);
        let code_txt = code.map(|c| format!(" (code {c})")).unwrap_or_default();
        self.error = Some((
            class,
            format!(
                "server sent an error{code_txt}: {}",
                snippet(msg.as_bytes(), 300)
            ),
        ));
        Some(Flow::Fail)
    }

    fn apply_choices(&mut self, chunk: &Chunk<'_>) -> EventOutput {
        let mut out = EventOutput::default();
        let Some(choices) = &chunk.choices else {
            return out;
        };
        for c in choices.iter() {
            if let Some(f) = &c.finish_reason {
                self.finish_reason = Some(f.to_string());
            }
            if let Some(t) = &c.text
                && !t.is_empty()
            {
                out.output = true;
                if self.keep_text {
                    self.answer.push_str(t);
                }
            }
            for d in [&c.delta, &c.message].into_iter().flatten() {
                if let Some(t) = &d.content
                    && !t.is_empty()
                {
                    out.output = true;
                    if self.keep_text {
                        self.answer.push_str(t);
                    }
                }
                for r in [&d.reasoning_content, &d.reasoning].into_iter().flatten() {
                    if !r.is_empty() {
                        out.reasoning = true;
                        if self.keep_text {
                            self.other_text.push_str(r);
                        }
                    }
                }
                if let Some(calls) = &d.tool_calls
                    && !calls.is_empty()
                {
                    out.output = true;
                    if self.keep_text {
                        for call in calls {
                            if let Some(f) = &call.function {
                                if let Some(n) = &f.name {
                                    self.other_text.push_str(n);
                                }
                                if let Some(a) = &f.arguments {
                                    self.other_text.push_str(a);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn output_event(&mut self, t: f64, non_reasoning: bool) {
        if self.t_first_token.is_none() {
            self.t_first_token = Some(t);
        }
        if non_reasoning && self.t_first_output.is_none() {
            self.t_first_output = Some(t);
        }
        if let Some(prev) = self.t_last_token {
            self.gaps.push(t - prev);
        }
        self.t_last_token = Some(t);
        self.output_events += 1;
        if self.record_chunks {
            self.chunk_times.push(t);
        }
    }

    /// The stream carried what a complete response carries (finish reason or usage).
    pub(crate) fn looks_complete(&self) -> bool {
        self.done || self.finish_reason.is_some() || self.usage.is_some()
    }

    /// Multi-token events: counted exactly with per-event usage; otherwise inferred from the
    /// final usage as `min(events, tokens - events)` (exact when every multi-token event
    /// carries 2 tokens, or all events carry the same number).
    pub(crate) fn multi_token_events(&self, output_tokens: Option<u64>) -> u32 {
        if self.continuous {
            return self.multi_token_events;
        }
        match output_tokens {
            Some(n) if n > u64::from(self.output_events) && self.output_events > 0 => {
                let extra = n - u64::from(self.output_events);
                extra.min(u64::from(self.output_events)) as u32
            }
            _ => 0,
        }
    }
}

fn code_of(v: &serde_json::Value) -> Option<u16> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|c| u16::try_from(c).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> ResponseState {
        ResponseState::new(true, true)
    }

    #[test]
    fn whole_answer_text_is_kept_only_when_needed() {
        let with_usage = br#"{"choices":[{"message":{"content":"hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let without = br#"{"choices":[{"message":{"content":"hi there"},"finish_reason":"stop"}]}"#;
        // Counted by the server: the text is not needed for the count.
        let mut s = ResponseState::new(true, false);
        assert_eq!(s.on_body(with_usage, 1.0), Flow::Done);
        assert_eq!(s.answer, "");
        assert_eq!(s.usage.unwrap().completion_tokens, Some(2));
        assert_eq!(s.t_first_token, Some(1.0));
        // Captured for the workload (multi-turn), or no usage (the tokenizer counts it).
        let mut s = ResponseState::new(true, false).capturing(true);
        s.on_body(with_usage, 1.0);
        assert_eq!(s.answer, "hi there");
        let mut s = ResponseState::new(true, false);
        s.on_body(without, 1.0);
        assert_eq!(s.answer, "hi there");
        assert_eq!(s.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn role_only_and_empty_chunks_are_not_tokens() {
        let mut s = st();
        s.on_event(
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            b"",
            1.0,
        );
        s.on_event(
            br#"{"choices":[{"index":0,"delta":{"content":""}}]}"#,
            b"",
            1.5,
        );
        assert_eq!(s.t_first_token, None);
        s.on_event(
            br#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            b"",
            2.0,
        );
        s.on_event(
            br#"{"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"length"}]}"#,
            b"",
            2.5,
        );
        assert_eq!(s.on_event(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#, b"", 2.6), Flow::Continue);
        assert_eq!(s.on_event(b"[DONE]", b"", 2.7), Flow::Done);
        assert_eq!(s.t_first_token, Some(2.0));
        assert_eq!(s.t_first_output, Some(2.0));
        assert_eq!(s.t_last_token, Some(2.5));
        assert_eq!(s.gaps, vec![0.5]);
        assert_eq!(s.output_events, 2);
        assert_eq!(s.finish_reason.as_deref(), Some("length"));
        assert_eq!(s.usage.unwrap().completion_tokens, Some(2));
        assert_eq!(s.answer, "Hi!");
        assert_eq!(s.multi_token_events(Some(2)), 0);
    }

    #[test]
    fn reasoning_then_output() {
        let mut s = st();
        s.on_event(
            br#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#,
            b"",
            1.0,
        );
        s.on_event(br#"{"choices":[{"delta":{"reasoning":"more"}}]}"#, b"", 1.1);
        s.on_event(br#"{"choices":[{"delta":{"content":"ans"}}]}"#, b"", 1.2);
        assert_eq!(s.t_first_token, Some(1.0));
        assert_eq!(s.t_first_output, Some(1.2));
        assert_eq!(s.output_events, 3);
        assert_eq!(s.answer, "ans");
        assert_eq!(s.other_text, "thinkmore");
    }

    #[test]
    fn tool_calls_and_completion_text_are_output() {
        let mut s = st();
        s.on_event(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"a\""}}]}}]}"#, b"", 1.0);
        assert_eq!(s.t_first_output, Some(1.0));
        let mut s = st();
        s.on_event(br#"{"choices":[{"text":" hello","index":0}]}"#, b"", 3.0);
        assert_eq!(s.t_first_output, Some(3.0));
        assert_eq!(s.answer, " hello");
    }

    #[test]
    fn continuous_usage_counts_multi_token_events() {
        let mut s = st();
        let ev = |c: &str, n: u64| {
            format!(
                r#"{{"choices":[{{"delta":{{"content":"{c}"}}}}],"usage":{{"prompt_tokens":3,"completion_tokens":{n}}}}}"#
            )
        };
        s.on_event(br#"{"choices":[{"delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":3,"completion_tokens":0}}"#, b"", 0.5);
        s.on_event(ev("a", 1).as_bytes(), b"", 1.0);
        s.on_event(ev("bc", 3).as_bytes(), b"", 1.1);
        s.on_event(ev("d", 4).as_bytes(), b"", 1.2);
        s.on_event(ev("efg", 7).as_bytes(), b"", 1.3);
        assert_eq!(s.multi_token_events(Some(7)), 2);
        assert_eq!(s.output_events, 4);
    }

    #[test]
    fn inferred_multi_token_events() {
        let mut s = st();
        for i in 0..4 {
            s.on_event(
                br#"{"choices":[{"delta":{"content":"x"}}]}"#,
                b"",
                f64::from(i),
            );
        }
        assert_eq!(s.multi_token_events(Some(4)), 0);
        assert_eq!(s.multi_token_events(Some(6)), 2);
        assert_eq!(s.multi_token_events(Some(16)), 4);
        assert_eq!(s.multi_token_events(None), 0);
    }

    #[test]
    fn errors_in_stream() {
        let mut s = st();
        assert_eq!(
            s.on_event(
                br#"{"error":{"message":"boom","type":"InternalServerError","code":500}}"#,
                b"",
                1.0
            ),
            Flow::Fail
        );
        assert_eq!(s.error.as_ref().unwrap().0, ErrorClass::Http5xx);
        assert!(s.error.as_ref().unwrap().1.contains("boom"));

        let mut s = st();
        s.on_event(
            br#"{"object":"error","message":"too long","code":400}"#,
            b"",
            1.0,
        );
        assert_eq!(s.error.as_ref().unwrap().0, ErrorClass::Http4xx);

        let mut s = st();
        s.on_event(br#"{"error":"engine died"}"#, b"", 1.0);
        assert_eq!(s.error.as_ref().unwrap().0, ErrorClass::StreamBroken);

        let mut s = st();
        assert_eq!(
            s.on_event(b"{\"choices\":[{\"delta\"", b"", 1.0),
            Flow::Fail
        );
        let (c, m) = s.error.clone().unwrap();
        assert_eq!(c, ErrorClass::Protocol);
        assert!(m.contains("{\"choices\":[{\"delta\""), "{m}");
    }

    #[test]
    fn non_streaming_body() {
        let mut s = st();
        let f = s.on_body(br#"{"choices":[{"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#, 5.0);
        assert_eq!(f, Flow::Done);
        assert_eq!(s.t_first_token, Some(5.0));
        assert_eq!(s.t_last_token, Some(5.0));
        assert_eq!(s.output_events, 1);
        assert_eq!(s.usage.unwrap().prompt_tokens, Some(4));
        let mut s = st();
        assert_eq!(s.on_body(br#"{"id":"x"}"#, 1.0), Flow::Fail);
        assert_eq!(s.error.unwrap().0, ErrorClass::Protocol);
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use crate::sse::{SseItem, SseParser};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Ev {
        Content(String),
        Reasoning(String),
        Comment,
        Usage(u64),
        /// The same content event with its JSON spread over two `data:` lines.
        TwoLines(String),
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => "\\PC{0,6}".prop_map(Ev::Content),
            1 => "\\PC{1,4}".prop_map(Ev::Reasoning),
            1 => Just(Ev::Comment),
            1 => (0u64..100).prop_map(Ev::Usage),
            1 => "\\PC{1,4}".prop_map(Ev::TwoLines),
        ]
    }

    fn render(evs: &[Ev], eol: &str, prefix: &str, done: bool) -> Vec<u8> {
        let mut s = String::new();
        let data = |s: &mut String, lines: &[String]| {
            for l in lines {
                s.push_str(prefix);
                s.push_str(l);
                s.push_str(eol);
            }
            s.push_str(eol);
        };
        for e in evs {
            match e {
                Ev::Content(t) => data(
                    &mut s,
                    &[serde_json::json!({"choices":[{"index":0,"delta":{"content":t}}]}).to_string()],
                ),
                Ev::Reasoning(t) => data(
                    &mut s,
                    &[serde_json::json!({"choices":[{"delta":{"reasoning_content":t}}]}).to_string()],
                ),
                Ev::Comment => {
                    s.push_str(": ping");
                    s.push_str(eol);
                    s.push_str(eol);
                }
                Ev::Usage(n) => data(
                    &mut s,
                    &[serde_json::json!({"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":n}}).to_string()],
                ),
                Ev::TwoLines(t) => data(
                    &mut s,
                    &[
                        "{\"choices\":".to_string(),
                        serde_json::json!([{"delta":{"content":t}}]).to_string() + "}",
                    ],
                ),
            }
        }
        if done {
            data(&mut s, &["[DONE]".to_string()]);
        }
        s.into_bytes()
    }

    /// Parse `bytes` delivered in pieces; the summary of what was understood.
    fn interpret(
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Vec<Vec<u8>>, String, String, u32, Option<Usage>, bool, bool) {
        let mut parser = SseParser::new();
        let mut st = ResponseState::new(true, false);
        let mut events = Vec::new();
        let mut invalid = false;
        let mut pos = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.push(bytes.len());
        for (i, p) in points.into_iter().enumerate() {
            if p < pos {
                continue;
            }
            let piece = &bytes[pos..p];
            pos = p;
            parser.feed(piece, &mut |it| {
                match it {
                    SseItem::Event { data, name } => {
                        events.push(data.to_vec());
                        st.on_event(data, name, i as f64);
                    }
                    SseItem::Invalid(_) => invalid = true,
                }
                true
            });
        }
        let trailing = parser.finish(&mut |_| true);
        assert!(trailing.is_none());
        (
            events,
            st.answer,
            st.other_text,
            st.output_events,
            st.usage,
            st.done,
            invalid,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_splits_give_identical_results(
            evs in proptest::collection::vec(ev(), 0..12),
            eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            prefix in prop_oneof![Just("data: "), Just("data:")],
            done in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..24),
        ) {
            let bytes = render(&evs, eol, prefix, done);
            let whole = interpret(&bytes, &[]);
            let split = interpret(&bytes, &cuts);
            prop_assert_eq!(&whole, &split);
            // And the whole parse is right.
            let expect_answer: String = evs.iter().filter_map(|e| match e {
                Ev::Content(t) | Ev::TwoLines(t) => Some(t.as_str()),
                _ => None,
            }).collect();
            prop_assert_eq!(&whole.1, &expect_answer);
            let expect_events = evs.iter().filter(|e| match e {
                Ev::Content(t) | Ev::TwoLines(t) | Ev::Reasoning(t) => !t.is_empty(),
                _ => false,
            }).count() as u32;
            prop_assert_eq!(whole.3, expect_events);
            prop_assert_eq!(whole.5, done);
            prop_assert!(!whole.6);
        }
    }
}
