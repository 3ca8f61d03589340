"""``python -m fusedrnn.bench``: the command line of the benchmark report."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings
from typing import List, Optional, Sequence

from .configs import FULL_CONFIGS, MODE_CONFIGS, flops
from .machine import format_machine_info, machine_info
from .measure import run
from .peers import IMPL_LABELS, IMPLS
from .report import format_tables, write_results
from .timing import available_cores, parse_threads


def _threads_arg(s: str) -> List[int]:
    try:
        return parse_threads(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _impls_arg(s: str) -> List[str]:
    got = [t.strip().lower() for t in s.split(",") if t.strip()]
    bad = [t for t in got if t not in IMPLS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown implementation(s) {bad}; choose from "
                                         f"{', '.join(IMPLS)}")
    return [i for i in IMPLS if i in got]


def _rounds_arg(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rounds >= 1, got {s!r}")
    return n


def _filter_arg(s: str) -> "re.Pattern[str]":
    try:
        return re.compile(s)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"not a regular expression ({e}): {s!r}") from None


def _seconds_arg(positive: bool):
    """A type for a number of seconds: finite, > 0 (positive) or >= 0."""
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds {'> 0' if positive else '>= 0'}, got {s!r}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusedrnn.bench",
        description="Compare fusedrnn's LSTM/GRU with NumPy, PyTorch and ONNX Runtime on the "
                    "CPU: same weights, outputs verified, threads pinned, median times.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small subset, under 30 s")
    g.add_argument("--full", action="store_true",
                   help=f"the whole matrix of issue 4, the latency rows of issue 7 and the "
                        f"variable-lengths rows of issue 9 ({len(FULL_CONFIGS)} configs; long)")
    g.add_argument("--tiny", action="store_true",
                   help="a few tiny configs of every row kind, in seconds (a smoke test of the "
                        "report, not a measurement)")
    p.add_argument("--threads", type=_threads_arg, default=None,
                   help="comma-separated thread counts, 'all' = usable cores "
                        f"(default: 1,all = 1,{available_cores()})")
    p.add_argument("--impls", type=_impls_arg, default=list(IMPLS),
                   help=f"comma-separated subset of {','.join(IMPLS)} (default: all)")
    p.add_argument("--filter", type=_filter_arg, default=None, metavar="REGEX",
                   help="only configs whose name matches REGEX, e.g. 'lstm.*B16' or 'cell'")
    p.add_argument("--no-train", action="store_true", help="skip the training rows")
    p.add_argument("--budget", type=_seconds_arg(True), default=None, metavar="SECONDS",
                   help="timing budget per implementation and config (default by mode)")
    p.add_argument("--rounds", type=_rounds_arg, default=None, metavar="N",
                   help="timing rounds per row: each implementation's budget is split into N "
                        "blocks, the implementations' blocks interleaved, at least one call "
                        "each (default 3; more: steadier ratios on a noisy machine, a longer "
                        "run)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    p.add_argument("--wait-quiet", type=_seconds_arg(False), default=0.0, metavar="SECONDS",
                   help="on a shared machine: before each config wait up to SECONDS for other "
                        "processes to go idle, and time a config again (3 tries) when they "
                        "were busy meanwhile (default 0: no waiting; busy rows are flagged)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/results.json and DIR/speedup.png")
    p.add_argument("--no-chart", action="store_true",
                   help="with --out: results.json only (no matplotlib needed)")
    p.add_argument("--list", action="store_true", help="list the configs and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
    mode = ("quick" if args.quick else "full" if args.full else "tiny" if args.tiny
            else "default")
    configs = MODE_CONFIGS[mode]
    if args.no_train:
        configs = [c for c in configs if not c.train]
    if args.filter:
        configs = [c for c in configs if args.filter.search(c.name)]
    threads = args.threads or parse_threads("1,all")
    if args.list:
        for c in configs:
            print(f"{c.name}  ({flops(c) / 1e9:.2g} GFLOP)")
        return 0
    if not configs:
        print("no configuration matches", file=sys.stderr)
        return 2
    info = machine_info()
    print(f"fusedrnn benchmark ({mode}): {len(configs)} configs x threads {threads}; "
          f"implementations: {', '.join(IMPL_LABELS[i] for i in args.impls)}")
    print(format_machine_info(info))
    sys.stdout.flush()
    results = run(configs, args.impls, threads, mode, seed=args.seed, budget=args.budget,
                  quiet=args.quiet, info=info, wait=args.wait_quiet, rounds=args.rounds)
    print(format_tables(results))
    print(f"\ntotal time {results['elapsed_s']:.0f} s")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        print(f"wrote {write_results(results, os.path.join(args.out, 'results.json'))}")
        if not args.no_chart:
            from .chart import plot_speedups
            png = plot_speedups(results, os.path.join(args.out, "speedup.png"))
            print(f"wrote {png}" if png else "no chart: needs matplotlib and fusedrnn timed "
                                              "against PyTorch or ONNX Runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
