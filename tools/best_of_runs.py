"""Combine several runs of ``python -m fusedrnn.bench --out DIR`` over the same matrix.

On a shared VM the speed of the machine drifts for seconds at a time (neighbours taking the
caches, the memory bandwidth or a core), and the implementations of a row are timed one after
the other, so one slow phase can land on one implementation only. This script takes, for every
row (configuration and thread count) and every implementation, the lowest of the runs' medians,
the same rule for every implementation, recomputes the ratios peer / fusedrnn (> 1: fusedrnn
faster) from those, and
prints the geometric means of the issue-7 targets and one markdown table per row kind.
The best-of rule can pair one implementation's luckiest run with another's ordinary one; so the
same summary follows for the median, per row, of each run's own ratio (peer and fusedrnn timed
in the same run), with the rows whose median is below 1.0x.
Batch-1 rows also get "% stream" and "% floor" (see fusedrnn.bench.measure) from the lowest
bound of the runs (their best measured ceilings) over fusedrnn's lowest median: the strictest
of the runs' figures.

    python tools/best_of_runs.py RUN1/results.json RUN2/results.json [...]
"""
import json
import math
import statistics
import sys
from collections import OrderedDict

PEERS = ("numpy", "torch", "ort")
INFERENCE = ("forward", "cell", "stream", "call", "lengths")


def combine(paths):
    """-> OrderedDict (config, threads) -> {"kind", "params", "best": {impl: ms}, "runs",
    "run_ratios": {peer: [peer / fusedrnn of each run where both are ok]}}."""
    rows = OrderedDict()
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for r in data["rows"]:
            key = (r["config"], r["threads"])
            entry = rows.setdefault(key, dict(kind=r["kind"], params=r.get("params", {}),
                                              best={}, runs=0, run_ratios={}))
            entry["runs"] += 1
            ok = {impl: res["median_ms"] for impl, res in r.get("results", {}).items()
                  if res.get("status") == "ok" and isinstance(res.get("median_ms"), (int, float))
                  and res["median_ms"] > 0}     # a NaN median is written as null
            if "fusedrnn" in ok:
                for p in PEERS + ("padded",):
                    if p in ok:
                        entry["run_ratios"].setdefault(p, []).append(ok[p] / ok["fusedrnn"])
            for key in ("stream_bound_ms", "floor_ms"):
                if key in r:
                    entry[key] = min(r[key], entry.get(key, math.inf))
            for impl, ms in ok.items():
                entry["best"][impl] = min(ms, entry["best"].get(impl, math.inf))
    return rows


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def ratios(entry):
    best = entry["best"]
    fr = best.get("fusedrnn")
    if fr is None:
        return {}
    return {p: best[p] / fr for p in PEERS + ("padded",) if p in best}


def run_ratios(entry):
    """peer -> the median of the runs' own ratios peer / fusedrnn (runs where both are ok)."""
    return {p: statistics.median(v) for p, v in entry["run_ratios"].items()}


def summary(rows, threads, rowratios):
    """The geometric means of the issue-7 targets, rowratios(entry) -> {peer: ratio}."""
    for th in threads:
        sel = [(k, e) for k, e in rows.items() if k[1] == th]
        for peer in ("torch", "ort"):
            for kinds, label in ((("forward",), "forward rows"), (INFERENCE, "all inference rows"),
                                 (("cell", "stream", "call"), "latency rows"),
                                 (("train",), "training rows")):
                v = [r[peer] for r in (rowratios(e) for _, e in sel if e["kind"] in kinds)
                     if peer in r]
                if v:
                    print(f"{th} thread(s), {label:18s} vs {peer:5s}: geomean {geomean(v):.2f}x, "
                          f"min {min(v):.2f}x, >= 1.0 in {sum(x >= 1 for x in v)}/{len(v)}")
        print()


def main(paths):
    rows = combine(paths)
    threads = sorted({t for _, t in rows})
    print(f"best of {len(paths)} runs: {', '.join(paths)}\n")
    summary(rows, threads, ratios)
    print("median of the runs' own ratios:\n")
    summary(rows, threads, run_ratios)
    for (config, th), e in rows.items():
        for p, m in run_ratios(e).items():
            if p in ("torch", "ort") and m < 1:
                print(f"below 1.0x: {config}, {th} thread(s), vs {p}: median {m:.2f}x of "
                      + ", ".join(f"{x:.2f}x" for x in e["run_ratios"][p]))
    print()
    for kind in ("forward", "train", "cell", "stream", "call", "lengths"):
        for th in threads:
            sel = [(k, e) for k, e in rows.items() if k[1] == th and e["kind"] == kind]
            if not sel:
                continue
            unit = "ms" if kind in ("forward", "train", "lengths") else "µs"
            scale = 1.0 if unit == "ms" else 1e3
            impls = [i for i in ("fusedrnn", "padded") + PEERS
                     if any(i in e["best"] for _, e in sel)]
            peers = [p for p in ("torch", "ort", "padded") if p in impls]
            bounds = [(k, label) for k, label in (("stream_bound_ms", "% stream"),
                                                  ("floor_ms", "% floor"))
                      if any(k in e for _, e in sel)]
            print(f"#### {kind}, {th} thread(s)\n")
            print("| config | " + " | ".join(f"{i} {unit}" for i in impls) + " | "
                  + " | ".join(f"vs {p}" if p != "padded" else "padded / lengths"
                               for p in peers) + "".join(f" | {label}" for _, label in bounds)
                  + " |")
            print("|---|" + "--:|" * (len(impls) + len(peers) + len(bounds)))
            for (config, _), e in sel:
                cells = [f"{e['best'][i] * scale:.3g}" if i in e["best"] else "n/a"
                         for i in impls]
                rs = ratios(e)
                cells += [f"{rs[p]:.2f}x" if p in rs else "-" for p in peers]
                cells += [f"{100 * e[k] / e['best']['fusedrnn']:.0f}%"
                          if k in e and "fusedrnn" in e["best"] else "-" for k, _ in bounds]
                print(f"| {config} | " + " | ".join(cells) + " |")
            print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
