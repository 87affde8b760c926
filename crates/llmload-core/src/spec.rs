//! What a workload hands the client: one request to send.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One part of a chat message's content (OpenAI's content-part array).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    /// An image: `https://...` or a `data:<mime>;base64,...` URL. Shared, not copied: a
    /// 1024x1024 JPEG is a ~250 KB data URL, and a pool of images (or the same image) is sent
    /// with many requests; cloning the part only bumps a reference count. Serializes as a
    /// plain string.
    ImageUrl {
        #[serde(with = "arc_str")]
        url: Arc<str>,
    },
}

impl ContentPart {
    /// An image part.
    pub fn image_url(url: impl Into<Arc<str>>) -> Self {
        ContentPart::ImageUrl { url: url.into() }
    }
}

/// Serde for `Arc<str>` as a plain string (without serde's `rc` feature, which would change
/// every crate's build).
mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Arc<str>, D::Error> {
        let s = String::deserialize(de)?;
        Ok(Arc::from(s))
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Vec<ContentPart>,
}

impl ChatMessage {
    /// A message holding one text part.
    pub fn text(role: &str, text: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: vec![ContentPart::Text { text: text.into() }],
        }
    }
}

/// The prompt of a request: plain text (sent as one user message on the chat API, or as
/// `prompt` on the completions API) or a full list of chat messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    Messages(Vec<ChatMessage>),
}

impl Prompt {
    /// The prompt as text for the completions API: text parts joined by newlines.
    pub fn as_completion_text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(msgs) => {
                let mut out = String::new();
                for m in msgs {
                    for p in &m.content {
                        if let ContentPart::Text { text } = p {
                            if !out.is_empty() {
                                out.push('\n');
                            }
                            out.push_str(text);
                        }
                    }
                }
                out
            }
        }
    }
}

/// What is known about one image sent with a request (recorded per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: Option<u64>,
    pub mime: Option<String>,
}

/// One request as the workload wants it sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSpec {
    pub prompt: Prompt,
    /// Prompt tokens as counted by the client's tokenizer (text only).
    pub prompt_tokens: Option<u64>,
    /// Requested output length, sent as `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Images carried by the prompt (for the per-request record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageMeta>,
    /// Offset in seconds from the benchmark start at which a trace wants this request sent.
    /// `None` for requests paced by the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    /// Free-form labels (dataset row, scenario, session/turn) copied into the request record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl RequestSpec {
    /// A plain text request.
    pub fn text(
        prompt: impl Into<String>,
        prompt_tokens: Option<u64>,
        max_tokens: Option<u32>,
    ) -> Self {
        Self {
            prompt: Prompt::Text(prompt.into()),
            prompt_tokens,
            max_tokens,
            images: Vec::new(),
            at_s: None,
            tag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_part_json_is_a_plain_string_and_round_trips() {
        let url = "data:image/jpeg;base64,/9j/4AAQ+/==";
        let p = ContentPart::image_url(url);
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(
            j,
            r#"{"type":"image_url","url":"data:image/jpeg;base64,/9j/4AAQ+/=="}"#
        );
        let back: ContentPart = serde_json::from_str(&j).unwrap();
        assert_eq!(back, p);
        // Escapes survive the round trip.
        let odd = ContentPart::image_url("https://h/a\"b\u{e9}\n");
        let back: ContentPart =
            serde_json::from_str(&serde_json::to_string(&odd).unwrap()).unwrap();
        assert_eq!(back, odd);
    }

    #[test]
    fn cloning_an_image_part_shares_the_url() {
        let p = ContentPart::image_url(String::from("data:image/png;base64,AAAA"));
        let q = p.clone();
        match (&p, &q) {
            (ContentPart::ImageUrl { url: a }, ContentPart::ImageUrl { url: b }) => {
                assert!(Arc::ptr_eq(a, b))
            }
            _ => unreachable!("both are image parts"),
        }
    }
}
