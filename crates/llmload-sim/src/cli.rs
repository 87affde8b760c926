//! `llmload sim`: command-line arguments and entry point.

use std::net::{IpAddr, SocketAddr};

use crate::model::{StepModel, calibration_table};
use crate::profile::{Profile, builtin_names};
use crate::{Faults, SimConfig, SimError, spawn};

/// Run a simulated vLLM server (OpenAI API, vLLM's /metrics) calibrated on an H100.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  llmload sim                                   # default profile qwen3-4b-fp8 on 127.0.0.1:8000
  llmload sim --list-profiles
  llmload sim --profile mistral-small-24b-int4 --port 8001 --model mistral
  llmload sim --speedup 10 --seed 7             # 10x faster than real time, reproducible
  llmload sim --api-servers 4                   # like vllm serve --api-server-count 4
  llmload sim --error-rate 0.01 --cut-after-tokens 50 --rate-limit-waiting 100
  curl -s localhost:8000/metrics | grep vllm:num_requests
  curl -s -X POST localhost:8000/admin/faults -d '{\"error_rate\": 0.05}'")]
pub struct SimArgs {
    /// Port to listen on (0 picks a free port).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind. Only loopback by default; pass e.g. 0.0.0.0 to accept remote clients.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Built-in profile (see --list-profiles).
    #[arg(long, default_value = crate::profile::DEFAULT_PROFILE)]
    pub profile: String,
    /// Load the profile from a TOML file instead (same format as crates/llmload-sim/profiles/).
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    pub profile_file: Option<std::path::PathBuf>,
    /// List the built-in profiles and exit.
    #[arg(long)]
    pub list_profiles: bool,
    /// Print the step-time model's error at every calibration point and exit.
    #[arg(long)]
    pub calibration: bool,
    /// Served model name (default: the profile's).
    #[arg(long)]
    pub model: Option<String>,
    /// Run simulated time this many times faster than real time.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Seed of every random choice (output lengths, token texts, faults).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// API-server processes of the front end (vLLM's --api-server-count).
    #[arg(long)]
    pub api_servers: Option<u32>,
    /// Fault: fraction (0-1) of generation requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fault: answer HTTP 429 while more than N requests wait in the engine.
    #[arg(long, value_name = "N")]
    pub rate_limit_waiting: Option<u64>,
    /// Fault: cut streams after N output tokens.
    #[arg(long, value_name = "N")]
    pub cut_after_tokens: Option<u32>,
    /// Fault: fraction (0-1) of streams cut when --cut-after-tokens is set.
    #[arg(long, default_value_t = 1.0)]
    pub cut_rate: f64,
    /// Fault: stall streams for this many milliseconds (simulated time) ...
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,
    /// ... after this many output tokens ...
    #[arg(long, default_value_t = 0)]
    pub stall_after_tokens: u32,
    /// ... in this fraction (0-1) of streams.
    #[arg(long, default_value_t = 1.0)]
    pub stall_rate: f64,
    /// Fault: answer 503 (not ready) for this many seconds after start.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub slow_start: f64,
}

impl SimArgs {
    /// The profile these arguments choose.
    pub fn load_profile(&self) -> Result<Profile, SimError> {
        match &self.profile_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| SimError::ProfileFile {
                    path: path.display().to_string(),
                    source: e,
                })?;
                Profile::from_toml(&text, &path.display().to_string())
            }
            None => Profile::builtin(&self.profile),
        }
    }

    /// The simulator configuration these arguments describe.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let faults = Faults {
            error_rate: self.error_rate,
            rate_limit_waiting: self.rate_limit_waiting,
            cut_after_tokens: self.cut_after_tokens,
            cut_rate: self.cut_rate,
            stall_ms: self.stall_ms,
            stall_after_tokens: self.stall_after_tokens,
            stall_rate: if self.stall_ms > 0 {
                self.stall_rate
            } else {
                0.0
            },
            unready_for_s: self.slow_start,
        };
        faults
            .validate()
            .map_err(|m| SimError::Config(format!("fault flags: {m}")))?;
        Ok(SimConfig {
            profile: self.load_profile()?,
            model_name: self.model.clone(),
            addr: SocketAddr::new(self.host, self.port),
            speedup: self.speedup,
            seed: self.seed,
            api_servers: self.api_servers,
            faults,
        })
    }
}

/// One line per built-in profile.
pub fn list_profiles() -> Result<String, SimError> {
    use std::fmt::Write;
    let mut s = String::new();
    for (i, p) in Profile::all_builtin()?.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<28} {}{}\n{:<28} model {} | {} x {} TP={} | KV cache {} tokens ({} blocks) | max_model_len {} | max_num_seqs {}",
            p.name,
            p.description,
            if i == 0 { " [default]" } else { "" },
            "",
            p.served_model_name,
            p.gpu.count,
            p.gpu.name,
            p.gpu.tensor_parallel,
            p.kv_cache_tokens(),
            p.num_gpu_blocks(),
            p.model.max_model_len,
            p.scheduler.max_num_seqs
        );
    }
    debug_assert_eq!(builtin_names().len(), Profile::all_builtin()?.len());
    Ok(s)
}

/// `llmload sim`: serves until Ctrl-C. Returns the process exit code.
pub async fn run(args: SimArgs) -> Result<i32, SimError> {
    if args.list_profiles {
        print!("{}", list_profiles()?);
        return Ok(0);
    }
    if args.calibration {
        let p = args.load_profile()?;
        let _ = StepModel::from_profile(&p);
        print!("{}", calibration_table(&[p]));
        return Ok(0);
    }
    let cfg = args.to_config()?;
    let profile = cfg.profile.clone();
    let speedup = cfg.speedup;
    let h = spawn(cfg).await?;
    eprintln!(
        "llmload sim: serving model {:?} (profile {}, KV cache {} tokens) on {} (speedup {speedup}x); /metrics, /v1/chat/completions, /v1/completions; Ctrl-C stops",
        h.model_name,
        h.profile_name,
        profile.kv_cache_tokens(),
        h.base_url()
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("llmload sim: stopping");
    h.shutdown().await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SimArgs,
    }

    #[test]
    fn defaults_and_config() {
        let t = T::try_parse_from(["x"]).unwrap();
        assert_eq!(t.a.port, 8000);
        assert_eq!(t.a.host.to_string(), "127.0.0.1");
        let c = t.a.to_config().unwrap();
        assert_eq!(c.profile.name, "qwen3-4b-fp8");
        assert_eq!(c.faults, Faults::default());
    }

    #[test]
    fn bad_fault_flag_is_named() {
        let t = T::try_parse_from(["x", "--error-rate", "3"]).unwrap();
        let e = t.a.to_config().unwrap_err().to_string();
        assert!(e.contains("error_rate"), "{e}");
    }

    #[test]
    fn list_mentions_every_profile() {
        let s = list_profiles().unwrap();
        for n in builtin_names() {
            assert!(s.contains(n));
        }
        assert!(s.contains("[default]"));
    }
}
