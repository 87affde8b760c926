//! Command-line entry points: `llmload gpu`, `llmload gpu-exporter`, and the GPU flags of
//! `llmload run` / `llmload sweep` ([`GpuSamplingArgs`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::exporter::{ExporterState, serve};
use crate::sampler::{GpuHandle, GpuSampler, SamplerOptions};
use crate::source::{GpuUnavailable, open_source};
use crate::table::render_table;

/// Errors of the GPU commands (exit code 1 when returned).
#[derive(Debug, thiserror::Error)]
pub enum GpuCliError {
    #[error(
        "--listen {addr}: cannot bind ({source}); is another exporter on that port? pick another with --listen 127.0.0.1:PORT"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gpu-exporter: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// Parses `100ms`, `1s`, `2.5s`, `1m`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 100ms, 1s, 2.5s"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|e| format!("`{s}`: {e}"))
}

/// `llmload gpu`: a one-shot table of the GPUs.
#[derive(Debug, Clone, Args)]
#[command(
    about = "Show the local GPUs (a compact nvidia-smi), or say why none was found",
    after_help = "Examples:\n  llmload gpu\n  llmload gpu --json\n  llmload gpu --gpu-metrics-url http://10.0.0.5:9400/metrics\n\n\
Exit status: 0 when GPUs were read, 1 when none was found (the reason is printed)."
)]
pub struct GpuArgs {
    /// Read a DCGM exporter, an nvidia_gpu_exporter or `llmload gpu-exporter` /metrics URL
    /// instead of the local GPUs (format detected).
    #[arg(long, value_name = "URL")]
    pub gpu_metrics_url: Option<String>,
    /// Print the readings as JSON (units: %, bytes, W, J, C, MHz) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timeout for reading a --gpu-metrics-url.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Runs `llmload gpu`. Returns the exit code.
pub async fn run_gpu(args: GpuArgs) -> Result<i32, GpuCliError> {
    let mut source = match open_source(args.gpu_metrics_url.as_deref(), args.timeout) {
        Ok(s) => s,
        Err(u) => {
            eprintln!("{}", u.reason);
            return Ok(1);
        }
    };
    let gpus = match source.snapshot().await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU read: {e}");
            return Ok(1);
        }
    };
    if gpus.is_empty() {
        eprintln!("no GPU found: {} reports no GPU", source.describe());
        return Ok(1);
    }
    if args.json {
        let v = serde_json::json!({ "source": source.describe(), "gpus": gpus });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render_table(&gpus));
        println!("source: {}", source.describe());
    }
    Ok(0)
}

/// `llmload gpu-exporter`: serve the local GPUs as Prometheus metrics.
#[derive(Debug, Clone, Args)]
#[command(
    about = "Prometheus exporter of the local GPUs (nvidia_gpu_* names, optionally DCGM names)",
    after_help = "Examples:\n  llmload gpu-exporter\n  llmload gpu-exporter --listen 0.0.0.0:9835 --dcgm-names\n  curl -s http://127.0.0.1:9835/metrics\n\n\
Series: nvidia_gpu_duty_cycle (0-100), nvidia_gpu_memory_used_bytes, nvidia_gpu_memory_total_bytes,\n\
nvidia_gpu_temperature (Celsius), nvidia_gpu_power_usage_milliwatts, llmload_gpu_energy_joules_total,\n\
llmload_gpu_sm_clock_mhz, labelled index, uuid, name. Without a GPU it keeps serving, with\n\
llmload_gpu_exporter_up 0 and the reason in llmload_gpu_exporter_info."
)]
pub struct GpuExporterArgs {
    /// Address to listen on. Loopback by default; pass 0.0.0.0:9835 to expose it to the network.
    #[arg(long, default_value = "127.0.0.1:9835", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Also serve DCGM exporter field names (DCGM_FI_DEV_GPU_UTIL, _FB_USED, _FB_FREE,
    /// _GPU_TEMP, _POWER_USAGE, _TOTAL_ENERGY_CONSUMPTION, _SM_CLOCK; labels gpu, UUID, modelName).
    #[arg(long)]
    pub dcgm_names: bool,
    /// How often the GPUs are read; a scrape serves the newest reading.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
}

/// Runs `llmload gpu-exporter` until Ctrl-C. Returns the exit code.
pub async fn run_exporter(args: GpuExporterArgs) -> Result<i32, GpuCliError> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| GpuCliError::Bind {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(GpuCliError::Serve)?;
    let state = Arc::new(exporter_state(args.dcgm_names, args.interval, None).await);
    match &state.gpus {
        Ok(h) => eprintln!(
            "gpu-exporter: {} GPU(s) from {}, read every {:?}; serving http://{local}/metrics",
            h.progress().gpus,
            h.source(),
            args.interval
        ),
        Err(reason) => eprintln!(
            "gpu-exporter: {reason}; serving http://{local}/metrics with llmload_gpu_exporter_up 0"
        ),
    }
    serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(GpuCliError::Serve)?;
    Ok(0)
}

/// Builds the exporter's state: a sampler on local NVML (or on `url`, for tests and relays)
/// keeping only the newest readings, or the reason there is none.
pub async fn exporter_state(
    dcgm_names: bool,
    interval: Duration,
    url: Option<&str>,
) -> ExporterState {
    let gpus = match open_source(url, Duration::from_secs(5)) {
        Err(u) => Err(u.reason),
        Ok(src) => {
            let h = GpuSampler::spawn_with(
                src,
                SamplerOptions {
                    interval,
                    max_samples: Some(2),
                },
                Instant::now(),
            );
            match h.wait_first(Duration::from_secs(10)).await {
                Ok(_) => Ok(h),
                Err(u) => Err(u.reason),
            }
        }
    };
    ExporterState { gpus, dcgm_names }
}

/// GPU flags of `llmload run` and `llmload sweep` (flatten into their Args).
#[derive(Debug, Clone, Args)]
pub struct GpuSamplingArgs {
    /// Read GPU telemetry from a DCGM exporter, an nvidia_gpu_exporter or `llmload
    /// gpu-exporter` /metrics URL (format detected) instead of local NVML.
    #[arg(long, value_name = "URL")]
    pub gpu_metrics_url: Option<String>,
    /// GPU sampling interval.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub gpu_interval: Duration,
    /// Do not sample GPUs.
    #[arg(long)]
    pub no_gpu: bool,
}

/// GPU telemetry of a run: a sampler, or why there is none.
pub enum GpuTelemetry {
    Sampling(GpuHandle),
    Unavailable(GpuUnavailable),
}

impl GpuSamplingArgs {
    /// Starts GPU sampling for a run whose clock starts at `epoch`. Prints the reason once on
    /// stderr when there is no GPU; never fails (the run goes on without GPU figures).
    pub async fn start(&self, epoch: Instant) -> GpuTelemetry {
        if self.no_gpu {
            return GpuTelemetry::Unavailable(GpuUnavailable::new(
                "GPU sampling disabled (--no-gpu)",
            ));
        }
        let timeout = self
            .gpu_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(5));
        let src = match open_source(self.gpu_metrics_url.as_deref(), timeout) {
            Ok(s) => s,
            Err(u) => {
                eprintln!("gpu: {} (the run goes on without GPU figures)", u.reason);
                return GpuTelemetry::Unavailable(u);
            }
        };
        let h = GpuSampler::spawn(src, self.gpu_interval, epoch);
        match h.wait_first(timeout + Duration::from_secs(1)).await {
            Ok(n) => {
                eprintln!(
                    "gpu: sampling {n} GPU(s) from {} every {:?}",
                    h.source(),
                    self.gpu_interval
                );
            }
            Err(u) => eprintln!("gpu: {} (still trying during the run)", u.reason),
        }
        GpuTelemetry::Sampling(h)
    }
}

impl GpuTelemetry {
    /// The `benchmark.gpu` value and, when there is none, the `gpu_unavailable` value, for the
    /// window `[start_s, end_s]` and the client's totals over it.
    pub fn results_for(
        &self,
        start_s: f64,
        end_s: f64,
        output_tokens: u64,
        requests: u64,
        duration_s: f64,
    ) -> Result<serde_json::Value, GpuUnavailable> {
        match self {
            GpuTelemetry::Unavailable(u) => Err(u.clone()),
            GpuTelemetry::Sampling(h) => {
                let mut w = h.window(start_s, end_s);
                if w.gpus.iter().all(|g| g.summary.samples == 0) {
                    let reason = w
                        .last_error
                        .clone()
                        .map(|e| format!("no GPU reading in this benchmark's window: {e}"))
                        .unwrap_or_else(|| "no GPU reading in this benchmark's window".to_string());
                    return Err(GpuUnavailable::new(reason));
                }
                w.set_client_totals(output_tokens, requests, duration_s);
                Ok(w.to_value())
            }
        }
    }

    /// Writes `benchmark.gpu` (or `gpu: null` plus `gpu_unavailable: {"reason": ...}`).
    pub fn apply(&self, bench: &mut llmload_core::Benchmark, start_s: f64, end_s: f64) {
        let b = &*bench;
        let out = self.results_for(
            start_s,
            end_s,
            b.tokens.output_total,
            b.requests.completed,
            b.window.duration_s,
        );
        match out {
            Ok(v) => {
                bench.gpu = Some(v);
                bench.extra.remove("gpu_unavailable");
            }
            Err(u) => {
                bench.gpu = None;
                bench.extra.insert(
                    "gpu_unavailable".into(),
                    serde_json::to_value(&u).unwrap_or(serde_json::Value::Null),
                );
            }
        }
    }

    /// Stops sampling (no-op when unavailable).
    pub fn stop(&mut self) {
        if let GpuTelemetry::Sampling(h) = self {
            h.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").unwrap_err().contains("100ms"));
    }
}
