//! A benchmark window's server-side figures (`benchmark.server` in results.json).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analyze::{Insight, RuleInput, rules};
use crate::scrape::{ScrapeFailure, ScrapeRecord, ScrapeSeries, TargetSeries};
use crate::snapshot::Snapshot;
use crate::vllm::{
    self, CacheConfig, Figures, GENERATION_TOKENS, KV_USAGE, PREEMPTIONS, PROMPT_TOKENS, RUNNING,
    VllmFigures, WAITING,
};

/// Mean and maximum of a gauge over the scrapes inside a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct GaugeStats {
    pub mean: Option<f64>,
    pub max: Option<f64>,
    /// Scrapes that had the gauge.
    pub samples: usize,
}

impl GaugeStats {
    fn of(values: impl Iterator<Item = f64>) -> GaugeStats {
        let (mut sum, mut max, mut n) = (0.0, f64::NEG_INFINITY, 0usize);
        for v in values {
            sum += v;
            max = max.max(v);
            n += 1;
        }
        GaugeStats {
            mean: (n > 0).then(|| sum / n as f64),
            max: (n > 0).then_some(max),
            samples: n,
        }
    }
}

/// The compact time series of one target over the window: parallel arrays, one entry per
/// scrape (`null` where the scrape lacked the series). Counters are increases since the
/// window's baseline scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TimeSeries {
    pub url: String,
    /// Run-clock seconds (midpoint of request and response).
    pub t: Vec<f64>,
    pub running: Vec<Option<f64>>,
    pub waiting: Vec<Option<f64>>,
    pub kv_cache_usage: Vec<Option<f64>>,
    pub preemptions: Vec<Option<f64>>,
    pub prompt_tokens: Vec<Option<f64>>,
    pub generation_tokens: Vec<Option<f64>>,
}

/// What the client measured, for [`ServerWindow::correlate`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct ClientFigures {
    pub ttft_mean_s: Option<f64>,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub completed: u64,
}

/// Client against server over the same window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correlation {
    pub client_ttft_mean_s: Option<f64>,
    pub server_ttft_mean_s: Option<f64>,
    /// Client TTFT minus server TTFT: network, HTTP and client overhead (and the difference
    /// between vLLM's first-token event and ours: DESIGN §2).
    pub ttft_overhead_s: Option<f64>,
    pub client_prompt_tokens: u64,
    pub server_prompt_tokens: Option<f64>,
    /// client - server.
    pub prompt_tokens_diff: Option<f64>,
    pub client_output_tokens: u64,
    pub server_generation_tokens: Option<f64>,
    /// client - server.
    pub output_tokens_diff: Option<f64>,
    pub client_completed: u64,
    pub server_requests_finished: Option<f64>,
}

/// Server-side figures of one benchmark window.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ServerWindow {
    pub start_s: f64,
    pub end_s: f64,
    pub urls: Vec<String>,
    /// Run-clock time of the baseline scrape (last one answered at or before `start_s`) and
    /// of the closing scrape (first one sent at or after `end_s`), per URL.
    pub baseline_t_s: Vec<Option<f64>>,
    pub closing_t_s: Vec<Option<f64>>,
    /// Scrapes whose midpoint lies inside the window (all URLs).
    pub scrapes_in_window: usize,
    /// Increases between baseline and closing scrapes, all URLs and engines summed; gauges
    /// (running, waiting, KV usage) at the closing scrape.
    pub totals: Figures,
    /// The same per engine (`engine` label), when there are several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_engine: BTreeMap<String, Figures>,
    pub prefix_cache_hit_rate: Option<f64>,
    /// Over the scrapes inside the window. With several URLs: running/waiting mean and max are
    /// sums of the per-URL means and maxima; KV usage mean is the mean of per-URL means and
    /// max the largest.
    pub running: GaugeStats,
    pub waiting: GaugeStats,
    pub kv_cache_usage: GaugeStats,
    pub cache_config: Vec<CacheConfig>,
    pub series: Vec<TimeSeries>,
    pub scrape_errors: Vec<ScrapeFailure>,
    pub warnings: Vec<String>,
    pub insights: Vec<Insight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Correlation>,
}

fn first_present(snap: &Snapshot, names: &[&'static str], mean: bool) -> Option<f64> {
    let n = vllm::resolve(snap, names)?;
    if mean {
        let (mut s, mut c) = (0.0, 0usize);
        for (_, v) in snap.series(n) {
            s += v;
            c += 1;
        }
        (c > 0).then(|| s / c as f64)
    } else {
        snap.sum(n)
    }
}

struct TargetWindow<'a> {
    baseline: Option<&'a ScrapeRecord>,
    closing: Option<&'a ScrapeRecord>,
    inside: Vec<&'a ScrapeRecord>,
}

fn select<'a>(
    t: &'a TargetSeries,
    start: f64,
    end: f64,
    warnings: &mut Vec<String>,
) -> TargetWindow<'a> {
    let baseline = t
        .scrapes
        .iter()
        .rev()
        .find(|r| r.t_recv <= start)
        .or_else(|| {
            let first = t.scrapes.first();
            if let Some(f) = first {
                warnings.push(format!(
                    "{}: no scrape before the window start ({start:.3} s); increases count from the first scrape at {:.3} s",
                    t.url, f.t_sent
                ));
            }
            first
        });
    let closing = t.scrapes.iter().find(|r| r.t_sent >= end).or_else(|| {
        let last = t.scrapes.last();
        if let Some(l) = last {
            warnings.push(format!(
                "{}: no scrape after the window end ({end:.3} s); increases stop at the last scrape at {:.3} s",
                t.url, l.t_recv
            ));
        }
        last
    });
    if t.scrapes.is_empty() {
        warnings.push(format!(
            "{}: no successful scrape ({} failed): no server figures",
            t.url,
            t.failures.len()
        ));
    }
    let inside = t
        .scrapes
        .iter()
        .filter(|r| r.t_mid() >= start && r.t_mid() <= end)
        .collect();
    TargetWindow {
        baseline,
        closing,
        inside,
    }
}

impl ServerWindow {
    /// Computes the window `[start_s, end_s]` from the scrapes stored so far.
    pub fn compute(series: &ScrapeSeries, start_s: f64, end_s: f64) -> ServerWindow {
        let mut w = ServerWindow {
            start_s,
            end_s,
            urls: series.targets.iter().map(|t| t.url.clone()).collect(),
            ..Default::default()
        };
        let mut deltas: Vec<(String, Snapshot)> = Vec::new();
        let (mut run_mean, mut run_max, mut run_n) = (None::<f64>, None::<f64>, 0);
        let (mut wait_mean, mut wait_max, mut wait_n) = (None::<f64>, None::<f64>, 0);
        let mut kv_means = Vec::new();
        let (mut kv_max, mut kv_n) = (None::<f64>, 0);
        for t in &series.targets {
            let tw = select(t, start_s, end_s, &mut w.warnings);
            w.baseline_t_s.push(tw.baseline.map(|r| r.t_recv));
            w.closing_t_s.push(tw.closing.map(|r| r.t_sent));
            w.scrapes_in_window += tw.inside.len();
            w.scrape_errors.extend(
                t.failures
                    .iter()
                    .filter(|f| f.t >= start_s && f.t <= end_s)
                    .cloned(),
            );
            if let (Some(b), Some(c)) = (tw.baseline, tw.closing) {
                deltas.push((t.url.clone(), c.snapshot.delta_since(&b.snapshot)));
                if w.cache_config.is_empty() {
                    w.cache_config = CacheConfig::read(&c.snapshot);
                }
            }
            // Gauges inside the window; with no scrape inside, the closing one.
            let pts: Vec<&ScrapeRecord> = if tw.inside.is_empty() {
                tw.closing.into_iter().collect()
            } else {
                tw.inside.clone()
            };
            let r = GaugeStats::of(
                pts.iter()
                    .filter_map(|p| first_present(&p.snapshot, RUNNING, false)),
            );
            let wt = GaugeStats::of(
                pts.iter()
                    .filter_map(|p| first_present(&p.snapshot, WAITING, false)),
            );
            let kv = GaugeStats::of(
                pts.iter()
                    .filter_map(|p| first_present(&p.snapshot, KV_USAGE, true)),
            );
            let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(x), Some(y)) => Some(x + y),
                (x, None) => x,
                (None, y) => y,
            };
            run_mean = add(run_mean, r.mean);
            run_max = add(run_max, r.max);
            run_n += r.samples;
            wait_mean = add(wait_mean, wt.mean);
            wait_max = add(wait_max, wt.max);
            wait_n += wt.samples;
            kv_means.extend(kv.mean);
            kv_max = match (kv_max, kv.max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            kv_n += kv.samples;
            // Time series.
            let base = tw.baseline.map(|b| &b.snapshot);
            let since = |snap: &Snapshot, names: &[&'static str]| -> Option<f64> {
                let now = first_present(snap, names, false)?;
                let b0 = base
                    .and_then(|b| first_present(b, names, false))
                    .unwrap_or(0.0);
                Some(crate::histogram::counter_delta(b0, now))
            };
            let mut ts = TimeSeries {
                url: t.url.clone(),
                ..Default::default()
            };
            for p in &tw.inside {
                ts.t.push(p.t_mid());
                ts.running.push(first_present(&p.snapshot, RUNNING, false));
                ts.waiting.push(first_present(&p.snapshot, WAITING, false));
                ts.kv_cache_usage
                    .push(first_present(&p.snapshot, KV_USAGE, true));
                ts.preemptions.push(since(&p.snapshot, PREEMPTIONS));
                ts.prompt_tokens.push(since(&p.snapshot, PROMPT_TOKENS));
                ts.generation_tokens
                    .push(since(&p.snapshot, GENERATION_TOKENS));
            }
            w.series.push(ts);
        }
        w.running = GaugeStats {
            mean: run_mean,
            max: run_max,
            samples: run_n,
        };
        w.waiting = GaugeStats {
            mean: wait_mean,
            max: wait_max,
            samples: wait_n,
        };
        w.kv_cache_usage = GaugeStats {
            mean: (!kv_means.is_empty())
                .then(|| kv_means.iter().sum::<f64>() / kv_means.len() as f64),
            max: kv_max,
            samples: kv_n,
        };
        let merged = match deltas.len() {
            0 => None,
            1 => deltas.pop().map(|d| d.1),
            _ => {
                let parts: Vec<(String, &Snapshot)> =
                    deltas.iter().map(|(u, s)| (u.clone(), s)).collect();
                Some(Snapshot::merge_labeled(&parts, "instance"))
            }
        };
        if let Some(d) = merged {
            let v = VllmFigures::read(&d, None);
            w.totals = v.total;
            w.per_engine = v.per_engine;
            w.prefix_cache_hit_rate = w.totals.prefix_cache.as_ref().and_then(|c| c.hit_rate);
        }
        w.insights = rules(&RuleInput {
            figures: Some(&w.totals),
            waiting: w.waiting.max,
            running: w.running.max,
            kv_usage: w.kv_cache_usage.max,
            prefix_caching_enabled: w.cache_config.iter().find_map(|c| c.enable_prefix_caching),
            windowed: true,
        });
        if !w.scrape_errors.is_empty() {
            w.warnings.push(format!(
                "{} scrape(s) failed inside the window; first: {}",
                w.scrape_errors.len(),
                w.scrape_errors[0].error
            ));
        }
        w
    }

    /// Sets [`ServerWindow::correlation`] from the client's figures of the same window.
    pub fn correlate(&mut self, client: &ClientFigures) {
        let server_ttft = self.totals.mean("ttft_s");
        let diff = |c: u64, s: Option<f64>| s.map(|s| c as f64 - s);
        self.correlation = Some(Correlation {
            client_ttft_mean_s: client.ttft_mean_s,
            server_ttft_mean_s: server_ttft,
            ttft_overhead_s: client.ttft_mean_s.zip(server_ttft).map(|(c, s)| c - s),
            client_prompt_tokens: client.prompt_tokens,
            server_prompt_tokens: self.totals.prompt_tokens,
            prompt_tokens_diff: diff(client.prompt_tokens, self.totals.prompt_tokens),
            client_output_tokens: client.output_tokens,
            server_generation_tokens: self.totals.generation_tokens,
            output_tokens_diff: diff(client.output_tokens, self.totals.generation_tokens),
            client_completed: client.completed,
            server_requests_finished: self.totals.requests_finished,
        });
    }

    /// The window as a JSON value for `Benchmark::server`.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl ScrapeSeries {
    /// The server figures of `[start_s, end_s]` (after [`crate::scrape::ScrapeHandle::stop`]).
    pub fn window(&self, start_s: f64, end_s: f64) -> ServerWindow {
        ServerWindow::compute(self, start_s, end_s)
    }
}
