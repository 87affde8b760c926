"""Side by side: what GuideLLM and llmload report for the same server, and GuideLLM's own
per-request timings recomputed with llmload's definitions (docs/metrics.md, DESIGN §2).

usage: python compare.py GUIDELLM_JSON LLMLOAD_OUT_DIR
(Standard library only.)
"""

import json
import statistics
import sys


def pct(xs, p):
    """numpy's default (linear between closest ranks), as llmload computes percentiles."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(xs):
    return {"n": len(xs), "mean": statistics.fmean(xs) if xs else float("nan"),
            "p50": pct(xs, 50), "p99": pct(xs, 99)}


def guidellm(path):
    d = json.load(open(path))
    b = d["benchmarks"][0]
    m = b["metrics"]

    def rep(name, scale=1.0):
        s = m[name]["successful"]
        return {"n": s["count"], "mean": s["mean"] * scale, "p50": s["median"] * scale,
                "p99": s["percentiles"]["p99"] * scale}

    reported = {
        "duration_s": b["duration"],
        "completed": m["request_totals"]["successful"],
        "requests_per_s": m["requests_per_second"]["successful"]["mean"],
        "output_tokens_per_s": m["output_tokens_per_second"]["successful"]["mean"],
        "ttft_ms": rep("time_to_first_token_ms"),
        "itl_ms (= our tpot)": rep("inter_token_latency_ms"),
        "tpot_ms (= our tpot_incl_ttft)": rep("time_per_output_token_ms"),
        "request_latency_ms": rep("request_latency", 1000.0),
    }
    reqs = b["requests"]["successful"]
    ttft, tpot, incl, lat, e2e, out_tok = [], [], [], [], [], []
    starts, ends = [], []
    for r in reqs:
        t = r["info"]["timings"]
        n = r["output_metrics"].get("text_tokens") or t["token_iterations"]
        start, first, last, end = (t["request_start"], t["first_token_iteration"],
                                   t["last_token_iteration"], t["request_end"])
        starts.append(start)
        ends.append(end)
        out_tok.append(n)
        ttft.append((first - start) * 1e3)
        e2e.append((last - start) * 1e3)
        lat.append((end - start) * 1e3)
        incl.append((last - start) / n * 1e3)
        if n > 1:
            tpot.append((last - first) / (n - 1) * 1e3)
    dur = max(ends) - min(starts)
    ours = {
        "duration_s": dur,
        "completed": len(reqs),
        "requests_per_s": len(reqs) / dur,
        "output_tokens_per_s": sum(out_tok) / dur,
        "ttft_ms": summary(ttft),
        "tpot_ms": summary(tpot),
        "tpot_incl_ttft_ms": summary(incl),
        "e2e_latency_ms": summary(e2e),
        "request_latency_ms": summary(lat),
    }
    return reported, ours


def llmload(out_dir):
    r = json.load(open(f"{out_dir}/results.json"))
    b = r["benchmarks"][0]
    m = b["metrics"]

    def ms(name):
        s = m[name]
        return {"n": s["count"], "mean": s["mean"] * 1e3, "p50": s["p50"] * 1e3,
                "p99": s["p99"] * 1e3}

    return {
        "duration_s": b["window"]["duration_s"],
        "completed": b["requests"]["completed"],
        "requests_per_s": b["throughput"]["requests_per_s"],
        "output_tokens_per_s": b["throughput"]["output_tokens_per_s"],
        "ttft_ms": ms("ttft_s"),
        "tpot_ms": ms("tpot_s"),
        "tpot_incl_ttft_ms": ms("tpot_incl_ttft_s"),
        "itl_ms (per event)": ms("itl_s"),
        "e2e_latency_ms": ms("e2e_latency_s"),
        "request_latency_ms": ms("request_latency_s"),
    }


def show(title, d):
    print(f"## {title}")
    for k, v in d.items():
        if isinstance(v, dict):
            print(f"  {k:32s} n={v['n']:<6} mean={v['mean']:9.3f}  p50={v['p50']:9.3f}  p99={v['p99']:9.3f}")
        elif isinstance(v, float):
            print(f"  {k:32s} {v:.3f}")
        else:
            print(f"  {k:32s} {v}")


def main():
    rep, ours = guidellm(sys.argv[1])
    show("GuideLLM, as it reports", rep)
    show("GuideLLM's per-request timings, llmload's definitions", ours)
    show("llmload, as it reports", llmload(sys.argv[2]))


if __name__ == "__main__":
    main()
