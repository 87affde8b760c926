//! What one reading of one GPU holds, in the units llmload reports.

use serde::{Deserialize, Serialize};

/// One GPU at one instant. Every figure is optional: a source reports what it has (DCGM may
/// leave a field blank, nvidia_gpu_exporter has no energy counter, NVML may say "not supported").
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpuReading {
    /// GPU index as the driver numbers it (NVML index, DCGM `gpu` label, nvidia-smi `index`).
    pub index: u32,
    /// `GPU-xxxxxxxx-...` UUID; empty when the source does not say.
    pub uuid: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`; empty when the source does not say.
    pub name: String,
    /// GPU utilisation (NVML `utilization.gpu`, the share of the last sample period in which a
    /// kernel was running), percent 0-100.
    pub util_pct: Option<f64>,
    /// Memory in use, bytes.
    pub mem_used_bytes: Option<u64>,
    /// Total memory, bytes.
    pub mem_total_bytes: Option<u64>,
    /// Power draw, watts.
    pub power_w: Option<f64>,
    /// Energy counter since the driver was loaded, joules (NVML total energy, mJ / 1000).
    pub energy_j: Option<f64>,
    /// GPU core temperature, degrees Celsius.
    pub temp_c: Option<f64>,
    /// Current SM clock, MHz.
    pub sm_clock_mhz: Option<f64>,
}

impl GpuReading {
    /// A stable key to follow one GPU across readings: its UUID, else its index.
    pub fn key(&self) -> String {
        if self.uuid.is_empty() {
            format!("index:{}", self.index)
        } else {
            self.uuid.clone()
        }
    }
}

pub(crate) const MIB: u64 = 1024 * 1024;
