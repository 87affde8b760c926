#!/usr/bin/env python3
"""Writes the hand-modelled fixtures of llmload-report's tests (deterministic; stdlib only).

sweep/: a 5-step Poisson sweep (1, 2, 4, 6, 8 req/s) of a Qwen3-8B-like deployment whose
capacity is about 5 req/s (512 in / 128 out), with requests.jsonl, server and GPU series on
two steps, per-step SLA tiers and a breaking point, as llmload sweep records them.
int4-1gpu/ and bf16-4gpu/: the ROI pair (summary figures chosen for a hand computation).
Statistics are computed from the generated samples with numpy's linear percentiles.
"""
import json, math, os, random

HERE = os.path.dirname(os.path.abspath(__file__))

def pct(xs, q):
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h); hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])

def summary(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs); m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / n)
    return {"count": n, "mean": m, "stddev": sd, "min": xs[0], "p50": pct(xs, 50),
            "p90": pct(xs, 90), "p95": pct(xs, 95), "p99": pct(xs, 99), "p999": pct(xs, 99.9),
            "max": xs[-1]}

def r6(x):
    return None if x is None else round(x, 6)

def sweep():
    rng = random.Random(7)
    rates = [1.0, 2.0, 4.0, 6.0, 8.0]
    cap = 5.0
    dur = 60.0
    t = 0.0
    rid = 0
    benches, records = [], []
    tiers_of = []
    for bi, rate in enumerate(rates):
        start = t
        rho = min(rate / cap, 0.9)
        recs = []
        ts = start
        while True:
            ts += rng.expovariate(rate)
            if ts > start + dur:
                break
            over = max(0.0, rate - cap) / cap
            base_ttft = 0.06 + 0.05 * rho / (1 - rho)
            ttft = base_ttft * rng.lognormvariate(0, 0.25) + over * (ts - start) * 0.08
            tpot = (0.0125 + 0.006 * rho + 0.004 * over) * rng.lognormvariate(0, 0.08)
            out = 128
            disp = ts + rng.uniform(0.0002, 0.001)
            first = disp + ttft
            last = first + tpot * (out - 1)
            end = last + 0.002
            err = None
            if rate >= 8.0 and rng.random() < 0.03:
                err = "timeout"
            rec = {"id": rid, "benchmark": bi, "t_sched": r6(ts), "t_dispatch": r6(disp),
                   "t_end": r6(end), "token_source": "usage", "output_events": 0,
                   "multi_token_events": 0, "in_window": True, "max_tokens": 128}
            if err:
                rec.update({"t_end": r6(disp + 30.0), "error": err,
                            "error_message": "no response within 30 s"})
            else:
                rec.update({"t_first_token": r6(first), "t_first_output": r6(first),
                            "t_last_token": r6(last), "prompt_tokens": 512,
                            "output_tokens": out, "output_events": out - 1 if rate >= 6 else out,
                            "multi_token_events": 1 if rate >= 6 else 0,
                            "status": 200, "finish_reason": "length"})
            recs.append(rec)
            rid += 1
        ok = [r for r in recs if "error" not in r]
        errs = [r for r in recs if "error" in r]
        first_d = min(r["t_dispatch"] for r in recs)
        last_e = max(r["t_end"] for r in ok)
        d = last_e - first_d
        ttfts = [r["t_first_token"] - r["t_dispatch"] for r in ok]
        e2es = [r["t_last_token"] - r["t_dispatch"] for r in ok]
        tpots = [(r["t_last_token"] - r["t_first_token"]) / 127 for r in ok]
        # time-weighted concurrency
        ev = sorted([(r["t_dispatch"], 1) for r in recs] + [(r["t_end"], -1) for r in recs],
                    key=lambda e: (e[0], e[1]))
        cur = mx = 0; area = 0.0; lt = first_d
        for tt, dd in ev:
            tc = min(max(tt, first_d), last_e)
            area += cur * (tc - lt); lt = tc; cur += dd; mx = max(mx, cur)
        ttft_p95 = summary(ttfts)["p95"]
        decode = [1 / x for x in tpots]
        tier_ttft = ("excellent" if ttft_p95 < 0.5 else "acceptable" if ttft_p95 < 1.0
                     else "degraded" if ttft_p95 <= 2.0 else "breaking")
        dr = summary(decode)["p50"]
        tier_dr = ("excellent" if dr > 50 else "acceptable" if dr > 20 else "degraded" if dr >= 10
                   else "breaking")
        er = len(errs) / len(recs)
        b = {
            "profile": {"kind": "poisson", "rate": rate, "concurrency": None, "seed": 42},
            "window": {"duration_s": d, "start_s": first_d, "end_s": last_e},
            "requests": {"completed": len(ok), "errored": len(errs), "cancelled": 0,
                         "dropped": 0, "scheduled": len(recs), "outside_window": 0,
                         "retried_on_fresh_connection": 0,
                         "errors_by_class": {"connect": 0, "http_429": 0, "http_4xx": 0,
                                             "http_5xx": 0, "protocol": 0,
                                             "stream_broken": 0, "timeout": len(errs)},
                         **({"error_examples": {"timeout": "no response within 30 s"}} if errs else {})},
            "throughput": {"requests_per_s": len(ok) / d,
                           "output_tokens_per_s": 128 * len(ok) / d,
                           "total_tokens_per_s": 640 * len(ok) / d,
                           "goodput_requests_per_s": sum(1 for x in ttfts if x < 1.0) / d},
            "tokens": {"prompt_total": 512 * len(ok), "output_total": 128 * len(ok),
                       "source": "usage"},
            "concurrency": {"mean": area / d, "max": mx},
            "metrics": {
                "ttft_s": summary(ttfts), "ttfot_s": summary(ttfts),
                "e2e_latency_s": summary(e2es),
                "request_latency_s": summary([x + 0.002 for x in e2es]),
                "tpot_s": summary(tpots),
                "tpot_incl_ttft_s": summary([e / 128 for e in e2es]),
                "itl_s": summary(tpots), "decode_rate_tokens_per_s": summary(decode),
                "dispatch_delay_s": summary([r["t_dispatch"] - r["t_sched"] for r in recs]),
                "scheduled_latency_s": summary([r["t_last_token"] - r["t_sched"] for r in ok]),
                "prompt_tokens": summary([512.0] * len(ok)),
                "output_tokens": summary([128.0] * len(ok)),
            },
            "multi_token_event_share": (1 / 127) if rate >= 6 else 0.0,
            "itl_method": "exact",
            "warnings": ([f"achieved {len(ok) / d:.2f} req/s is more than 5 % below the offered {rate:g} req/s"]
                         if rate > cap else []),
            "server": None, "gpu": None,
            "sla": {"tiers": {"ttft": tier_ttft, "decode_rate": tier_dr},
                    "pass": ttft_p95 < 1.0 and er < 0.01},
        }
        if rate in (4.0, 8.0):
            n = int(d) + 1
            tt = [first_d + i for i in range(n)]
            wait = [0 if rate < 5 else max(0, int((i * (rate - cap)) * 0.9)) for i in range(n)]
            run = [min(int(rate * 2.1) + (i % 3), 40) for i in range(n)]
            kv = [round(min(0.99, 0.2 * rho + 0.01 * i * (1 if rate > cap else 0.1)), 4) for i in range(n)]
            b["server"] = {"series": {"t": [round(x, 3) for x in tt], "waiting": wait,
                                       "running": run, "kv_cache_usage": kv}}
            b["gpu"] = {"gpus": [{"index": 0, "series": {"t": [round(x, 3) for x in tt],
                        "utilization_pct": [min(100, 55 + 40 * rho + (i % 5)) for i in range(n)],
                        "memory_used_bytes": [70_000_000_000] * n}}]}
        benches.append(b)
        records.extend(recs)
        t = last_e + 2.0
    res = {
        "schema": "llmload.results/v1",
        "tool": {"name": "llmload", "version": "0.1.0"},
        "run": {"id": "20261122-101500-sweep", "started_at": "2026-11-22T10:15:00Z",
                "target": "http://127.0.0.1:8000", "model": "Qwen/Qwen3-8B", "api": "chat",
                "labels": {"gpus": "1", "gpu_hour_cost": "2.50", "precision": "bf16"},
                "command": ["llmload", "sweep", "--rates", "1,2,4,6,8"]},
        "benchmarks": benches,
        "sweep": {"mode": "rates 1,2,4,6,8 (poisson)", "oversaturated": True},
        "breaking_point": {"max_sustainable_rate": 4.6, "limiting_metric": "ttft_p95",
                           "reason": "TTFT p95 above 1.0 s from 6 req/s; bisected to within 5 %"},
    }
    os.makedirs(os.path.join(HERE, "sweep"), exist_ok=True)
    with open(os.path.join(HERE, "sweep", "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, "sweep", "requests.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps({k: v for k, v in r.items() if v is not None}, separators=(",", ":")) + "\n")

def s_(mean, p95, n, p50=None):
    p50 = mean if p50 is None else p50
    return {"count": n, "mean": mean, "stddev": mean * 0.2, "min": mean * 0.5, "p50": p50,
            "p90": p95 * 0.95, "p95": p95, "p99": p95 * 1.2, "p999": p95 * 1.3, "max": p95 * 1.4}

def roi_run(name, labels, rates, achieved, ttft_p95, err, bp):
    benches = []
    for r, a, t, e in zip(rates, achieved, ttft_p95, err):
        n = int(a * 120)
        errored = int(round(n * e / (1 - e))) if e else 0
        benches.append({
            "profile": {"kind": "constant", "rate": r, "concurrency": None, "seed": 1},
            "window": {"duration_s": 120.0, "start_s": 0.0, "end_s": 120.0},
            "requests": {"completed": n, "errored": errored, "cancelled": 0, "dropped": 0,
                         "errors_by_class": {"http_5xx": errored}},
            "throughput": {"requests_per_s": a, "output_tokens_per_s": a * 128,
                           "total_tokens_per_s": a * 640, "goodput_requests_per_s": None},
            "tokens": {"prompt_total": n * 512, "output_total": n * 128, "source": "usage"},
            "concurrency": {"mean": a * 2.0, "max": int(a * 4)},
            "metrics": {"ttft_s": s_(t * 0.6, t, n), "tpot_s": s_(0.02, 0.03, n),
                        "e2e_latency_s": s_(3.0, 4.0, n), "output_tokens": s_(128.0, 128.0, n),
                        "ttfot_s": None, "request_latency_s": None, "tpot_incl_ttft_s": None,
                        "itl_s": None, "decode_rate_tokens_per_s": None, "dispatch_delay_s": None,
                        "scheduled_latency_s": None, "prompt_tokens": None},
            "warnings": [], "server": None, "gpu": None, "sla": None,
        })
    res = {"schema": "llmload.results/v1", "tool": {"name": "llmload", "version": "0.1.0"},
           "run": {"id": name, "started_at": "2026-11-20T09:00:00Z",
                   "target": "http://10.0.0.5:8000", "model": "mistralai/Mistral-Small-24B-Instruct",
                   "api": "chat", "labels": labels, "command": []},
           "benchmarks": benches}
    if bp is not None:
        res["breaking_point"] = bp
    os.makedirs(os.path.join(HERE, name), exist_ok=True)
    with open(os.path.join(HERE, name, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")

sweep()
roi_run("int4-1gpu", {"gpus": "1", "gpu_hour_cost": "2.00", "precision": "int4"},
        [1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 3.5, 3.6], [0.2, 0.3, 0.6, 1.4, 3.0],
        [0, 0, 0, 0, 0.02], None)
roi_run("bf16-4gpu", {"gpus": "4", "gpu_hour_cost": "2.00", "precision": "bf16"},
        [2, 4, 6, 8, 10], [2.0, 4.0, 6.0, 7.4, 7.6], [0.15, 0.2, 0.4, 1.1, 2.5],
        [0, 0, 0, 0, 0.01], {"max_sustainable_rate": 7.5, "limiting_metric": "ttft_p95"})

# ---------------------------------------------------------------- peers' formats
def gdist(mean, median, p95, p99, n, lo, hi, total=None):
    """A GuideLLM DistributionSummary (v0.4+ field names)."""
    return {"mean": mean, "median": median, "mode": median, "variance": (mean * 0.1) ** 2,
            "std_dev": mean * 0.1, "min": lo, "max": hi, "count": n,
            "total_sum": mean * n if total is None else total,
            "percentiles": {"p001": lo, "p01": lo, "p05": lo, "p10": lo, "p25": median * 0.9,
                            "p50": median, "p75": median * 1.1, "p90": p95 * 0.9, "p95": p95,
                            "p99": p99, "p999": hi}}

def gstatus(ok, err=None):
    empty = gdist(0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0)
    return {"successful": ok, "incomplete": empty, "errored": err or empty, "total": ok}

def guidellm():
    benches = []
    for strat, ok, errored, ttft, itl, tpot, lat in [
        ({"type_": "synchronous"}, 60, 0, 45.0, 12.0, 12.4, 1.57),
        ({"type_": "constant", "rate": 2.0}, 238, 2, 62.0, 13.5, 13.9, 1.78),
    ]:
        dur = 120.0
        m = {
            "request_totals": {"successful": ok, "incomplete": 0, "errored": errored, "total": ok + errored},
            "requests_per_second": gstatus(gdist(ok / dur, ok / dur, ok / dur, ok / dur, ok, 0.0, 5.0)),
            "request_concurrency": gstatus(gdist(ok / dur * lat, 1.0, 4.0, 5.0, ok, 0.0, 6.0)),
            "request_latency": gstatus(gdist(lat, lat, lat * 1.2, lat * 1.4, ok, lat * 0.8, lat * 1.5)),
            "prompt_token_count": gstatus(gdist(512.0, 512.0, 512.0, 512.0, ok, 512.0, 512.0)),
            "output_token_count": gstatus(gdist(128.0, 128.0, 128.0, 128.0, ok, 128.0, 128.0)),
            "time_to_first_token_ms": gstatus(gdist(ttft, ttft * 0.95, ttft * 1.6, ttft * 2.2, ok, ttft * 0.6, ttft * 3)),
            "time_to_first_output_token_ms": gstatus(gdist(ttft, ttft * 0.95, ttft * 1.6, ttft * 2.2, ok, ttft * 0.6, ttft * 3)),
            "inter_token_latency_ms": gstatus(gdist(itl, itl, itl * 1.1, itl * 1.3, ok * 127, itl * 0.9, itl * 2)),
            "time_per_output_token_ms": gstatus(gdist(tpot, tpot, tpot * 1.1, tpot * 1.3, ok * 128, tpot * 0.9, tpot * 2)),
            "output_tokens_per_second": gstatus(gdist(128 * ok / dur, 128 * ok / dur, 300.0, 320.0, ok * 128, 0.0, 400.0)),
            "tokens_per_second": gstatus(gdist(640 * ok / dur, 640 * ok / dur, 1500.0, 1600.0, ok * 640, 0.0, 2000.0)),
        }
        benches.append({
            "type_": "generative_benchmark", "id_": f"b{len(benches)}", "run_id": "r1",
            "config": {"strategy": strat, "profile": {"type_": "sweep"},
                       "requests": {"model": "Qwen/Qwen3-8B"}},
            "scheduler_metrics": {"start_time": 1763800000.0, "request_start_time": 1763800000.0,
                                  "measure_start_time": 1763800000.0,
                                  "measure_end_time": 1763800000.0 + dur,
                                  "request_end_time": 1763800000.0 + dur,
                                  "end_time": 1763800000.0 + dur,
                                  "requests_made": {"successful": ok, "incomplete": 0, "errored": errored, "total": ok + errored}},
            "metrics": m,
            "requests": {"successful": [], "incomplete": [], "errored": []},
            "start_time": 1763800000.0, "end_time": 1763800000.0 + dur, "duration": dur,
        })
    os.makedirs(os.path.join(HERE, "guidellm"), exist_ok=True)
    with open(os.path.join(HERE, "guidellm", "benchmarks.json"), "w") as f:
        json.dump({"metadata": {"version": 1, "guidellm_version": "0.4.0"},
                   "args": {"profile": "sweep", "target": "http://localhost:8000"},
                   "benchmarks": benches}, f, indent=1)
        f.write("\n")
    bad = json.loads(json.dumps(benches[0]))
    bad["metrics"]["time_to_first_token_ms"]["successful"]["percentiles"]["p95"] = "fast"
    with open(os.path.join(HERE, "guidellm", "malformed.json"), "w") as f:
        json.dump({"benchmarks": [bad]}, f, indent=1)
        f.write("\n")

def vllm():
    def res(rate, maxc, completed, failed, dur, ttft, tpot, itl, e2el):
        r = {"date": "20261120-101010", "endpoint_type": "openai-chat", "backend": "openai-chat",
             "label": None, "model_id": "Qwen/Qwen3-8B", "tokenizer_id": "Qwen/Qwen3-8B",
             "num_prompts": completed + failed, "request_rate": rate, "burstiness": 1.0,
             "max_concurrency": maxc, "duration": dur, "completed": completed, "failed": failed,
             "total_input_tokens": completed * 512, "total_output_tokens": completed * 128,
             "request_throughput": completed / dur, "request_goodput": None,
             "output_throughput": completed * 128 / dur,
             "total_token_throughput": completed * 640 / dur,
             "max_output_tokens_per_s": 700.0, "max_concurrent_requests": 9}
        for name, v in [("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2el", e2el)]:
            r[f"mean_{name}_ms"] = v
            r[f"median_{name}_ms"] = v * 0.95
            r[f"std_{name}_ms"] = v * 0.2
            r[f"p99_{name}_ms"] = v * 2.0
        r["p95_ttft_ms"] = ttft * 1.7
        return r
    os.makedirs(os.path.join(HERE, "vllm"), exist_ok=True)
    one = res(2.0, None, 200, 0, 101.5, 58.2, 13.1, 12.9, 1722.0)
    one["ttfts"] = [round(0.04 + (i * 7 % 37) * 0.001, 4) for i in range(200)]
    one["completed"] = 200
    with open(os.path.join(HERE, "vllm", "result.json"), "w") as f:
        json.dump(one, f, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, "vllm", "sweep.jsonl"), "w") as f:
        f.write(json.dumps(res(2.0, None, 200, 0, 101.5, 58.2, 13.1, 12.9, 1722.0)) + "\n")
        f.write(json.dumps(res("inf", 16, 400, 4, 60.0, 420.0, 21.0, 20.5, 3100.0)) + "\n")
    bad = res(2.0, None, 200, 0, 101.5, 58.2, 13.1, 12.9, 1722.0)
    bad["mean_ttft_ms"] = "58 ms"
    with open(os.path.join(HERE, "vllm", "malformed.json"), "w") as f:
        json.dump(bad, f, indent=1)
        f.write("\n")

guidellm()
vllm()
