//! llmload-workload: what llmload sends.
//!
//! - [`tokenizer`]: offline tokenizers (bundled tiktoken encodings, a model's tokenizer.json);
//! - [`synth`]: token-exact synthetic prompts, unique per request or with shared prefixes;
//! - [`dist`]: length distributions;
//! - [`dataset`]: prompts from JSONL/JSON/ShareGPT/CSV/text files;
//! - [`images`]: multimodal requests (URL lists, local files, synthetic PNG/JPEG);
//! - [`trace`]: Mooncake trace replay;
//! - [`session`]: multi-turn conversations;
//! - [`scenario`]: presets and scenario files;
//! - [`builder`]: `WorkloadArgs` (the `llmload run` flags) and [`builder::build`];
//! - [`cli`]: `llmload scenarios`.

pub mod dataset;
pub mod dist;
pub mod error;
pub mod fastjpeg;
pub mod synth;
pub mod tokenizer;

pub use error::WorkloadError;
pub mod builder;
pub mod cli;
pub mod images;
pub mod openai;
pub mod scenario;
pub mod session;
pub mod trace;

pub use builder::{WorkloadArgs, build};
pub use scenario::ScenarioFile;
