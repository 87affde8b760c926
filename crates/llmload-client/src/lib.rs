//! llmload-client: the OpenAI-compatible HTTP client of llmload.
//!
//! - request bodies for `/v1/chat/completions` and `/v1/completions` ([`ClientConfig`]),
//!   pre-serialized except for the prompt and `max_tokens`;
//! - its own HTTP/1.1 codec (module `http1`), run inside the request task (no connection task,
//!   no channels), with a keep-alive pool sized to the load and a safe retry of requests that a
//!   stale keep-alive connection provably never delivered;
//! - a byte-exact incremental SSE parser ([`sse`]) and the interpretation of OpenAI chunks;
//! - the timestamps of DESIGN §2, taken from the socket reads and writes themselves;
//! - the error classes of DESIGN §2, with messages that name the flag to change;
//! - [`discover_models`] and [`preflight`];
//! - with the `testkit` feature, a scripted test server ([`testkit`]).
//!
//! See `docs/client.md`.

mod body;
mod chunk;
pub mod cli;
mod client;
mod config;
mod conn;
mod discover;
mod error;
mod http1;
mod json;
pub mod sse;
mod stream;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use client::{Client, Outcome, Pending, Prepared};
pub use config::{Api, ClientConfig};
pub use discover::{Preflight, Target, discover_models, preflight};
pub use error::ClientError;
