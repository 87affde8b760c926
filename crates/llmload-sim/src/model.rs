//! Step-time model: how long one engine step takes on the GPU, from the profile's calibration.
//!
//! A step processes `tokens` tokens (one per decoding sequence plus the prefill chunks). Its GPU
//! time is
//!
//! ```text
//! gpu_ms = dense(tokens)                                  weights, linear layers, prefill attention
//!        + max(kv_read_bytes / HBM bandwidth,             decode attention, bandwidth bound
//!              longest_context x attn_seq_us_per_token)   ... or latency bound at small batch
//!        + allreduce(tokens)                              tensor parallelism only
//!        + vision encoder time of images starting prefill
//! ```
//!
//! `dense` is a piecewise-linear interpolation over knots derived from the measurements: each
//! decode point at the smallest measured context gives `dense(B) = ms - attention(B, L)`, each
//! prefill point with more tokens than the largest decode batch gives `dense(P) = ms`. Points at
//! the larger context and the mixed (prefill + decode) points are then predictions, and
//! [`StepModel::calibration_errors`] reports the error at every point.

use crate::profile::Profile;

/// What one engine step contains.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepShape {
    /// Tokens computed in the step (decodes + prefill chunk tokens).
    pub tokens: u64,
    /// Sequences in the step.
    pub seqs: u64,
    /// KV-cache tokens read by attention (context of each decoding sequence, and the already
    /// computed context of chunked prefills).
    pub kv_tokens_read: u64,
    /// Longest context of a sequence in the step.
    pub max_context: u64,
    /// Requests scheduled for the first time in this step.
    pub new_requests: u64,
    /// Vision-encoder patches of images whose request starts prefill in this step.
    pub vision_patches: u64,
    /// Images starting in this step.
    pub vision_images: u64,
}

#[derive(Debug, Clone)]
pub struct StepModel {
    knots: Vec<(f64, f64)>,
    kv_bytes_per_token: f64,
    bw_bytes_per_ms: f64,
    attn_seq_ms_per_token: f64,
    tp: u32,
    hidden: f64,
    layers: f64,
    nvlink_bytes_per_ms: f64,
    allreduce_latency_ms: f64,
    cpu_base_ms: f64,
    cpu_per_seq_ms: f64,
    cpu_per_new_ms: f64,
    vision_base_ms: f64,
    vision_per_patch_ms: f64,
}

/// One calibration point and the model's prediction for it.
#[derive(Debug, Clone)]
pub struct CalibrationError {
    pub kind: &'static str,
    pub batch: u64,
    pub context: u64,
    pub prompt: u64,
    pub measured_ms: f64,
    pub model_ms: f64,
    /// Whether the point was used to derive a knot (its error is then zero by construction).
    pub is_knot: bool,
}

impl CalibrationError {
    pub fn rel_error(&self) -> f64 {
        (self.model_ms - self.measured_ms) / self.measured_ms
    }
}

impl StepModel {
    pub fn from_profile(p: &Profile) -> Self {
        let tp = p.gpu.tensor_parallel.max(1);
        let mut m = StepModel {
            knots: Vec::new(),
            kv_bytes_per_token: p.kv_bytes_per_token_per_gpu(),
            bw_bytes_per_ms: p.gpu.hbm_bandwidth_gbps * 1e6,
            attn_seq_ms_per_token: p.calibration.attn_seq_us_per_token / 1000.0,
            tp,
            hidden: p.model.hidden as f64,
            layers: p.model.layers as f64,
            nvlink_bytes_per_ms: p.gpu.nvlink_gbps.unwrap_or(450.0) * 1e6,
            allreduce_latency_ms: p.gpu.allreduce_latency_us.unwrap_or(10.0) / 1000.0,
            cpu_base_ms: p.engine.cpu_step_base_ms,
            cpu_per_seq_ms: p.engine.cpu_per_seq_us / 1000.0,
            cpu_per_new_ms: p.engine.cpu_per_new_request_ms,
            vision_base_ms: p.vision.as_ref().map_or(0.0, |v| v.encoder_base_ms),
            vision_per_patch_ms: p
                .vision
                .as_ref()
                .map_or(0.0, |v| v.encoder_us_per_patch / 1000.0),
        };
        let min_ctx = p
            .calibration
            .decode
            .iter()
            .map(|d| d[1])
            .fold(f64::INFINITY, f64::min);
        let mut knots: Vec<(f64, f64)> = p
            .calibration
            .decode
            .iter()
            .filter(|d| d[1] == min_ctx)
            .map(|d| {
                let (b, l) = (d[0], d[1]);
                (b, d[2] - m.attention_ms(b * l, l))
            })
            .collect();
        let max_b = knots.iter().map(|k| k.0).fold(0.0, f64::max);
        knots.extend(
            p.calibration
                .prefill
                .iter()
                .filter(|q| q[0] > max_b)
                .map(|q| (q[0], q[1])),
        );
        knots.sort_by(|a, b| a.0.total_cmp(&b.0));
        knots.dedup_by(|a, b| a.0 == b.0);
        m.knots = knots;
        m
    }

    /// Dense (non-attention) time of a step of `tokens` tokens, per GPU, without communication.
    pub fn dense_ms(&self, tokens: f64) -> f64 {
        let k = &self.knots;
        if k.is_empty() {
            return 0.0;
        }
        if k.len() == 1 || tokens <= k[0].0 {
            return k[0].1;
        }
        let i = match k.iter().position(|&(n, _)| n >= tokens) {
            Some(i) => i,
            None => k.len() - 1,
        };
        let (x0, y0) = k[i - 1];
        let (x1, y1) = k[i];
        let slope = (y1 - y0) / (x1 - x0);
        (y0 + slope * (tokens - x0)).max(0.0)
    }

    /// Decode attention: reading the KV cache, or a single long sequence's latency floor.
    pub fn attention_ms(&self, kv_tokens: f64, max_context: f64) -> f64 {
        let bw = kv_tokens * self.kv_bytes_per_token / self.bw_bytes_per_ms;
        bw.max(max_context * self.attn_seq_ms_per_token)
    }

    /// Two ring all-reduces per layer of `tokens x hidden` bf16 activations.
    pub fn allreduce_ms(&self, tokens: f64) -> f64 {
        if self.tp <= 1 {
            return 0.0;
        }
        let n = 2.0 * self.layers;
        let tp = self.tp as f64;
        let bytes = tokens * self.hidden * 2.0 * 2.0 * (tp - 1.0) / tp;
        n * (self.allreduce_latency_ms + bytes / self.nvlink_bytes_per_ms)
    }

    /// Vision-encoder time of a step that encodes `images` images of `patches` patches in all:
    /// a fixed cost per step that runs the encoder (launch, pre- and post-processing, fitted to
    /// one image per step) plus a cost per patch; images encoded together share the fixed part
    /// (the calibration's batched 448x448 images cost 4.2 ms each against 5.3 ms alone).
    pub fn vision_ms(&self, images: u64, patches: u64) -> f64 {
        if images == 0 {
            return 0.0;
        }
        self.vision_base_ms + patches as f64 * self.vision_per_patch_ms
    }

    /// GPU time of a step.
    pub fn gpu_ms(&self, s: &StepShape) -> f64 {
        if s.tokens == 0 {
            return 0.0;
        }
        self.dense_ms(s.tokens as f64)
            + self.attention_ms(s.kv_tokens_read as f64, s.max_context as f64)
            + self.allreduce_ms(s.tokens as f64)
            + self.vision_ms(s.vision_images, s.vision_patches)
    }

    /// Engine-core CPU time of a step (scheduling, input preparation, output processing).
    pub fn cpu_ms(&self, s: &StepShape) -> f64 {
        self.cpu_base_ms
            + self.cpu_per_seq_ms * s.seqs as f64
            + self.cpu_per_new_ms * s.new_requests as f64
    }

    /// Wall time of a step: the engine core prepares the next step while the GPU runs, so
    /// whichever is longer decides.
    pub fn step_ms(&self, s: &StepShape) -> f64 {
        self.gpu_ms(s).max(self.cpu_ms(s))
    }

    /// Model vs measurement at every calibration point of the profile (GPU time only).
    pub fn calibration_errors(&self, p: &Profile) -> Vec<CalibrationError> {
        let min_ctx = p
            .calibration
            .decode
            .iter()
            .map(|d| d[1])
            .fold(f64::INFINITY, f64::min);
        let max_b = p
            .calibration
            .decode
            .iter()
            .filter(|d| d[1] == min_ctx)
            .map(|d| d[0])
            .fold(0.0, f64::max);
        let mut out = Vec::new();
        for d in &p.calibration.decode {
            let (b, l) = (d[0] as u64, d[1] as u64);
            // the measurements are of one rank: compare without communication
            let model = self.dense_ms(b as f64) + self.attention_ms((b * l) as f64, l as f64);
            out.push(CalibrationError {
                kind: "decode",
                batch: b,
                context: l,
                prompt: 0,
                measured_ms: d[2],
                model_ms: model,
                is_knot: d[1] == min_ctx,
            });
        }
        for q in &p.calibration.prefill {
            out.push(CalibrationError {
                kind: "prefill",
                batch: 1,
                context: 0,
                prompt: q[0] as u64,
                measured_ms: q[1],
                model_ms: self.dense_ms(q[0]),
                is_knot: q[0] > max_b,
            });
        }
        for x in &p.calibration.mixed {
            let (b, l, c) = (x[0] as u64, x[1] as u64, x[2] as u64);
            let model = self.dense_ms((b + c) as f64) + self.attention_ms((b * l) as f64, l as f64);
            out.push(CalibrationError {
                kind: "mixed",
                batch: b,
                context: l,
                prompt: c,
                measured_ms: x[3],
                model_ms: model,
                is_knot: false,
            });
        }
        out
    }
}

/// Renders the calibration table (Markdown) for all given profiles.
pub fn calibration_table(profiles: &[Profile]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| profile | kind | B | L | P | measured ms | model ms | error | knot |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for p in profiles {
        let m = StepModel::from_profile(p);
        for e in m.calibration_errors(p) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:+.1} % | {} |",
                p.name,
                e.kind,
                e.batch,
                if e.context == 0 {
                    "-".into()
                } else {
                    e.context.to_string()
                },
                if e.prompt == 0 {
                    "-".into()
                } else {
                    e.prompt.to_string()
                },
                e.measured_ms,
                e.model_ms,
                100.0 * e.rel_error(),
                if e.is_knot { "yes" } else { "" }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> (Profile, StepModel) {
        let p = Profile::builtin(name).unwrap();
        let m = StepModel::from_profile(&p);
        (p, m)
    }

    #[test]
    fn single_stream_decode_qwen3_4b_bf16_is_4_6_ms() {
        let (_, m) = model("qwen3-4b-bf16-h100");
        let s = StepShape {
            tokens: 1,
            seqs: 1,
            kv_tokens_read: 512,
            max_context: 512,
            ..Default::default()
        };
        let ms = m.gpu_ms(&s);
        assert!((ms - 4.609).abs() / 4.609 < 0.05, "{ms}");
        // and the step (GPU and CPU overlap) too
        assert!((m.step_ms(&s) - 4.609).abs() / 4.609 < 0.05);
    }

    #[test]
    fn decode_and_prefill_points_within_5_percent() {
        let profiles = Profile::all_builtin().unwrap();
        println!("{}", calibration_table(&profiles));
        for p in &profiles {
            let m = StepModel::from_profile(p);
            for e in m.calibration_errors(p) {
                if e.kind == "mixed" {
                    continue;
                }
                // prefill points under the largest decode batch are predicted by decode knots
                let tol = if e.kind == "prefill" && !e.is_knot {
                    0.10
                } else {
                    0.05
                };
                assert!(
                    e.rel_error().abs() <= tol,
                    "{}: {:?} err {:.3}",
                    p.name,
                    e,
                    e.rel_error()
                );
            }
        }
    }

    #[test]
    fn mixed_steps_are_not_decode_plus_prefill() {
        let (p, m) = model("qwen3-4b-bf16-h100");
        for e in m
            .calibration_errors(&p)
            .into_iter()
            .filter(|e| e.kind == "mixed")
        {
            // within 15 % of the torch measurement (real vLLM is faster than torch here)
            assert!(e.rel_error().abs() < 0.15, "{e:?}");
            let sum = m.dense_ms(e.batch as f64) + m.dense_ms(e.prompt as f64);
            assert!(
                e.model_ms < sum + m.attention_ms((e.batch * e.context) as f64, e.context as f64)
            );
        }
    }

    #[test]
    fn tensor_parallel_adds_allreduce() {
        let (_, m) = model("mistral-small-24b-bf16-tp4");
        let a1 = m.allreduce_ms(1.0);
        let a256 = m.allreduce_ms(256.0);
        assert!((a1 - 0.8).abs() < 0.1, "{a1}");
        assert!((a256 - 1.5).abs() < 0.2, "{a256}");
        assert!((m.allreduce_ms(512.0) - 2.2).abs() < 0.2);
    }

    #[test]
    fn precision_changes_step_time() {
        let (_, bf) = model("qwen3-4b-bf16-h100");
        let (_, fp) = model("qwen3-4b-fp8");
        let s = StepShape {
            tokens: 1,
            seqs: 1,
            kv_tokens_read: 512,
            max_context: 512,
            ..Default::default()
        };
        assert!(fp.gpu_ms(&s) < bf.gpu_ms(&s) * 0.85);
    }

    #[test]
    fn dense_is_monotone_and_extrapolates() {
        let (_, m) = model("qwen3-4b-fp8");
        let mut last = 0.0;
        for n in [1.0, 4.0, 100.0, 500.0, 3000.0, 9000.0] {
            let v = m.dense_ms(n);
            assert!(v >= last, "{n}: {v} < {last}");
            last = v;
        }
    }
}
