//! Errors of this crate. Parse errors carry the text and the offending span, and render it with
//! a caret line under the position that is wrong.

use std::fmt;

/// A parse error inside one expression (`--threshold`, `--slo`, a tier bound), with the span
/// that is wrong. `Display` shows the expression and a caret line under the span.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// What was being parsed: `threshold`, `SLO`, `tier bound`, ...
    pub what: &'static str,
    /// The whole expression as the user wrote it.
    pub expr: String,
    /// Byte offset of the offending part in `expr`.
    pub at: usize,
    /// Byte length of the offending part (at least 1 is drawn).
    pub len: usize,
    pub message: String,
}

impl ExprError {
    pub(crate) fn new(
        what: &'static str,
        expr: &str,
        at: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            what,
            expr: expr.to_string(),
            at: at.min(expr.len()),
            len,
            message: message.into(),
        }
    }

    /// The caret line: spaces up to the offending column (in characters), then `^` under it.
    pub fn caret_line(&self) -> String {
        let col = self
            .expr
            .get(..self.at)
            .map_or(self.at, |p| p.chars().count());
        let width = self
            .expr
            .get(self.at..(self.at + self.len).min(self.expr.len()))
            .map_or(1, |p| p.chars().count())
            .max(1);
        format!("{}{}", " ".repeat(col), "^".repeat(width))
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} `{}`: {}\n  {}\n  {}",
            self.what,
            self.expr,
            self.message,
            self.expr,
            self.caret_line()
        )
    }
}

impl std::error::Error for ExprError {}

/// Every error of the crate.
#[derive(Debug, thiserror::Error)]
pub enum SlaError {
    #[error("{0}")]
    Expr(#[from] ExprError),
    /// A configuration file (TOML/JSON) is malformed or has a wrong value.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A flag value or a planner configuration is contradictory.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl SlaError {
    pub(crate) fn config(file: &str, message: impl Into<String>) -> Self {
        SlaError::Config {
            file: file.to_string(),
            message: message.into(),
        }
    }
}
