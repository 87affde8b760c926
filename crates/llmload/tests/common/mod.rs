//! What the end-to-end tests read back from a results directory.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;

use serde_json::Value;

/// `DIR/results.json`.
pub fn results(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json exists");
    serde_json::from_str(&text).expect("results.json is JSON")
}

/// Every line of `DIR/requests.jsonl`.
pub fn requests(dir: &Path) -> Vec<Value> {
    jsonl(&dir.join("requests.jsonl"))
}

/// Every line of a JSON-lines file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} exists: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}
