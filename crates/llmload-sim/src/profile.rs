//! Simulator profiles: model shape, GPU, scheduler limits, calibration points and the costs of
//! the front end and the engine core. Profiles are TOML data files under `profiles/`, embedded
//! in the binary; `--profile-file` loads one from disk.

use serde::Deserialize;

use crate::SimError;

/// The built-in profiles, in the order `--list-profiles` shows them (the first is the default).
const BUILTIN: &[(&str, &str)] = &[
    (
        "qwen3-4b-fp8",
        include_str!("../profiles/qwen3-4b-fp8.toml"),
    ),
    (
        "qwen3-4b-bf16-h100",
        include_str!("../profiles/qwen3-4b-bf16-h100.toml"),
    ),
    (
        "qwen3-vl-4b-bf16-h100",
        include_str!("../profiles/qwen3-vl-4b-bf16-h100.toml"),
    ),
    (
        "mistral-small-24b-bf16-tp4",
        include_str!("../profiles/mistral-small-24b-bf16-tp4.toml"),
    ),
    (
        "mistral-small-24b-int4",
        include_str!("../profiles/mistral-small-24b-int4.toml"),
    ),
];

/// Name of the default profile.
pub const DEFAULT_PROFILE: &str = "qwen3-4b-fp8";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Model name served by default (`--model` overrides it).
    pub served_model_name: String,
    pub model: ModelShape,
    #[serde(default)]
    pub vision: Option<VisionSpec>,
    pub gpu: GpuSpec,
    pub scheduler: SchedulerSpec,
    pub calibration: Calibration,
    pub engine: EngineCosts,
    pub frontend: FrontendCosts,
    pub output: OutputSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    pub layers: u32,
    pub hidden: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub weight_bytes: u64,
    pub precision: String,
    pub max_model_len: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionSpec {
    /// One image token per `pixels_per_token_side` x `pixels_per_token_side` pixels.
    pub pixels_per_token_side: u32,
    pub patch_size: u32,
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub default_width: u32,
    pub default_height: u32,
    pub encoder_base_ms: f64,
    pub encoder_us_per_patch: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub name: String,
    pub count: u32,
    pub tensor_parallel: u32,
    pub memory_bytes: u64,
    pub gpu_memory_utilization: f64,
    pub reserved_bytes: u64,
    pub hbm_bandwidth_gbps: f64,
    #[serde(default)]
    pub nvlink_gbps: Option<f64>,
    #[serde(default)]
    pub allreduce_latency_us: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSpec {
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub block_size: u32,
    pub enable_prefix_caching: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub source: String,
    /// `[batch, context, ms]`
    pub decode: Vec<[f64; 3]>,
    /// `[prompt, ms]`
    pub prefill: Vec<[f64; 2]>,
    /// `[batch, context, chunk, ms]` (reported, not fitted)
    #[serde(default)]
    pub mixed: Vec<[f64; 4]>,
    pub attn_seq_us_per_token: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineCosts {
    pub cpu_step_base_ms: f64,
    pub cpu_per_seq_us: f64,
    pub cpu_per_new_request_ms: f64,
    pub first_token_latency_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendCosts {
    pub api_servers: u32,
    pub per_request_ms: f64,
    pub per_input_token_us: f64,
    pub per_output_event_us: f64,
    /// Cost of a request's first output event (response set-up, detokenizer state).
    #[serde(default)]
    pub per_first_output_ms: f64,
    pub per_image_ms: f64,
    pub per_image_pixel_ns: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub median_tokens: f64,
    pub sigma: f64,
}

impl Profile {
    /// Parses a profile from TOML text; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SimError> {
        let p: Profile = toml::from_str(text).map_err(|e| SimError::Profile {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        p.validate(origin)?;
        Ok(p)
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Self, SimError> {
        let (n, text) =
            BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| SimError::UnknownProfile {
                    name: name.to_string(),
                    known: builtin_names().join(", "),
                })?;
        Self::from_toml(text, &format!("built-in profile {n}"))
    }

    /// All built-in profiles.
    pub fn all_builtin() -> Result<Vec<Self>, SimError> {
        BUILTIN.iter().map(|(n, _)| Self::builtin(n)).collect()
    }

    fn validate(&self, origin: &str) -> Result<(), SimError> {
        let bad = |m: String| SimError::Profile {
            origin: origin.to_string(),
            message: m,
        };
        if self.gpu.tensor_parallel == 0 || self.gpu.count < self.gpu.tensor_parallel {
            return Err(bad(format!(
                "gpu.tensor_parallel {} must be >= 1 and <= gpu.count {}",
                self.gpu.tensor_parallel, self.gpu.count
            )));
        }
        if self.scheduler.block_size == 0 || self.scheduler.max_num_seqs == 0 {
            return Err(bad(
                "scheduler.block_size and max_num_seqs must be > 0".into()
            ));
        }
        if self.scheduler.max_num_batched_tokens < self.scheduler.block_size {
            return Err(bad(
                "scheduler.max_num_batched_tokens must be >= block_size".into(),
            ));
        }
        if self.calibration.decode.is_empty() {
            return Err(bad(
                "calibration.decode needs at least one [batch, context, ms] point".into(),
            ));
        }
        if self.frontend.api_servers == 0 {
            return Err(bad("frontend.api_servers must be >= 1".into()));
        }
        if self.num_gpu_blocks() == 0 {
            return Err(bad(
                "no memory left for the KV cache: lower weight_bytes/reserved_bytes or raise gpu_memory_utilization".into(),
            ));
        }
        Ok(())
    }

    /// KV-cache bytes per token on one GPU (bf16 K and V, split over tensor-parallel ranks).
    pub fn kv_bytes_per_token_per_gpu(&self) -> f64 {
        let m = &self.model;
        (m.layers as f64) * (m.kv_heads as f64) * (m.head_dim as f64) * 2.0 * 2.0
            / self.gpu.tensor_parallel as f64
    }

    /// KV blocks that fit: (memory x utilization - weights per GPU - reserved) / block bytes.
    pub fn num_gpu_blocks(&self) -> u32 {
        let g = &self.gpu;
        let budget = g.memory_bytes as f64 * g.gpu_memory_utilization
            - self.model.weight_bytes as f64 / g.tensor_parallel as f64
            - g.reserved_bytes as f64;
        let block_bytes = self.kv_bytes_per_token_per_gpu() * self.scheduler.block_size as f64;
        if budget <= 0.0 || block_bytes <= 0.0 {
            return 0;
        }
        (budget / block_bytes).floor().min(u32::MAX as f64) as u32
    }

    pub fn kv_cache_tokens(&self) -> u64 {
        self.num_gpu_blocks() as u64 * self.scheduler.block_size as u64
    }
}

/// Names of the built-in profiles (the default first).
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_builtin_profiles_parse_and_name_matches() {
        for (n, _) in BUILTIN {
            let p = Profile::builtin(n).expect("built-in profile parses");
            assert_eq!(&p.name, n);
            assert!(p.num_gpu_blocks() > 1000, "{n}: {}", p.num_gpu_blocks());
        }
        assert_eq!(builtin_names()[0], DEFAULT_PROFILE);
    }

    #[test]
    fn kv_blocks_match_the_real_servers() {
        // cache_config_info of the real vLLM 0.25.0 servers
        assert_eq!(
            Profile::builtin("qwen3-4b-bf16-h100")
                .unwrap()
                .num_gpu_blocks(),
            26658
        );
        assert_eq!(
            Profile::builtin("qwen3-4b-fp8").unwrap().num_gpu_blocks(),
            28177
        );
        assert_eq!(
            Profile::builtin("qwen3-vl-4b-bf16-h100")
                .unwrap()
                .num_gpu_blocks(),
            26142
        );
    }

    #[test]
    fn unknown_profile_lists_known_ones() {
        let e = Profile::builtin("nope").unwrap_err().to_string();
        assert!(e.contains("qwen3-4b-fp8"), "{e}");
    }

    #[test]
    fn bad_toml_names_origin() {
        let e = Profile::from_toml("name = 1", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml"), "{e}");
    }
}
