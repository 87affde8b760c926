//! The seams between the load engine and what it sends: a [`Workload`] produces requests, a
//! [`TokenCounter`] counts tokens where the server gives no usage.

use crate::spec::RequestSpec;

/// Counts tokens of text offline (tiktoken, or a model's own tokenizer.json).
pub trait TokenCounter: Send + Sync {
    /// Number of tokens in `text`.
    fn count(&self, text: &str) -> u64;
    /// A name for results files, e.g. `tiktoken:cl100k_base` or `tokenizer.json:/path`.
    fn name(&self) -> String;
}

/// A source of requests. The engine calls [`Workload::next`] off its dispatch path (a
/// producer task keeps a few requests ready), so an implementation may do real work
/// (generate images, read files) without delaying the schedule.
pub trait Workload: Send {
    /// The next request to send, or `None` when the workload is exhausted (a dataset sampled
    /// without replacement, a trace at its end).
    fn next_request(&mut self) -> Option<RequestSpec>;

    /// A description for the results file (`run.workload`): kind, lengths, source, seed,
    /// tokenizer, whether prompts share prefixes.
    fn describe(&self) -> serde_json::Value;

    /// Called with the text of a completed answer when the workload asked for it
    /// ([`Workload::wants_responses`]); multi-turn sessions build their history from it.
    fn on_response(&mut self, _tag: Option<&str>, _answer: &str) {}

    /// Whether the engine must capture answer texts and hand them to [`Workload::on_response`].
    fn wants_responses(&self) -> bool {
        false
    }
}
