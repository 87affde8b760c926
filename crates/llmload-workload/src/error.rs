//! Errors of the workload crate: each says what is wrong and how to fix it.

use std::path::PathBuf;

/// Everything that can go wrong while building a workload (before any load starts).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// `--tokenizer` named an encoding that is not bundled.
    #[error(
        "unknown tokenizer `{0}`: bundled tiktoken encodings are cl100k_base, o200k_base, p50k_base and r50k_base; for a model's own tokenizer pass --tokenizer PATH/tokenizer.json"
    )]
    UnknownEncoding(String),

    /// A tokenizer.json file could not be loaded.
    #[error(
        "cannot load tokenizer file {path}: {msg} (--tokenizer expects a Hugging Face tokenizer.json, e.g. the one in the model's directory)"
    )]
    TokenizerLoad { path: PathBuf, msg: String },

    /// The tokenizer cannot build prompts of an exact length.
    #[error("{0}")]
    Tokenizer(String),

    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A line (or record) of an input file is malformed.
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },

    /// An input file is well-formed but unusable (empty, no prompts, ...).
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },

    /// A flag (or scenario field) has a bad value.
    #[error("invalid {flag} `{value}`: {msg}")]
    Flag {
        flag: String,
        value: String,
        msg: String,
    },

    /// Flags that cannot be used together.
    #[error("{0}")]
    Conflict(String),

    /// Unknown scenario preset or unreadable scenario file.
    #[error("{0}")]
    Scenario(String),

    /// Image generation or encoding failed.
    #[error("image: {0}")]
    Image(String),
}

impl WorkloadError {
    pub(crate) fn flag(flag: &str, value: impl ToString, msg: impl Into<String>) -> Self {
        Self::Flag {
            flag: flag.to_string(),
            value: value.to_string(),
            msg: msg.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = WorkloadError> = std::result::Result<T, E>;
