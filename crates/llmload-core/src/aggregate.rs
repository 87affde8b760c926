//! Turns request records into one [`Benchmark`] of the results file (DESIGN §2 aggregates).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::record::{ErrorClass, RequestRecord, TokenSource};
use crate::results::{
    Benchmark, Concurrency, Metrics, ProfileInfo, RequestCounts, Throughput, Tokens, Window,
};
use crate::stats::Summary;

/// Pooled ITL gaps are kept exactly up to this many; past it they move into an HDR histogram
/// (3 significant digits) and the results say so.
pub const ITL_EXACT_LIMIT: usize = 4_000_000;

/// Which requests count: those dispatched inside `[start_s, end_s)` of the run clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRule {
    pub start_s: f64,
    pub end_s: f64,
}

impl WindowRule {
    pub const ALL: WindowRule = WindowRule {
        start_s: f64::NEG_INFINITY,
        end_s: f64::INFINITY,
    };
    pub fn contains(&self, t_dispatch: f64) -> bool {
        t_dispatch >= self.start_s && t_dispatch < self.end_s
    }

    /// Marks `rec.in_window` by its dispatch time.
    pub fn apply(&self, rec: &mut RequestRecord) {
        rec.in_window = self.contains(rec.t_dispatch);
    }
}

/// A service-level objective on one per-request metric: the request meets it when the metric
/// is at most (or, for rates, at least) `threshold`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Slo {
    /// `ttft`, `ttfot`, `tpot`, `tpot_incl_ttft`, `e2e_latency`, `request_latency`,
    /// `scheduled_latency`, `decode_rate`, `itl_max`.
    pub metric: String,
    pub threshold: f64,
}

impl Slo {
    /// The metric names an SLO may use.
    pub const METRICS: [&'static str; 9] = [
        "ttft",
        "ttfot",
        "tpot",
        "tpot_incl_ttft",
        "e2e_latency",
        "request_latency",
        "scheduled_latency",
        "decode_rate",
        "itl_max",
    ];

    /// Whether a completed request meets this objective. A metric the request lacks (TPOT of a
    /// one-token answer) is not held against it.
    pub fn met_by(&self, r: &RequestRecord, max_gap: Option<f64>) -> bool {
        let v = match self.metric.as_str() {
            "ttft" => r.ttft(),
            "ttfot" => r.ttfot(),
            "tpot" => r.tpot(),
            "tpot_incl_ttft" => r.tpot_incl_ttft(),
            "e2e_latency" | "e2e" => r.e2e_latency(),
            "request_latency" => Some(r.request_latency()),
            "scheduled_latency" => r.scheduled_latency(),
            "decode_rate" => return r.decode_rate().is_none_or(|d| d >= self.threshold),
            "itl_max" => max_gap,
            _ => None,
        };
        v.is_none_or(|v| v <= self.threshold)
    }
}

/// Accumulates the records of one benchmark; [`Aggregator::finish`] computes its statistics.
#[derive(Debug)]
pub struct Aggregator {
    slos: Vec<Slo>,
    completed: u64,
    errored: u64,
    cancelled: u64,
    dropped: u64,
    scheduled: u64,
    outside: u64,
    retried: u64,
    goodput_count: u64,
    errors_by_class: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
    prompt_total: u64,
    output_total: u64,
    /// Requests with both a server (usage) and a client prompt count, their client total and
    /// the sum of (server − client).
    prompt_compared: u64,
    prompt_client_total: u64,
    prompt_diff_total: i64,
    sources: [u64; 3],
    events: u64,
    multi_events: u64,
    ttft: Vec<f64>,
    ttfot: Vec<f64>,
    e2e: Vec<f64>,
    req_lat: Vec<f64>,
    tpot: Vec<f64>,
    tpot_incl: Vec<f64>,
    decode_rate: Vec<f64>,
    dispatch_delay: Vec<f64>,
    generator_lag: Vec<f64>,
    client_queue: Vec<f64>,
    sched_lat: Vec<f64>,
    prompt_tokens: Vec<f64>,
    output_tokens: Vec<f64>,
    itl: Vec<f64>,
    itl_hdr: Option<Histogram<u64>>,
    intervals: Vec<(f64, f64)>,
    first_dispatch: f64,
    last_end: f64,
}

impl Aggregator {
    pub fn new(slos: Vec<Slo>) -> Self {
        Self {
            slos,
            completed: 0,
            errored: 0,
            cancelled: 0,
            dropped: 0,
            scheduled: 0,
            outside: 0,
            retried: 0,
            goodput_count: 0,
            errors_by_class: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            prompt_total: 0,
            output_total: 0,
            prompt_compared: 0,
            prompt_client_total: 0,
            prompt_diff_total: 0,
            sources: [0; 3],
            events: 0,
            multi_events: 0,
            ttft: Vec::new(),
            ttfot: Vec::new(),
            e2e: Vec::new(),
            req_lat: Vec::new(),
            tpot: Vec::new(),
            tpot_incl: Vec::new(),
            decode_rate: Vec::new(),
            dispatch_delay: Vec::new(),
            generator_lag: Vec::new(),
            client_queue: Vec::new(),
            sched_lat: Vec::new(),
            prompt_tokens: Vec::new(),
            output_tokens: Vec::new(),
            itl: Vec::new(),
            itl_hdr: None,
            intervals: Vec::new(),
            first_dispatch: f64::INFINITY,
            last_end: f64::NEG_INFINITY,
        }
    }

    /// Counts one arrival that a concurrency cap refused (never dispatched).
    pub fn push_dropped(&mut self) {
        self.scheduled += 1;
        self.dropped += 1;
    }

    /// Adds one finished request. `gaps` are the inter-event gaps of its output-bearing events
    /// (`t_chunk[i] - t_chunk[i-1]`), pooled into ITL. Requests with `in_window == false`
    /// (warm-up, cool-down) are only counted as `outside_window`.
    pub fn push(&mut self, rec: &RequestRecord, gaps: &[f64]) {
        self.scheduled += 1;
        if !rec.in_window {
            self.outside += 1;
            return;
        }
        self.retried += u64::from(rec.retries > 0);
        self.intervals.push((rec.t_dispatch, rec.t_end));
        self.first_dispatch = self.first_dispatch.min(rec.t_dispatch);
        self.dispatch_delay.push(rec.dispatch_delay());
        self.generator_lag.push(rec.generator_lag());
        if let Some(q) = rec.client_queue_s {
            self.client_queue.push(q);
        }
        match rec.error {
            Some(ErrorClass::Cancelled) => {
                self.cancelled += 1;
                return;
            }
            Some(class) => {
                self.errored += 1;
                self.last_end = self.last_end.max(rec.t_end);
                *self
                    .errors_by_class
                    .entry(class.as_str().to_string())
                    .or_insert(0) += 1;
                if let Some(msg) = &rec.error_message {
                    self.error_examples
                        .entry(class.as_str().to_string())
                        .or_insert_with(|| msg.chars().take(300).collect());
                }
                return;
            }
            None => {}
        }
        self.completed += 1;
        self.last_end = self.last_end.max(rec.t_end);
        let p = rec.prompt_tokens.unwrap_or(0);
        let o = rec.output_tokens.unwrap_or(0);
        self.prompt_total += p;
        self.output_total += o;
        if rec.token_source == TokenSource::Usage
            && let (Some(server), Some(client)) = (rec.prompt_tokens, rec.prompt_tokens_client)
        {
            self.prompt_compared += 1;
            self.prompt_client_total += client;
            self.prompt_diff_total += server as i64 - client as i64;
        }
        self.sources[match rec.token_source {
            TokenSource::Usage => 0,
            TokenSource::Tokenizer => 1,
            TokenSource::None => 2,
        }] += 1;
        self.events += u64::from(rec.output_events);
        self.multi_events += u64::from(rec.multi_token_events);
        if let Some(v) = rec.prompt_tokens {
            self.prompt_tokens.push(v as f64);
        }
        if let Some(v) = rec.output_tokens {
            self.output_tokens.push(v as f64);
        }
        push_opt(&mut self.ttft, rec.ttft());
        push_opt(&mut self.ttfot, rec.ttfot());
        push_opt(&mut self.e2e, rec.e2e_latency());
        self.req_lat.push(rec.request_latency());
        push_opt(&mut self.tpot, rec.tpot());
        push_opt(&mut self.tpot_incl, rec.tpot_incl_ttft());
        push_opt(&mut self.decode_rate, rec.decode_rate());
        push_opt(&mut self.sched_lat, rec.scheduled_latency());
        self.push_gaps(gaps);
        if !self.slos.is_empty() {
            let max_gap = gaps.iter().copied().reduce(f64::max);
            if self.slos.iter().all(|s| s.met_by(rec, max_gap)) {
                self.goodput_count += 1;
            }
        }
    }

    fn push_gaps(&mut self, gaps: &[f64]) {
        if let Some(h) = &mut self.itl_hdr {
            for g in gaps {
                // Nanoseconds, clamped into the histogram's range.
                let _ = h.record((g.max(0.0) * 1e9) as u64);
            }
            return;
        }
        self.itl.extend_from_slice(gaps);
        if self.itl.len() > ITL_EXACT_LIMIT {
            let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
            h.auto(true);
            for g in self.itl.drain(..) {
                let _ = h.record((g.max(0.0) * 1e9) as u64);
            }
            self.itl = Vec::new();
            self.itl_hdr = Some(h);
        }
    }

    /// Computes the benchmark's statistics.
    pub fn finish(mut self, profile: ProfileInfo) -> Benchmark {
        let (start, end) = if self.first_dispatch.is_finite() {
            let end = if self.last_end.is_finite() {
                self.last_end
            } else {
                self.intervals
                    .iter()
                    .map(|i| i.1)
                    .fold(self.first_dispatch, f64::max)
            };
            (self.first_dispatch, end)
        } else {
            (0.0, 0.0)
        };
        let duration = (end - start).max(0.0);
        let per_s = |v: f64| if duration > 0.0 { v / duration } else { 0.0 };
        let concurrency = time_weighted_concurrency(&mut self.intervals, start, end);
        let source = match self.sources {
            [_, 0, 0] => "usage",
            [0, _, 0] => "tokenizer",
            [0, 0, _] => "none",
            _ => "mixed",
        };
        let mut warnings = Vec::new();
        if self.sources[1] > 0 {
            warnings.push(format!(
                "{} request(s) had no usage from the server: their token counts come from the client tokenizer",
                self.sources[1]
            ));
        }
        let (itl, itl_method) = match &self.itl_hdr {
            Some(h) => (hdr_summary(h), "hdr3"),
            None => (Summary::from_samples(&mut self.itl), "exact"),
        };
        let mut counts = BTreeMap::new();
        for c in ErrorClass::ALL {
            if c != ErrorClass::Cancelled {
                counts.insert(c.as_str().to_string(), 0);
            }
        }
        counts.extend(self.errors_by_class);
        Benchmark {
            profile,
            window: Window {
                duration_s: duration,
                start_s: start,
                end_s: end,
                extra: BTreeMap::new(),
            },
            requests: RequestCounts {
                completed: self.completed,
                errored: self.errored,
                cancelled: self.cancelled,
                dropped: self.dropped,
                scheduled: self.scheduled,
                outside_window: self.outside,
                retried_on_fresh_connection: self.retried,
                errors_by_class: counts,
                error_examples: self.error_examples,
            },
            throughput: Throughput {
                requests_per_s: per_s(self.completed as f64),
                output_tokens_per_s: per_s(self.output_total as f64),
                total_tokens_per_s: per_s((self.prompt_total + self.output_total) as f64),
                goodput_requests_per_s: (!self.slos.is_empty())
                    .then(|| per_s(self.goodput_count as f64)),
                extra: BTreeMap::new(),
            },
            tokens: Tokens {
                prompt_total: self.prompt_total,
                output_total: self.output_total,
                source: source.to_string(),
                extra: if self.prompt_compared > 0 {
                    // Server usage vs the client's own count of the same prompts (chat template
                    // overhead, another tokenizer): per request in requests.jsonl, in total here.
                    [
                        (
                            "prompt_compared_requests".to_string(),
                            self.prompt_compared.into(),
                        ),
                        (
                            "prompt_client_total".to_string(),
                            self.prompt_client_total.into(),
                        ),
                        (
                            "prompt_server_minus_client_total".to_string(),
                            self.prompt_diff_total.into(),
                        ),
                        (
                            "prompt_server_minus_client_mean".to_string(),
                            serde_json::json!(
                                self.prompt_diff_total as f64 / self.prompt_compared as f64
                            ),
                        ),
                    ]
                    .into_iter()
                    .collect()
                } else {
                    BTreeMap::new()
                },
            },
            concurrency,
            metrics: Metrics {
                ttft_s: Summary::from_samples(&mut self.ttft),
                ttfot_s: Summary::from_samples(&mut self.ttfot),
                e2e_latency_s: Summary::from_samples(&mut self.e2e),
                request_latency_s: Summary::from_samples(&mut self.req_lat),
                tpot_s: Summary::from_samples(&mut self.tpot),
                tpot_incl_ttft_s: Summary::from_samples(&mut self.tpot_incl),
                itl_s: itl,
                decode_rate_tokens_per_s: Summary::from_samples(&mut self.decode_rate),
                dispatch_delay_s: Summary::from_samples(&mut self.dispatch_delay),
                scheduled_latency_s: Summary::from_samples(&mut self.sched_lat),
                prompt_tokens: Summary::from_samples(&mut self.prompt_tokens),
                output_tokens: Summary::from_samples(&mut self.output_tokens),
                extra: [
                    (
                        "generator_lag_s".to_string(),
                        Summary::from_samples(&mut self.generator_lag),
                    ),
                    (
                        "client_queue_s".to_string(),
                        Summary::from_samples(&mut self.client_queue),
                    ),
                ]
                .into_iter()
                .filter(|(_, v)| v.is_some())
                .collect(),
            },
            multi_token_event_share: (self.events > 0)
                .then(|| self.multi_events as f64 / self.events as f64),
            itl_method: Some(itl_method.to_string()),
            warnings,
            server: None,
            gpu: None,
            sla: None,
            extra: BTreeMap::new(),
        }
    }
}

fn push_opt(v: &mut Vec<f64>, x: Option<f64>) {
    if let Some(x) = x {
        v.push(x);
    }
}

/// Time-weighted mean and max of overlapping `[dispatch, end)` intervals over `[start, end]`.
fn time_weighted_concurrency(intervals: &mut [(f64, f64)], start: f64, end: f64) -> Concurrency {
    if intervals.is_empty() {
        return Concurrency::default();
    }
    let mut events: Vec<(f64, i64)> = Vec::with_capacity(intervals.len() * 2);
    for &(a, b) in intervals.iter() {
        events.push((a, 1));
        events.push((b.max(a), -1));
    }
    // Ends before starts at the same instant, so back-to-back requests do not overlap.
    events.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut cur, mut max, mut area, mut last_t) = (0i64, 0i64, 0.0f64, start);
    for (t, d) in events {
        let t_c = t.clamp(start, end);
        area += cur as f64 * (t_c - last_t);
        last_t = t_c;
        cur += d;
        max = max.max(cur);
    }
    let span = end - start;
    Concurrency {
        mean: if span > 0.0 { area / span } else { max as f64 },
        max: max.max(0) as u64,
    }
}

fn hdr_summary(h: &Histogram<u64>) -> Option<Summary> {
    if h.is_empty() {
        return None;
    }
    let s = |ns: u64| ns as f64 / 1e9;
    Some(Summary {
        count: h.len(),
        mean: h.mean() / 1e9,
        stddev: h.stdev() / 1e9,
        min: s(h.min()),
        p50: s(h.value_at_quantile(0.50)),
        p90: s(h.value_at_quantile(0.90)),
        p95: s(h.value_at_quantile(0.95)),
        p99: s(h.value_at_quantile(0.99)),
        p999: s(h.value_at_quantile(0.999)),
        max: s(h.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: u64, d: f64, first: f64, last: f64, out: u64) -> RequestRecord {
        RequestRecord {
            in_window: true,
            id,
            t_sched: d,
            t_dispatch: d,
            t_first_token: Some(first),
            t_first_output: Some(first),
            t_last_token: Some(last),
            t_end: last,
            prompt_tokens: Some(10),
            output_tokens: Some(out),
            output_events: out as u32,
            ..Default::default()
        }
    }

    #[test]
    fn throughput_and_concurrency() {
        let mut a = Aggregator::new(vec![]);
        // Two sequential requests of 1 s each, then one overlapping pair.
        a.push(&ok(0, 0.0, 0.1, 1.0, 10), &[0.1; 9]);
        a.push(&ok(1, 1.0, 1.1, 2.0, 10), &[0.1; 9]);
        a.push(&ok(2, 2.0, 2.1, 4.0, 10), &[0.2; 9]);
        a.push(&ok(3, 2.0, 2.1, 4.0, 10), &[0.2; 9]);
        let b = a.finish(ProfileInfo::default());
        assert_eq!(b.window.duration_s, 4.0);
        assert_eq!(b.requests.completed, 4);
        assert_eq!(b.throughput.requests_per_s, 1.0);
        assert_eq!(b.throughput.output_tokens_per_s, 10.0);
        assert_eq!(b.throughput.total_tokens_per_s, 20.0);
        // 1 for 2 s, then 2 for 2 s: mean 1.5, max 2.
        assert!((b.concurrency.mean - 1.5).abs() < 1e-12);
        assert_eq!(b.concurrency.max, 2);
        assert_eq!(b.metrics.itl_s.unwrap().count, 36);
        assert_eq!(b.tokens.source, "usage");
        assert_eq!(b.itl_method.as_deref(), Some("exact"));
        // No client counts given: nothing to compare.
        assert!(b.tokens.extra.is_empty());
    }

    #[test]
    fn server_and_client_prompt_counts_are_compared() {
        let mut a = Aggregator::new(vec![]);
        for (server, client) in [(19, 12), (21, 12)] {
            let mut r = ok(0, 0.0, 0.1, 1.0, 4);
            r.prompt_tokens = Some(server);
            r.prompt_tokens_client = Some(client);
            a.push(&r, &[]);
        }
        let b = a.finish(ProfileInfo::default());
        assert_eq!(b.tokens.extra["prompt_client_total"], 24);
        assert_eq!(b.tokens.extra["prompt_server_minus_client_total"], 16);
        assert_eq!(b.tokens.extra["prompt_server_minus_client_mean"], 8.0);
    }

    #[test]
    fn window_errors_and_goodput() {
        let w = WindowRule {
            start_s: 1.0,
            end_s: 10.0,
        };
        let slo = Slo {
            metric: "ttft".into(),
            threshold: 0.15,
        };
        let mut a = Aggregator::new(vec![slo]);
        let mut warm = ok(0, 0.5, 0.6, 1.0, 4);
        w.apply(&mut warm);
        assert!(!warm.in_window);
        a.push(&warm, &[]);
        let mut fast = ok(1, 1.0, 1.1, 2.0, 4);
        w.apply(&mut fast);
        assert!(fast.in_window);
        a.push(&fast, &[]);
        a.push(&ok(2, 1.0, 1.5, 3.0, 4), &[]); // misses the TTFT SLO
        let e = RequestRecord {
            id: 3,
            t_sched: 1.5,
            t_dispatch: 1.5,
            t_end: 1.6,
            status: Some(503),
            error: Some(ErrorClass::Http5xx),
            error_message: Some("503 Service Unavailable".into()),
            in_window: true,
            ..Default::default()
        };
        a.push(&e, &[]);
        let c = RequestRecord {
            id: 4,
            t_dispatch: 2.0,
            t_sched: 2.0,
            t_end: 3.5,
            error: Some(ErrorClass::Cancelled),
            in_window: true,
            ..Default::default()
        };
        a.push(&c, &[]);
        a.push_dropped();
        let b = a.finish(ProfileInfo::default());
        let r = &b.requests;
        assert_eq!(
            (r.completed, r.errored, r.cancelled, r.dropped),
            (2, 1, 1, 1)
        );
        assert_eq!(r.outside_window, 1);
        assert_eq!(r.scheduled, 6);
        assert_eq!(r.errors_by_class["http_5xx"], 1);
        assert_eq!(r.errors_by_class["connect"], 0);
        // Window: first dispatch 1.0, last non-cancelled end 3.0.
        assert_eq!(b.window.duration_s, 2.0);
        assert_eq!(b.throughput.goodput_requests_per_s, Some(0.5));
    }

    #[test]
    fn itl_switches_to_hdr_past_the_limit() {
        let mut a = Aggregator::new(vec![]);
        let gaps = vec![0.005; ITL_EXACT_LIMIT / 2 + 1];
        a.push(&ok(0, 0.0, 0.1, 1.0, 10), &gaps);
        a.push(&ok(1, 0.0, 0.1, 1.0, 10), &gaps);
        let b = a.finish(ProfileInfo::default());
        assert_eq!(b.itl_method.as_deref(), Some("hdr3"));
        let itl = b.metrics.itl_s.unwrap();
        assert_eq!(itl.count as usize, gaps.len() * 2);
        assert!((itl.p50 - 0.005).abs() / 0.005 < 1e-3);
    }
}
