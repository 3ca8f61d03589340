"""The report: Markdown tables (one per thread count and table kind) and results.json."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import List

import numpy as np

from .configs import LATENCY_KINDS
from .measure import contended
from .peers import (FOLLOWS, FORWARD_BUILDERS, IMPL_LABELS, LATENCY_BUILDERS, LENGTHS_BUILDERS,
                    TRAIN_BUILDERS, chosen)

STREAM_METHOD = (
    "% stream (batch-1 inference rows) = stream-bound time / fusedrnn's time: the time to read "
    "fusedrnn's packed recurrent weights once per step (T x layers x directions x packed bytes "
    "of W_hh (+ W_hr); an (N, K) weight packs to ceil(N/32)*32*K elements) at the read bandwidth "
    "of a plain streaming read (a compiled loop, every thread reading its share at the same "
    "time) over a buffer of the same size, same thread count, measured in this run; 100% = as "
    "fast as reading the weights allows. "
    "% floor (the same rows) = the least time the row can take / fusedrnn's time: per layer "
    "and direction the input projection (reading the packed W_ih at the bandwidth of its size, "
    "or its FLOPs at the GEMM peak, whichever is longer) plus the stream bound; a one-step row "
    "reads W_ih and W_hh together, at the bandwidth of their sum.")

LENGTHS_METHOD = (
    "Variable lengths: B sequences padded to T, lengths uniform in [T/4, T] (drawn from --seed; "
    "in results.json). fusedrnn = model(x, lengths=lengths); padded = fusedrnn's model(x) on "
    "the same x, every sequence run to T; torch = pack_padded_sequence(enforce_sorted=False) + "
    "module + pad_packed_sequence(total_length=T), all timed; ort = LSTM/GRU nodes fed "
    "sequence_lens; numpy = a loop over the running rows. padded / lengths = padded time / "
    "fusedrnn's time, next to 1 / valid fraction = T*B / sum(lengths), its value if padding "
    "cost nothing.")

# (kinds of rows, title, builders, time unit, factor from ms, fusedrnn-only columns)
_TABLES = (
    (("forward",), "Inference (forward)", FORWARD_BUILDERS, "ms", 1.0,
     ("GFLOP/s", "% peak", "% stream", "% floor")),
    (("train",), "Training (forward + backward)", TRAIN_BUILDERS, "ms", 1.0,
     ("GFLOP/s", "% peak")),
    (LATENCY_KINDS, "Latency: one cell step, one stream step, and the fixed cost of one layer call",
     LATENCY_BUILDERS, "µs", 1e3, ("% stream", "% floor")),
    (("lengths",), "Variable lengths (inference)", LENGTHS_BUILDERS, "ms", 1.0,
     ("padded / lengths", "1 / valid fraction")),
)

_STATUS_CELL = {"mismatch": "MISMATCH", "skipped": "n/a", "error": "ERROR"}


def _fmt_time(t: float) -> str:
    """Three significant digits or more (9.999 -> 10.0, not 10.00; 0.0049 -> 0.00490)."""
    if round(t, 1) >= 100:
        return f"{t:.0f}"
    if round(t, 2) >= 10:
        return f"{t:.1f}"
    if round(t, 3) >= 1 or t == 0 or not math.isfinite(t):
        return f"{t:.2f}"
    return f"{t:#.3g}" if t >= 1e-4 else f"{t:.2e}"


def _extra_cell(row: dict, column: str) -> str:
    if column == "padded / lengths":
        s = row.get("speedup", {}).get("padded")
        return f"{s:.2f}x" if s is not None else "-"
    key, fmt = {"GFLOP/s": ("gflops", "{:.1f}"), "% peak": ("pct_peak", "{:.0f}%"),
                "% stream": ("pct_stream", "{:.0f}%"), "% floor": ("pct_floor", "{:.0f}%"),
                "1 / valid fraction": ("ideal_speedup", "{:.2f}x")}[column]
    return fmt.format(row[key]) if row.get(key) else "-"


def _table(header: List[str], body: List[List[str]], align_left: int = 1) -> List[str]:
    widths = [max(len(h), *(len(r[j]) for r in body)) if body else len(h)
              for j, h in enumerate(header)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if j < align_left else c.rjust(w)
                                 for j, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 2)) if j < align_left else ("-" * (w + 1) + ":")
                         for j, w in enumerate(widths)) + "|"
    return [line(header), sep] + [line(r) for r in body]


def format_tables(results: dict) -> str:
    """Markdown tables (one per thread count and table kind) and the notes."""
    out = [STREAM_METHOD]
    impls = results["impls"]
    notes = OrderedDict()
    for n in results["threads"]:
        peaks = results["gemm_peak_gflops"][str(n)]
        for kinds, title, builders, unit, scale, extra in _TABLES:
            rows = [r for r in results["rows"] if r["threads"] == n and r["kind"] in kinds]
            if not rows:
                continue
            kind_impls = chosen(builders, impls)
            # fusedrnn's own variants get their ratio among the extra columns
            peers = [i for i in kind_impls if i != "fusedrnn" and i not in FOLLOWS]
            peak_txt = ", ".join(f"{'SGEMM' if dt == 'float32' else 'DGEMM'} peak "
                                 f"{g:.1f} GFLOP/s" for dt, g in peaks.items())
            out.append(f"\n### {title}, {n} thread{'s' if n > 1 else ''} ({peak_txt})\n")
            header = (["config"] + [f"{i} {unit}" for i in kind_impls]
                      + [f"vs {i}" for i in peers] + list(extra))
            body = []
            for r in rows:
                if r.get("skipped"):
                    notes.setdefault(("all", r["skipped"]), []).append(r["config"])
                    body.append([r["config"]] + ["n/a"] * (len(header) - 1))
                    continue
                cells = [r["config"] + (" (!)" if contended(r) else "")]
                for i in kind_impls:
                    res = r["results"].get(i)
                    if res is None:
                        cells.append("-")
                    elif res["status"] == "ok":
                        cells.append(_fmt_time(res["median_ms"] * scale))
                    else:
                        cells.append(_STATUS_CELL[res["status"]])
                        notes.setdefault((i, f"{res['status']}: {res.get('note', '')}"),
                                         []).append(r["config"])
                for i in peers:
                    s = r.get("speedup", {}).get(i)
                    cells.append(f"{s:.2f}x" if s is not None else "-")
                cells += [_extra_cell(r, c) for c in extra]
                body.append(cells)
            out.extend(_table(header, body))
    if notes:
        out.append("\nNotes:")
        for (impl, note), where in notes.items():
            uniq = list(OrderedDict.fromkeys(where))
            scope = (f"{len(uniq)} rows" if len(uniq) > 3 else ", ".join(uniq))
            who = "row skipped" if impl == "all" else IMPL_LABELS.get(impl, impl)
            out.append(f"- {who}: {note} [{scope}]")
    for w in results.get("warnings", []):
        out.append(f"\nWARNING: {w}")
    rounds = results.get("timing", {}).get("rounds")
    out.append("\nms / µs = median wall time of one call (sequence of T steps, whole batch; "
               "a cell: one step"
               + (f"; each implementation timed in {rounds} interleaved rounds" if rounds else "")
               + "); vs X = X's time / fusedrnn's time (> 1: fusedrnn faster); "
               "GFLOP/s, % peak and % stream are fusedrnn's, against NumPy's GEMM and a "
               "streaming read at the same thread count.")
    if any(r["kind"] == "lengths" for r in results["rows"]):
        out.append(LENGTHS_METHOD)
    return "\n".join(out)


def _sanitize(o):
    """JSON-ready: numpy scalars to Python, non-finite floats to null."""
    if isinstance(o, dict):
        return OrderedDict((k, _sanitize(v)) for k, v in o.items())
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def write_results(results: dict, path: str) -> str:
    with open(path, "w") as f:
        json.dump(_sanitize(results), f, indent=1, default=str)
    return path
