//! The whole simulated server in virtual time: the front end (N API-server workers, each a FIFO
//! queue with costs per request, input token, image and streamed output event), the engine core
//! (steps timed by the [`StepModel`]) and vLLM's metrics. Discrete-event and deterministic: the
//! caller submits requests at times it chooses and advances the clock; nothing here sleeps.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use crate::engine::{
    Engine, EngineConfig, EngineRequest, FinishReason, Finished, IdMap, StepOutput, StepStats,
};
use crate::metrics::{EngineGauges, EngineMetrics};
use crate::model::StepModel;
use crate::profile::Profile;

/// A request as submitted by the HTTP layer (already tokenized and validated).
#[derive(Debug, Clone)]
pub struct SimRequest {
    pub id: u64,
    /// Prompt tokens including image tokens.
    pub prompt_tokens: u32,
    /// Text tokens the front end tokenizes (image tokens are not "tokenized").
    pub text_tokens: u32,
    pub block_hashes: Vec<u64>,
    /// Effective max_tokens (the request's, or max_model_len - prompt).
    pub max_tokens: u32,
    pub ignore_eos: bool,
    pub images: u32,
    pub image_pixels: u64,
    pub vision_patches: u64,
    /// Images already seen (multimodal cache hits).
    pub images_cached: u32,
}

/// What the client of a request receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: u64,
    /// Output tokens carried by this event (several when the front end lagged).
    pub tokens: u32,
    /// Output tokens delivered so far, this event included.
    pub completion_tokens: u32,
    pub prompt_tokens: u32,
    pub finish: Option<FinishReason>,
    /// Virtual time of the delivery, seconds.
    pub t: f64,
}

/// Ground-truth counters of the simulator (what `/metrics` must show).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    pub finished_stop: u64,
    pub finished_length: u64,
    pub finished_abort: u64,
    pub finished_error: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    pub steps: u64,
}

/// Front-end costs in seconds.
#[derive(Debug, Clone, Copy)]
pub struct FrontendCostsS {
    pub per_request: f64,
    pub per_input_token: f64,
    pub per_output_event: f64,
    pub per_first_output: f64,
    pub per_image: f64,
    pub per_image_pixel: f64,
}

#[derive(Debug)]
enum Job {
    Input(Box<EngineRequest>),
    Output(OutputEvent),
}

/// An output event on a front-end worker's queue. Each worker is a FIFO and a request's events
/// all go through its one worker, so everything the event records when it completes (tokens so
/// far, the gap since the previous event, the time since arrival) is known when it is queued:
/// the per-token path at completion touches no per-request state but a generation check.
#[derive(Debug, Clone, Copy)]
struct OutputEvent {
    id: u64,
    /// The request's slot and its generation when queued (a request that left bumped it).
    slot: u32,
    generation: u32,
    tokens: u32,
    completion_tokens: u32,
    prompt_tokens: u32,
    /// The request's first output event (records TTFT, not ITL).
    first: bool,
    finish: Option<FinishReason>,
    /// Completion time minus the previous event's completion time (ITL).
    gap: f64,
    /// Completion time minus arrival (TTFT for the first event, e2e latency for the last).
    since_arrival: f64,
}

/// Queues an output event of request `id` on its front-end worker: it completes `cost` after
/// the later of `t` and the worker's earlier work.
fn enqueue_output(
    wk: &mut Worker,
    info: &mut ReqInfo,
    id: u64,
    tokens: u32,
    finish: Option<FinishReason>,
    t: f64,
    cost: f64,
) {
    let done = wk.busy_until.max(t) + cost;
    wk.busy_until = done;
    let ev = OutputEvent {
        id,
        slot: info.slot,
        generation: info.generation,
        tokens,
        completion_tokens: info.queued_tokens + tokens,
        prompt_tokens: info.prompt_tokens,
        first: info.queued_tokens == 0,
        finish,
        gap: done - info.last_done,
        since_arrival: done - info.arrival,
    };
    info.queued_tokens += tokens;
    info.last_done = done;
    wk.queue.push_back((done, Job::Output(ev)));
}

/// Where the next event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Worker(usize),
    Latency,
    Step,
}

#[derive(Debug, Default)]
struct Worker {
    busy_until: f64,
    queue: VecDeque<(f64, Job)>,
}

#[derive(Debug)]
struct ReqInfo {
    worker: usize,
    /// The request's slot (in `Sim::infos` and `Sim::slot_generation`) and the slot's
    /// generation.
    slot: u32,
    generation: u32,
    arrival: f64,
    prompt_tokens: u32,
    /// Output tokens queued for delivery so far, and the completion time of the last of them.
    queued_tokens: u32,
    last_done: f64,
    max_tokens: u32,
    in_engine: bool,
    aborted: bool,
    /// Tokens held back while the first token's latency runs.
    in_latency: bool,
    pending: u32,
    pending_finish: Option<FinishReason>,
    first_engine_t: f64,
}

/// The simulated server.
pub struct Sim {
    engine: Engine,
    model: StepModel,
    fe: FrontendCostsS,
    first_token_latency: f64,
    now: f64,
    workers: Vec<Worker>,
    next_worker: usize,
    latency_q: VecDeque<(f64, u64)>,
    step_end: Option<f64>,
    /// Requests the front end handed to the engine core while a step was running: the engine
    /// core's input queue, read between steps (vLLM's busy loop), so their queue time starts
    /// when the step ends, not when they were sent.
    inbox: Vec<EngineRequest>,
    /// Request id -> slot in `infos` (a small map; the records live in a dense slab).
    reqs: IdMap<u64, u32>,
    infos: Vec<ReqInfo>,
    /// Per slot, bumped when its request leaves: queued events of a request that left are
    /// recognised by a stale generation.
    slot_generation: Vec<u32>,
    free_slots: Vec<u32>,
    rng: ChaCha8Rng,
    out_len: LogNormal<f64>,
    metrics: EngineMetrics,
    preemptions: u64,
    out_buf: Vec<StepOutput>,
    deliveries: Vec<Delivery>,
    last_step: Option<StepStats>,
}

impl Sim {
    /// A simulator for `profile` with `api_servers` front-end workers (None: the profile's).
    pub fn new(profile: &Profile, api_servers: Option<u32>, seed: u64) -> Self {
        let f = &profile.frontend;
        let n = api_servers.unwrap_or(f.api_servers).max(1) as usize;
        let engine = Engine::new(EngineConfig {
            num_gpu_blocks: profile.num_gpu_blocks(),
            block_size: profile.scheduler.block_size,
            max_num_seqs: profile.scheduler.max_num_seqs,
            max_num_batched_tokens: profile.scheduler.max_num_batched_tokens,
            max_model_len: profile.model.max_model_len,
            enable_prefix_caching: profile.scheduler.enable_prefix_caching,
        });
        let mu = profile.output.median_tokens.max(1.0).ln();
        let out_len = LogNormal::new(mu, profile.output.sigma.max(0.0))
            .unwrap_or_else(|_| LogNormal::new(mu, 0.0).expect("sigma 0 is valid"));
        Sim {
            engine,
            model: StepModel::from_profile(profile),
            fe: FrontendCostsS {
                per_request: f.per_request_ms / 1e3,
                per_input_token: f.per_input_token_us / 1e6,
                per_output_event: f.per_output_event_us / 1e6,
                per_first_output: f.per_first_output_ms / 1e3,
                per_image: f.per_image_ms / 1e3,
                per_image_pixel: f.per_image_pixel_ns / 1e9,
            },
            first_token_latency: profile.engine.first_token_latency_ms / 1e3,
            now: 0.0,
            workers: (0..n).map(|_| Worker::default()).collect(),
            next_worker: 0,
            latency_q: VecDeque::new(),
            step_end: None,
            inbox: Vec::new(),
            reqs: IdMap::default(),
            infos: Vec::new(),
            slot_generation: Vec::new(),
            free_slots: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            out_len,
            metrics: EngineMetrics::new(profile.model.max_model_len),
            preemptions: 0,
            out_buf: Vec::new(),
            deliveries: Vec::new(),
            last_step: None,
        }
    }

    /// Overrides the front-end costs (for experiments and tests).
    pub fn set_frontend_costs(&mut self, fe: FrontendCostsS) {
        self.fe = fe;
    }

    pub fn frontend_costs(&self) -> FrontendCostsS {
        self.fe
    }

    /// Overrides the first-token latency (seconds).
    pub fn set_first_token_latency(&mut self, s: f64) {
        self.first_token_latency = s;
    }

    pub fn now(&self) -> f64 {
        self.now
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    pub fn gauges(&self) -> EngineGauges {
        EngineGauges {
            running: self.engine.num_running() as u64,
            waiting: self.engine.num_waiting() as u64,
            kv_cache_usage: self.engine.kv_usage(),
        }
    }

    /// Requests inside the server (front end or engine), not yet fully delivered.
    pub fn in_flight(&self) -> usize {
        self.reqs.len()
    }

    pub fn counters(&self) -> SimCounters {
        let m = &self.metrics;
        SimCounters {
            finished_stop: m.request_success[0],
            finished_length: m.request_success[1],
            finished_abort: m.request_success[2],
            finished_error: m.request_success[3],
            prompt_tokens: m.prompt_tokens,
            generation_tokens: m.generation_tokens,
            preemptions: self.preemptions,
            prefix_cache_queries: m.prefix_cache_queries,
            prefix_cache_hits: m.prefix_cache_hits,
            steps: m.steps,
        }
    }

    /// The last step's accounting (tests).
    pub fn last_step(&self) -> Option<&StepStats> {
        self.last_step.as_ref()
    }

    /// Takes the deliveries made so far.
    pub fn drain_deliveries(&mut self, into: &mut Vec<Delivery>) {
        into.append(&mut self.deliveries);
    }

    /// A request arrives at the front end at the current time.
    pub fn submit(&mut self, r: SimRequest) {
        let (target, reason) = if r.ignore_eos {
            (r.max_tokens, FinishReason::Length)
        } else {
            let s = self.out_len.sample(&mut self.rng).round().max(1.0);
            if s >= r.max_tokens as f64 {
                (r.max_tokens, FinishReason::Length)
            } else {
                (s as u32, FinishReason::Stop)
            }
        };
        let w = self.next_worker;
        self.next_worker = (self.next_worker + 1) % self.workers.len();
        let cost = self.fe.per_request
            + self.fe.per_input_token * r.text_tokens as f64
            + self.fe.per_image * r.images as f64
            + self.fe.per_image_pixel * r.image_pixels as f64;
        self.metrics.mm_cache_queries += r.images as u64;
        self.metrics.mm_cache_hits += r.images_cached as u64;
        let slot = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slot_generation.push(0);
                (self.slot_generation.len() - 1) as u32
            }
        };
        let generation = self.slot_generation[slot as usize];
        let info = ReqInfo {
            worker: w,
            slot,
            generation,
            arrival: self.now,
            prompt_tokens: r.prompt_tokens,
            queued_tokens: 0,
            last_done: 0.0,
            max_tokens: r.max_tokens,
            in_engine: false,
            aborted: false,
            in_latency: false,
            pending: 0,
            pending_finish: None,
            first_engine_t: 0.0,
        };
        match self.infos.get_mut(slot as usize) {
            Some(x) => *x = info,
            None => self.infos.push(info),
        }
        if let Some(old) = self.reqs.insert(r.id, slot) {
            // a reused id replaces the earlier request's bookkeeping
            self.free_slot(old);
        }
        let req = EngineRequest {
            id: r.id,
            prompt_tokens: r.prompt_tokens,
            block_hashes: r.block_hashes,
            output_tokens: target.max(1),
            finish_reason: reason,
            images: r.images,
            vision_patches: r.vision_patches,
        };
        let now = self.now;
        let wk = &mut self.workers[w];
        let done = wk.busy_until.max(now) + cost;
        wk.busy_until = done;
        wk.queue.push_back((done, Job::Input(Box::new(req))));
    }

    /// The client went away: abort the request (counted as `finished_reason="abort"` once it
    /// reached the engine, as vLLM does).
    pub fn abort(&mut self, id: u64) {
        let Some(&slot) = self.reqs.get(&id) else {
            return;
        };
        let info = &mut self.infos[slot as usize];
        if info.in_engine {
            self.remove_req(id);
            if let Some(f) = self.engine.abort(id) {
                self.record_finished(&f, self.now, self.now);
            } else {
                self.inbox.retain(|r| r.id != id); // not yet read by the engine core
            }
        } else {
            info.aborted = true; // dropped when its input job completes
        }
    }

    /// Time of the next internal event, if any.
    pub fn next_event_time(&self) -> Option<f64> {
        self.next_source().map(|(_, t)| t)
    }

    /// The source of the next event and its time. Among simultaneous events the front-end
    /// workers come first (in index order), then the first-token latency, then the step.
    fn next_source(&self) -> Option<(Source, f64)> {
        let mut best: Option<(Source, f64)> = None;
        for (i, w) in self.workers.iter().enumerate() {
            if let Some((x, _)) = w.queue.front()
                && best.is_none_or(|(_, y)| *x < y)
            {
                best = Some((Source::Worker(i), *x));
            }
        }
        if let Some((x, _)) = self.latency_q.front()
            && best.is_none_or(|(_, y)| *x < y)
        {
            best = Some((Source::Latency, *x));
        }
        if let Some(x) = self.step_end
            && best.is_none_or(|(_, y)| x < y)
        {
            best = Some((Source::Step, x));
        }
        best
    }

    /// Processes every event up to and including time `t`, then sets the clock to `t`.
    pub fn advance_to(&mut self, t: f64) {
        while let Some((src, te)) = self.next_source() {
            if te > t {
                break;
            }
            self.now = self.now.max(te);
            self.process_one(src, te);
        }
        self.now = self.now.max(t);
    }

    /// Runs until nothing is left to do (virtual time only; for tests and experiments).
    pub fn run_until_idle(&mut self) {
        while let Some(te) = self.next_event_time() {
            self.advance_to(te);
        }
    }

    fn process_one(&mut self, src: Source, te: f64) {
        match src {
            Source::Worker(wi) => {
                if let Some((_, job)) = self.workers[wi].queue.pop_front() {
                    self.run_job(job, te);
                }
            }
            Source::Latency => {
                let Some((_, id)) = self.latency_q.pop_front() else {
                    return;
                };
                if let Some(&slot) = self.reqs.get(&id) {
                    let info = &mut self.infos[slot as usize];
                    info.in_latency = false;
                    let (tokens, finish) = (
                        std::mem::take(&mut info.pending),
                        info.pending_finish.take(),
                    );
                    let cost = self.fe.per_first_output;
                    enqueue_output(
                        &mut self.workers[info.worker],
                        info,
                        id,
                        tokens,
                        finish,
                        te,
                        cost,
                    );
                }
            }
            Source::Step => {
                self.step_end = None;
                self.finish_step(te);
                self.maybe_start_step(te);
            }
        }
    }

    /// Forgets a request (its stream slot becomes free).
    fn remove_req(&mut self, id: u64) {
        if let Some(slot) = self.reqs.remove(&id) {
            self.free_slot(slot);
        }
    }

    fn free_slot(&mut self, slot: u32) {
        if let Some(g) = self.slot_generation.get_mut(slot as usize) {
            *g = g.wrapping_add(1);
            self.free_slots.push(slot);
        }
    }

    fn run_job(&mut self, job: Job, t: f64) {
        match job {
            Job::Input(req) => {
                let id = req.id;
                let Some(&slot) = self.reqs.get(&id) else {
                    return;
                };
                let info = &mut self.infos[slot as usize];
                if info.aborted {
                    self.remove_req(id);
                    return;
                }
                info.in_engine = true;
                self.inbox.push(*req);
                self.maybe_start_step(t);
            }
            Job::Output(ev) => {
                // events of a request that left (aborted) are dropped
                if self.slot_generation.get(ev.slot as usize) != Some(&ev.generation) {
                    return;
                }
                if ev.first {
                    self.metrics.time_to_first_token.observe(ev.since_arrival);
                } else {
                    self.metrics.inter_token_latency.observe(ev.gap);
                }
                self.deliveries.push(Delivery {
                    id: ev.id,
                    tokens: ev.tokens,
                    completion_tokens: ev.completion_tokens,
                    prompt_tokens: ev.prompt_tokens,
                    finish: ev.finish,
                    t,
                });
                if ev.finish.is_some() {
                    self.metrics.e2e_request_latency.observe(ev.since_arrival);
                    self.remove_req(ev.id);
                }
            }
        }
    }

    fn maybe_start_step(&mut self, t: f64) {
        if self.step_end.is_some() || self.engine.step_in_flight() {
            return;
        }
        // between steps the engine core reads its input queue: queue time starts now
        for r in self.inbox.drain(..) {
            self.engine.add(r, t);
        }
        if let Some(stats) = self.engine.schedule(t) {
            let dt = self.model.step_ms(&stats.shape) / 1e3;
            self.step_end = Some(t + dt.max(1e-6));
            self.last_step = Some(stats);
        }
    }

    fn finish_step(&mut self, t: f64) {
        let mut out = std::mem::take(&mut self.out_buf);
        out.clear();
        self.engine.complete_step(&mut out);
        if let Some(s) = &self.last_step {
            let m = &mut self.metrics;
            m.steps += 1;
            m.prefix_cache_queries += s.prefix_queries;
            m.prefix_cache_hits += s.prefix_hits;
            m.num_preemptions += s.preempted.len() as u64;
            self.preemptions += s.preempted.len() as u64;
        }
        self.metrics.generation_tokens += out.len() as u64;
        // vLLM's iteration_tokens_total: one sample per step that produced output, counting
        // the whole prompt of each request whose first token it produced plus the generated
        // tokens (a prefill chunk without output is not observed)
        if !out.is_empty() {
            let prompts: u64 = out
                .iter()
                .filter(|o| o.first)
                .map(|o| o.prompt_tokens as u64)
                .sum();
            self.metrics
                .iteration_tokens
                .observe((prompts + out.len() as u64) as f64);
        }
        for o in out.iter() {
            let Some(&slot) = self.reqs.get(&o.id) else {
                continue;
            };
            let info = &mut self.infos[slot as usize];
            let w = info.worker;
            let finish = o.finished.as_ref().map(|f| f.reason);
            let mut direct = false;
            if o.first {
                info.first_engine_t = t + self.first_token_latency;
                info.in_latency = true;
                info.pending = 1;
                info.pending_finish = finish;
                self.latency_q
                    .push_back((t + self.first_token_latency, o.id));
            } else if info.in_latency {
                info.pending += 1;
                info.pending_finish = finish;
            } else {
                direct = true;
            }
            if direct {
                let cost = self.fe.per_output_event;
                enqueue_output(&mut self.workers[w], info, o.id, 1, finish, t, cost);
            }
            let (first_t, max_tokens) = (info.first_engine_t, info.max_tokens);
            if let Some(f) = &o.finished {
                self.metrics
                    .request_max_num_generation_tokens
                    .observe(max_tokens as f64);
                self.metrics
                    .request_params_max_tokens
                    .observe(max_tokens as f64);
                self.record_finished(f, first_t, t);
            }
        }
        // prompt tokens are counted when a request's prefill completes (its first token)
        for o in out.iter().filter(|o| o.first) {
            let m = &mut self.metrics;
            m.prompt_tokens += o.prompt_tokens as u64;
            m.prompt_tokens_cache_hit += o.cached_tokens as u64;
            m.prompt_tokens_local_compute += o.prompt_tokens.saturating_sub(o.cached_tokens) as u64;
        }
        self.out_buf = out;
    }

    fn record_finished(&mut self, f: &Finished, first_t: f64, last_t: f64) {
        let m = &mut self.metrics;
        m.finished(f.reason);
        m.request_prompt_tokens.observe(f.prompt_tokens as f64);
        m.request_generation_tokens
            .observe(f.generation_tokens as f64);
        m.request_params_n.observe(1.0);
        m.request_prefill_kv_computed_tokens
            .observe(f.prompt_tokens.saturating_sub(f.cached_tokens) as f64);
        if let Some(s) = f.scheduled_t {
            m.request_queue_time.observe((s - f.queued_t).max(0.0));
            if f.generation_tokens > 0 {
                m.request_prefill_time.observe((first_t - s).max(0.0));
                let decode = (last_t - first_t).max(0.0);
                m.request_decode_time.observe(decode);
                m.request_inference_time.observe((last_t - s).max(0.0));
                let tpot = if f.generation_tokens > 1 {
                    decode / (f.generation_tokens - 1) as f64
                } else {
                    0.0
                };
                m.request_time_per_output_token.observe(tpot);
            }
        }
    }

    /// Draws uniform randomness from the simulator's seeded generator (token texts).
    pub fn rng_u32(&mut self) -> u32 {
        self.rng.random()
    }
}
