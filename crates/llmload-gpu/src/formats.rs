//! Readers of the GPU exporter formats our users run, converted to [`GpuReading`] units.
//!
//! - **DCGM exporter** (`DCGM_FI_DEV_*`): utilisation %, framebuffer in MiB, power W, energy
//!   mJ, temperature C, clocks MHz. Blank values are DCGM sentinels (e.g. 9223372036854775794,
//!   "not supported") and read as missing.
//! - **nvidia_gpu_exporter** (`nvidia_smi_*`, utkuozdemir): utilisation as a 0-1 ratio (x100),
//!   clocks in Hz (/1e6), memory in bytes, power W; index and name come from
//!   `nvidia_smi_gpu_info`. It has no energy counter.
//! - **nvidia_gpu_prometheus_exporter names** (`nvidia_gpu_*`, what `llmload gpu-exporter`
//!   serves): duty cycle %, memory bytes, temperature C, power mW; plus llmload's
//!   `llmload_gpu_energy_joules_total` and `llmload_gpu_sm_clock_mhz` when present.
//! - **nvidia-smi CSV** (`--query-gpu=... --format=csv`), see [`parse_nvidia_smi_csv`].

use std::collections::BTreeMap;

use crate::expo::Exposition;
use crate::model::{GpuReading, MIB};

/// Which exporter produced an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExporterFormat {
    Dcgm,
    NvidiaGpuExporter,
    NvidiaGpuNames,
}

impl ExporterFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExporterFormat::Dcgm => "dcgm-exporter",
            ExporterFormat::NvidiaGpuExporter => "nvidia_gpu_exporter",
            ExporterFormat::NvidiaGpuNames => "nvidia_gpu_* (llmload gpu-exporter)",
        }
    }
}

/// Why an exposition could not be read as GPU metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "the exposition holds no GPU metrics this reader knows ({samples} samples, none named \
         DCGM_FI_DEV_*, nvidia_smi_* or nvidia_gpu_*): point --gpu-metrics-url at a DCGM exporter, \
         an nvidia_gpu_exporter or `llmload gpu-exporter` /metrics"
    )]
    Unrecognised { samples: usize },
    #[error("nvidia-smi CSV: {0}")]
    Csv(String),
}

/// Detects the format (by metric-name prefix; the most represented wins) and reads it.
pub fn read_exposition(e: &Exposition) -> Result<(ExporterFormat, Vec<GpuReading>), FormatError> {
    let (mut dcgm, mut smi, mut nv) = (0usize, 0usize, 0usize);
    for s in &e.samples {
        if s.name.starts_with("DCGM_FI_DEV_") {
            dcgm += 1;
        } else if s.name.starts_with("nvidia_smi_") {
            smi += 1;
        } else if s.name.starts_with("nvidia_gpu_") {
            nv += 1;
        }
    }
    let best = dcgm.max(smi).max(nv);
    if best == 0 {
        return Err(FormatError::Unrecognised {
            samples: e.samples.len(),
        });
    }
    if best == dcgm {
        Ok((ExporterFormat::Dcgm, read_dcgm(e)))
    } else if best == smi {
        Ok((
            ExporterFormat::NvidiaGpuExporter,
            read_nvidia_gpu_exporter(e),
        ))
    } else {
        Ok((ExporterFormat::NvidiaGpuNames, read_nvidia_gpu_names(e)))
    }
}

/// DCGM marks blank / not-found / not-supported / not-permissioned values with sentinels near the
/// top of the integer range (int64: 0x7ffffffffffffff0.., int32: 0x7ffffff0..) or, for doubles,
/// 2^47 and up.
pub fn is_dcgm_blank(v: f64) -> bool {
    const INT32_BLANK: f64 = 2_147_483_632.0; // 0x7ffffff0
    const INT32_MAX: f64 = 2_147_483_647.0;
    const FP64_BLANK: f64 = 140_737_488_355_328.0; // 2^47
    !v.is_finite() || v >= FP64_BLANK || (INT32_BLANK..=INT32_MAX).contains(&v)
}

/// The energy counter is 64-bit and may legitimately pass 2^31 mJ: only int64 sentinels count.
fn is_dcgm_blank_i64(v: f64) -> bool {
    const INT64_BLANK: f64 = 9_223_372_036_854_775_792.0; // 0x7ffffffffffffff0
    !v.is_finite() || v >= INT64_BLANK
}

fn finite_nonneg(v: f64) -> Option<f64> {
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn bytes(v: f64) -> Option<u64> {
    // Values are whole numbers of bytes (or MiB scaled); round to absorb float formatting.
    finite_nonneg(v).map(|b| b.round() as u64)
}

fn index_of(label: Option<&str>) -> Option<u32> {
    label.and_then(|s| s.trim().parse::<u32>().ok())
}

fn read_dcgm(e: &Exposition) -> Vec<GpuReading> {
    #[derive(Default)]
    struct Acc {
        r: GpuReading,
        fb_used: Option<f64>,
        fb_free: Option<f64>,
        fb_reserved: Option<f64>,
    }
    let mut gpus: BTreeMap<(u32, String, String), Acc> = BTreeMap::new();
    for s in e.samples.iter() {
        let Some(field) = s.name.strip_prefix("DCGM_FI_DEV_") else {
            continue;
        };
        let index = index_of(s.label("gpu")).unwrap_or(0);
        let uuid = s.label("UUID").unwrap_or_default().to_string();
        // MIG instances are reported per GPU instance: keep them apart.
        let instance = s.label("GPU_I_ID").unwrap_or_default().to_string();
        let acc = gpus
            .entry((index, uuid.clone(), instance.clone()))
            .or_default();
        acc.r.index = index;
        acc.r.uuid = uuid;
        if acc.r.name.is_empty()
            && let Some(model) = s.label("modelName")
        {
            acc.r.name = match s.label("GPU_I_PROFILE") {
                Some(p) if !instance.is_empty() => format!("{model} (MIG {p})"),
                _ => model.to_string(),
            };
        }
        let v = s.value;
        if field == "TOTAL_ENERGY_CONSUMPTION" {
            if !is_dcgm_blank_i64(v) {
                acc.r.energy_j = finite_nonneg(v).map(|mj| mj / 1000.0);
            }
            continue;
        }
        if is_dcgm_blank(v) {
            continue;
        }
        match field {
            "GPU_UTIL" => acc.r.util_pct = finite_nonneg(v),
            "FB_USED" => acc.fb_used = finite_nonneg(v),
            "FB_FREE" => acc.fb_free = finite_nonneg(v),
            "FB_RESERVED" => acc.fb_reserved = finite_nonneg(v),
            "POWER_USAGE" => acc.r.power_w = finite_nonneg(v),
            "GPU_TEMP" => acc.r.temp_c = v.is_finite().then_some(v),
            "SM_CLOCK" => acc.r.sm_clock_mhz = finite_nonneg(v),
            _ => {}
        }
    }
    gpus.into_values()
        .map(|mut a| {
            let mib = MIB as f64;
            a.r.mem_used_bytes = a.fb_used.and_then(|u| bytes(u * mib));
            a.r.mem_total_bytes = match (a.fb_used, a.fb_free) {
                (Some(u), Some(f)) => bytes((u + f + a.fb_reserved.unwrap_or(0.0)) * mib),
                _ => None,
            };
            a.r
        })
        .collect()
}

fn read_nvidia_gpu_exporter(e: &Exposition) -> Vec<GpuReading> {
    let mut gpus: BTreeMap<String, GpuReading> = BTreeMap::new();
    let mut index_metric: BTreeMap<String, u32> = BTreeMap::new();
    for s in &e.samples {
        let Some(field) = s.name.strip_prefix("nvidia_smi_") else {
            continue;
        };
        let Some(uuid) = s.label("uuid") else {
            continue;
        };
        // Per-process series (compute_app_*) also carry `uuid`: do not make GPUs of them alone.
        if field.starts_with("compute_app") || field.starts_with("process") {
            continue;
        }
        let r = gpus.entry(uuid.to_string()).or_default();
        r.uuid = uuid.to_string();
        let v = s.value;
        match field {
            "gpu_info" => {
                if let Some(n) = s.label("name") {
                    r.name = n.to_string();
                }
                if let Some(i) = index_of(s.label("index")) {
                    r.index = i;
                    index_metric.insert(uuid.to_string(), i);
                }
            }
            "index" => {
                if let Some(i) = finite_nonneg(v) {
                    index_metric.entry(uuid.to_string()).or_insert(i as u32);
                }
            }
            "name" => {}
            "utilization_gpu_ratio" => r.util_pct = finite_nonneg(v).map(|x| x * 100.0),
            "memory_used_bytes" => r.mem_used_bytes = bytes(v),
            "memory_total_bytes" => r.mem_total_bytes = bytes(v),
            "power_draw_watts" => r.power_w = finite_nonneg(v),
            "temperature_gpu" => r.temp_c = v.is_finite().then_some(v),
            "clocks_current_sm_clock_hz" => r.sm_clock_mhz = finite_nonneg(v).map(|hz| hz / 1e6),
            _ => {}
        }
    }
    let mut out: Vec<GpuReading> = gpus
        .into_iter()
        .map(|(uuid, mut r)| {
            if let Some(&i) = index_metric.get(&uuid) {
                r.index = i;
            }
            r
        })
        .collect();
    out.sort_by_key(|r| r.index);
    out
}

fn read_nvidia_gpu_names(e: &Exposition) -> Vec<GpuReading> {
    let mut gpus: BTreeMap<(u32, String), GpuReading> = BTreeMap::new();
    for s in &e.samples {
        let field = if let Some(f) = s.name.strip_prefix("nvidia_gpu_") {
            f
        } else if let Some(f) = s.name.strip_prefix("llmload_gpu_") {
            match f {
                "energy_joules_total" => "llmload_energy",
                "sm_clock_mhz" => "llmload_sm_clock",
                _ => continue,
            }
        } else {
            continue;
        };
        // Our exporter labels `index`; mindprince's original labels `minor_number`.
        let Some(index) = index_of(s.label("index").or(s.label("minor_number"))) else {
            continue;
        };
        let uuid = s.label("uuid").unwrap_or_default().to_string();
        let r = gpus.entry((index, uuid.clone())).or_default();
        r.index = index;
        r.uuid = uuid;
        if r.name.is_empty()
            && let Some(n) = s.label("name")
        {
            r.name = n.to_string();
        }
        let v = s.value;
        match field {
            "duty_cycle" => r.util_pct = finite_nonneg(v),
            "memory_used_bytes" => r.mem_used_bytes = bytes(v),
            "memory_total_bytes" => r.mem_total_bytes = bytes(v),
            "temperature" | "temperature_celsius" => r.temp_c = v.is_finite().then_some(v),
            "power_usage_milliwatts" => r.power_w = finite_nonneg(v).map(|mw| mw / 1000.0),
            "llmload_energy" => r.energy_j = finite_nonneg(v),
            "llmload_sm_clock" => r.sm_clock_mhz = finite_nonneg(v),
            _ => {}
        }
    }
    gpus.into_values().collect()
}

/// Reads `nvidia-smi --query-gpu=<fields> --format=csv[,nounits]` output. Known columns:
/// `index`, `uuid`, `name`, `utilization.gpu`, `memory.used`, `memory.total` (MiB),
/// `power.draw` (W), `temperature.gpu`, `clocks.current.sm` / `clocks.sm` (MHz). Units (`%`,
/// `MiB`, `W`, `MHz`) after the numbers are stripped; `[N/A]` / `[Not Supported]` read as missing.
pub fn parse_nvidia_smi_csv(text: &str) -> Result<Vec<GpuReading>, FormatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| FormatError::Csv("empty input: expected a header line".into()))?;
    let cols: Vec<String> = header
        .split(',')
        .map(|c| {
            let c = c.trim();
            c.split_once(" [").map_or(c, |(n, _)| n).to_string()
        })
        .collect();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(FormatError::Csv(format!(
                "line {}: {} fields, header has {}",
                n + 2,
                fields.len(),
                cols.len()
            )));
        }
        let mut r = GpuReading::default();
        for (col, raw) in cols.iter().zip(fields) {
            let num = || -> Option<f64> {
                let t = raw
                    .trim_end_matches(" %")
                    .trim_end_matches(" MiB")
                    .trim_end_matches(" MHz")
                    .trim_end_matches(" W")
                    .trim();
                t.parse::<f64>().ok().filter(|v| v.is_finite())
            };
            match col.as_str() {
                "index" => {
                    r.index = raw.parse().map_err(|_| {
                        FormatError::Csv(format!("line {}: index `{raw}` is not a number", n + 2))
                    })?
                }
                "uuid" => r.uuid = raw.to_string(),
                "name" => r.name = raw.to_string(),
                "utilization.gpu" => r.util_pct = num(),
                "memory.used" => r.mem_used_bytes = num().and_then(|m| bytes(m * MIB as f64)),
                "memory.total" => r.mem_total_bytes = num().and_then(|m| bytes(m * MIB as f64)),
                "power.draw" => r.power_w = num(),
                "temperature.gpu" => r.temp_c = num(),
                "clocks.current.sm" | "clocks.sm" => r.sm_clock_mhz = num(),
                _ => {}
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Convenience: parse the text and read it.
pub fn read_exposition_text(text: &str) -> Result<(ExporterFormat, Vec<GpuReading>), FormatError> {
    read_exposition(&crate::expo::parse(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgm_sentinels_are_blank_but_real_values_are_not() {
        assert!(is_dcgm_blank(9_223_372_036_854_775_794.0));
        assert!(is_dcgm_blank(2_147_483_632.0));
        assert!(is_dcgm_blank(2_147_483_646.0));
        assert!(is_dcgm_blank(140_737_488_355_328.0));
        assert!(!is_dcgm_blank(100.0));
        assert!(!is_dcgm_blank(2_147_483_631.0));
        // An energy counter past 2^31 mJ is a real value.
        assert!(!is_dcgm_blank_i64(2_147_483_640.0));
        assert!(is_dcgm_blank_i64(9_223_372_036_854_775_794.0));
    }

    #[test]
    fn unrecognised_exposition_says_what_to_do() {
        let err = read_exposition_text("vllm:num_requests_running 3\n").unwrap_err();
        assert!(err.to_string().contains("--gpu-metrics-url"));
    }
}
