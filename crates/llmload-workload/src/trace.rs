//! Trace replay in the Mooncake format: one JSON object per line with `timestamp` (ms since the
//! first request), `input_length`, `output_length` and `hash_ids` (one id per block of
//! `block_size` prompt tokens, 512 in Mooncake's traces; equal ids mean an equal prefix).
//!
//! Each request gets `at_s = (timestamp - first timestamp) / 1000 * time_scale`, and a prompt of
//! exactly `input_length` tokens whose block `i` is the text of `hash_ids[i]`: requests sharing
//! hash ids share those prompt blocks token for token, so the server's prefix cache sees the
//! trace's reuse. Tokens beyond the hashed blocks are unique to the request. A record may give
//! its own `input_text` instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use llmload_core::{RequestSpec, Workload};
use rand::SeedableRng;
use serde::Deserialize;

use crate::error::{Result, WorkloadError};
use crate::synth::TokenVocab;

/// One trace record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TraceRecord {
    /// Arrival in milliseconds since the first request.
    pub timestamp: f64,
    #[serde(default)]
    pub input_length: Option<u64>,
    pub output_length: Option<u32>,
    #[serde(default)]
    pub hash_ids: Vec<u64>,
    /// A literal prompt (then `input_length` and `hash_ids` are not used to build one).
    #[serde(default)]
    pub input_text: Option<String>,
}

/// Read and validate a trace file; records are sorted by timestamp (stable).
pub fn load(path: &Path) -> Result<Vec<(usize, TraceRecord)>> {
    let text = std::fs::read_to_string(path).map_err(|e| WorkloadError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: TraceRecord = serde_json::from_str(line).map_err(|e| WorkloadError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            msg: format!(
                "not a trace record ({e}); expected {{\"timestamp\": ms, \"input_length\": n, \"output_length\": n, \"hash_ids\": [...]}}"
            ),
        })?;
        let bad = |msg: &str| WorkloadError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            msg: msg.to_string(),
        };
        if !rec.timestamp.is_finite() || rec.timestamp < 0.0 {
            return Err(bad("`timestamp` must be a number of milliseconds >= 0"));
        }
        match (&rec.input_text, rec.input_length) {
            (Some(t), _) if t.is_empty() => return Err(bad("`input_text` is empty")),
            (None, None) => return Err(bad("missing `input_length` (or `input_text`)")),
            (None, Some(0)) => return Err(bad("`input_length` must be >= 1")),
            _ => {}
        }
        if rec.output_length == Some(0) {
            return Err(bad("`output_length` must be >= 1"));
        }
        out.push((i + 1, rec));
    }
    if out.is_empty() {
        return Err(WorkloadError::Invalid {
            path: path.to_path_buf(),
            msg: "the trace is empty".into(),
        });
    }
    out.sort_by(|a, b| a.1.timestamp.total_cmp(&b.1.timestamp));
    Ok(out)
}

/// Replays a trace: requests carry `at_s`.
#[derive(Debug)]
pub struct TraceWorkload {
    path: PathBuf,
    records: Vec<(usize, TraceRecord)>,
    next: usize,
    vocab: Arc<TokenVocab>,
    time_scale: f64,
    block_size: usize,
    default_output: Option<u32>,
    seed: u64,
    t0: f64,
}

impl TraceWorkload {
    /// `time_scale` multiplies trace time (0.5 replays twice as fast); `default_output` is
    /// used where a record has no `output_length`.
    pub fn new(
        path: &Path,
        vocab: Arc<TokenVocab>,
        time_scale: f64,
        block_size: usize,
        default_output: Option<u32>,
        seed: u64,
    ) -> Result<Self> {
        if !(time_scale.is_finite() && time_scale > 0.0) {
            return Err(WorkloadError::flag(
                "--trace-time-scale",
                time_scale,
                "must be a number > 0 (0.5 replays twice as fast, 2 half as fast)",
            ));
        }
        if block_size == 0 {
            return Err(WorkloadError::flag("--trace-block-size", 0, "must be >= 1"));
        }
        let records = load(path)?;
        let t0 = records[0].1.timestamp;
        Ok(Self {
            path: path.to_path_buf(),
            records,
            next: 0,
            vocab,
            time_scale,
            block_size,
            default_output,
            seed,
            t0,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the trace has no records (never true once built).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Build the prompt of a record: its hashed blocks, then unique tokens.
    fn prompt(&self, rec: &TraceRecord, index: u64) -> String {
        let total = rec.input_length.unwrap_or(0) as usize;
        let mut out = String::with_capacity(total * 8);
        let mut written = 0usize;
        for &h in &rec.hash_ids {
            if written >= total {
                break;
            }
            let n = self.block_size.min(total - written);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                self.seed ^ h.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17),
            );
            self.vocab.push_random(&mut out, n, written == 0, &mut rng);
            written += n;
        }
        if written < total {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ index ^ 0xA11CE);
            let m = self
                .vocab
                .push_marker(&mut out, index, total - written, written == 0);
            let at_start = written == 0 && m == 0;
            self.vocab
                .push_random(&mut out, total - written - m, at_start, &mut rng);
        }
        out
    }
}

impl Workload for TraceWorkload {
    fn next_request(&mut self) -> Option<RequestSpec> {
        let (line, rec) = self.records.get(self.next)?.clone();
        let index = self.next as u64;
        self.next += 1;
        let at_s = (rec.timestamp - self.t0) / 1000.0 * self.time_scale;
        let (text, tokens) = match &rec.input_text {
            Some(t) => (t.clone(), None),
            None => (self.prompt(&rec, index), rec.input_length),
        };
        let mut spec = RequestSpec::text(text, tokens, rec.output_length.or(self.default_output));
        spec.at_s = Some(at_s);
        spec.tag = Some(format!("trace_line={line}"));
        Some(spec)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "trace",
            "format": "mooncake",
            "path": self.path.display().to_string(),
            "records": self.records.len(),
            "time_scale": self.time_scale,
            "block_size": self.block_size,
            "duration_s": (self.records.last().map(|r| r.1.timestamp).unwrap_or(0.0) - self.t0) / 1000.0 * self.time_scale,
            "tokenizer": self.vocab.tokenizer(),
            "prefixes": "shared by hash_ids",
            "seed": self.seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Tokenizer;

    fn write(content: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("trace.jsonl");
        std::fs::write(&p, content).expect("write");
        (d, p)
    }

    #[test]
    fn timing_lengths_and_shared_blocks_follow_the_trace() {
        let tok = Tokenizer::resolve(None).expect("tok");
        let vocab = Arc::new(TokenVocab::build(&tok).expect("vocab"));
        let (_d, p) = write(concat!(
            "{\"timestamp\": 1000, \"input_length\": 1100, \"output_length\": 52, \"hash_ids\": [46, 47, 48]}\n",
            "{\"timestamp\": 11535, \"input_length\": 700, \"output_length\": 26, \"hash_ids\": [46, 49]}\n",
            "{\"timestamp\": 3000, \"input_length\": 1500, \"output_length\": 9, \"hash_ids\": [46, 47]}\n",
        ));
        let mut w = TraceWorkload::new(&p, vocab, 0.5, 512, None, 1).expect("trace");
        let a = w.next_request().expect("a");
        let b = w.next_request().expect("b");
        let c = w.next_request().expect("c");
        assert!(w.next_request().is_none());
        // Sorted by timestamp; offsets from the first, scaled by 0.5.
        assert_eq!(a.at_s, Some(0.0));
        assert_eq!(b.at_s, Some(1.0));
        assert!((c.at_s.expect("at") - 5.2675).abs() < 1e-9);
        assert_eq!(
            (a.max_tokens, b.max_tokens, c.max_tokens),
            (Some(52), Some(9), Some(26))
        );
        let ids = |s: &RequestSpec| match &s.prompt {
            llmload_core::Prompt::Text(t) => tok.encode(t),
            other => panic!("text expected, got {other:?}"),
        };
        let (ta, tb, tc) = (ids(&a), ids(&b), ids(&c));
        assert_eq!((ta.len(), tb.len(), tc.len()), (1100, 1500, 700));
        assert_eq!(a.prompt_tokens, Some(1100));
        // Blocks 46, 47 shared by a and b; only 46 by c.
        assert_eq!(ta[..1024], tb[..1024]);
        assert_eq!(ta[..512], tc[..512]);
        assert_ne!(ta[512..700], tc[512..700]);
        // b's tokens past its hashed blocks are its own.
        assert_ne!(ta[1024..1100], tb[1024..1100]);
    }

    #[test]
    fn bad_records_name_the_line() {
        let (_d, p) = write(
            "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1}\n",
        );
        let err = load(&p).expect_err("missing").to_string();
        assert!(
            err.contains("trace.jsonl:2") && err.contains("input_length"),
            "{err}"
        );
        let (_d, p) = write("{\"timestamp\": \"x\"}\n");
        assert!(
            load(&p)
                .expect_err("bad")
                .to_string()
                .contains("trace.jsonl:1")
        );
        let (_d, p) = write("\n");
        assert!(load(&p).expect_err("empty").to_string().contains("empty"));
    }
}
