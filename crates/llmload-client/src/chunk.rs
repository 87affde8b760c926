//! One OpenAI JSON object (a stream chunk, or a whole non-streamed answer): the fields llmload
//! reads, parsed with the [`json`](crate::json) scanner and borrowed from the bytes.
//!
//! The tests hold this parser to serde_json's derived deserializers for the same types (kept,
//! in test builds only, as the oracle): the same documents are accepted, with the same values.
//! One deliberate difference: serde also reads a struct from an array (fields by position), a
//! form no server sends; here an object is required where one is expected.

use std::borrow::Cow;

use crate::json::{JsonError, Scanner};

/// A JSON string borrowed from the body when it has no escapes, owned otherwise.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub(crate) struct Chunk<'a> {
    #[cfg_attr(test, serde(default, borrow))]
    pub choices: Option<Choices<'a>>,
    #[cfg_attr(test, serde(default))]
    pub usage: Option<Usage>,
    #[cfg_attr(test, serde(default))]
    pub error: Option<serde_json::Value>,
    /// vLLM's plain error body: `{"object":"error","message":...,"code":...}`.
    #[cfg_attr(test, serde(default, borrow))]
    pub object: Option<Text<'a>>,
    #[cfg_attr(test, serde(default, borrow))]
    pub message: Option<Text<'a>>,
    #[cfg_attr(test, serde(default))]
    pub code: Option<serde_json::Value>,
}

/// The `choices` array; the first choice is held inline (no allocation for `n = 1`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Choices<'a> {
    pub first: Option<Choice<'a>>,
    pub rest: Vec<Choice<'a>>,
}

impl<'a> Choices<'a> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Choice<'a>> {
        self.first.iter().chain(self.rest.iter())
    }
}

#[derive(Debug, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub(crate) struct Choice<'a> {
    /// Chat streaming.
    #[cfg_attr(test, serde(default, borrow))]
    pub delta: Option<Delta<'a>>,
    /// Chat non-streaming.
    #[cfg_attr(test, serde(default, borrow))]
    pub message: Option<Delta<'a>>,
    /// Completions.
    #[cfg_attr(test, serde(default, borrow))]
    pub text: Option<Text<'a>>,
    #[cfg_attr(test, serde(default, borrow))]
    pub finish_reason: Option<Text<'a>>,
}

#[derive(Debug, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub(crate) struct Delta<'a> {
    #[cfg_attr(test, serde(default, borrow))]
    pub content: Option<Text<'a>>,
    #[cfg_attr(test, serde(default, borrow))]
    pub reasoning_content: Option<Text<'a>>,
    #[cfg_attr(test, serde(default, borrow))]
    pub reasoning: Option<Text<'a>>,
    #[cfg_attr(test, serde(default, borrow))]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Debug, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub(crate) struct ToolCall<'a> {
    #[cfg_attr(test, serde(default, borrow))]
    pub function: Option<Function<'a>>,
}

#[derive(Debug, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub(crate) struct Function<'a> {
    #[cfg_attr(test, serde(default, borrow))]
    pub name: Option<Text<'a>>,
    #[cfg_attr(test, serde(default, borrow))]
    pub arguments: Option<Text<'a>>,
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub(crate) struct Usage {
    #[cfg_attr(test, serde(default))]
    pub prompt_tokens: Option<u64>,
    #[cfg_attr(test, serde(default))]
    pub completion_tokens: Option<u64>,
}

/// Parse one chunk. Unknown fields are skipped (and checked); a known field given twice, or
/// with the wrong type, is an error. Values are read into their places (a chunk is a few
/// hundred bytes: moving it around cost more than reading it).
pub(crate) fn parse(b: &[u8]) -> Result<Chunk<'_>, JsonError> {
    let mut s = Scanner::new(b);
    let mut c = Chunk::default();
    let mut seen = Seen::default();
    s.object("a JSON object", |s, key| {
        match &*key {
            b"choices" => {
                seen.once(s, 0, "choices")?;
                if s.null()? {
                    c.choices = None;
                } else {
                    let all = c.choices.insert(Choices::default());
                    s.array("an array of choices", |s| choice(s, all.next()))?;
                }
            }
            b"usage" => {
                seen.once(s, 1, "usage")?;
                opt(s, &mut c.usage, usage)?;
            }
            b"error" => {
                seen.once(s, 2, "error")?;
                c.error = or_null(s, value)?;
            }
            b"object" => {
                seen.once(s, 3, "object")?;
                c.object = text(s)?;
            }
            b"message" => {
                seen.once(s, 4, "message")?;
                c.message = text(s)?;
            }
            b"code" => {
                seen.once(s, 5, "code")?;
                c.code = or_null(s, value)?;
            }
            _ => s.other(&key)?,
        }
        Ok(())
    })?;
    s.end()?;
    Ok(c)
}

impl<'a> Choices<'a> {
    /// A new empty choice at the end, to be filled in place.
    fn next(&mut self) -> &mut Choice<'a> {
        if self.first.is_none() {
            return self.first.insert(Choice::default());
        }
        self.rest.push(Choice::default());
        let last = self.rest.len() - 1;
        &mut self.rest[last]
    }
}

/// The known fields met so far in one object, one bit each (a repeated field is an error,
/// as in serde).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    #[inline(always)]
    fn once(&mut self, s: &Scanner<'_>, bit: u32, name: &'static str) -> Result<(), JsonError> {
        if self.0 & (1 << bit) != 0 {
            return Err(duplicate(s, name));
        }
        self.0 |= 1 << bit;
        Ok(())
    }
}

#[cold]
fn duplicate(s: &Scanner<'_>, name: &'static str) -> JsonError {
    s.error(format!("duplicate field `{name}`"))
}

/// `null` → `None`; otherwise a default value in `slot`, filled in place by `read`.
#[inline(always)]
fn opt<'a, T: Default>(
    s: &mut Scanner<'a>,
    slot: &mut Option<T>,
    read: impl FnOnce(&mut Scanner<'a>, &mut T) -> Result<(), JsonError>,
) -> Result<(), JsonError> {
    if s.null()? {
        *slot = None;
        Ok(())
    } else {
        read(s, slot.insert(T::default()))
    }
}

/// `null` → `None`, otherwise what `read` reads.
#[inline(always)]
fn or_null<'a, T>(
    s: &mut Scanner<'a>,
    read: impl FnOnce(&mut Scanner<'a>) -> Result<T, JsonError>,
) -> Result<Option<T>, JsonError> {
    if s.null()? {
        Ok(None)
    } else {
        read(s).map(Some)
    }
}

/// A string or `null`.
#[inline(always)]
fn text<'a>(s: &mut Scanner<'a>) -> Result<Option<Text<'a>>, JsonError> {
    or_null(s, |s| s.string().map(Text))
}

/// Any value, as serde_json's `Value` (only error objects take this path).
fn value(s: &mut Scanner<'_>) -> Result<serde_json::Value, JsonError> {
    let raw = s.raw()?;
    serde_json::from_slice(raw).map_err(|e| s.error(e.to_string()))
}

fn usage(s: &mut Scanner<'_>, u: &mut Usage) -> Result<(), JsonError> {
    let mut seen = Seen::default();
    s.object("a usage object", |s, key| {
        match &*key {
            b"prompt_tokens" => {
                seen.once(s, 0, "prompt_tokens")?;
                u.prompt_tokens = or_null(s, Scanner::u64)?;
            }
            b"completion_tokens" => {
                seen.once(s, 1, "completion_tokens")?;
                u.completion_tokens = or_null(s, Scanner::u64)?;
            }
            _ => s.other(&key)?,
        }
        Ok(())
    })
}

fn choice<'a>(s: &mut Scanner<'a>, c: &mut Choice<'a>) -> Result<(), JsonError> {
    let mut seen = Seen::default();
    s.object("a choice object", |s, key| {
        match &*key {
            b"delta" => {
                seen.once(s, 0, "delta")?;
                opt(s, &mut c.delta, delta)?;
            }
            b"message" => {
                seen.once(s, 1, "message")?;
                opt(s, &mut c.message, delta)?;
            }
            b"text" => {
                seen.once(s, 2, "text")?;
                c.text = text(s)?;
            }
            b"finish_reason" => {
                seen.once(s, 3, "finish_reason")?;
                c.finish_reason = text(s)?;
            }
            _ => s.other(&key)?,
        }
        Ok(())
    })
}

fn delta<'a>(s: &mut Scanner<'a>, d: &mut Delta<'a>) -> Result<(), JsonError> {
    let mut seen = Seen::default();
    s.object("a message object", |s, key| {
        match &*key {
            b"content" => {
                seen.once(s, 0, "content")?;
                d.content = text(s)?;
            }
            b"reasoning_content" => {
                seen.once(s, 1, "reasoning_content")?;
                d.reasoning_content = text(s)?;
            }
            b"reasoning" => {
                seen.once(s, 2, "reasoning")?;
                d.reasoning = text(s)?;
            }
            b"tool_calls" => {
                seen.once(s, 3, "tool_calls")?;
                opt(s, &mut d.tool_calls, |s, calls| {
                    s.array("an array of tool calls", |s| {
                        calls.push(ToolCall::default());
                        let last = calls.len() - 1;
                        tool_call(s, &mut calls[last])
                    })
                })?;
            }
            _ => s.other(&key)?,
        }
        Ok(())
    })
}

fn tool_call<'a>(s: &mut Scanner<'a>, t: &mut ToolCall<'a>) -> Result<(), JsonError> {
    let mut seen = Seen::default();
    s.object("a tool call object", |s, key| {
        if *key == *b"function" {
            seen.once(s, 0, "function")?;
            opt(s, &mut t.function, function)?;
        } else {
            s.other(&key)?;
        }
        Ok(())
    })
}

fn function<'a>(s: &mut Scanner<'a>, f: &mut Function<'a>) -> Result<(), JsonError> {
    let mut seen = Seen::default();
    s.object("a function object", |s, key| {
        match &*key {
            b"name" => {
                seen.once(s, 0, "name")?;
                f.name = text(s)?;
            }
            b"arguments" => {
                seen.once(s, 1, "arguments")?;
                f.arguments = text(s)?;
            }
            _ => s.other(&key)?,
        }
        Ok(())
    })
}

/// serde's side of the comparison: the same types, deserialized by serde_json.
#[cfg(test)]
mod serde_oracle {
    use super::*;
    use serde::{Deserialize, Deserializer};

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                type Value = Text<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E: serde::de::Error>(
                    self,
                    v: &'de str,
                ) -> Result<Text<'a>, E> {
                    Ok(Text(Cow::Borrowed(v)))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                    Ok(Text(Cow::Owned(v.to_owned())))
                }
            }
            d.deserialize_str(V(std::marker::PhantomData))
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let all: Vec<Choice<'a>> = Vec::deserialize(d)?;
            let mut c = Choices::default();
            for x in all {
                *c.next() = x;
            }
            Ok(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Both parsers accept `doc` or both refuse it; when accepted, with the same values.
    fn agree(doc: &[u8]) -> Result<(), TestCaseError> {
        let mine = parse(doc);
        let serde = serde_json::from_slice::<Chunk<'_>>(doc);
        match (&mine, &serde) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{}", String::from_utf8_lossy(doc)),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(
                false,
                "{}\nmine: {:?}\nserde: {:?}",
                String::from_utf8_lossy(doc),
                mine,
                serde
            ),
        }
        Ok(())
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let body =
            br#"{"choices":[{"message":{"content":"plain text"},"finish_reason":"length"}]}"#;
        let c = parse(body).unwrap();
        let first = c.choices.as_ref().unwrap().first.as_ref().unwrap();
        let content = first.message.as_ref().unwrap().content.as_ref().unwrap();
        assert!(matches!(content.0, Cow::Borrowed("plain text")));
        assert!(matches!(
            first.finish_reason.as_ref().unwrap().0,
            Cow::Borrowed("length")
        ));
        let body = br#"{"choices":[{"message":{"content":"two\nlines \u00e9"}}]}"#;
        let c = parse(body).unwrap();
        let first = c.choices.as_ref().unwrap().first.as_ref().unwrap();
        let content = first.message.as_ref().unwrap().content.as_ref().unwrap();
        assert!(matches!(&content.0, Cow::Owned(s) if s == "two\nlines \u{e9}"));
    }

    #[test]
    fn the_usual_answers() {
        let body = br#"{"choices":[{"finish_reason":"length","index":0,"message":{"content":" tok0 tok1","role":"assistant"}}],"created":0,"id":"chatcmpl-0","model":"m","object":"chat.completion","usage":{"completion_tokens":2,"prompt_tokens":16,"total_tokens":18}}"#;
        let c = parse(body).unwrap();
        let first = c.choices.as_ref().unwrap().first.as_ref().unwrap();
        assert_eq!(
            first.message.as_ref().unwrap().content.as_deref(),
            Some(" tok0 tok1")
        );
        assert!(matches!(
            first.finish_reason.as_ref().unwrap().0,
            Cow::Borrowed("length")
        ));
        assert_eq!(c.usage.unwrap().completion_tokens, Some(2));
        agree(body).unwrap();
        for doc in [
            &br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#[..],
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            br#"{"error":{"message":"boom","type":"InternalServerError","code":500}}"#,
            br#"{"object":"error","message":"too long","code":400}"#,
            br#"{"error":"engine died"}"#,
            br#"{"choices":null,"usage":null,"error":null}"#,
            br#"{"choices":[{"text":" hi","index":0}],"choices":[]}"#,
            br#"{"usage":{"completion_tokens":1.5}}"#,
            br#"{"usage":{"completion_tokens":-1}}"#,
            br#"{"choices":[null]}"#,
            br#"{"choices":[{"delta":{"content":5}}]}"#,
            br#"{"choi\u0063es":[{"text":"x"}]}"#,
            b"{\"choices\":[{\"delta\"",
            b"  {} ",
            b"{} x",
        ] {
            agree(doc).unwrap();
        }
    }

    /// A JSON value of any kind, as text (with random spacing).
    fn any_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-1e6f64..1e6).prop_map(|f| format!("{f:e}")),
            string_lit(),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                    let f: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{ {} }}", f.join(" ,"))
                }),
            ]
        })
    }

    /// A wrong value for a typed field. Never an array: serde reads a struct from an array
    /// (fields by position), a form no server sends and this parser refuses.
    fn not_array() -> impl Strategy<Value = String> {
        any_value().prop_filter("an array", |v| !v.starts_with('['))
    }

    /// A string literal, with escapes of every kind (some invalid).
    fn string_lit() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            150 => "[a-z é中😀]{0,6}",
            1 => Just("\\n".to_string()),
            1 => Just("\\\"".to_string()),
            1 => Just("\\\\".to_string()),
            1 => Just("\\/\\b\\f\\r\\t".to_string()),
            1 => Just("\\u00e9".to_string()),
            1 => Just("\\ud83d\\ude00".to_string()),
            1 => Just("\\ud83d".to_string()),
            1 => Just("\\ude00".to_string()),
            1 => Just("\\x".to_string()),
            1 => Just("\\u12g4".to_string()),
            1 => Just("\u{1}".to_string()),
        ];
        proptest::collection::vec(piece, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    /// Keys whose value is a struct, or an array of structs, somewhere (see [`not_array`]).
    const STRUCTS: &[&str] = &[
        "\"usage\"",
        "\"delta\"",
        "\"message\"",
        "\"function\"",
        "\"choices\"",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("\"choices\"".to_string()),
            1 => Just("\"usage\"".to_string()),
            1 => Just("\"error\"".to_string()),
            1 => Just("\"object\"".to_string()),
            1 => Just("\"message\"".to_string()),
            1 => Just("\"code\"".to_string()),
            1 => Just("\"delta\"".to_string()),
            1 => Just("\"content\"".to_string()),
            1 => Just("\"text\"".to_string()),
            1 => Just("\"finish_reason\"".to_string()),
            1 => Just("\"completion_tokens\"".to_string()),
            1 => Just("\"id\"".to_string()),
            12 => string_lit(),
        ]
    }

    /// The strategy for a field's well-typed value.
    type Field = fn() -> BoxedStrategy<String>;

    /// An object with each of the `known` fields present or not (well typed most of the
    /// time), a few other fields, in any order.
    fn typed(known: &'static [(&'static str, Field)]) -> BoxedStrategy<String> {
        let fields: Vec<BoxedStrategy<Option<String>>> = known
            .iter()
            .map(|(k, v)| {
                let k = format!("\"{k}\"");
                proptest::option::weighted(
                    0.6,
                    prop_oneof![24 => v(), 2 => Just("null".to_string()), 1 => not_array()]
                        .prop_map(move |v| format!("{k} : {v}")),
                )
                .boxed()
            })
            .collect();
        let other = (key(), any_value())
            .prop_filter("an array for a struct", |(k, v)| {
                !(v.starts_with('[') && STRUCTS.contains(&k.as_str()))
            })
            .prop_map(|(k, v)| format!("{k}:{v}"));
        (fields, proptest::collection::vec(other, 0..3))
            .prop_map(|(f, o)| f.into_iter().flatten().chain(o).collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(|f| format!("{{{}}}", f.join(",")))
            .boxed()
    }

    fn s_text() -> BoxedStrategy<String> {
        string_lit().boxed()
    }
    fn s_int() -> BoxedStrategy<String> {
        prop_oneof![
            24 => (0u64..100_000).prop_map(|n| n.to_string()),
            1 => Just("18446744073709551616".to_string()),
            1 => Just("1.0".to_string()),
            1 => Just("-3".to_string()),
            1 => Just("1e2".to_string()),
        ]
        .boxed()
    }
    fn s_usage() -> BoxedStrategy<String> {
        typed(&[("prompt_tokens", s_int), ("completion_tokens", s_int)])
    }
    fn s_function() -> BoxedStrategy<String> {
        typed(&[("name", s_text), ("arguments", s_text)])
    }
    fn s_tool_calls() -> BoxedStrategy<String> {
        proptest::collection::vec(typed(&[("function", s_function)]), 0..3)
            .prop_map(|v| format!("[{}]", v.join(",")))
            .boxed()
    }
    fn s_delta() -> BoxedStrategy<String> {
        typed(&[
            ("content", s_text),
            ("reasoning_content", s_text),
            ("reasoning", s_text),
            ("tool_calls", s_tool_calls),
        ])
    }
    fn s_choices() -> BoxedStrategy<String> {
        let choice = typed(&[
            ("delta", s_delta),
            ("message", s_delta),
            ("text", s_text),
            ("finish_reason", s_text),
        ]);
        proptest::collection::vec(choice, 0..3)
            .prop_map(|v| format!("[{}]", v.join(",")))
            .boxed()
    }
    fn s_chunk() -> BoxedStrategy<String> {
        typed(&[
            ("choices", s_choices),
            ("usage", s_usage),
            ("error", || any_value().boxed()),
            ("object", s_text),
            ("message", s_text),
            ("code", || any_value().boxed()),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn parses_what_serde_json_parses(doc in s_chunk()) {
            agree(doc.as_bytes())?;
        }

        /// Any bytes at all (the server controls them): an answer or an error, never a panic.
        #[test]
        fn never_panics_on_arbitrary_bytes(doc in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&doc);
        }

        /// Valid documents with several bytes changed or removed: never a panic, and the same
        /// verdict as serde_json's.
        #[test]
        fn survives_many_edits(doc in s_chunk(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..8)) {
            let mut d = doc.into_bytes();
            for (at, byte, remove) in edits {
                if d.is_empty() {
                    break;
                }
                let at = at % d.len();
                if remove {
                    d.remove(at);
                } else if byte != b'[' {
                    d[at] = byte;
                }
            }
            agree(&d)?;
        }

        /// Damaged documents: cut short, or one byte changed.
        #[test]
        fn refuses_what_serde_json_refuses(doc in s_chunk(), at in any::<usize>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut d = doc.into_bytes();
            let at = at % (d.len() + 1);
            if cut {
                d.truncate(at);
            } else if at < d.len() {
                // Never turn an object into an array: serde reads a struct from an array
                // (fields by position), a form no server sends and this parser refuses.
                if byte != b'[' {
                    d[at] = byte;
                }
            }
            agree(&d)?;
        }
    }
}
