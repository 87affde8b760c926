//! The simulator against the real vLLM 0.25.0 server on the H100 (calibration README): server-side
//! TTFT and TPOT at 1/8/32/128 closed-loop streams, 256 in / 128 out. Virtual time: fast and
//! deterministic.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use llmload_sim::experiment::closed_loop;
use llmload_sim::profile::Profile;

// streams, TTFT mean ms, prefill mean ms, queue mean ms, TPOT mean ms
const REAL_BF16: &[(u32, f64, f64, f64, f64)] = &[
    (1, 17.3, 12.4, 0.01, 4.50),
    (8, 70.0, 48.8, 0.02, 4.81),
    (32, 148.1, 89.4, 0.07, 5.51),
    (128, 314.5, 161.5, 26.1, 9.13),
];

#[test]
fn bf16_profile_matches_real_vllm_closed_loop() {
    let p = Profile::builtin("qwen3-4b-bf16-h100").unwrap();
    println!(
        "| streams | TTFT real | TTFT sim | err | TPOT real | TPOT sim | err | prefill real | prefill sim | queue real | queue sim | tok/step real | tok/step sim |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let real_tps = [3.0, 23.7, 92.9, 354.5];
    for (k, &(n, ttft, prefill, queue, tpot)) in REAL_BF16.iter().enumerate() {
        let r = closed_loop(&p, None, n, 256, 128, (n as u64 * 4).max(8), 42);
        let e_ttft = (r.ttft_mean_ms - ttft) / ttft;
        let e_tpot = (r.tpot_mean_ms - tpot) / tpot;
        println!(
            "| {n} | {ttft:.1} | {:.1} | {:+.1} % | {tpot:.2} | {:.2} | {:+.1} % | {prefill:.1} | {:.1} | {queue:.2} | {:.2} | {} | {:.1} |",
            r.ttft_mean_ms,
            100.0 * e_ttft,
            r.tpot_mean_ms,
            100.0 * e_tpot,
            r.prefill_mean_ms,
            r.queue_mean_ms,
            real_tps[k],
            r.tokens_per_step
        );
        // TPOT within 10 %, except 128 streams (+11 %: the prefill steps of the bunched
        // arrivals stall the decodes a little longer than on the real server; docs/sim.md)
        let tol_tpot = if n == 128 { 0.12 } else { 0.10 };
        assert!(
            e_tpot.abs() <= tol_tpot,
            "{n} streams: TPOT {:.2} ms vs real {tpot} ms",
            r.tpot_mean_ms
        );
        // TTFT within 10 % at 1, 32 and 128 streams. At 8 streams the real mean includes 7 of
        // 40 requests at 100-250 ms while no inter-token gap exceeded 50 ms (a one-off slow
        // first round, docs/sim.md); the other 33 average about 48 ms, as the simulator does.
        let tol = if n == 8 { 0.35 } else { 0.10 };
        assert!(
            e_ttft.abs() <= tol,
            "{n} streams: TTFT {:.1} ms vs real {ttft} ms",
            r.ttft_mean_ms
        );
        // vLLM's queue time: the engine core reads arrivals between steps, so below the token
        // budget nothing queues (real: 0.01-0.07 ms at 1-32 streams)
        if n <= 32 {
            assert!(
                r.queue_mean_ms < 1.0,
                "{n} streams: queue {:.2} ms",
                r.queue_mean_ms
            );
        }
        // prefill (scheduled to first token) at 32 streams: the burst is prefilled in few
        // large steps, as the real iteration histogram shows
        if n == 32 {
            assert!(
                ((r.prefill_mean_ms - prefill) / prefill).abs() <= 0.15,
                "prefill {:.1} vs {prefill}",
                r.prefill_mean_ms
            );
        }
        assert!(r.waiting_max <= n as u64);
        if n == 8 {
            println!(
                "8 streams, iteration tokens (le, steps): {:?}",
                r.iteration_tokens_hist
            );
            println!("8 streams, TTFT (le s, requests): {:?}", r.ttft_hist);
        }
    }
}

#[test]
fn fp8_profile_closed_loop_against_real_vllm() {
    // real vLLM 0.25.0, Qwen3-4B shape with --quantization fp8, closed loop 256/128:
    // streams, TTFT, prefill, TPOT (ms)
    let real = [
        (1, 19.4, 14.1, 3.45),
        (32, 119.2, 67.6, 4.51),
        (128, 245.6, 118.1, 8.23),
    ];
    let p = Profile::builtin("qwen3-4b-fp8").unwrap();
    for (n, ttft, prefill, tpot) in real {
        let r = closed_loop(&p, None, n, 256, 128, (n as u64 * 4).max(8), 42);
        let (e1, e2) = (
            (r.ttft_mean_ms - ttft) / ttft,
            (r.tpot_mean_ms - tpot) / tpot,
        );
        println!(
            "fp8 {n} streams: TTFT {:.1} ms (real {ttft}, {:+.1} %), prefill {:.1} (real {prefill}), TPOT {:.2} (real {tpot}, {:+.1} %), queue {:.2} ms",
            r.ttft_mean_ms,
            100.0 * e1,
            r.prefill_mean_ms,
            r.tpot_mean_ms,
            100.0 * e2,
            r.queue_mean_ms
        );
        // a second data set the front-end costs were not fitted to: looser bounds. 128
        // streams: +38 % (the front end's per-token cost that gives the open-loop ceiling of
        // ~70 req/s also slows 15k tokens/s of closed-loop streaming; docs/sim.md)
        let tol = if n == 128 { 0.45 } else { 0.20 };
        assert!(
            e1.abs() <= tol,
            "fp8 {n}: TTFT {:.1} vs {ttft}",
            r.ttft_mean_ms
        );
        assert!(
            e2.abs() <= 0.20,
            "fp8 {n}: TPOT {:.2} vs {tpot}",
            r.tpot_mean_ms
        );
    }
}

#[test]
fn vl_profile_keeps_the_real_image_ttfts() {
    use llmload_sim::experiment::{closed_loop_with, image_request};
    let p = Profile::builtin("qwen3-vl-4b-bf16-h100").unwrap();
    // real vLLM 0.25.0, Qwen3-VL-4B shape, one JPEG per request (calibration README):
    // (side, streams, server TTFT mean ms)
    let real = [
        (448, 1, 57.0),
        (896, 1, 111.0),
        (448, 32, 381.0),
        (896, 32, 751.0),
    ];
    for (side, n, ttft) in real {
        let r = closed_loop_with(&p, None, n, (n as u64 * 4).max(8), 3, |id| {
            image_request(&p, id, 25, side, side, 128)
        });
        let e = (r.ttft_mean_ms - ttft) / ttft;
        println!(
            "VL {side}x{side}, {n} streams: TTFT {:.0} ms (real {ttft}), {:+.1} %, prefill {:.1} ms, waiting max {}",
            r.ttft_mean_ms,
            100.0 * e,
            r.prefill_mean_ms,
            r.waiting_max
        );
        // one stream: within 10 % (fitted); 32 streams: a prediction (the front end's image
        // queue dominates), -16 % and +40 % today (docs/sim.md)
        let tol = if n == 1 { 0.10 } else { 0.45 };
        assert!(
            e.abs() <= tol,
            "VL {side} {n} streams: {:.0} vs {ttft}",
            r.ttft_mean_ms
        );
    }
}

#[test]
fn fp8_single_api_server_caps_near_70_req_s_with_nothing_waiting() {
    use llmload_sim::experiment::open_loop;
    let p = Profile::builtin("qwen3-4b-fp8").unwrap();
    // real: offered 20 / 60 / 100 / 140 -> achieved 19.8 / 57.0 / 71.0 / 70.0 req/s, TTFT
    // 36.8 / 75.1 / 1278 / 3124 ms, num_requests_waiting 0 throughout
    let mut rows = Vec::new();
    for rate in [20.0, 60.0, 100.0, 140.0] {
        let r = open_loop(&p, None, rate, 5.0, 256, 128, 11);
        println!(
            "fp8 1 API server, offered {rate}: achieved {:.1} req/s, TTFT mean {:.0} ms, queue {:.2} ms, prefill {:.1} ms, waiting max {}, running max {}, KV max {:.1} %",
            r.requests_per_s,
            r.ttft_mean_ms,
            r.queue_mean_ms,
            r.prefill_mean_ms,
            r.waiting_max,
            r.running_max,
            100.0 * r.kv_usage_max
        );
        rows.push((rate, r));
    }
    let (_, low) = &rows[0];
    assert!((low.requests_per_s - 20.0).abs() < 3.0);
    assert!(low.ttft_mean_ms < 100.0);
    let (_, r100) = &rows[2];
    let (_, r140) = &rows[3];
    assert!(
        (60.0..=80.0).contains(&r140.requests_per_s),
        "cap {:.1}",
        r140.requests_per_s
    );
    assert!(
        (60.0..=90.0).contains(&r100.requests_per_s),
        "plateau {:.1}",
        r100.requests_per_s
    );
    assert!(
        r140.ttft_mean_ms > 10.0 * low.ttft_mean_ms,
        "TTFT explodes past the cap"
    );
    // the engine's waiting queue does not reveal it
    assert!(r140.waiting_max <= 10, "waiting max {}", r140.waiting_max);
    assert!(
        r140.queue_mean_ms < 10.0,
        "queue {:.2} ms",
        r140.queue_mean_ms
    );

    // four API servers move the cap (real: 103.4 req/s at 140 offered)
    let r4 = open_loop(&p, Some(4), 140.0, 8.0, 256, 128, 11);
    println!(
        "fp8 4 API servers, offered 140: achieved {:.1} req/s ({:.0} tok/s), TTFT mean {:.0} ms, TPOT {:.1} ms, tok/step {:.0}, waiting max {}, running max {}",
        r4.requests_per_s,
        r4.output_tokens_per_s,
        r4.ttft_mean_ms,
        r4.tpot_mean_ms,
        r4.tokens_per_step,
        r4.waiting_max,
        r4.running_max
    );
    // real: output 13.2k tok/s with 4 API servers vs ~9k with one
    assert!(
        r4.output_tokens_per_s > r140.output_tokens_per_s * 1.25,
        "{:.0} vs {:.0} tok/s",
        r4.output_tokens_per_s,
        r140.output_tokens_per_s
    );
    assert!(r4.ttft_mean_ms < r140.ttft_mean_ms / 2.0);
}

#[test]
fn rising_load_raises_latency_plateaus_throughput_and_grows_the_queue() {
    use llmload_sim::experiment::open_loop;
    let mut p = Profile::builtin("qwen3-4b-bf16-h100").unwrap();
    // an engine-bound server: enough API servers, vLLM's smaller default batch limit
    p.frontend.api_servers = 8;
    p.scheduler.max_num_seqs = 128;
    let mut last_tps = 0.0;
    let mut rows = Vec::new();
    for rate in [10.0, 40.0, 80.0, 160.0] {
        let r = open_loop(&p, None, rate, 6.0, 512, 256, 5);
        println!(
            "rate {rate}: {:.1} req/s, {:.0} out tok/s, TTFT {:.0} ms, TPOT {:.2} ms, waiting max {}, running max {}",
            r.requests_per_s,
            r.output_tokens_per_s,
            r.ttft_mean_ms,
            r.tpot_mean_ms,
            r.waiting_max,
            r.running_max
        );
        rows.push(r);
    }
    for w in rows.windows(2) {
        assert!(
            w[1].ttft_mean_ms >= w[0].ttft_mean_ms * 0.95,
            "latency rises"
        );
        assert!(w[1].tpot_mean_ms >= w[0].tpot_mean_ms * 0.95);
        last_tps = w[1].output_tokens_per_s;
    }
    let n = rows.len();
    // plateau: the last two rates deliver nearly the same tokens/s
    assert!(
        (rows[n - 1].output_tokens_per_s - rows[n - 2].output_tokens_per_s).abs() / last_tps < 0.10
    );
    assert!(
        rows[n - 1].waiting_max > 50,
        "waiting queue grows: {}",
        rows[n - 1].waiting_max
    );
    assert!(rows[0].waiting_max <= 2);
}

#[test]
#[ignore = "parameter sweep used to fit the front-end costs; run with --ignored --nocapture"]
fn sweep_frontend() {
    use llmload_sim::experiment::open_loop;
    let base = Profile::builtin("qwen3-4b-bf16-h100").unwrap();
    let fp8 = Profile::builtin("qwen3-4b-fp8").unwrap();
    let mut all = Vec::new();
    for c_in in [0.1, 0.3] {
        for c_tok in [2.0, 3.0] {
            for c_first in [3.5, 3.75, 4.0] {
                for c_evt in [45.0, 55.0] {
                    for ftl in [6.0, 7.0] {
                        let mut p = base.clone();
                        p.frontend.per_request_ms = c_in;
                        p.frontend.per_input_token_us = c_tok;
                        p.frontend.per_first_output_ms = c_first;
                        p.frontend.per_output_event_us = c_evt;
                        p.engine.first_token_latency_ms = ftl;
                        let mut line = format!(
                            "c_in {c_in} c_tok {c_tok} c_first {c_first} c_evt {c_evt} ftl {ftl}:"
                        );
                        let mut err = 0.0;
                        for &(n, ttft, prefill, _, tpot) in REAL_BF16 {
                            let r = closed_loop(&p, None, n, 256, 128, (n as u64 * 4).max(8), 42);
                            let e1 = (r.ttft_mean_ms - ttft) / ttft;
                            let e4 = (r.prefill_mean_ms - prefill) / prefill;
                            err += 0.2 * e4 * e4;
                            let e2 = (r.tpot_mean_ms - tpot) / tpot;
                            let w = if n == 8 { 0.2 } else { 1.0 };
                            err += w * e1 * e1 + 2.0 * e2 * e2;
                            line += &format!(
                                " [{n}: ttft {:.1} tpot {:.2} prefill {:.1}]",
                                r.ttft_mean_ms, r.tpot_mean_ms, r.prefill_mean_ms
                            );
                        }
                        let mut q = fp8.clone();
                        q.frontend = p.frontend.clone();
                        q.engine.first_token_latency_ms = ftl;
                        let o = open_loop(&q, None, 140.0, 6.0, 256, 128, 7);
                        let c = closed_loop(&q, None, 128, 256, 128, 512, 42);
                        line += &format!(
                            " [fp8 128: ttft {:.1} tpot {:.2}]",
                            c.ttft_mean_ms, c.tpot_mean_ms
                        );
                        let e3 = (o.requests_per_s - 70.0) / 70.0;
                        err += 2.0 * e3 * e3;
                        line += &format!(
                            " fp8@140: {:.1} req/s waiting max {} ttft {:.0}",
                            o.requests_per_s, o.waiting_max, o.ttft_mean_ms
                        );
                        all.push((err, line));
                    }
                }
            }
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (e, l) in all.iter().take(8) {
        println!("{e:.4}: {l}");
    }
}
