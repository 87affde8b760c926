//! `llmload gpu-exporter`: a Prometheus exporter of local GPUs with the metric names our users'
//! dashboards already use (`nvidia_gpu_*`), optionally also DCGM exporter field names.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::model::{GpuReading, MIB};
use crate::sampler::{GpuHandle, SamplerProgress};

/// Content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the exporter renders from.
pub struct ExporterState {
    /// The sampler, or why there is none.
    pub gpus: Result<GpuHandle, String>,
    /// Also serve DCGM exporter field names.
    pub dcgm_names: bool,
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // Shortest representation that reads back exactly.
        format!("{v}")
    }
}

struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    value: fn(&GpuReading) -> Option<f64>,
}

/// Renders the exposition for `gpus`. `status`: `Ok(progress)` when a sampler runs,
/// `Err(reason)` when there is no GPU.
pub fn render(
    gpus: &[GpuReading],
    status: Result<(&SamplerProgress, &str), &str>,
    dcgm_names: bool,
) -> String {
    let mut out = String::with_capacity(4096);
    let nv_labels = |r: &GpuReading| {
        format!(
            "index=\"{}\",uuid=\"{}\",name=\"{}\"",
            r.index,
            escape(&r.uuid),
            escape(&r.name)
        )
    };
    let dcgm_labels = |r: &GpuReading| {
        format!(
            "gpu=\"{}\",UUID=\"{}\",modelName=\"{}\"",
            r.index,
            escape(&r.uuid),
            escape(&r.name)
        )
    };
    let _ = writeln!(
        out,
        "# HELP nvidia_gpu_num_devices Number of GPUs read.\n# TYPE nvidia_gpu_num_devices gauge\nnvidia_gpu_num_devices {}",
        gpus.len()
    );
    let families: [Family; 7] = [
        Family {
            name: "nvidia_gpu_duty_cycle",
            kind: "gauge",
            help: "Percent of time over the past sample period during which one or more kernels were executing on the GPU (0-100).",
            value: |r| r.util_pct,
        },
        Family {
            name: "nvidia_gpu_memory_used_bytes",
            kind: "gauge",
            help: "GPU memory in use, bytes.",
            value: |r| r.mem_used_bytes.map(|b| b as f64),
        },
        Family {
            name: "nvidia_gpu_memory_total_bytes",
            kind: "gauge",
            help: "Total GPU memory, bytes.",
            value: |r| r.mem_total_bytes.map(|b| b as f64),
        },
        Family {
            name: "nvidia_gpu_temperature",
            kind: "gauge",
            help: "GPU core temperature, degrees Celsius.",
            value: |r| r.temp_c,
        },
        Family {
            name: "nvidia_gpu_power_usage_milliwatts",
            kind: "gauge",
            help: "Power draw, milliwatts.",
            value: |r| r.power_w.map(|w| (w * 1000.0).round()),
        },
        Family {
            name: "llmload_gpu_energy_joules_total",
            kind: "counter",
            help: "Energy used since the driver was loaded, joules (NVML total energy consumption).",
            value: |r| r.energy_j,
        },
        Family {
            name: "llmload_gpu_sm_clock_mhz",
            kind: "gauge",
            help: "Current SM clock, MHz.",
            value: |r| r.sm_clock_mhz,
        },
    ];
    for f in &families {
        write_family(&mut out, f, gpus, &nv_labels);
    }
    if dcgm_names {
        let dcgm: [Family; 7] = [
            Family {
                name: "DCGM_FI_DEV_GPU_UTIL",
                kind: "gauge",
                help: "GPU utilization (in %).",
                value: |r| r.util_pct,
            },
            Family {
                name: "DCGM_FI_DEV_FB_USED",
                kind: "gauge",
                help: "Framebuffer memory used (in MiB).",
                value: |r| r.mem_used_bytes.map(|b| b as f64 / MIB as f64),
            },
            Family {
                name: "DCGM_FI_DEV_FB_FREE",
                kind: "gauge",
                help: "Framebuffer memory free (in MiB).",
                value: |r| match (r.mem_total_bytes, r.mem_used_bytes) {
                    (Some(t), Some(u)) => Some(t.saturating_sub(u) as f64 / MIB as f64),
                    _ => None,
                },
            },
            Family {
                name: "DCGM_FI_DEV_GPU_TEMP",
                kind: "gauge",
                help: "GPU temperature (in C).",
                value: |r| r.temp_c,
            },
            Family {
                name: "DCGM_FI_DEV_POWER_USAGE",
                kind: "gauge",
                help: "Power draw (in W).",
                value: |r| r.power_w,
            },
            Family {
                name: "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                kind: "counter",
                help: "Total energy consumption since boot (in mJ).",
                value: |r| r.energy_j.map(|j| (j * 1000.0).round()),
            },
            Family {
                name: "DCGM_FI_DEV_SM_CLOCK",
                kind: "gauge",
                help: "SM clock frequency (in MHz).",
                value: |r| r.sm_clock_mhz,
            },
        ];
        for f in &dcgm {
            write_family(&mut out, f, gpus, &dcgm_labels);
        }
    }
    let (up, reason, source, progress) = match status {
        Ok((p, source)) => (1, "", source, Some(p)),
        Err(reason) => (0, reason, "", None),
    };
    let _ = writeln!(
        out,
        "# HELP llmload_gpu_exporter_up 1 when GPUs are being read, 0 when none was found (see llmload_gpu_exporter_info's reason).\n# TYPE llmload_gpu_exporter_up gauge\nllmload_gpu_exporter_up {up}"
    );
    let _ = writeln!(
        out,
        "# HELP llmload_gpu_exporter_info Where readings come from, or why there are none.\n# TYPE llmload_gpu_exporter_info gauge\nllmload_gpu_exporter_info{{source=\"{}\",reason=\"{}\",version=\"{}\"}} 1",
        escape(source),
        escape(reason),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(p) = progress {
        let _ = writeln!(
            out,
            "# HELP llmload_gpu_read_errors_total Failed GPU reads.\n# TYPE llmload_gpu_read_errors_total counter\nllmload_gpu_read_errors_total {}",
            p.read_errors
        );
    }
    out
}

fn write_family(
    out: &mut String,
    f: &Family,
    gpus: &[GpuReading],
    labels: &dyn Fn(&GpuReading) -> String,
) {
    let rows: Vec<(String, f64)> = gpus
        .iter()
        .filter_map(|r| (f.value)(r).map(|v| (labels(r), v)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
    for (l, v) in rows {
        let _ = writeln!(out, "{}{{{}}} {}", f.name, l, fmt_value(v));
    }
}

impl ExporterState {
    /// The current exposition.
    pub fn exposition(&self) -> String {
        match &self.gpus {
            Ok(h) => {
                let p = h.progress();
                let source = h.source();
                render(&h.latest(), Ok((&p, &source)), self.dcgm_names)
            }
            Err(reason) => render(&[], Err(reason), self.dcgm_names),
        }
    }
}

async fn handle(
    state: Arc<ExporterState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => Response::builder()
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(state.exposition()))),
        (&hyper::Method::GET, "/") => Response::builder()
            .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(
                b"llmload gpu-exporter: metrics at /metrics\n",
            ))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found: the exporter serves /metrics\n",
            ))),
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ExporterState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                // Transient accept errors (EMFILE, ECONNABORTED): keep serving.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&state), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{ExporterFormat, read_exposition_text};

    fn h100() -> GpuReading {
        GpuReading {
            index: 0,
            uuid: "GPU-94c2f627-e521-b94c-0282-0a26fd76ac1e".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            util_pct: Some(100.0),
            mem_used_bytes: Some(1_563_230_208),
            mem_total_bytes: Some(85_520_809_984),
            power_w: Some(694.668),
            energy_j: Some(3935.819),
            temp_c: Some(52.0),
            sm_clock_mhz: Some(1365.0),
        }
    }

    #[test]
    fn exposition_reads_back_in_both_namings() {
        let p = SamplerProgress::default();
        let text = render(&[h100()], Ok((&p, "nvml")), false);
        assert!(text.contains("nvidia_gpu_power_usage_milliwatts{index=\"0\",uuid=\"GPU-94c2f627-e521-b94c-0282-0a26fd76ac1e\",name=\"NVIDIA H100 80GB HBM3\"} 694668\n"));
        let (fmt, back) = read_exposition_text(&text).unwrap();
        assert_eq!(fmt, ExporterFormat::NvidiaGpuNames);
        assert_eq!(back, vec![h100()]);

        let text = render(&[h100()], Ok((&p, "nvml")), true);
        let (fmt, back) = read_exposition_text(&text).unwrap();
        assert_eq!(fmt, ExporterFormat::Dcgm);
        assert_eq!(back, vec![h100()]);
    }

    #[test]
    fn no_gpu_exposition_says_why() {
        let text = render(&[], Err("no GPU found: no driver"), false);
        assert!(text.contains("nvidia_gpu_num_devices 0\n"));
        assert!(text.contains("llmload_gpu_exporter_up 0\n"));
        assert!(text.contains("reason=\"no GPU found: no driver\""));
        assert!(!text.contains("nvidia_gpu_duty_cycle"));
    }
}
