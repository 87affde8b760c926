//! Where readings come from: local GPUs through NVML, a remote exporter URL, or a fake.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::formats::{ExporterFormat, FormatError, read_exposition_text};
use crate::model::GpuReading;

/// A boxed, sendable future (keeps [`GpuSource`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An error reading GPUs. Messages say what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    #[error("NVML: {0}")]
    Nvml(String),
    #[error("--gpu-metrics-url {url}: {reason}")]
    Remote { url: String, reason: String },
    #[error("--gpu-metrics-url {url}: {source}")]
    Format { url: String, source: FormatError },
    #[error("{0}")]
    Other(String),
}

/// A source of GPU readings. One call reads every GPU it sees.
///
/// Implementations: [`NvmlSource`] (local, NVML), [`RemoteSource`] (DCGM exporter,
/// nvidia_gpu_exporter or `llmload gpu-exporter` URL), [`FakeSource`] (tests).
pub trait GpuSource: Send {
    /// Short description for results and messages: `nvml`, `http://host:9400/metrics (dcgm-exporter)`.
    fn describe(&self) -> String;
    /// Reads all GPUs now. May block briefly (NVML calls take microseconds to a millisecond):
    /// the sampler runs sources on a thread of their own.
    fn snapshot(&mut self) -> BoxFuture<'_, Result<Vec<GpuReading>, GpuError>>;
}

/// Why there is no GPU telemetry. Serialises as `{"reason": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct GpuUnavailable {
    pub reason: String,
}

impl GpuUnavailable {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NVML

/// Local GPUs through NVML. The driver library (`libnvidia-ml.so.1`) is loaded at run time.
///
/// NVML's energy counter is expensive (about 3.9 ms of CPU per read on an H100, driver 580,
/// against ~40 us for everything else together), so one GPU's counter is read per
/// `energy_interval` (1 s by default; see [`NvmlSource::with_energy_interval`]), in turn: with
/// N GPUs each counter is read every N seconds. Windows take the counter's delta inside them and
/// integrate power at their edges.
pub struct NvmlSource {
    nvml: nvml_wrapper::Nvml,
    count: u32,
    driver: String,
    names: Vec<(String, String)>,
    energy_interval: Duration,
    last_energy: Option<std::time::Instant>,
    next_energy_gpu: u32,
}

impl NvmlSource {
    /// Loads NVML and counts devices. Fails with a "no GPU found: ..." reason when the library
    /// is missing, the driver is not loaded, or there is no device.
    pub fn open() -> Result<Self, GpuUnavailable> {
        use nvml_wrapper::error::NvmlError;
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
            let why = match &e {
                NvmlError::LibloadingError(inner) => format!(
                    "the NVIDIA driver library libnvidia-ml.so.1 could not be loaded ({inner}); \
                     install the NVIDIA driver, or use --gpu-metrics-url to read a DCGM exporter \
                     or nvidia_gpu_exporter"
                ),
                NvmlError::DriverNotLoaded => {
                    "the NVIDIA kernel driver is not loaded (NVML: driver not loaded)".to_string()
                }
                NvmlError::NoPermission => {
                    "NVML refused access (no permission to the NVIDIA devices)".to_string()
                }
                other => format!("NVML could not start: {other}"),
            };
            GpuUnavailable::new(format!("no GPU found: {why}"))
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| GpuUnavailable::new(format!("no GPU found: NVML device count: {e}")))?;
        if count == 0 {
            return Err(GpuUnavailable::new(
                "no GPU found: the NVIDIA driver is loaded but reports no device",
            ));
        }
        let driver = nvml.sys_driver_version().unwrap_or_default();
        let names = (0..count)
            .map(|i| match nvml.device_by_index(i) {
                Ok(d) => (d.uuid().unwrap_or_default(), d.name().unwrap_or_default()),
                Err(_) => (String::new(), String::new()),
            })
            .collect();
        Ok(Self {
            nvml,
            count,
            driver,
            names,
            energy_interval: Duration::from_secs(1),
            last_energy: None,
            next_energy_gpu: 0,
        })
    }

    /// Reads one GPU's energy counter per `every`, in turn (`Duration::ZERO`: every GPU's on
    /// every read).
    pub fn with_energy_interval(mut self, every: Duration) -> Self {
        self.energy_interval = every;
        self
    }

    /// Number of devices.
    pub fn device_count(&self) -> u32 {
        self.count
    }

    /// The driver version, e.g. `580.159.04` (empty if NVML did not say).
    pub fn driver_version(&self) -> &str {
        &self.driver
    }

    /// Reads every device now (blocking; ~30 us per GPU, plus ~4 ms per GPU when the energy
    /// counter is due).
    pub fn read_all(&mut self) -> Result<Vec<GpuReading>, GpuError> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let now = std::time::Instant::now();
        let pick = EnergySchedule {
            last: self.last_energy,
            every: self.energy_interval,
            next: self.next_energy_gpu,
            count: self.count,
        }
        .pick(now);
        if let Some(next) = pick.next {
            self.next_energy_gpu = next;
            self.last_energy = Some(now);
        }
        let mut out = Vec::with_capacity(self.count as usize);
        for i in 0..self.count {
            let d = self
                .nvml
                .device_by_index(i)
                .map_err(|e| GpuError::Nvml(format!("device {i}: {e}")))?;
            let mem = d.memory_info().ok();
            let (uuid, name) = self.names.get(i as usize).cloned().unwrap_or_default();
            out.push(GpuReading {
                index: i,
                uuid,
                name,
                util_pct: d.utilization_rates().ok().map(|u| f64::from(u.gpu)),
                mem_used_bytes: mem.as_ref().map(|m| m.used),
                mem_total_bytes: mem.as_ref().map(|m| m.total),
                power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                energy_j: if pick.reads(i) {
                    d.total_energy_consumption()
                        .ok()
                        .map(|mj| mj as f64 / 1000.0)
                } else {
                    None
                },
                temp_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                sm_clock_mhz: d.clock_info(Clock::SM).ok().map(f64::from),
            });
        }
        Ok(out)
    }
}

/// Which energy counters to read on one NVML read: all of them on the first read (or with a
/// zero interval), else one GPU's per interval, in turn.
struct EnergySchedule {
    last: Option<std::time::Instant>,
    every: Duration,
    next: u32,
    count: u32,
}

#[derive(Debug, PartialEq)]
struct EnergyPick {
    all: bool,
    one: Option<u32>,
    /// The next GPU in turn, when a read is due (`None`: nothing read now).
    next: Option<u32>,
}

impl EnergyPick {
    fn reads(&self, gpu: u32) -> bool {
        self.all || self.one == Some(gpu)
    }
}

impl EnergySchedule {
    fn pick(&self, now: std::time::Instant) -> EnergyPick {
        // 10 % slack so that a tick arriving a little early still reads.
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.every.mul_f64(0.9));
        if !due {
            return EnergyPick {
                all: false,
                one: None,
                next: None,
            };
        }
        if self.last.is_none() || self.every.is_zero() {
            return EnergyPick {
                all: true,
                one: None,
                next: Some(self.next),
            };
        }
        let g = self.next % self.count.max(1);
        EnergyPick {
            all: false,
            one: Some(g),
            next: Some(g + 1),
        }
    }
}

impl GpuSource for NvmlSource {
    fn describe(&self) -> String {
        if self.driver.is_empty() {
            "nvml".into()
        } else {
            format!("nvml (driver {})", self.driver)
        }
    }

    fn snapshot(&mut self) -> BoxFuture<'_, Result<Vec<GpuReading>, GpuError>> {
        let r = self.read_all();
        Box::pin(async move { r })
    }
}

// ---------------------------------------------------------------------------------------------
// Remote exporter

/// A DCGM exporter, nvidia_gpu_exporter or `llmload gpu-exporter` `/metrics` URL (plain HTTP).
/// The format is detected on every scrape.
pub struct RemoteSource {
    url: String,
    uri: http::Uri,
    timeout: Duration,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    format: Option<ExporterFormat>,
}

/// Largest exposition read (a DCGM exporter on 8 GPUs with profiling fields is ~200 KiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

impl RemoteSource {
    /// Checks the URL (http only) and builds a client; nothing is fetched yet.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, GpuError> {
        let bad = |reason: String| GpuError::Remote {
            url: url.to_string(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|e| {
            bad(format!(
                "not a valid URL ({e}); expected e.g. http://10.0.0.5:9400/metrics"
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported for GPU exporters; use the exporter's plain http \
                     port (e.g. through `kubectl port-forward`)"
                        .into(),
                ));
            }
            _ => {
                return Err(bad(
                    "the URL needs an http:// scheme, e.g. http://10.0.0.5:9400/metrics".into(),
                ));
            }
        }
        if uri.host().is_none() {
            return Err(bad("the URL has no host".into()));
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(Self {
            url: url.to_string(),
            uri,
            timeout,
            client,
            format: None,
        })
    }

    /// The format seen on the last successful scrape.
    pub fn format(&self) -> Option<ExporterFormat> {
        self.format
    }

    async fn fetch(&self) -> Result<String, GpuError> {
        use http_body_util::BodyExt;
        let bad = |reason: String| GpuError::Remote {
            url: self.url.clone(),
            reason,
        };
        let req = http::Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "text/plain;version=0.0.4")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| bad(format!("could not build the request: {e}")))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| bad(format!("request failed: {}", error_chain(&e))))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(bad(format!(
                    "HTTP {status}; is this the exporter's /metrics path?"
                )));
            }
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| bad(format!("reading the body failed: {e}")))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| bad("the body is not UTF-8 text".into()))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| bad(format!("no answer within {:?}", self.timeout)))?
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

impl GpuSource for RemoteSource {
    fn describe(&self) -> String {
        match self.format {
            Some(f) => format!("{} ({})", self.url, f.as_str()),
            None => self.url.clone(),
        }
    }

    fn snapshot(&mut self) -> BoxFuture<'_, Result<Vec<GpuReading>, GpuError>> {
        Box::pin(async move {
            let text = self.fetch().await?;
            let (format, gpus) = read_exposition_text(&text).map_err(|e| GpuError::Format {
                url: self.url.clone(),
                source: e,
            })?;
            self.format = Some(format);
            Ok(gpus)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Fake

/// A scripted source for tests: each call returns `script(call_number)` (0-based).
/// Share the call counter through [`FakeSource::calls`].
pub struct FakeSource {
    script: Box<dyn FnMut(u64) -> Result<Vec<GpuReading>, GpuError> + Send>,
    calls: Arc<Mutex<u64>>,
}

impl FakeSource {
    pub fn new(
        script: impl FnMut(u64) -> Result<Vec<GpuReading>, GpuError> + Send + 'static,
    ) -> Self {
        Self {
            script: Box::new(script),
            calls: Arc::new(Mutex::new(0)),
        }
    }

    /// Always the same readings.
    pub fn constant(gpus: Vec<GpuReading>) -> Self {
        Self::new(move |_| Ok(gpus.clone()))
    }

    /// A counter of calls made so far.
    pub fn calls(&self) -> Arc<Mutex<u64>> {
        Arc::clone(&self.calls)
    }
}

impl GpuSource for FakeSource {
    fn describe(&self) -> String {
        "fake".into()
    }

    fn snapshot(&mut self) -> BoxFuture<'_, Result<Vec<GpuReading>, GpuError>> {
        let n = {
            let mut c = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let n = *c;
            *c += 1;
            n
        };
        let r = (self.script)(n);
        Box::pin(async move { r })
    }
}

/// Opens the source the flags ask for: a remote URL when given, else local NVML.
pub fn open_source(
    gpu_metrics_url: Option<&str>,
    timeout: Duration,
) -> Result<Box<dyn GpuSource>, GpuUnavailable> {
    match gpu_metrics_url {
        Some(url) => RemoteSource::new(url, timeout)
            .map(|s| Box::new(s) as Box<dyn GpuSource>)
            .map_err(|e| GpuUnavailable::new(e.to_string())),
        None => NvmlSource::open().map(|s| Box::new(s) as Box<dyn GpuSource>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn energy_counters_are_read_in_turn_once_per_interval() {
        let t0 = Instant::now();
        let mut sched = EnergySchedule {
            last: None,
            every: Duration::from_secs(1),
            next: 0,
            count: 3,
        };
        // First read: every GPU.
        let p = sched.pick(t0);
        assert!(p.reads(0) && p.reads(1) && p.reads(2));
        sched.last = Some(t0);
        sched.next = p.next.unwrap();
        // 100 ms later: none.
        let p = sched.pick(t0 + Duration::from_millis(100));
        assert!(!p.reads(0) && !p.reads(1) && !p.reads(2));
        assert_eq!(p.next, None);
        // Then one GPU per second, in turn (a tick 50 ms early still counts).
        let mut seen = Vec::new();
        for k in 1..=4u64 {
            let now = t0 + Duration::from_millis(1000 * k - 50);
            let p = sched.pick(now);
            let g = (0..3).find(|&g| p.reads(g)).unwrap();
            assert_eq!((0..3).filter(|&g| p.reads(g)).count(), 1);
            seen.push(g);
            sched.last = Some(now);
            sched.next = p.next.unwrap();
        }
        assert_eq!(seen, vec![0, 1, 2, 0]);
        // Zero interval: all, every time.
        sched.every = Duration::ZERO;
        let p = sched.pick(t0 + Duration::from_secs(10));
        assert!(p.reads(0) && p.reads(1) && p.reads(2));
    }
}
