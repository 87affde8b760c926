//! Closed- and open-loop load against the simulator in virtual time: the calibration checks
//! against real vLLM (tests, `bench/sim/calibration.sh`) and what-if experiments.

use crate::profile::Profile;
use crate::sim::{Delivery, Sim, SimRequest};

/// Server-side means over one load level, from the simulator's own `/metrics` histograms.
#[derive(Debug, Clone, Default)]
pub struct LevelResult {
    pub streams: u32,
    pub requests: u64,
    pub ttft_mean_ms: f64,
    pub prefill_mean_ms: f64,
    pub queue_mean_ms: f64,
    pub tpot_mean_ms: f64,
    pub tokens_per_step: f64,
    pub kv_usage_max: f64,
    pub waiting_max: u64,
    pub running_max: u64,
    pub duration_s: f64,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    /// Non-empty buckets of `vllm:iteration_tokens_total` (upper bound, steps).
    pub iteration_tokens_hist: Vec<(f64, u64)>,
    /// Non-empty buckets of `vllm:time_to_first_token_seconds` (upper bound s, requests).
    pub ttft_hist: Vec<(f64, u64)>,
}

fn unique_hashes(id: u64, prompt: u32, block: u32) -> Vec<u64> {
    (0..(prompt / block) as u64)
        .map(|i| {
            (id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                ^ (i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
                ^ 0x5bd1e995
        })
        .collect()
}

/// A text request of `prompt` unique tokens and exactly `output` tokens (ignore_eos).
pub fn text_request(id: u64, prompt: u32, output: u32, block: u32) -> SimRequest {
    SimRequest {
        id,
        prompt_tokens: prompt,
        text_tokens: prompt,
        block_hashes: unique_hashes(id, prompt, block),
        max_tokens: output,
        ignore_eos: true,
        images: 0,
        image_pixels: 0,
        vision_patches: 0,
        images_cached: 0,
    }
}

fn summarize(sim: &Sim, streams: u32, duration: f64, samples: &Samples) -> LevelResult {
    let m = sim.metrics();
    let mean = |h: &crate::metrics::Histogram| {
        if h.count() == 0 {
            0.0
        } else {
            1e3 * h.sum() / h.count() as f64
        }
    };
    LevelResult {
        streams,
        requests: m.e2e_request_latency.count(),
        ttft_mean_ms: mean(&m.time_to_first_token),
        prefill_mean_ms: mean(&m.request_prefill_time),
        queue_mean_ms: mean(&m.request_queue_time),
        tpot_mean_ms: mean(&m.request_time_per_output_token),
        tokens_per_step: if m.iteration_tokens.count() == 0 {
            0.0
        } else {
            m.iteration_tokens.sum() / m.iteration_tokens.count() as f64
        },
        kv_usage_max: samples.kv_max,
        waiting_max: samples.waiting_max,
        running_max: samples.running_max,
        duration_s: duration,
        output_tokens_per_s: if duration > 0.0 {
            m.generation_tokens as f64 / duration
        } else {
            0.0
        },
        requests_per_s: if duration > 0.0 {
            m.e2e_request_latency.count() as f64 / duration
        } else {
            0.0
        },
        iteration_tokens_hist: m.iteration_tokens.buckets().filter(|b| b.1 > 0).collect(),
        ttft_hist: m
            .time_to_first_token
            .buckets()
            .filter(|b| b.1 > 0)
            .collect(),
    }
}

#[derive(Default)]
struct Samples {
    kv_max: f64,
    waiting_max: u64,
    running_max: u64,
}

impl Samples {
    fn take(&mut self, sim: &Sim) {
        let g = sim.gauges();
        self.kv_max = self.kv_max.max(g.kv_cache_usage);
        self.waiting_max = self.waiting_max.max(g.waiting);
        self.running_max = self.running_max.max(g.running);
    }
}

/// Closed loop: `streams` clients start together; each sends its next request as soon as the
/// previous one finished, until `total` requests were sent.
pub fn closed_loop(
    profile: &Profile,
    api_servers: Option<u32>,
    streams: u32,
    prompt: u32,
    output: u32,
    total: u64,
    seed: u64,
) -> LevelResult {
    let block = profile.scheduler.block_size;
    closed_loop_with(profile, api_servers, streams, total, seed, |id| {
        text_request(id, prompt, output, block)
    })
}

/// A request of `text` unique text tokens plus one image of `width` x `height` pixels under
/// the profile's vision rule (a text-only profile gets no image), exactly `output` tokens.
pub fn image_request(
    profile: &Profile,
    id: u64,
    text: u32,
    width: u32,
    height: u32,
    output: u32,
) -> SimRequest {
    let (tokens, patches) = match &profile.vision {
        Some(v) => crate::image::image_tokens(v, width, height),
        None => (0, 0),
    };
    let mut r = text_request(id, text + tokens, output, profile.scheduler.block_size);
    r.text_tokens = text;
    if profile.vision.is_some() {
        r.images = 1;
        r.image_pixels = width as u64 * height as u64;
        r.vision_patches = patches;
    }
    r
}

/// Closed loop with requests made by `make(id)`.
pub fn closed_loop_with(
    profile: &Profile,
    api_servers: Option<u32>,
    streams: u32,
    total: u64,
    seed: u64,
    mut make: impl FnMut(u64) -> SimRequest,
) -> LevelResult {
    let mut sim = Sim::new(profile, api_servers, seed);
    let mut next_id = 1u64;
    for _ in 0..streams.min(total as u32) {
        sim.submit(make(next_id));
        next_id += 1;
    }
    let mut buf: Vec<Delivery> = Vec::new();
    let mut samples = Samples::default();
    while let Some(t) = sim.next_event_time() {
        sim.advance_to(t);
        samples.take(&sim);
        sim.drain_deliveries(&mut buf);
        for d in buf.drain(..) {
            if d.finish.is_some() && next_id <= total {
                sim.submit(make(next_id));
                next_id += 1;
            }
        }
    }
    let dur = sim.now();
    summarize(&sim, streams, dur, &samples)
}

/// Open loop: Poisson arrivals at `rate` per second for `seconds`, then drained.
pub fn open_loop(
    profile: &Profile,
    api_servers: Option<u32>,
    rate: f64,
    seconds: f64,
    prompt: u32,
    output: u32,
    seed: u64,
) -> LevelResult {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xA5A5);
    let mut sim = Sim::new(profile, api_servers, seed);
    let block = profile.scheduler.block_size;
    let mut t = 0.0;
    let mut id = 1;
    let mut samples = Samples::default();
    let mut buf = Vec::new();
    let (mut delivered_tokens, mut delivered_done) = (0u64, 0u64);
    while t < seconds {
        let u: f64 = rng.random::<f64>().max(1e-12);
        t += -u.ln() / rate;
        sim.advance_to(t);
        samples.take(&sim);
        sim.submit(text_request(id, prompt, output, block));
        id += 1;
        sim.drain_deliveries(&mut buf);
        for d in buf.drain(..) {
            if d.t >= seconds / 2.0 && d.t < seconds {
                delivered_tokens += d.tokens as u64;
                if d.finish.is_some() {
                    delivered_done += 1;
                }
            }
        }
    }
    sim.advance_to(seconds);
    sim.drain_deliveries(&mut buf);
    for d in buf.drain(..) {
        if d.t >= seconds / 2.0 && d.t <= seconds {
            delivered_tokens += d.tokens as u64;
            if d.finish.is_some() {
                delivered_done += 1;
            }
        }
    }
    // what clients received in the second half of the arrival window: the achieved (steady) rate
    let achieved_window = seconds / 2.0;
    let (done_in_window, gen_in_window) = (delivered_done, delivered_tokens);
    while let Some(te) = sim.next_event_time() {
        sim.advance_to(te);
        samples.take(&sim);
    }
    let mut r = summarize(&sim, 0, sim.now(), &samples);
    r.requests_per_s = done_in_window as f64 / achieved_window;
    r.output_tokens_per_s = gen_in_window as f64 / achieved_window;
    r
}
