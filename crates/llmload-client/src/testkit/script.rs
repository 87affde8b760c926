//! What the scripted server answers: [`Reply`], and [`StreamScript`] built with [`Stream`].

use std::time::Duration;

use serde_json::{Value, json};

/// One step of a streamed answer. Steps between two [`Step::Wait`]s go out in one write.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Flush what is buffered, then sleep.
    Wait(Duration),
    /// A chat chunk with only `role: assistant` (and empty content): not a token.
    Role,
    /// An output chunk carrying `tokens` tokens of text (chat `delta.content` or completion
    /// `text`). `usage` adds a (cumulative) usage object to the same chunk.
    Content {
        text: String,
        tokens: u32,
        usage: Option<(u64, u64)>,
        finish: Option<String>,
    },
    /// A chat chunk with `delta.reasoning_content`.
    Reasoning { text: String, tokens: u32 },
    /// A chat chunk with a tool call delta.
    ToolCall { name: String, arguments: String },
    /// A chunk with empty content (not a token).
    Empty,
    /// A chunk carrying only `finish_reason`.
    Finish(String),
    /// The final usage chunk (`choices: []`): prompt and completion tokens.
    Usage(u64, u64),
    /// `data: [DONE]`.
    Done,
    /// `: ping` comment.
    Comment,
    /// `data: {"error": ...}`.
    Error(Value),
    /// Bytes written as they are (malformed SSE, split events).
    Raw(Vec<u8>),
    /// Close the connection at once (abruptly ends a chunked body).
    Cut,
}

/// How the body of a streamed answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked` (keep-alive).
    Chunked,
    /// No length; the body ends when the server closes the connection.
    Close,
}

/// A streamed answer.
#[derive(Debug, Clone)]
pub struct StreamScript {
    pub status: u16,
    pub steps: Vec<Step>,
    pub framing: Framing,
    /// Line ending of SSE lines: `"\n"` or `"\r\n"`.
    pub line_end: &'static str,
    /// `"data: "` or `"data:"`.
    pub data_prefix: &'static str,
    /// Chat (`delta`) or completions (`text`) chunk shape.
    pub completions: bool,
    /// `Content-Type` header.
    pub content_type: &'static str,
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A streamed answer.
    Stream(StreamScript),
    /// A complete response with a JSON (or any) body, after `delay`.
    Body {
        status: u16,
        body: String,
        content_type: &'static str,
        delay: Duration,
    },
    /// Raw bytes (a whole HTTP response, valid or not), then close if `close`.
    Raw { bytes: Vec<u8>, close: bool },
    /// Read the request, wait `after`, close without answering.
    Close { after: Duration },
}

impl Reply {
    /// A JSON error answer, as vLLM sends them.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::Body {
            status,
            body: json!({"object":"error","message":message,"type":"BadRequestError","param":null,"code":status})
                .to_string(),
            content_type: "application/json",
            delay: Duration::ZERO,
        }
    }

    /// A non-streamed chat answer of `tokens` tokens with usage.
    pub fn chat_body(tokens: u32, prompt_tokens: u64, delay: Duration) -> Reply {
        let text: String = (0..tokens).map(|i| format!("t{i} ")).collect();
        Reply::Body {
            status: 200,
            body: json!({"id":"cmpl-1","object":"chat.completion","model":"test-model",
                "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"length"}],
                "usage":{"prompt_tokens":prompt_tokens,"completion_tokens":tokens,"total_tokens":prompt_tokens+u64::from(tokens)}})
            .to_string(),
            content_type: "application/json",
            delay,
        }
    }
}

/// Where usage goes in a scripted stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageMode {
    /// A separate final chunk with `choices: []` (vLLM with include_usage).
    Final,
    /// In the last content chunk.
    InLast,
    /// On every chunk, cumulative (vLLM's `continuous_usage_stats`).
    Continuous,
    /// None at all.
    Absent,
}

/// Builder of typical streams: `Stream::new(16).ttft(ms(50)).gap(ms(10)).script()`.
#[derive(Debug, Clone)]
pub struct Stream {
    pub tokens: u32,
    pub per_chunk: u32,
    pub ttft: Duration,
    pub gap: Duration,
    /// Send a role-only chunk at once, long before the first token.
    pub role_first: bool,
    /// The first `reasoning` tokens are `reasoning_content`.
    pub reasoning: u32,
    pub usage: UsageMode,
    pub prompt_tokens: u64,
    pub done: bool,
    /// Stop (cut the connection) after this many output chunks.
    pub cut_after: Option<u32>,
    pub comments: bool,
    pub completions: bool,
    pub crlf: bool,
    pub no_space: bool,
    pub framing: Framing,
}

impl Stream {
    pub fn new(tokens: u32) -> Self {
        Self {
            tokens,
            per_chunk: 1,
            ttft: Duration::ZERO,
            gap: Duration::ZERO,
            role_first: false,
            reasoning: 0,
            usage: UsageMode::Final,
            prompt_tokens: 10,
            done: true,
            cut_after: None,
            comments: false,
            completions: false,
            crlf: false,
            no_space: false,
            framing: Framing::Chunked,
        }
    }
    pub fn ttft(mut self, d: Duration) -> Self {
        self.ttft = d;
        self
    }
    pub fn gap(mut self, d: Duration) -> Self {
        self.gap = d;
        self
    }
    pub fn per_chunk(mut self, n: u32) -> Self {
        self.per_chunk = n.max(1);
        self
    }
    pub fn role_first(mut self) -> Self {
        self.role_first = true;
        self
    }
    pub fn reasoning(mut self, n: u32) -> Self {
        self.reasoning = n;
        self
    }
    pub fn usage(mut self, u: UsageMode) -> Self {
        self.usage = u;
        self
    }
    pub fn no_done(mut self) -> Self {
        self.done = false;
        self
    }
    pub fn cut_after(mut self, chunks: u32) -> Self {
        self.cut_after = Some(chunks);
        self
    }
    pub fn comments(mut self) -> Self {
        self.comments = true;
        self
    }
    pub fn completions(mut self) -> Self {
        self.completions = true;
        self
    }
    pub fn crlf(mut self) -> Self {
        self.crlf = true;
        self
    }
    pub fn no_space(mut self) -> Self {
        self.no_space = true;
        self
    }
    pub fn framing(mut self, f: Framing) -> Self {
        self.framing = f;
        self
    }

    /// The steps of this stream.
    pub fn steps(&self) -> Vec<Step> {
        let mut s = Vec::new();
        if self.comments {
            s.push(Step::Comment);
        }
        if self.role_first && !self.completions {
            s.push(Step::Role);
        }
        s.push(Step::Wait(self.ttft));
        let mut sent = 0u32;
        let mut chunk = 0u32;
        while sent < self.tokens {
            if Some(chunk) == self.cut_after {
                s.push(Step::Cut);
                return s;
            }
            if chunk > 0 {
                s.push(Step::Wait(self.gap));
                if self.comments && chunk.is_multiple_of(4) {
                    s.push(Step::Comment);
                }
            }
            let n = self.per_chunk.min(self.tokens - sent);
            let text: String = (sent..sent + n).map(|i| format!("t{i} ")).collect();
            let last = sent + n == self.tokens;
            if sent < self.reasoning && !self.completions {
                s.push(Step::Reasoning { text, tokens: n });
            } else {
                let usage = match self.usage {
                    UsageMode::Continuous => Some((self.prompt_tokens, u64::from(sent + n))),
                    UsageMode::InLast if last => Some((self.prompt_tokens, u64::from(self.tokens))),
                    _ => None,
                };
                s.push(Step::Content {
                    text,
                    tokens: n,
                    usage,
                    finish: last.then(|| "length".to_string()),
                });
            }
            if last && sent < self.reasoning && !self.completions {
                s.push(Step::Finish("length".into()));
            }
            sent += n;
            chunk += 1;
        }
        if Some(chunk) == self.cut_after {
            s.push(Step::Cut);
            return s;
        }
        if self.usage == UsageMode::Final || self.usage == UsageMode::Continuous {
            s.push(Step::Usage(self.prompt_tokens, u64::from(self.tokens)));
        }
        if self.done {
            s.push(Step::Done);
        }
        s
    }

    /// The reply.
    pub fn script(&self) -> StreamScript {
        StreamScript {
            status: 200,
            steps: self.steps(),
            framing: self.framing,
            line_end: if self.crlf { "\r\n" } else { "\n" },
            data_prefix: if self.no_space { "data:" } else { "data: " },
            completions: self.completions,
            content_type: "text/event-stream",
        }
    }

    pub fn reply(&self) -> Reply {
        Reply::Stream(self.script())
    }
}

impl StreamScript {
    /// Custom steps with the default framing.
    pub fn from_steps(steps: Vec<Step>) -> Self {
        Self {
            status: 200,
            steps,
            framing: Framing::Chunked,
            line_end: "\n",
            data_prefix: "data: ",
            completions: false,
            content_type: "text/event-stream",
        }
    }

    /// The SSE bytes of one step (empty for `Wait` and `Cut`).
    pub(crate) fn render(&self, step: &Step) -> Vec<u8> {
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut v = if self.completions {
                json!({"id":"cmpl-1","object":"text_completion","created":0,"model":"test-model","choices":choices})
            } else {
                json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"test-model","choices":choices})
            };
            if let Some(u) = usage {
                v["usage"] = u;
            }
            v.to_string()
        };
        let usage =
            |p: u64, c: u64| json!({"prompt_tokens":p,"completion_tokens":c,"total_tokens":p+c});
        let content_choice = |text: &str, finish: Option<&str>| {
            if self.completions {
                json!([{"index":0,"text":text,"logprobs":null,"finish_reason":finish}])
            } else {
                json!([{"index":0,"delta":{"content":text},"logprobs":null,"finish_reason":finish}])
            }
        };
        let data = match step {
            Step::Wait(_) | Step::Cut => return Vec::new(),
            Step::Raw(b) => return b.clone(),
            Step::Comment => {
                return format!(": ping{}{}", self.line_end, self.line_end).into_bytes();
            }
            Step::Role => chunk(
                json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]),
                None,
            ),
            Step::Content {
                text,
                usage: u,
                finish,
                ..
            } => chunk(
                content_choice(text, finish.as_deref()),
                u.map(|(p, c)| usage(p, c)),
            ),
            Step::Reasoning { text, .. } => chunk(
                json!([{"index":0,"delta":{"reasoning_content":text},"finish_reason":null}]),
                None,
            ),
            Step::ToolCall { name, arguments } => chunk(
                json!([{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",
                    "function":{"name":name,"arguments":arguments}}]},"finish_reason":null}]),
                None,
            ),
            Step::Empty => chunk(content_choice("", None), None),
            Step::Finish(r) => chunk(
                if self.completions {
                    json!([{"index":0,"text":"","finish_reason":r}])
                } else {
                    json!([{"index":0,"delta":{},"finish_reason":r}])
                },
                None,
            ),
            Step::Usage(p, c) => chunk(json!([]), Some(usage(*p, *c))),
            Step::Done => "[DONE]".to_string(),
            Step::Error(e) => json!({"error": e}).to_string(),
        };
        format!(
            "{}{}{}{}",
            self.data_prefix, data, self.line_end, self.line_end
        )
        .into_bytes()
    }
}

/// Whether a step carries output tokens (its write time is a token write time).
pub(crate) fn is_token(step: &Step) -> bool {
    matches!(
        step,
        Step::Content { .. } | Step::Reasoning { .. } | Step::ToolCall { .. }
    )
}
