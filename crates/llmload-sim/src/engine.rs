//! The engine core: an iteration-level scheduler in the manner of vLLM's V1 engine.
//!
//! Every step, running requests are scheduled first (one token for a decoding request, the next
//! prefill chunk for a request still in prefill), then waiting requests are admitted in arrival
//! order while the step's token budget (`max_num_batched_tokens`) and `max_num_seqs` allow, with
//! chunked prefill. The KV cache is a pool of `num_gpu_blocks` blocks of `block_size` tokens.
//! When a running request needs a block and none is free, the newest running request is
//! preempted (recompute: its blocks are freed and it goes back to the front of the waiting
//! queue); no waiting request is admitted in a step that preempted. Prefix caching: full prompt
//! blocks are identified by a chained hash; a newly scheduled request reuses the longest run of
//! cached blocks (at most `prompt - 1` tokens, so the last prompt token is always computed);
//! freed blocks stay cached until they are reused (least recently freed first).
//!
//! The engine is pure: time is passed in by the caller, nothing here sleeps or spawns.

use std::collections::{HashMap, VecDeque};

use crate::model::StepShape;

/// Why a request finished (vLLM's `finished_reason` label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    Stop,
    Length,
    Abort,
    Error,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
            FinishReason::Error => "error",
        }
    }
}

/// A request as the engine sees it (after the front end tokenized it).
#[derive(Debug, Clone)]
pub struct EngineRequest {
    pub id: u64,
    /// Prompt tokens, image tokens included.
    pub prompt_tokens: u32,
    /// Chained hashes of the prompt's full blocks (for prefix caching).
    pub block_hashes: Vec<u64>,
    /// Tokens to generate before finishing with `finish_reason`.
    pub output_tokens: u32,
    pub finish_reason: FinishReason,
    /// Images (and their vision-encoder patches) encoded when prefill starts.
    pub images: u32,
    pub vision_patches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
}

#[derive(Debug)]
struct ReqState {
    req: EngineRequest,
    status: Status,
    computed: u32,
    generated: u32,
    blocks: Vec<u32>,
    /// Number of prompt blocks already registered in the prefix cache.
    hashed_blocks: usize,
    queued_t: f64,
    scheduled_t: Option<f64>,
    cached_tokens: u32,
    preemptions: u32,
    prefill_done: bool,
    vision_done: bool,
}

impl ReqState {
    fn num_tokens(&self) -> u32 {
        self.req.prompt_tokens + self.generated
    }
}

/// One token (or the end) of a request produced by a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    pub id: u64,
    /// True for the request's first generated token.
    pub first: bool,
    pub finished: Option<Finished>,
    /// Prompt tokens of the request and how many came from the prefix cache.
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
}

/// Facts about a finished request, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    pub generation_tokens: u32,
    pub cached_tokens: u32,
    pub preemptions: u32,
    pub queued_t: f64,
    pub scheduled_t: Option<f64>,
}

/// Per-step accounting, for the metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStats {
    pub shape: StepShape,
    /// (request id, tokens scheduled) in scheduling order.
    pub scheduled: Vec<(u64, u32)>,
    pub preempted: Vec<u64>,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    /// Prompt tokens computed (not cached) for the first time in this step.
    pub prompt_tokens_computed: u64,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub num_gpu_blocks: u32,
    pub block_size: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub max_model_len: u32,
    pub enable_prefix_caching: bool,
}

/// The KV block pool with prefix-cache bookkeeping.
#[derive(Debug)]
struct BlockPool {
    ref_cnt: Vec<u32>,
    hash: Vec<Option<u64>>,
    generation: Vec<u32>,
    free_q: VecDeque<(u32, u32)>,
    free: u32,
    cached: IdMap<u64, u32>,
}

impl BlockPool {
    fn new(n: u32) -> Self {
        BlockPool {
            ref_cnt: vec![0; n as usize],
            hash: vec![None; n as usize],
            generation: vec![0; n as usize],
            free_q: (0..n).map(|b| (b, 0)).collect(),
            free: n,
            cached: IdMap::default(),
        }
    }

    fn total(&self) -> u32 {
        self.ref_cnt.len() as u32
    }

    fn allocate(&mut self) -> Option<u32> {
        if self.free == 0 {
            return None;
        }
        while let Some((b, g)) = self.free_q.pop_front() {
            let i = b as usize;
            if self.ref_cnt[i] != 0 || self.generation[i] != g {
                continue; // stale entry: reused as a prefix hit since it was freed
            }
            if let Some(h) = self.hash[i].take() {
                self.cached.remove(&h);
            }
            self.ref_cnt[i] = 1;
            self.generation[i] = self.generation[i].wrapping_add(1);
            self.free -= 1;
            return Some(b);
        }
        None
    }

    fn touch(&mut self, b: u32) {
        let i = b as usize;
        if self.ref_cnt[i] == 0 {
            self.free -= 1;
            self.generation[i] = self.generation[i].wrapping_add(1);
        }
        self.ref_cnt[i] += 1;
    }

    fn release(&mut self, b: u32) {
        let i = b as usize;
        debug_assert!(self.ref_cnt[i] > 0);
        self.ref_cnt[i] = self.ref_cnt[i].saturating_sub(1);
        if self.ref_cnt[i] == 0 {
            self.free += 1;
            self.free_q.push_back((b, self.generation[i]));
        }
    }

    fn register(&mut self, b: u32, h: u64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(h) {
            e.insert(b);
            self.hash[b as usize] = Some(h);
        }
    }
}

/// The scheduler and KV cache.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    pool: BlockPool,
    reqs: IdMap<u64, ReqState>,
    running: Vec<u64>,
    waiting: VecDeque<u64>,
    current: Option<Vec<(u64, u32)>>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            pool: BlockPool::new(cfg.num_gpu_blocks),
            cfg,
            reqs: IdMap::default(),
            running: Vec::new(),
            waiting: VecDeque::new(),
            current: None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Fraction of KV blocks in use (0-1), as `vllm:kv_cache_usage_perc`.
    pub fn kv_usage(&self) -> f64 {
        let t = self.pool.total();
        if t == 0 {
            return 0.0;
        }
        1.0 - self.pool.free as f64 / t as f64
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    pub fn step_in_flight(&self) -> bool {
        self.current.is_some()
    }

    /// Queues a request. The caller has checked `prompt + output <= max_model_len`.
    pub fn add(&mut self, req: EngineRequest, now: f64) {
        let id = req.id;
        self.reqs.insert(
            id,
            ReqState {
                req,
                status: Status::Waiting,
                computed: 0,
                generated: 0,
                blocks: Vec::new(),
                hashed_blocks: 0,
                queued_t: now,
                scheduled_t: None,
                cached_tokens: 0,
                preemptions: 0,
                prefill_done: false,
                vision_done: false,
            },
        );
        self.waiting.push_back(id);
    }

    /// Aborts a request (client gone). Returns its facts if it was known. A request inside the
    /// step in flight is removed when that step completes.
    pub fn abort(&mut self, id: u64) -> Option<Finished> {
        let st = self.reqs.remove(&id)?;
        match st.status {
            Status::Waiting => self.waiting.retain(|&w| w != id),
            Status::Running => self.running.retain(|&r| r != id),
        }
        if let Some(cur) = self.current.as_mut() {
            cur.retain(|&(r, _)| r != id);
        }
        for &b in st.blocks.iter().rev() {
            self.pool.release(b);
        }
        Some(Finished {
            reason: FinishReason::Abort,
            prompt_tokens: st.req.prompt_tokens,
            generation_tokens: st.generated,
            cached_tokens: st.cached_tokens,
            preemptions: st.preemptions,
            queued_t: st.queued_t,
            scheduled_t: st.scheduled_t,
        })
    }

    fn blocks_needed(&self, st: &ReqState, new_tokens: u32) -> usize {
        let bs = self.cfg.block_size;
        let total = (st.computed + new_tokens).div_ceil(bs) as usize;
        total.saturating_sub(st.blocks.len())
    }

    fn preempt_last(&mut self, stats: &mut StepStats) -> Option<u64> {
        let victim = self.running.pop()?;
        if let Some(st) = self.reqs.get_mut(&victim) {
            for &b in st.blocks.iter().rev() {
                self.pool.release(b);
            }
            st.blocks.clear();
            st.hashed_blocks = 0;
            st.computed = 0;
            st.status = Status::Waiting;
            st.preemptions += 1;
        }
        self.waiting.push_front(victim);
        stats.preempted.push(victim);
        Some(victim)
    }

    fn allocate_for(&mut self, id: u64, n: usize) -> bool {
        if (self.pool.free as usize) < n {
            return false;
        }
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            match self.pool.allocate() {
                Some(b) => got.push(b),
                None => {
                    for b in got {
                        self.pool.release(b);
                    }
                    return false;
                }
            }
        }
        if let Some(st) = self.reqs.get_mut(&id) {
            st.blocks.extend(got);
        }
        true
    }

    /// Plans the next step at time `now`. Returns `None` when there is nothing to run.
    pub fn schedule(&mut self, now: f64) -> Option<StepStats> {
        debug_assert!(
            self.current.is_none(),
            "schedule() while a step is in flight"
        );
        let mut stats = StepStats::default();
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut sched: Vec<(u64, u32)> = Vec::new();

        // 1. running requests, oldest first
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let Some(st) = self.reqs.get(&id) else {
                self.running.remove(i);
                continue;
            };
            let remaining = st.num_tokens().saturating_sub(st.computed);
            let new = remaining.min(budget);
            if new == 0 {
                i += 1;
                continue;
            }
            let need = self.blocks_needed(st, new);
            let mut ok = true;
            while !self.allocate_for(id, need) {
                match self.preempt_last(&mut stats) {
                    Some(v) if v == id => {
                        ok = false;
                        break;
                    }
                    Some(_) => {}
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                break;
            }
            sched.push((id, new));
            budget -= new;
            i += 1;
        }

        // 2. waiting requests, in order, unless this step preempted
        if stats.preempted.is_empty() {
            while budget > 0 && (self.running.len() as u32) < self.cfg.max_num_seqs {
                let Some(&id) = self.waiting.front() else {
                    break;
                };
                let Some(st) = self.reqs.get(&id) else {
                    self.waiting.pop_front();
                    continue;
                };
                // prefix cache lookup for a request starting from scratch
                let mut hit_blocks: Vec<u32> = Vec::new();
                let num_tokens = st.num_tokens();
                if st.computed == 0 && self.cfg.enable_prefix_caching {
                    let max_hit = (num_tokens.saturating_sub(1) / self.cfg.block_size) as usize;
                    for h in st.req.block_hashes.iter().take(max_hit) {
                        match self.pool.cached.get(h) {
                            Some(&b) => hit_blocks.push(b),
                            None => break,
                        }
                    }
                }
                let hit_tokens = hit_blocks.len() as u32 * self.cfg.block_size;
                let remaining = num_tokens - st.computed - hit_tokens;
                let new = remaining.min(budget);
                let total_blocks =
                    (st.computed + hit_tokens + new).div_ceil(self.cfg.block_size) as usize;
                let need = total_blocks.saturating_sub(st.blocks.len() + hit_blocks.len());
                // blocks that are hits but currently free are not available for allocation
                let hits_free = hit_blocks
                    .iter()
                    .filter(|&&b| self.pool.ref_cnt[b as usize] == 0)
                    .count();
                if (self.pool.free as usize) < need + hits_free {
                    break;
                }
                self.waiting.pop_front();
                for &b in &hit_blocks {
                    self.pool.touch(b);
                }
                let first_time = st.scheduled_t.is_none();
                let ok = {
                    let st = self
                        .reqs
                        .get_mut(&id)
                        .expect("request present: looked up above");
                    st.blocks.extend(hit_blocks.iter().copied());
                    st.hashed_blocks = hit_blocks.len();
                    st.computed += hit_tokens;
                    if first_time {
                        st.cached_tokens = hit_tokens;
                        st.scheduled_t = Some(now);
                    }
                    st.status = Status::Running;
                    true
                } && self.allocate_for(id, need);
                debug_assert!(ok, "allocation checked above");
                stats.prefix_queries += num_tokens as u64;
                stats.prefix_hits += hit_tokens as u64;
                if first_time {
                    stats.shape.new_requests += 1;
                }
                self.running.push(id);
                sched.push((id, new));
                budget -= new;
            }
        }

        if sched.is_empty() {
            return None;
        }
        let mut shape = StepShape {
            new_requests: stats.shape.new_requests,
            ..Default::default()
        };
        for &(id, new) in &sched {
            let Some(st) = self.reqs.get_mut(&id) else {
                continue;
            };
            shape.tokens += new as u64;
            shape.seqs += 1;
            shape.kv_tokens_read += st.computed as u64;
            shape.max_context = shape.max_context.max((st.computed + new) as u64);
            if !st.vision_done && st.req.images > 0 {
                st.vision_done = true;
                shape.vision_images += st.req.images as u64;
                shape.vision_patches += st.req.vision_patches;
            }
            if !st.prefill_done {
                let prompt_left = st.req.prompt_tokens.saturating_sub(st.computed);
                stats.prompt_tokens_computed += prompt_left.min(new) as u64;
            }
        }
        stats.shape = shape;
        stats.scheduled = sched.clone();
        self.current = Some(sched);
        Some(stats)
    }

    /// Completes the step in flight at time `now`; appends the tokens it produced to `out`.
    pub fn complete_step(&mut self, out: &mut Vec<StepOutput>) {
        let Some(sched) = self.current.take() else {
            return;
        };
        let bs = self.cfg.block_size;
        let max_len = self.cfg.max_model_len;
        let mut finished_ids = Vec::new();
        for (id, new) in sched {
            let Some(st) = self.reqs.get_mut(&id) else {
                continue;
            };
            st.computed += new;
            // register newly completed full prompt blocks in the prefix cache
            if self.cfg.enable_prefix_caching {
                let full = (st.computed.min(st.req.prompt_tokens) / bs) as usize;
                while st.hashed_blocks < full && st.hashed_blocks < st.req.block_hashes.len() {
                    let b = st.blocks[st.hashed_blocks];
                    let h = st.req.block_hashes[st.hashed_blocks];
                    self.pool.register(b, h);
                    st.hashed_blocks += 1;
                }
            }
            if st.computed < st.num_tokens() {
                continue; // prefill chunk, no token yet
            }
            st.prefill_done = true;
            st.generated += 1;
            let first = st.generated == 1;
            let done = st.generated >= st.req.output_tokens || st.num_tokens() >= max_len;
            let finished = if done {
                let reason = if st.generated >= st.req.output_tokens {
                    st.req.finish_reason
                } else {
                    FinishReason::Length
                };
                finished_ids.push(id);
                Some(Finished {
                    reason,
                    prompt_tokens: st.req.prompt_tokens,
                    generation_tokens: st.generated,
                    cached_tokens: st.cached_tokens,
                    preemptions: st.preemptions,
                    queued_t: st.queued_t,
                    scheduled_t: st.scheduled_t,
                })
            } else {
                None
            };
            out.push(StepOutput {
                id,
                first,
                finished,
                prompt_tokens: st.req.prompt_tokens,
                cached_tokens: st.cached_tokens,
            });
        }
        for id in finished_ids {
            if let Some(st) = self.reqs.remove(&id) {
                for &b in st.blocks.iter().rev() {
                    self.pool.release(b);
                }
            }
            self.running.retain(|&r| r != id);
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        let used: u32 = self.pool.ref_cnt.iter().filter(|&&r| r > 0).count() as u32;
        assert_eq!(used + self.pool.free, self.pool.total());
        let mut refs = vec![0u32; self.pool.total() as usize];
        for st in self.reqs.values() {
            for &b in &st.blocks {
                refs[b as usize] += 1;
            }
        }
        assert_eq!(refs, self.pool.ref_cnt);
    }
}

/// Chained hashes of a token sequence's full blocks (FNV-1a over the previous hash and the
/// block's tokens): two prompts share a block hash only if they share the whole prefix.
pub fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(tokens.len() / block_size.max(1));
    let mut prev: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in tokens.chunks_exact(block_size.max(1)) {
        let mut h = prev ^ 0x9e37_79b9_7f4a_7c15;
        for &t in chunk {
            for b in t.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        out.push(h);
        prev = h;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(blocks: u32, budget: u32, seqs: u32) -> EngineConfig {
        EngineConfig {
            num_gpu_blocks: blocks,
            block_size: 16,
            max_num_seqs: seqs,
            max_num_batched_tokens: budget,
            max_model_len: 4096,
            enable_prefix_caching: true,
        }
    }

    fn req(id: u64, prompt: u32, out: u32) -> EngineRequest {
        let toks: Vec<u32> = (0..prompt).map(|i| (id as u32) << 16 | i).collect();
        EngineRequest {
            id,
            prompt_tokens: prompt,
            block_hashes: block_hashes(&toks, 16),
            output_tokens: out,
            finish_reason: FinishReason::Length,
            images: 0,
            vision_patches: 0,
        }
    }

    fn run_step(e: &mut Engine, now: f64) -> (StepStats, Vec<StepOutput>) {
        let s = e.schedule(now).expect("something to run");
        let mut out = Vec::new();
        e.complete_step(&mut out);
        e.check_invariants();
        (s, out)
    }

    #[test]
    fn admission_in_arrival_order_and_max_num_seqs() {
        let mut e = Engine::new(cfg(1000, 8192, 2));
        for id in 1..=3 {
            e.add(req(id, 32, 4), 0.0);
        }
        let (s, out) = run_step(&mut e, 0.0);
        assert_eq!(s.scheduled, vec![(1, 32), (2, 32)]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.first));
        assert_eq!(e.num_waiting(), 1);
        // request 3 waits until one of the first two finishes
        for _ in 0..3 {
            let (s, _) = run_step(&mut e, 0.0);
            assert!(!s.scheduled.iter().any(|&(id, _)| id == 3));
        }
        assert_eq!(e.num_running(), 0);
        let (s, _) = run_step(&mut e, 0.0);
        assert_eq!(s.scheduled, vec![(3, 32)]);
    }

    #[test]
    fn chunked_prefill_respects_the_token_budget() {
        let mut e = Engine::new(cfg(1000, 100, 16));
        e.add(req(1, 250, 2), 0.0);
        e.add(req(2, 30, 2), 0.0);
        let (s, out) = run_step(&mut e, 0.0);
        assert_eq!(s.scheduled, vec![(1, 100)]);
        assert_eq!(s.shape.tokens, 100);
        assert!(out.is_empty(), "no token during a prefill chunk");
        let (s, _) = run_step(&mut e, 0.0);
        assert_eq!(s.scheduled, vec![(1, 100)]);
        // last chunk of 50 plus request 2's 30 tokens + a 20-token budget left unused
        let (s, out) = run_step(&mut e, 0.0);
        assert_eq!(s.scheduled, vec![(1, 50), (2, 30)]);
        assert_eq!(out.len(), 2);
        let (s, _) = run_step(&mut e, 0.0);
        assert_eq!(s.scheduled, vec![(1, 1), (2, 1)]);
        assert_eq!(s.shape.tokens, 2);
        assert_eq!(s.shape.kv_tokens_read, 250 + 30);
        for (_, n) in &s.scheduled {
            assert!(*n <= 100);
        }
    }

    #[test]
    fn preemption_under_kv_pressure_evicts_newest_and_recomputes() {
        // 10 blocks of 16 = 160 tokens; two requests of 64-token prompts growing to 120 tokens
        let mut e = Engine::new(cfg(10, 8192, 16));
        e.add(req(1, 64, 56), 0.0);
        e.add(req(2, 64, 56), 0.0);
        let mut preempted = Vec::new();
        let mut finished = Vec::new();
        for step in 0..400 {
            let Some(s) = e.schedule(step as f64) else {
                break;
            };
            preempted.extend(s.preempted.iter().copied());
            let mut out = Vec::new();
            e.complete_step(&mut out);
            e.check_invariants();
            assert!(e.kv_usage() <= 1.0);
            for o in out {
                if let Some(f) = o.finished {
                    finished.push((o.id, f));
                }
            }
        }
        assert!(!preempted.is_empty(), "KV pressure must preempt");
        assert_eq!(preempted[0], 2, "the newest running request is preempted");
        assert_eq!(finished.len(), 2);
        let f2 = &finished.iter().find(|(id, _)| *id == 2).unwrap().1;
        assert!(f2.preemptions >= 1);
        assert_eq!(f2.generation_tokens, 56);
        assert_eq!(e.kv_usage(), 0.0);
    }

    #[test]
    fn prefix_cache_counts_queries_and_hits_in_tokens() {
        let mut e = Engine::new(cfg(1000, 8192, 16));
        let a = req(1, 100, 1);
        let mut b = a.clone();
        b.id = 2;
        e.add(a, 0.0);
        let (s, _) = run_step(&mut e, 0.0);
        assert_eq!((s.prefix_queries, s.prefix_hits), (100, 0));
        assert_eq!(s.prompt_tokens_computed, 100);
        e.add(b, 1.0);
        let (s, _) = run_step(&mut e, 1.0);
        // 6 full blocks (96 tokens) cached; the last 4 tokens are computed
        assert_eq!((s.prefix_queries, s.prefix_hits), (100, 96));
        assert_eq!(s.scheduled, vec![(2, 4)]);
        assert_eq!(s.prompt_tokens_computed, 4);
        // a fully cached prompt still computes its last token (at most prompt-1 tokens hit)
        let mut c = req(3, 96, 1);
        c.block_hashes = req(1, 100, 1).block_hashes[..6].to_vec();
        e.add(c, 2.0);
        let (s, _) = run_step(&mut e, 2.0);
        assert_eq!(s.prefix_hits, 80);
        assert_eq!(s.scheduled, vec![(3, 16)]);
    }

    #[test]
    fn abort_frees_blocks() {
        let mut e = Engine::new(cfg(100, 8192, 16));
        e.add(req(1, 64, 100), 0.0);
        run_step(&mut e, 0.0);
        assert!(e.kv_usage() > 0.0);
        let f = e.abort(1).unwrap();
        assert_eq!(f.reason, FinishReason::Abort);
        assert_eq!(f.generation_tokens, 1);
        assert_eq!(e.kv_usage(), 0.0);
        assert!(e.is_idle());
    }

    #[test]
    fn max_model_len_finishes_with_length() {
        let mut c = cfg(1000, 8192, 4);
        c.max_model_len = 40;
        let mut e = Engine::new(c);
        let mut r = req(1, 32, 100);
        r.finish_reason = FinishReason::Stop;
        e.add(r, 0.0);
        let mut last = None;
        while let Some(_s) = e.schedule(0.0) {
            let mut out = Vec::new();
            e.complete_step(&mut out);
            if let Some(f) = out.into_iter().find_map(|o| o.finished) {
                last = Some(f);
            }
        }
        let f = last.unwrap();
        assert_eq!(f.reason, FinishReason::Length);
        assert_eq!(f.generation_tokens, 8);
    }
}

/// A fast hasher for integer keys (request ids, block hashes): one multiply, no DoS concern
/// since keys are chosen by the simulator.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

/// `HashMap` keyed by ids with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
