"""Heat maps of fusedrnn's speed-up in a full benchmark run (docs/benchmarks_full.json):
one panel per (cell, layers/directions, peer), batch x hidden.  Usage:
    python docs/plot_full.py docs/benchmarks_full.json docs/benchmarks_full.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(src, dst):
    data = json.load(open(src))
    rows = [r for r in data["rows"] if r["kind"] == "forward"
            and r["params"]["dtype"] == "float32" and r["params"]["proj_size"] == 0
            and r["params"]["reset_after"]]
    batches, hiddens = [1, 16, 64, 256], [128, 256, 512, 1024]
    stacks = [(1, False), (1, True), (2, False), (2, True)]
    peers = [("torch", "PyTorch"), ("ort", "ONNX Runtime")]
    fig, axes = plt.subplots(4, 4, figsize=(16, 15))
    for ci, cell in enumerate(["lstm", "gru"]):
        for si, (layers, bi) in enumerate(stacks):
            for pi, (peer, peer_name) in enumerate(peers):
                ax = axes[2 * ci + pi, si]
                grid = np.full((len(batches), len(hiddens)), np.nan)
                for r in rows:
                    p = r["params"]
                    if (p["cell"], p["layers"], p["bidirectional"]) != (cell, layers, bi):
                        continue
                    ours, theirs = r["results"].get("fusedrnn", {}), r["results"].get(peer, {})
                    if ours.get("status") == "ok" and theirs.get("status") == "ok":
                        grid[batches.index(p["batch"]), hiddens.index(p["hidden"])] = \
                            theirs["median_ms"] / ours["median_ms"]
                ax.imshow(np.log2(grid), cmap="RdYlGn", vmin=-1, vmax=1)
                for i in range(len(batches)):
                    for j in range(len(hiddens)):
                        if np.isfinite(grid[i, j]):
                            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center",
                                    fontsize=10)
                ax.set_xticks(range(len(hiddens)), [f"H{h}" for h in hiddens])
                ax.set_yticks(range(len(batches)), [f"B{b}" for b in batches])
                ax.set_title(f"{cell.upper()} L{layers} {'bi' if bi else 'uni'}: "
                             f"vs {peer_name}", fontsize=10)
    threads = ",".join(str(t) for t in data["threads"])
    fig.suptitle(f"fusedrnn speed-up (peer time / fusedrnn time; green > 1 = fusedrnn faster), "
                 f"float32 inference, T=100, {threads} threads", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(dst, dpi=80)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
