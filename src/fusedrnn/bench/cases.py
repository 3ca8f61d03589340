"""Weights and inputs of a configuration, and how an implementation's output is judged.

Same weights everywhere: one PyTorch-style state dict (uniform(-k, k), k = 1/sqrt(H), fixed seed)
is loaded into every implementation; a ``lengths`` row's lengths come from the seed too
(``draw_lengths``), so every implementation and every run sees the same batch. The ground truth
itself is made by a peer in float64 (``peers.reference``); ``compare`` sets an output against
it.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np

from .configs import Config


@dataclasses.dataclass
class Case:
    """Weights (PyTorch state-dict names and order) and inputs of one configuration."""

    cfg: Config
    state: "OrderedDict[str, np.ndarray]"
    x: np.ndarray                       # (T, B, I)
    h0: np.ndarray                      # (L*D, B, H_out)
    c0: Optional[np.ndarray]            # (L*D, B, H), LSTM only
    d_out: Optional[np.ndarray] = None  # (T, B, D*H_out), training rows only
    lengths: Optional[np.ndarray] = None  # (B,) int64, lengths rows only

    def astype(self, dtype) -> "Case":
        dt = np.dtype(dtype)
        cast = (lambda a: None if a is None else np.ascontiguousarray(a, dtype=dt))
        return Case(dataclasses.replace(self.cfg, dtype=dt.name),
                    OrderedDict((k, cast(v)) for k, v in self.state.items()),
                    cast(self.x), cast(self.h0), cast(self.c0), cast(self.d_out), self.lengths)

    def full_length(self) -> "Case":
        """The same inputs without lengths: every sequence runs all T steps (a padded run)."""
        return dataclasses.replace(self, lengths=None)


def draw_lengths(cfg: Config, seed: int = 0) -> np.ndarray:
    """B integers uniform in [ceil(T/4), T] (at least 1), from (seed, B, T) only: the rows of
    one batch shape share their lengths whatever the cell and hidden size."""
    rng = np.random.default_rng([seed, cfg.batch, cfg.seq, 0x6C656E])     # "len"
    low = max(1, -(-cfg.seq // 4))
    return rng.integers(low, cfg.seq, size=cfg.batch, endpoint=True, dtype=np.int64)


def make_case(cfg: Config, seed: int = 0) -> Case:
    """Deterministic weights uniform(-1/sqrt(H), 1/sqrt(H)) like PyTorch, normal inputs/states
    (and lengths for a ``lengths`` row; x is drawn in full, padding included).

    A cell row gets the weights of a one-layer layer (``weight_ih_l0``, ...): the cell builders
    load them under the cell's names (no ``_l0``)."""
    rng = np.random.default_rng([seed, cfg.batch, cfg.hidden, cfg.layers])
    dt = cfg.np_dtype
    G, H, H_out, D = cfg.gates, cfg.hidden, cfg.h_out, cfg.directions
    k = 1.0 / math.sqrt(H)
    state = OrderedDict()
    for layer in range(cfg.layers):
        I_k = cfg.input if layer == 0 else D * H_out
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            shapes = [("weight_ih", (G * H, I_k)), ("weight_hh", (G * H, H_out)),
                      ("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
            if cfg.proj_size:
                shapes.append(("weight_hr", (H_out, H)))
            for name, shape in shapes:
                state[name + sfx] = rng.uniform(-k, k, size=shape).astype(dt)
    LD, T, B = cfg.layers * D, cfg.seq, cfg.batch
    x = rng.standard_normal((T, B, cfg.input)).astype(dt)
    h0 = (0.5 * rng.standard_normal((LD, B, H_out))).astype(dt)
    c0 = (0.5 * rng.standard_normal((LD, B, H))).astype(dt) if cfg.cell == "lstm" else None
    d_out = rng.standard_normal((T, B, D * H_out)).astype(dt) if cfg.train else None
    lengths = draw_lengths(cfg, seed) if cfg.kind == "lengths" else None
    return Case(cfg, state, x, h0, c0, d_out, lengths)


# Normwise tolerances: max|got - ref| / max|ref|, per output array, by (kind, dtype).
# Worst seen for PyTorch / ONNX Runtime / NumPy float32 over the matrix (up to H=1024, 2 layers,
# bidirectional): 1.5e-6 forward, 2.7e-6 gradients; float64: 1e-15. The float32 tolerances leave
# room for documented fast tanh/sigmoid approximations; a wrong gate or weight is off by >1e-2.
_TOL = {
    ("forward", "float32"): 5e-5,
    ("forward", "float64"): 1e-10,
    ("train", "float32"): 2e-4,
    ("train", "float64"): 1e-9,
}


def tolerance(cfg: Config) -> float:
    return _TOL[("train" if cfg.train else "forward", cfg.dtype)]


def compare(ref: Dict[str, np.ndarray], got: Dict[str, np.ndarray], cfg: Config):
    """Check ``got`` against the float64 ``ref``. Returns (ok, max_err, message).

    The error of one array is max|got - ref| / max|ref| (normwise, so gradients summed over
    T*B rows are judged on their own scale); every array of ``ref`` must be present in ``got``.
    """
    tol = tolerance(cfg)
    worst, where = 0.0, ""
    for key, b in ref.items():
        if key not in got or got[key] is None:
            return False, math.inf, f"{key} missing"
        a = np.asarray(got[key])
        if a.shape != b.shape:
            return False, math.inf, f"{key} has shape {a.shape}, expected {b.shape}"
        if not np.all(np.isfinite(a)):
            return False, math.inf, f"{key} has non-finite values"
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        err = float(np.max(np.abs(a.astype(np.float64) - b))) / scale if scale > 0 else (
            float(np.max(np.abs(a))) if a.size else 0.0)
        if err > worst:
            worst, where = err, key
    if worst > tol:
        return False, worst, f"{where} differs by {worst:.2e} (normwise; tolerance {tol:.0e})"
    return True, worst, ""
