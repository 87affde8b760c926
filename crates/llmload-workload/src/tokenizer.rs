//! Offline tokenizers: tiktoken encodings bundled in the binary (default `cl100k_base`) and a
//! model's own Hugging Face `tokenizer.json` loaded from a file (never from the hub).
//!
//! Counting never adds special tokens (BOS, chat template): the server's chat template adds its
//! own, and the engine reports the difference between the client's count and the server's usage.

use std::path::{Path, PathBuf};

use llmload_core::TokenCounter;
use tiktoken_rs::CoreBPE;

use crate::error::{Result, WorkloadError};

/// The default encoding when no `--tokenizer` is given.
pub const DEFAULT_ENCODING: &str = "cl100k_base";

/// A tokenizer that can encode (for counting and for building exact prompts) and decode.
pub enum Tokenizer {
    /// A bundled tiktoken encoding.
    Tiktoken {
        name: &'static str,
        bpe: &'static CoreBPE,
    },
    /// A Hugging Face tokenizer.json.
    HuggingFace {
        path: PathBuf,
        tok: Box<tokenizers::Tokenizer>,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Tokenizer {
    /// Resolve `--tokenizer`: a bundled encoding name (`cl100k_base`, `o200k_base`, ...,
    /// optionally written `tiktoken:NAME`) or a path to a tokenizer.json (or a directory holding
    /// one).
    pub fn resolve(spec: Option<&str>) -> Result<Self> {
        let spec = spec.unwrap_or(DEFAULT_ENCODING);
        let bare = spec.strip_prefix("tiktoken:").unwrap_or(spec);
        if let Some(t) = Self::tiktoken(bare) {
            return Ok(t);
        }
        let path = Path::new(spec);
        if path.exists() {
            return Self::from_file(path);
        }
        if spec.contains('/') || spec.ends_with(".json") {
            return Err(WorkloadError::TokenizerLoad {
                path: path.to_path_buf(),
                msg: "no such file".into(),
            });
        }
        Err(WorkloadError::UnknownEncoding(spec.to_string()))
    }

    /// A bundled tiktoken encoding by name, or `None` if unknown.
    pub fn tiktoken(name: &str) -> Option<Self> {
        let (name, bpe): (&'static str, &'static CoreBPE) = match name {
            "cl100k_base" => ("cl100k_base", tiktoken_rs::cl100k_base_singleton()),
            "o200k_base" => ("o200k_base", tiktoken_rs::o200k_base_singleton()),
            "p50k_base" => ("p50k_base", tiktoken_rs::p50k_base_singleton()),
            "r50k_base" => ("r50k_base", tiktoken_rs::r50k_base_singleton()),
            _ => return None,
        };
        Some(Self::Tiktoken { name, bpe })
    }

    /// Load a Hugging Face tokenizer.json (a directory is searched for `tokenizer.json`).
    /// Truncation and padding configured in the file are switched off: counts must be exact.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            return Err(WorkloadError::TokenizerLoad {
                path: file,
                msg: "no such file".into(),
            });
        }
        let mut tok =
            tokenizers::Tokenizer::from_file(&file).map_err(|e| WorkloadError::TokenizerLoad {
                path: file.clone(),
                msg: e.to_string(),
            })?;
        tok.with_truncation(None)
            .map_err(|e| WorkloadError::TokenizerLoad {
                path: file.clone(),
                msg: e.to_string(),
            })?
            .with_padding(None);
        Ok(Self::HuggingFace {
            path: file,
            tok: Box::new(tok),
        })
    }

    /// Token ids of `text`, without special tokens. A tokenizer.json that fails on the input
    /// (it should not: plain text) gives an empty list.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Self::Tiktoken { bpe, .. } => bpe.encode_ordinary(text),
            Self::HuggingFace { tok, .. } => tok
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Number of tokens in `text`, without special tokens.
    pub fn count_tokens(&self, text: &str) -> usize {
        match self {
            Self::Tiktoken { bpe, .. } => bpe.count_ordinary(text),
            Self::HuggingFace { tok, .. } => tok
                .encode_fast(text, false)
                .map(|e| e.len())
                .unwrap_or_default(),
        }
    }

    /// Decode one token id to text, if it decodes to valid UTF-8 on its own.
    pub fn decode_one(&self, id: u32) -> Option<String> {
        match self {
            Self::Tiktoken { bpe, .. } => bpe
                .decode_bytes(&[id])
                .ok()
                .and_then(|b| String::from_utf8(b).ok()),
            Self::HuggingFace { tok, .. } => tok.decode(&[id], true).ok(),
        }
    }

    /// Size of the id space to scan for candidate words.
    pub fn vocab_size(&self) -> u32 {
        match self {
            Self::Tiktoken { name, .. } => match *name {
                "o200k_base" => 200_000,
                "cl100k_base" => 100_256,
                _ => 50_257,
            },
            Self::HuggingFace { tok, .. } => {
                u32::try_from(tok.get_vocab_size(false)).unwrap_or(u32::MAX)
            }
        }
    }

    /// A name for results files: `tiktoken:cl100k_base` or `tokenizer.json:/path`.
    pub fn name(&self) -> String {
        match self {
            Self::Tiktoken { name, .. } => format!("tiktoken:{name}"),
            Self::HuggingFace { path, .. } => format!("tokenizer.json:{}", path.display()),
        }
    }
}

impl TokenCounter for Tokenizer {
    fn count(&self, text: &str) -> u64 {
        self.count_tokens(text) as u64
    }

    fn name(&self) -> String {
        Tokenizer::name(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_bundled_encodings_and_rejects_unknown_names() {
        let t = Tokenizer::resolve(None).expect("default");
        assert_eq!(t.name(), "tiktoken:cl100k_base");
        assert_eq!(t.count_tokens("hello world"), 2);
        let o = Tokenizer::resolve(Some("tiktoken:o200k_base")).expect("o200k");
        assert_eq!(o.name(), "tiktoken:o200k_base");
        let err = Tokenizer::resolve(Some("gpt9_base")).expect_err("unknown");
        assert!(err.to_string().contains("cl100k_base"), "{err}");
        let err = Tokenizer::resolve(Some("/nonexistent/tokenizer.json")).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }

    #[test]
    fn special_token_text_is_counted_as_ordinary_text() {
        let t = Tokenizer::resolve(None).expect("default");
        assert!(t.count_tokens("<|endoftext|>") > 1);
    }
}
