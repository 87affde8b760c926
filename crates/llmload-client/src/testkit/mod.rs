//! A scripted HTTP/1.1 test server (feature `testkit`), for the client's tests and the
//! engine's: per request, scripted timing (TTFT, gaps, tokens per event), usage placement,
//! reasoning, role-only first chunks, errors, cut streams, malformed SSE/JSON, idle
//! keep-alive closes, and a log of when each output event was written (the truth to compare
//! client stamps with).
//!
//! ```no_run
//! # async fn demo() {
//! use llmload_client::testkit::{Stream, TestServer};
//! use std::time::Duration;
//! let server = TestServer::start(|_req| {
//!     Stream::new(16).ttft(Duration::from_millis(50)).gap(Duration::from_millis(5)).reply()
//! }).await;
//! let url = server.url(); // http://127.0.0.1:PORT
//! // ... run requests, then compare with server.log()[i].token_writes
//! # }
//! ```
//!
//! [`fast`] is the minimal always-ready server of the benchmarks.

pub mod fast;
mod script;
mod server;

pub use script::{Framing, Reply, Step, Stream, StreamScript, UsageMode};
pub use server::{Received, Served, ServerOptions, TestServer};
