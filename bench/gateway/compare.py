#!/usr/bin/env python3
"""Compares `llmload run` result directories of the same load against different targets.

usage: compare.py BASELINE_NAME NAME=DIR [NAME=DIR ...]

Several DIRs may share a NAME (rounds): their requests are pooled. For each name it prints, from
the per-request records (requests.jsonl, in-window, completed), the achieved rate and the exact
percentiles (numpy's linear interpolation) of TTFT, e2e latency and request latency, then what
each name adds over BASELINE_NAME (difference of the percentiles; the requests are not paired).
"""
import json
import os
import sys
from collections import OrderedDict


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    r = p / 100.0 * (len(v) - 1)
    lo = int(r)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (r - lo)


def load(d):
    recs = []
    with open(os.path.join(d, "requests.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    with open(os.path.join(d, "results.json")) as f:
        res = json.load(f)
    b = res["benchmarks"][0]
    return recs, b


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    base = sys.argv[1]
    groups = OrderedDict()
    for arg in sys.argv[2:]:
        name, d = arg.split("=", 1)
        groups.setdefault(name, []).append(d)
    rows = OrderedDict()
    print(
        f"{'target':<10} {'rounds':>6} {'ok':>6} {'err':>4} {'rps':>6}"
        f" {'ttft_p50':>9} {'ttft_p90':>9} {'ttft_p99':>9}"
        f" {'e2e_p50':>9} {'e2e_p99':>9} {'req_p50':>9} {'req_p99':>9}   (ms)"
    )
    for name, dirs in groups.items():
        ttft, e2e, req, err, rps = [], [], [], 0, []
        for d in dirs:
            try:
                recs, b = load(d)
            except OSError as e:
                print(f"{name}: skipping {d}: {e}")
                continue
            rps.append(b["throughput"]["requests_per_s"])
            for r in recs:
                if not r.get("in_window", True):
                    continue
                if r.get("error"):
                    err += 1
                    continue
                if r.get("t_first_token") is None:
                    continue
                t0 = r["t_dispatch"]
                ttft.append((r["t_first_token"] - t0) * 1e3)
                e2e.append((r["t_last_token"] - t0) * 1e3)
                req.append((r["t_end"] - t0) * 1e3)
        row = {
            "ttft_p50": pct(ttft, 50),
            "ttft_p90": pct(ttft, 90),
            "ttft_p99": pct(ttft, 99),
            "e2e_p50": pct(e2e, 50),
            "e2e_p99": pct(e2e, 99),
            "req_p50": pct(req, 50),
            "req_p99": pct(req, 99),
        }
        rows[name] = row
        print(
            f"{name:<10} {len(dirs):>6} {len(ttft):>6} {err:>4} {sum(rps) / max(len(rps), 1):>6.0f}"
            + "".join(f" {row[k]:>9.3f}" for k in row)
        )
    if base in rows:
        for name, row in rows.items():
            if name == base:
                continue
            added = ", ".join(
                f"{k} {row[k] - rows[base][k]:+.3f}"
                for k in ("ttft_p50", "ttft_p99", "e2e_p50", "e2e_p99")
            )
            print(f"added by {name} over {base} (ms): {added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
