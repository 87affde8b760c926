//! GPU telemetry for llmload: readings from NVML (local GPUs, driver loaded at run time), from a
//! DCGM exporter / nvidia_gpu_exporter / `llmload gpu-exporter` URL, or from a fake; a sampler on
//! its own thread producing per-benchmark windows (`benchmark.gpu` in results.json); the
//! `llmload gpu` table and the `llmload gpu-exporter` Prometheus exporter.
//!
//! Definitions of every figure: `docs/gpu.md`.

pub mod cli;
mod expo;
pub mod exporter;
pub mod formats;
pub mod model;
pub mod sampler;
pub mod source;
pub mod table;
pub mod window;

pub use formats::{ExporterFormat, parse_nvidia_smi_csv, read_exposition_text};
pub use model::GpuReading;
pub use sampler::{GpuHandle, GpuSampler, SamplerOptions, SamplerProgress};
pub use source::{
    FakeSource, GpuError, GpuSource, GpuUnavailable, NvmlSource, RemoteSource, open_source,
};
pub use window::{GpuDerived, GpuSeries, GpuSummary, GpuTotals, GpuWindow, GpuWindowGpu};
