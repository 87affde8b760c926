//! The OpenAI chat `messages` JSON of a prompt. `ContentPart` serializes in llmload's own
//! compact shape; servers expect OpenAI's, where an image part is
//! `{"type": "image_url", "image_url": {"url": "..."}}`. Request builders use this.

use llmload_core::{ContentPart, Prompt};
use serde_json::{Value, json};

/// The `messages` array for POST /v1/chat/completions. A text prompt is one user message
/// with string content; messages whose content is a single text part also use string content
/// (accepted by every OpenAI-compatible server); others use the content-part array.
pub fn chat_messages(prompt: &Prompt) -> Value {
    match prompt {
        Prompt::Text(t) => json!([{"role": "user", "content": t}]),
        Prompt::Messages(msgs) => Value::Array(
            msgs.iter()
                .map(|m| match m.content.as_slice() {
                    [ContentPart::Text { text }] => json!({"role": m.role, "content": text}),
                    parts => json!({
                        "role": m.role,
                        "content": parts.iter().map(content_part).collect::<Vec<_>>(),
                    }),
                })
                .collect(),
        ),
    }
}

/// One content part in OpenAI's shape.
pub fn content_part(p: &ContentPart) -> Value {
    match p {
        ContentPart::Text { text } => json!({"type": "text", "text": text}),
        ContentPart::ImageUrl { url } => {
            json!({"type": "image_url", "image_url": {"url": &**url}})
        }
    }
}
