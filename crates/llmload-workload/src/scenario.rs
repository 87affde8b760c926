//! Scenarios: named presets and scenario files (TOML, YAML or JSON) that can hold everything a
//! `llmload run` command line can. Flags override the file; the file overrides its preset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::builder::WorkloadArgs;
use crate::error::{Result, WorkloadError};

/// A built-in scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub prompt_tokens: &'static str,
    pub output_tokens: &'static str,
    pub prefix_tokens: Option<u32>,
    pub num_prefixes: Option<u32>,
    pub images: Option<u32>,
    pub image_size: Option<&'static str>,
    pub image_prompt: Option<&'static str>,
}

const fn text(
    name: &'static str,
    description: &'static str,
    prompt_tokens: &'static str,
    output_tokens: &'static str,
) -> Preset {
    Preset {
        name,
        description,
        prompt_tokens,
        output_tokens,
        prefix_tokens: None,
        num_prefixes: None,
        images: None,
        image_size: None,
        image_prompt: None,
    }
}

/// The presets, in the order `llmload scenarios` lists them.
pub const PRESETS: &[Preset] = &[
    text(
        "chat",
        "interactive chat: short question, short answer",
        "64",
        "64",
    ),
    text("summarization", "summarize a document", "512", "128"),
    text(
        "codegen",
        "code generation: short spec, long answer",
        "128",
        "256",
    ),
    text("stress", "balanced load for saturation tests", "256", "256"),
    text(
        "rag",
        "retrieval-augmented generation: long context, unique per request",
        "4096",
        "256",
    ),
    Preset {
        prefix_tokens: Some(3584),
        num_prefixes: Some(8),
        ..text(
            "rag-shared",
            "RAG over a few shared documents: 3584-token prefix shared by requests (8 distinct), 512 unique tokens after it",
            "4096",
            "256",
        )
    },
    Preset {
        images: Some(1),
        image_size: Some("448x448"),
        image_prompt: Some("Descreva a imagem em português."),
        ..text(
            "vision",
            "vision-language: one synthetic 448x448 JPEG (unique per request) and a fixed question",
            "64",
            "128",
        )
    },
];

/// Find a preset by name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

impl Preset {
    /// The preset as workload flags.
    pub fn args(&self) -> WorkloadArgs {
        WorkloadArgs {
            prompt_tokens: Some(self.prompt_tokens.to_string()),
            output_tokens: Some(self.output_tokens.to_string()),
            prefix_tokens: self.prefix_tokens,
            num_prefixes: self.num_prefixes,
            images: self.images,
            image_size: self.image_size.map(str::to_string),
            image_prompt: self.image_prompt.map(str::to_string),
            ..WorkloadArgs::default()
        }
    }
}

/// A number or a string in a scenario file (`warmup: 30` or `warmup: "100r"`), passed to the
/// same parser as the flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlagValue {
    Int(i64),
    Float(f64),
    Str(String),
}

impl std::fmt::Display for FlagValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

/// One value or a list (`rate: 5` or `rate: [1, 5, 10]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            Self::One(x) => vec![x.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// A scenario file: every field optional; flags given on the command line override it.
/// Unknown keys are errors (a typo must not silently change a benchmark).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Free text shown in reports.
    pub description: Option<String>,
    /// Preset the workload starts from (`chat`, `rag`, ...).
    pub scenario: Option<String>,
    /// `--target` URL.
    pub target: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--api`: `chat` or `completions`.
    pub api: Option<String>,
    /// `--no-stream` when false.
    pub stream: Option<bool>,
    /// `--no-ignore-eos` when false.
    pub ignore_eos: Option<bool>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--rate`: one rate or a list (one benchmark each).
    pub rate: Option<OneOrMany<f64>>,
    /// `--concurrency`: one value or a list.
    pub concurrency: Option<OneOrMany<u64>>,
    /// `--burstiness` (gamma profile).
    pub burstiness: Option<f64>,
    /// `--max-concurrency`.
    pub max_concurrency: Option<u64>,
    /// `--drop-over-cap`.
    pub drop_over_cap: Option<bool>,
    /// `--ramp-up` seconds.
    pub ramp_up: Option<f64>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// Stop conditions.
    pub max_requests: Option<u64>,
    pub max_seconds: Option<f64>,
    pub max_errors: Option<u64>,
    pub max_error_rate: Option<f64>,
    /// `--warmup` / `--cooldown`: seconds or a request count, as the flags take them.
    pub warmup: Option<FlagValue>,
    pub cooldown: Option<FlagValue>,
    /// `--timeout` seconds per request.
    pub timeout: Option<f64>,
    /// `--out` directory.
    pub out: Option<String>,
    /// `--record-chunks`.
    pub record_chunks: Option<bool>,
    /// `--label K=V` pairs.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--header K:V` pairs (never written to results). Put secrets in the environment, not
    /// here: the API key comes from `--api-key` or `OPENAI_API_KEY` only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `--body-json`: extra request body fields (sampling parameters).
    pub body_json: Option<serde_json::Value>,
    /// `--threshold` expressions, as on the command line.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// `--slo` expressions, as on the command line.
    #[serde(default)]
    pub slo: Vec<String>,
    /// The workload flags (`prompt_tokens`, `dataset`, `images`, `trace`, `turns`, ...).
    pub workload: Option<WorkloadArgs>,
}

impl ScenarioFile {
    /// Load a scenario file: `.toml`, `.yaml`/`.yml` or `.json`. Relative paths inside the
    /// workload section (dataset, trace, images, tokenizer) are resolved against the file's
    /// directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkloadError::io(path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bad = |msg: String| {
            WorkloadError::Scenario(format!("scenario file {}: {msg}", path.display()))
        };
        let mut file: ScenarioFile = match ext.as_str() {
            "toml" => toml::from_str(&text).map_err(|e| bad(e.to_string()))?,
            "yaml" | "yml" => serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?,
            "json" => serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?,
            _ => {
                return Err(bad(
                    "unknown extension: use .toml, .yaml, .yml or .json".into()
                ));
            }
        };
        if let Some(p) = &file.scenario {
            if preset(p).is_none() {
                return Err(bad(format!(
                    "unknown preset `{p}` in `scenario` ({})",
                    preset_names()
                )));
            }
        }
        if let (Some(w), Some(dir)) = (&mut file.workload, path.parent()) {
            w.resolve_paths(dir);
        }
        Ok(file)
    }

    /// The workload flags of this file, with its preset (if any) merged under them.
    pub fn workload_args(&self) -> WorkloadArgs {
        let mut w = self.workload.clone().unwrap_or_default();
        if let Some(p) = self.scenario.as_deref().and_then(preset) {
            w.merge_under(&p.args());
        }
        w
    }
}

/// What `--scenario` names.
#[derive(Debug, Clone)]
pub enum Scenario {
    Preset(&'static Preset),
    File(PathBuf, Box<ScenarioFile>),
}

/// Resolve `--scenario NAME|FILE`: a preset name, else a file path.
pub fn resolve(arg: &str) -> Result<Scenario> {
    if let Some(p) = preset(arg) {
        return Ok(Scenario::Preset(p));
    }
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(Scenario::File(
            path.to_path_buf(),
            Box::new(ScenarioFile::load(path)?),
        ));
    }
    Err(WorkloadError::Scenario(format!(
        "--scenario `{arg}` is neither a preset ({}) nor a readable file",
        preset_names()
    )))
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An example scenario file (TOML), printed by `llmload scenarios --example`.
pub const EXAMPLE_TOML: &str = r#"# llmload scenario file: every key is optional; command-line flags override it.
description = "Qwen3-VL, Portuguese image captions, Poisson 2 req/s"
scenario = "vision"               # start from a preset (see `llmload scenarios`)
target = "http://127.0.0.1:8000"
model = "Qwen/Qwen3-VL-8B-Instruct"
api = "chat"
profile = "poisson"
rate = [1.0, 2.0, 4.0]             # one benchmark per rate
seed = 42
max_seconds = 120
warmup = 10                        # seconds, or "20r" style request counts as --warmup takes them
max_error_rate = 0.05
thresholds = ["ttft_s.p95 < 2", "e2e_latency_s.p99 < 10"]
labels = { gpus = "1", quantization = "fp8" }
headers = { "X-Team" = "benchmarks" }
body_json = { temperature = 0.0 }

[workload]
images = 2
image_size = "1024x1024"
image_format = "jpeg"
image_prompt = "Descreva a imagem em português."
output_tokens = "normal:128,32,32,256"
# image_urls = "images.txt"       # or: image_dir = "photos/" (paths relative to this file)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_lengths() {
        let chat = preset("chat").expect("chat");
        assert_eq!((chat.prompt_tokens, chat.output_tokens), ("64", "64"));
        assert_eq!(preset("summarization").expect("s").prompt_tokens, "512");
        assert_eq!(preset("codegen").expect("c").output_tokens, "256");
        assert_eq!(preset("stress").expect("s").prompt_tokens, "256");
        assert_eq!(preset("rag").expect("r").prompt_tokens, "4096");
        assert_eq!(preset("rag-shared").expect("r").prefix_tokens, Some(3584));
        assert!(preset("nope").is_none());
    }

    #[test]
    fn example_file_parses_and_yaml_works_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.toml");
        std::fs::write(&p, EXAMPLE_TOML).expect("write");
        let f = ScenarioFile::load(&p).expect("example parses");
        assert_eq!(f.rate, Some(OneOrMany::Many(vec![1.0, 2.0, 4.0])));
        assert_eq!(f.warmup, Some(FlagValue::Int(10)));
        assert_eq!(f.labels.get("gpus").map(String::as_str), Some("1"));
        let w = f.workload_args();
        assert_eq!(w.images, Some(2));
        assert_eq!(w.image_size.as_deref(), Some("1024x1024"));
        assert_eq!(
            w.prompt_tokens.as_deref(),
            Some("64"),
            "from the vision preset"
        );

        let y = dir.path().join("s.yaml");
        std::fs::write(
            &y,
            "target: http://h:8000\nconcurrency: [1, 10]\nmax_requests: 100\nworkload:\n  prompt_tokens: 512\n  dataset: data/prompts.jsonl\n",
        )
        .expect("write");
        let f = ScenarioFile::load(&y).expect("yaml");
        assert_eq!(f.concurrency, Some(OneOrMany::Many(vec![1, 10])));
        let w = f.workload_args();
        assert_eq!(w.prompt_tokens.as_deref(), Some("512"));
        assert_eq!(w.dataset, Some(dir.path().join("data/prompts.jsonl")));
    }

    #[test]
    fn unknown_keys_and_presets_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "max_request = 5\n").expect("write");
        let err = ScenarioFile::load(&p).expect_err("typo").to_string();
        assert!(
            err.contains("max_request") && err.contains("s.toml"),
            "{err}"
        );
        std::fs::write(&p, "scenario = \"chatt\"\n").expect("write");
        let err = ScenarioFile::load(&p).expect_err("preset").to_string();
        assert!(
            err.contains("chatt") && err.contains("summarization"),
            "{err}"
        );
        std::fs::write(&p, "[workload]\nprompt_tokenz = 5\n").expect("write");
        assert!(ScenarioFile::load(&p).is_err());
        let err = resolve("no-such-thing").expect_err("resolve").to_string();
        assert!(err.contains("chat, summarization"), "{err}");
    }
}
