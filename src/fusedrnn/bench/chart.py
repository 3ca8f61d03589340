"""The speed-up chart (matplotlib, imported only when a chart is drawn)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .peers import IMPL_LABELS


def plot_speedups(results: dict, path: str) -> Optional[str]:
    """Bar chart of fusedrnn's speed-up over PyTorch and ONNX Runtime per config (one panel per
    thread count), log scale, 1.0 line. Returns the path, or None without matplotlib/data."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    except ImportError:
        return None
    peers = [p for p in ("torch", "ort") if p in results["impls"]]
    threads = results["threads"]
    panels = []
    for n in threads:
        rows = [r for r in results["rows"] if r["threads"] == n and r.get("speedup")]
        if rows and any(p in r["speedup"] for r in rows for p in peers):
            panels.append((n, rows))
    if not panels:
        return None
    ncfg = max(len(rows) for _, rows in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8.0, 0.6 * ncfg + 2.5),
                                                      5.0 * len(panels)), squeeze=False)
    colors = {"torch": "#ee4c2c", "ort": "#4a7ebb"}
    width = 0.8 / len(peers)
    for ax, (n, rows) in zip(axes[:, 0], panels):
        vals_all = [r["speedup"][p] for r in rows for p in peers if p in r["speedup"]]
        lo = min(vals_all + [1.0]) / 2.0
        hi = max(vals_all + [1.0]) * 2.0
        x = np.arange(len(rows))
        for j, p in enumerate(peers):
            vals = np.array([r["speedup"].get(p, np.nan) for r in rows], dtype=float)
            pos = x - 0.4 + width * (j + 0.5)
            # Bars grow from the 1.0 line: up when fusedrnn is faster, down when slower.
            ax.bar(pos, vals - 1.0, width, bottom=1.0, label=f"vs {IMPL_LABELS[p]}",
                   color=colors[p], edgecolor="white", linewidth=0.5)
            for xp, v in zip(pos, vals):
                if np.isfinite(v):
                    ax.annotate(f"{v:.2f}", (xp, v), ha="center",
                                va="bottom" if v >= 1 else "top", fontsize=7, rotation=90,
                                xytext=(0, 2 if v >= 1 else -2), textcoords="offset points")
        ax.axhline(1.0, color="black", linewidth=1.2, linestyle="--")
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                 if lo <= t <= hi]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xticks(x)
        ax.set_xticklabels([r["config"] for r in rows], rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel("speed-up = peer time / fusedrnn time")
        ax.set_title(f"{n} thread{'s' if n > 1 else ''}: above the dashed 1.0 line "
                     f"fusedrnn is faster", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    cpu = results["machine"].get("cpu", "")
    fig.suptitle(f"fusedrnn vs PyTorch / ONNX Runtime, {cpu}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
