//! The gateway's own Prometheus metrics (prometheus-client, OpenMetrics text).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub backend: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelBackend {
    pub model: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub backend: String,
    pub class: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

const TTFT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 20.0, 60.0,
];
const TPS_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0,
    1000.0, 2500.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 1.0, 2.5,
];
const E2E_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0,
    300.0, 600.0,
];

fn ttft_hist() -> Histogram {
    Histogram::new(TTFT_BUCKETS.iter().copied())
}
fn tps_hist() -> Histogram {
    Histogram::new(TPS_BUCKETS.iter().copied())
}
fn itl_hist() -> Histogram {
    Histogram::new(ITL_BUCKETS.iter().copied())
}
fn e2e_hist() -> Histogram {
    Histogram::new(E2E_BUCKETS.iter().copied())
}

/// All metric handles; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub ttft: HistFamily<ModelBackend>,
    pub tokens_per_second: HistFamily<ModelBackend>,
    pub itl: HistFamily<ModelBackend>,
    pub e2e: HistFamily<ModelBackend>,
    pub queue_depth: Gauge,
    pub in_flight: Family<BackendLabel, Gauge>,
    pub upstream_errors: Family<ErrorLabels, Counter>,
    pub backend_up: Family<BackendLabel, Gauge>,
    pub retries: Counter,
    pub access_log_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "gateway_requests",
            "Requests answered by the gateway, by model, backend and outcome status",
            requests.clone(),
        );
        let ttft: HistFamily<ModelBackend> = Family::new_with_constructor(ttft_hist);
        registry.register(
            "gateway_time_to_first_token_seconds",
            "Time from the request's arrival at the gateway to the first output-bearing SSE event (streamed requests)",
            ttft.clone(),
        );
        let tokens_per_second: HistFamily<ModelBackend> = Family::new_with_constructor(tps_hist);
        registry.register(
            "gateway_tokens_per_second",
            "Per-request output tokens divided by the time from arrival to the last output token",
            tokens_per_second.clone(),
        );
        let itl: HistFamily<ModelBackend> = Family::new_with_constructor(itl_hist);
        registry.register(
            "gateway_inter_token_latency_seconds",
            "Gaps between consecutive output-bearing SSE events of a stream",
            itl.clone(),
        );
        let e2e: HistFamily<ModelBackend> = Family::new_with_constructor(e2e_hist);
        registry.register(
            "gateway_e2e_latency_seconds",
            "Time from the request's arrival at the gateway to its last output token (or the end of a non-streamed response)",
            e2e.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "gateway_queue_depth",
            "Requests waiting in the gateway for a backend slot",
            queue_depth.clone(),
        );
        let in_flight = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "gateway_requests_in_flight",
            "Requests the gateway has in flight on each backend",
            in_flight.clone(),
        );
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "gateway_upstream_errors",
            "Failures talking to a backend, by class",
            upstream_errors.clone(),
        );
        let backend_up = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "gateway_backend_up",
            "1 when the backend is in rotation, 0 when ejected",
            backend_up.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "gateway_retries",
            "Requests retried on another backend after a failure before any response byte",
            retries.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "gateway_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        Self {
            registry,
            requests,
            ttft,
            tokens_per_second,
            itl,
            e2e,
            queue_depth,
            in_flight,
            upstream_errors,
            backend_up,
            retries,
            access_log_dropped,
        }
    }

    pub fn count_request(&self, model: &str, backend: &str, status: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.to_string(),
                backend: backend.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub fn upstream_error(&self, backend: &str, class: &str) {
        self.upstream_errors
            .get_or_create(&ErrorLabels {
                backend: backend.to_string(),
                class: class.to_string(),
            })
            .inc();
    }

    /// Renders the OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Renders the classic Prometheus text format (0.0.4): counters are described under their
    /// sample name (`gateway_requests_total`) and there is no `# EOF`. This is what `curl`,
    /// `promtool` and scrapers that do not ask for OpenMetrics get.
    pub fn render_prometheus(&self) -> String {
        to_prometheus_text(&self.render())
    }
}

/// Converts prometheus-client's OpenMetrics output to the classic text format.
fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = help.take() {
                out.push_str(h);
                out.push('\n');
            }
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" && !name.ends_with("_total") {
                "_total"
            } else {
                ""
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split_once(' '))
                    .map(|(_, t)| t)
                    .unwrap_or("");
                out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_users_query() {
        let m = Metrics::new();
        m.count_request("m", "b", "200");
        m.upstream_error("b", "connect");
        let mb = ModelBackend {
            model: "m".into(),
            backend: "b".into(),
        };
        m.ttft.get_or_create(&mb).observe(0.1);
        m.tokens_per_second.get_or_create(&mb).observe(40.0);
        m.itl.get_or_create(&mb).observe(0.02);
        m.e2e.get_or_create(&mb).observe(1.0);
        m.in_flight
            .get_or_create(&BackendLabel {
                backend: "b".into(),
            })
            .set(0);
        m.backend_up
            .get_or_create(&BackendLabel {
                backend: "b".into(),
            })
            .set(1);
        let t = m.render();
        let p = m.render_prometheus();
        assert!(p.contains("# TYPE gateway_requests_total counter\n"));
        assert!(p.contains("# HELP gateway_requests_total Requests answered"));
        assert!(p.contains("# TYPE gateway_queue_depth gauge\n"));
        assert!(!p.contains("# EOF"));
        assert!(t.ends_with("# EOF\n"));
        for name in [
            "gateway_requests_total{model=\"m\",backend=\"b\",status=\"200\"} 1",
            "gateway_time_to_first_token_seconds_bucket{le=\"0.1\",model=\"m\",backend=\"b\"} 1",
            "# TYPE gateway_tokens_per_second histogram",
            "# TYPE gateway_inter_token_latency_seconds histogram",
            "# TYPE gateway_e2e_latency_seconds histogram",
            "gateway_queue_depth 0",
            "gateway_requests_in_flight{backend=\"b\"} 0",
            "gateway_upstream_errors_total{backend=\"b\",class=\"connect\"} 1",
            "gateway_backend_up{backend=\"b\"} 1",
        ] {
            assert!(t.contains(name), "missing {name} in\n{t}");
        }
    }
}
