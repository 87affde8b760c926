//! The simulator's tokenizer: a deterministic, cheap approximation (no vocabulary, no download).
//!
//! Text is split on whitespace; each word counts `ceil(bytes / 4)` tokens (at least one), which
//! is close to BPE tokenizers on English text (about 4 bytes per token). Token ids are hashes of
//! the word pieces, so identical prefixes give identical ids (prefix caching works). Chat
//! requests add the chat template's tokens: 5 per message and 3 for the assistant turn.

/// Template tokens per chat message (`<|im_start|>role\n ... <|im_end|>\n`).
pub const CHAT_TOKENS_PER_MESSAGE: u32 = 5;
/// Template tokens that open the assistant's turn.
pub const CHAT_TOKENS_ASSISTANT_PROMPT: u32 = 3;

fn fnv(bytes: &[u8], seed: u64) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// Appends the pseudo token ids of `text` to `out`; returns how many were added.
pub fn tokenize_into(text: &str, out: &mut Vec<u32>) -> u32 {
    let before = out.len();
    for word in text.split_whitespace() {
        let b = word.as_bytes();
        for (i, piece) in b.chunks(4).enumerate() {
            out.push(fnv(piece, i as u64));
        }
    }
    (out.len() - before) as u32
}

/// Number of tokens of `text`.
pub fn count(text: &str) -> u32 {
    text.split_whitespace()
        .map(|w| (w.len() as u32).div_ceil(4).max(1))
        .sum()
}

/// Template token ids for a chat message of `role`.
pub fn push_message_template(role: &str, out: &mut Vec<u32>) {
    let r = fnv(role.as_bytes(), 99);
    out.extend_from_slice(&[0xFFFF_0001, r, 0xFFFF_0002, 0xFFFF_0003, 0xFFFF_0004]);
}

pub fn push_assistant_prompt(out: &mut Vec<u32>) {
    out.extend_from_slice(&[0xFFFF_0001, fnv(b"assistant", 99), 0xFFFF_0002]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_matches_tokenize_and_is_about_bytes_over_4() {
        let t = "The quick brown fox jumps over the lazy dog, extraordinarily.";
        let mut v = Vec::new();
        assert_eq!(tokenize_into(t, &mut v), count(t));
        assert_eq!(count(t), 1 + 2 + 2 + 1 + 2 + 1 + 1 + 1 + 1 + 4);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn same_prefix_same_ids() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        tokenize_into("hello world again", &mut a);
        tokenize_into("hello world other", &mut b);
        assert_eq!(a[..3], b[..3]);
        assert_ne!(a, b);
    }
}
