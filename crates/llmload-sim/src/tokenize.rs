//! The simulator's tokenizer: a real byte-level BPE (tiktoken's `cl100k_base`, bundled in the
//! binary, no download), so prompt token counts are what a BPE tokenizer gives: llmload's
//! synthetic prompts of N tokens (exact in `cl100k_base`, llmload's default tokenizer) count N
//! here, close to what a Qwen or Llama tokenizer counts on a real vLLM server.
//!
//! Chat requests add the chat template's tokens, as Qwen's ChatML template does:
//! `<|im_start|>{role}\n ... <|im_end|>\n` (5 tokens per message) and `<|im_start|>assistant\n`
//! (3 tokens) for the assistant turn. Token ids are `cl100k_base` ids, so equal prefixes give
//! equal ids (prefix caching works) and `POST /tokenize` returns real token ids.
//!
//! The encoder is built once per process (a few hundred ms; [`warm_up`] does it ahead of the
//! first request) and shared; encoding a 256-token prompt costs tens of microseconds
//! (`cargo bench -p llmload-sim --bench tokenize`, docs/performance/sim.md).

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

/// Template tokens per chat message (`<|im_start|>role\n ... <|im_end|>\n`).
pub const CHAT_TOKENS_PER_MESSAGE: u32 = 5;
/// Template tokens that open the assistant's turn (`<|im_start|>assistant\n`).
pub const CHAT_TOKENS_ASSISTANT_PROMPT: u32 = 3;

/// The encoding used for text.
pub const ENCODING: &str = "cl100k_base";

/// `<|im_start|>` and `<|im_end|>` as numbered in the ChatML variant of `cl100k_base`.
const IM_START: u32 = 100_264;
const IM_END: u32 = 100_265;
/// `"\n"` in `cl100k_base`.
const NEWLINE: u32 = 198;

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Builds the shared encoder now (otherwise the first request pays for it).
pub fn warm_up() {
    let _ = role_token("user");
}

/// Appends the token ids of `text` to `out`; returns how many were added.
pub fn tokenize_into(text: &str, out: &mut Vec<u32>) -> u32 {
    if text.is_empty() {
        return 0;
    }
    let ids = bpe().encode_ordinary(text);
    let n = ids.len() as u32;
    out.extend(ids);
    n
}

/// Number of tokens of `text`.
pub fn count(text: &str) -> u32 {
    if text.is_empty() {
        return 0;
    }
    bpe().encode_ordinary(text).len() as u32
}

/// A role's single template token: the role name's first BPE token (roles are one token in the
/// real vocabularies: `user`, `system`, `assistant`, `tool`); the common roles are looked up once.
fn role_token(role: &str) -> u32 {
    fn first(role: &str) -> u32 {
        bpe()
            .encode_ordinary(role)
            .first()
            .copied()
            .unwrap_or(NEWLINE)
    }
    static COMMON: OnceLock<[u32; 4]> = OnceLock::new();
    let c = COMMON.get_or_init(|| {
        [
            first("user"),
            first("assistant"),
            first("system"),
            first("tool"),
        ]
    });
    match role {
        "user" => c[0],
        "assistant" => c[1],
        "system" => c[2],
        "tool" => c[3],
        other => first(other),
    }
}

/// Template token ids of a chat message of `role` ([`CHAT_TOKENS_PER_MESSAGE`] ids).
pub fn push_message_template(role: &str, out: &mut Vec<u32>) {
    out.extend_from_slice(&[IM_START, role_token(role), NEWLINE, IM_END, NEWLINE]);
}

/// Template token ids that open the assistant's turn ([`CHAT_TOKENS_ASSISTANT_PROMPT`] ids).
pub fn push_assistant_prompt(out: &mut Vec<u32>) {
    out.extend_from_slice(&[IM_START, role_token("assistant"), NEWLINE]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_cl100k_base() {
        // reference counts of tiktoken's cl100k_base
        assert_eq!(count("hello world"), 2);
        assert_eq!(count("The quick brown fox jumps over the lazy dog."), 10);
        assert_eq!(count(""), 0);
        let t = "Descreva a imagem em português.";
        let mut v = Vec::new();
        assert_eq!(tokenize_into(t, &mut v), count(t));
        assert_eq!(v.len() as u32, count(t));
        // real ids: "hello" is 15339 and " world" 1917 in cl100k_base
        let mut v = Vec::new();
        tokenize_into("hello world", &mut v);
        assert_eq!(v, vec![15339, 1917]);
    }

    #[test]
    fn synthetic_prompts_of_one_token_words_count_exactly() {
        // llmload's synthetic prompts are words that are one cl100k_base token each (" word"
        // after the first): 256 of them are 256 tokens here, as on a real server
        let words = [
            "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with",
        ];
        let prompt = (0..256)
            .map(|i| words[(i * 7) % words.len()])
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(count(&prompt), 256);
    }

    #[test]
    fn english_text_is_about_four_bytes_per_token() {
        let text = "Continuous batching lets an inference server add new requests to the \
                    running batch at every step, so the GPU stays busy while requests of \
                    different lengths come and go. ";
        let long = text.repeat(8);
        let bytes_per_token = long.len() as f64 / count(&long) as f64;
        assert!(
            (3.5..=6.5).contains(&bytes_per_token),
            "{bytes_per_token} bytes per token"
        );
    }

    #[test]
    fn same_prefix_same_ids() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        tokenize_into("hello world again", &mut a);
        tokenize_into("hello world other", &mut b);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a, b);
    }

    #[test]
    fn templates_have_the_documented_sizes() {
        let mut v = Vec::new();
        push_message_template("user", &mut v);
        assert_eq!(v.len() as u32, CHAT_TOKENS_PER_MESSAGE);
        let mut w = Vec::new();
        push_assistant_prompt(&mut w);
        assert_eq!(w.len() as u32, CHAT_TOKENS_ASSISTANT_PROMPT);
        assert_eq!(v[0], IM_START);
        let mut s = Vec::new();
        push_message_template("system", &mut s);
        assert_ne!(v[1], s[1], "roles differ");
    }
}
