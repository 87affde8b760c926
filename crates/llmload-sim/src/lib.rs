//! `llmload sim`: a simulated vLLM server (see docs/sim.md).

pub mod engine;
pub mod experiment;
pub mod image;
pub mod metrics;
pub mod model;
pub mod profile;
pub mod sim;
pub mod tokenize;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("profile {origin}: {message}")]
    Profile { origin: String, message: String },
    #[error("unknown profile {name:?}; built-in profiles: {known} (see `llmload sim --list-profiles`)")]
    UnknownProfile { name: String, known: String },
    #[error("cannot read profile file {path}: {source}")]
    ProfileFile { path: String, source: std::io::Error },
    #[error("cannot bind {addr}: {source} (choose another --port or --host)")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid option: {0}")]
    Config(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}
