"""Speed of fusedrnn against the peers a user would pick: NumPy, PyTorch and ONNX Runtime.

Run ``python -m fusedrnn.bench`` (curated subset, < 2 min), ``--quick`` (< 30 s) or ``--full``
(the whole matrix of issue 4); ``--help`` lists the options. The same module provides the peer
builders used by the pytest-benchmark suites in ``bench/``.

How the numbers are made honest
- Same weights: one PyTorch-style state dict (uniform(-k, k), k = 1/sqrt(H), fixed seed) is
  loaded into every implementation; ONNX gets the same arrays with its gate order (LSTM i,o,f,c;
  GRU z,r,h) and its [W_b, R_b] bias layout.
- Outputs verified before timing: every implementation is run once and compared with a float64
  ground truth (the NumPy reference of ``_bench_numpy`` in float64 for inference; PyTorch
  autograd in float64 for training rows) on every thread count. An implementation that disagrees
  is reported as MISMATCH and not timed.
- Same threads: each thread count is pinned for every implementation at once:
  ``torch.set_num_threads``, ONNX Runtime ``intra_op_num_threads`` (``inter_op_num_threads=1``),
  threadpoolctl for BLAS and OpenMP (NumPy, fusedrnn, and fusedrnn's own setter if it has one).
- Median of several calls; the number of calls follows from a time budget per implementation
  (at least 3). Each implementation is timed in its own block after a warm-up call, so thread
  pools left spinning by one library do not slow down the next one.
- FLOPs are counted from the GEMMs only: 2*T*B*G*H*(I_k + H_out) per layer and direction
  (+ 2*T*B*H*H_out for an LSTM projection), G = 4 (LSTM) or 3 (GRU); training rows count three
  times that (forward, and the two GEMMs per weight of the backward pass). GFLOP/s is set against
  the SGEMM (DGEMM for float64 rows) peak of NumPy's BLAS measured in the same run, same threads.

Optional peers (torch, onnx + onnxruntime, matplotlib for the chart) are imported lazily; one that
is missing is reported as skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import re
import sys
import time
import warnings
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from fusedrnn._bench_numpy import gru_forward, lstm_forward

__all__ = [
    "Config", "Case", "Runner", "PeerUnavailable",
    "QUICK_CONFIGS", "DEFAULT_CONFIGS", "FULL_CONFIGS", "IMPLS", "IMPL_LABELS",
    "FORWARD_BUILDERS", "TRAIN_BUILDERS",
    "build_fusedrnn", "build_numpy", "build_torch", "build_ort",
    "build_fusedrnn_train", "build_torch_train",
    "make_case", "reference", "compare", "tolerance", "flops",
    "pinned_threads", "time_calls", "measure_gemm_peak", "machine_info",
    "run_case", "run", "format_tables", "plot_speedups", "main",
]

IMPLS = ("fusedrnn", "numpy", "torch", "ort")
IMPL_LABELS = {"fusedrnn": "fusedrnn", "numpy": "NumPy", "torch": "PyTorch",
               "ort": "ONNX Runtime"}
_SHORT = {"fusedrnn": "fusedrnn", "numpy": "numpy", "torch": "torch", "ort": "ort"}


class PeerUnavailable(Exception):
    """An implementation cannot run this configuration (not installed, or not supported)."""


# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark configuration. ``input_size`` None means input = hidden."""

    cell: str                      # "lstm" or "gru"
    batch: int
    hidden: int
    input_size: Optional[int] = None
    seq: int = 100
    layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"
    proj_size: int = 0             # LSTM only
    reset_after: bool = True       # GRU only
    train: bool = False            # forward + backward instead of inference

    @property
    def input(self) -> int:
        return self.hidden if self.input_size is None else self.input_size

    @property
    def gates(self) -> int:
        return 4 if self.cell == "lstm" else 3

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj_size if self.proj_size else self.hidden

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)

    @property
    def name(self) -> str:
        parts = [self.cell + (" train" if self.train else ""),
                 f"T{self.seq}", f"B{self.batch}", f"H{self.hidden}"]
        if self.input_size is not None and self.input_size != self.hidden:
            parts.append(f"I{self.input_size}")
        if self.proj_size:
            parts.append(f"P{self.proj_size}")
        parts.append(f"L{self.layers}")
        parts.append("bi" if self.bidirectional else "uni")
        if self.cell == "gru" and not self.reset_after:
            parts.append("reset-before")
        parts.append({"float32": "f32", "float64": "f64"}[self.dtype])
        return " ".join(parts)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = self.input
        return d


def flops(cfg: Config) -> int:
    """GEMM FLOPs of one call (forward; x3 for a training step)."""
    T, B, G, H, H_out, D = cfg.seq, cfg.batch, cfg.gates, cfg.hidden, cfg.h_out, cfg.directions
    total = 0
    for k in range(cfg.layers):
        I_k = cfg.input if k == 0 else D * H_out
        per = 2 * T * B * G * H * (I_k + H_out)
        if cfg.proj_size:
            per += 2 * T * B * H * H_out
        total += D * per
    return 3 * total if cfg.train else total


def _full_matrix() -> List[Config]:
    cfgs = []
    for cell in ("lstm", "gru"):
        for layers in (1, 2):
            for bidir in (False, True):
                for H in (128, 256, 512, 1024):
                    for B in (1, 16, 64, 256):
                        cfgs.append(Config(cell, B, H, layers=layers, bidirectional=bidir))
    for cell in ("lstm", "gru"):
        for B, H in ((1, 256), (16, 256), (64, 512)):
            cfgs.append(Config(cell, B, H, dtype="float64"))
    cfgs.append(Config("lstm", 16, 512, proj_size=128))
    cfgs.append(Config("gru", 16, 256, reset_after=False))
    for cell in ("lstm", "gru"):
        for H in (128, 256, 512, 1024):
            for B in (1, 16, 64, 256):
                cfgs.append(Config(cell, B, H, train=True))
        cfgs.append(Config(cell, 16, 256, layers=2, bidirectional=True, train=True))
        cfgs.append(Config(cell, 16, 256, dtype="float64", train=True))
    return cfgs


FULL_CONFIGS: List[Config] = _full_matrix()

# Curated subset: latency (batch 1), mid-size, GEMM-heavy, stacked + bidirectional, float64,
# and training. Every entry is also in FULL_CONFIGS.
DEFAULT_CONFIGS: List[Config] = [
    Config("lstm", 1, 256), Config("gru", 1, 256),
    Config("lstm", 1, 1024), Config("gru", 1, 1024),
    Config("lstm", 16, 256), Config("gru", 16, 256),
    Config("lstm", 64, 512), Config("gru", 64, 512),
    Config("lstm", 256, 256), Config("gru", 256, 256),
    Config("lstm", 16, 128, layers=2, bidirectional=True),
    Config("gru", 16, 128, layers=2, bidirectional=True),
    Config("lstm", 16, 256, dtype="float64"), Config("gru", 16, 256, dtype="float64"),
    Config("lstm", 16, 256, train=True), Config("gru", 16, 256, train=True),
]

QUICK_CONFIGS: List[Config] = [
    Config("lstm", 1, 128), Config("gru", 1, 128),
    Config("lstm", 16, 256), Config("gru", 16, 256),
    Config("lstm", 16, 128, layers=2, bidirectional=True),
    Config("lstm", 16, 128, dtype="float64"),
    Config("lstm", 16, 128, train=True), Config("gru", 16, 128, train=True),
]

# Time budget per implementation and configuration (seconds), min / max calls, GEMM size.
MODES = {
    "quick": dict(budget=0.1, min_reps=3, max_reps=30, gemm_n=1024, gemm_reps=3),
    "default": dict(budget=0.2, min_reps=3, max_reps=50, gemm_n=2048, gemm_reps=5),
    "full": dict(budget=0.4, min_reps=3, max_reps=50, gemm_n=2048, gemm_reps=5),
}


# --------------------------------------------------------------------------------------------
# Weights, inputs and the float64 ground truth
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    """Weights (PyTorch state-dict names and order) and inputs of one configuration."""

    cfg: Config
    state: "OrderedDict[str, np.ndarray]"
    x: np.ndarray                       # (T, B, I)
    h0: np.ndarray                      # (L*D, B, H_out)
    c0: Optional[np.ndarray]            # (L*D, B, H), LSTM only
    d_out: Optional[np.ndarray] = None  # (T, B, D*H_out), training rows only

    def astype(self, dtype) -> "Case":
        dt = np.dtype(dtype)
        cast = (lambda a: None if a is None else np.ascontiguousarray(a, dtype=dt))
        return Case(dataclasses.replace(self.cfg, dtype=dt.name),
                    OrderedDict((k, cast(v)) for k, v in self.state.items()),
                    cast(self.x), cast(self.h0), cast(self.c0), cast(self.d_out))


def make_case(cfg: Config, seed: int = 0) -> Case:
    """Deterministic weights uniform(-1/sqrt(H), 1/sqrt(H)) like PyTorch, normal inputs/states."""
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
    return Case(cfg, state, x, h0, c0, d_out)


def reference(case: Case) -> Dict[str, np.ndarray]:
    """float64 ground truth for ``case`` (inputs and weights as rounded to the case's dtype).

    Inference: the NumPy reference in float64. Training: PyTorch autograd in float64 (raises
    PeerUnavailable without PyTorch).
    """
    c64 = case.astype(np.float64)
    if case.cfg.train:
        r = build_torch_train(c64, threads=None)
        return r.canonical(r())
    r = build_numpy(c64, threads=None)
    return r.canonical(r())


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
    T*B rows are judged on their own scale); every array of ``ref`` must be present in ``got``
    except h_n/c_n/dc0 of a training row (their presence depends on the training API).
    """
    tol = tolerance(cfg)
    optional = {"h_n", "c_n", "dc0"} if cfg.train else set()
    worst, where = 0.0, ""
    for key, b in ref.items():
        if key not in got or got[key] is None:
            if key in optional:
                continue
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


# --------------------------------------------------------------------------------------------
# Peers. A builder takes (case, threads) and returns a Runner; ``runner()`` is the timed call,
# ``runner.canonical(result)`` turns its result into named numpy arrays for ``compare``.
# ``threads`` only matters to builders that fix it at construction (ONNX Runtime); the others
# follow ``pinned_threads``.
# --------------------------------------------------------------------------------------------

class Runner:
    def __init__(self, impl: str, fn: Callable, canonical: Callable, note: str = ""):
        self.impl, self.fn, self.canonical, self.note = impl, fn, canonical, note

    def __call__(self):
        return self.fn()


def _import_optional(name: str, what: str):
    try:
        return __import__(name)
    except ImportError as e:
        raise PeerUnavailable(f"{what} is not installed ({e})") from None


def _hx(case: Case):
    return case.h0 if case.cfg.cell == "gru" else (case.h0, case.c0)


def _split_state(cfg: Config, res) -> Dict[str, np.ndarray]:
    """(out, h_n) / (out, (h_n, c_n)) -> dict of arrays."""
    out, hn = res
    if cfg.cell == "lstm":
        return {"out": np.asarray(out), "h_n": np.asarray(hn[0]), "c_n": np.asarray(hn[1])}
    return {"out": np.asarray(out), "h_n": np.asarray(hn)}


def build_numpy(case: Case, threads=None) -> Runner:
    cfg, st = case.cfg, case.state
    if cfg.train:
        raise PeerUnavailable("the NumPy reference has no backward pass")
    if cfg.cell == "lstm":
        def fn():
            out, h_n, c_n = lstm_forward(case.x, case.h0, case.c0, st, cfg.layers,
                                         cfg.bidirectional)
            return out, (h_n, c_n)
    else:
        def fn():
            return gru_forward(case.x, case.h0, st, cfg.layers, cfg.bidirectional,
                               cfg.reset_after)
    return Runner("numpy", fn, lambda res: _split_state(cfg, res))


def _fusedrnn_module():
    try:
        import fusedrnn
    except Exception as e:      # ImportError, or a failing extension import
        raise PeerUnavailable(f"fusedrnn is not importable ({type(e).__name__}: {e})") from None
    if not hasattr(fusedrnn, "LSTM") or not hasattr(fusedrnn, "GRU"):
        raise PeerUnavailable("fusedrnn has no LSTM/GRU (package not built or not installed)")
    return fusedrnn


def _fusedrnn_model(case: Case):
    fusedrnn = _fusedrnn_module()
    cfg = case.cfg
    kw = dict(num_layers=cfg.layers, bidirectional=cfg.bidirectional, dtype=cfg.np_dtype.type)
    if cfg.cell == "lstm":
        cls = fusedrnn.LSTM
        if cfg.proj_size:
            kw["proj_size"] = cfg.proj_size
    else:
        cls = fusedrnn.GRU
        if not cfg.reset_after:
            kw["reset_after"] = False
    model = cls(cfg.input, cfg.hidden, **kw)
    model.load_state_dict(case.state)
    return model


def build_fusedrnn(case: Case, threads=None) -> Runner:
    cfg = case.cfg
    if cfg.train:
        return build_fusedrnn_train(case, threads)
    model = _fusedrnn_model(case)
    x, hx = case.x, _hx(case)
    return Runner("fusedrnn", lambda: model(x, hx), lambda res: _split_state(cfg, res))


def _grads_dict(state_names, grads) -> Dict[str, np.ndarray]:
    if grads is None:
        return {}
    if hasattr(grads, "items"):
        return {"grad." + k: np.asarray(v) for k, v in grads.items()}
    return {"grad." + k: np.asarray(v) for k, v in zip(state_names, grads)}


def build_fusedrnn_train(case: Case, threads=None) -> Runner:
    cfg = case.cfg
    model = _fusedrnn_model(case)
    if not (hasattr(model, "forward_train") and hasattr(model, "backward")):
        raise PeerUnavailable("fusedrnn has no forward_train/backward yet (training API "
                              "not landed); training rows skipped")
    x, hx, d_out = case.x, _hx(case), case.d_out
    names = list(case.state)

    def fn():
        out, h_n, tape = model.forward_train(x, hx)
        dx, dhx, grads = model.backward(tape, d_out)
        return out, h_n, dx, dhx, grads

    def canonical(res):
        out, h_n, dx, dhx, grads = res
        d = {"out": np.asarray(out), "dx": np.asarray(dx)}
        if isinstance(h_n, tuple):
            d["h_n"] = np.asarray(h_n[0])
            if len(h_n) > 1:
                d["c_n"] = np.asarray(h_n[1])
        else:
            d["h_n"] = np.asarray(h_n)
        if isinstance(dhx, tuple):
            d["dh0"] = np.asarray(dhx[0])
            if len(dhx) > 1:
                d["dc0"] = np.asarray(dhx[1])
        else:
            d["dh0"] = np.asarray(dhx)
        d.update(_grads_dict(names, grads))
        return d

    return Runner("fusedrnn", fn, canonical)


def _torch_module(case: Case):
    torch = _import_optional("torch", "PyTorch")
    cfg = case.cfg
    if cfg.cell == "gru" and not cfg.reset_after:
        raise PeerUnavailable("torch.nn.GRU has no reset_after=False (original GRU) variant")
    tdtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    kw = dict(num_layers=cfg.layers, bias=True, bidirectional=cfg.bidirectional, dtype=tdtype)
    if cfg.cell == "lstm":
        model = torch.nn.LSTM(cfg.input, cfg.hidden, proj_size=cfg.proj_size, **kw)
    else:
        model = torch.nn.GRU(cfg.input, cfg.hidden, **kw)
    model.load_state_dict(OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)))
                                      for k, v in case.state.items()))
    return torch, model


def build_torch(case: Case, threads=None) -> Runner:
    """torch.nn.LSTM / GRU, eval(), called under torch.no_grad()."""
    cfg = case.cfg
    if cfg.train:
        return build_torch_train(case, threads)
    torch, model = _torch_module(case)
    model.eval()
    x = torch.from_numpy(case.x)
    h0 = torch.from_numpy(case.h0)
    hx = h0 if cfg.cell == "gru" else (h0, torch.from_numpy(case.c0))

    def fn():
        with torch.no_grad():
            return model(x, hx)

    def canonical(res):
        out, hn = res
        if cfg.cell == "lstm":
            return _split_state(cfg, (out.numpy(), (hn[0].numpy(), hn[1].numpy())))
        return _split_state(cfg, (out.numpy(), hn.numpy()))

    return Runner("torch", fn, canonical)


def build_torch_train(case: Case, threads=None) -> Runner:
    """Forward + backward with PyTorch autograd, loss = sum(out * d_out)."""
    cfg = case.cfg
    torch, model = _torch_module(case)
    model.train()                       # dropout is 0: same maths as eval()
    x = torch.from_numpy(case.x.copy()).requires_grad_()
    h0 = torch.from_numpy(case.h0.copy()).requires_grad_()
    c0 = torch.from_numpy(case.c0.copy()).requires_grad_() if cfg.cell == "lstm" else None
    hx = h0 if c0 is None else (h0, c0)
    d_out = torch.from_numpy(case.d_out)
    params = list(model.named_parameters())
    leaves = [x, h0] + ([c0] if c0 is not None else []) + [p for _, p in params]

    def fn():
        for t in leaves:
            t.grad = None
        out, hn = model(x, hx)
        out.backward(d_out)
        return out, hn

    def canonical(res):
        out, hn = res
        d = {"out": out.detach().numpy().copy()}
        if cfg.cell == "lstm":
            d["h_n"], d["c_n"] = hn[0].detach().numpy().copy(), hn[1].detach().numpy().copy()
        else:
            d["h_n"] = hn.detach().numpy().copy()
        d["dx"] = x.grad.numpy().copy()
        d["dh0"] = h0.grad.numpy().copy()
        if c0 is not None:
            d["dc0"] = c0.grad.numpy().copy()
        for name, p in params:
            d["grad." + name] = p.grad.numpy().copy()
        return d

    return Runner("torch", fn, canonical)


_ONNX_PERM = {"lstm": (0, 3, 1, 2),   # PyTorch i,f,g,o -> ONNX i,o,f,c
              "gru": (1, 0, 2)}       # PyTorch r,z,n   -> ONNX z,r,h


def onnx_model(case: Case):
    """A one-node-per-layer ONNX graph of LSTM/GRU operators with the case's weights.

    Inputs X (T, B, I), h0_l{k} (D, B, H) [, c0_l{k}]; outputs out (T, B, D*H), h_n, c_n.
    Between layers (and at the end) Y (T, D, B, H) is transposed to (T, B, D, H) and reshaped
    to (T, B, D*H), PyTorch's layout, inside the graph.
    """
    onnx = _import_optional("onnx", "onnx")
    from onnx import TensorProto, helper, numpy_helper
    cfg, st = case.cfg, case.state
    if cfg.proj_size:
        raise PeerUnavailable("the ONNX LSTM operator has no projection (proj_size)")
    if cfg.train:
        raise PeerUnavailable("ONNX Runtime inference session: no backward pass")
    dt = cfg.np_dtype
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[cfg.dtype]
    T, B, H, D, L = cfg.seq, cfg.batch, cfg.hidden, cfg.directions, cfg.layers
    op = cfg.cell.upper()
    perm = _ONNX_PERM[cfg.cell]

    def reorder(a):
        return np.concatenate([a[j * H:(j + 1) * H] for j in perm], axis=0)

    sfxs = ["", "_reverse"][:D]
    inputs = [helper.make_tensor_value_info("X", elem, [T, B, cfg.input])]
    inits = [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "TBx")]
    nodes, h_names, c_names = [], [], []
    cur = "X"
    for k in range(L):
        W = np.stack([reorder(st[f"weight_ih_l{k}{s}"]) for s in sfxs]).astype(dt)
        R = np.stack([reorder(st[f"weight_hh_l{k}{s}"]) for s in sfxs]).astype(dt)
        Bk = np.stack([np.concatenate([reorder(st[f"bias_ih_l{k}{s}"]),
                                       reorder(st[f"bias_hh_l{k}{s}"])]) for s in sfxs])
        inits += [numpy_helper.from_array(np.ascontiguousarray(W), f"W{k}"),
                  numpy_helper.from_array(np.ascontiguousarray(R), f"R{k}"),
                  numpy_helper.from_array(np.ascontiguousarray(Bk.astype(dt)), f"B{k}")]
        node_in = [cur, f"W{k}", f"R{k}", f"B{k}", "", f"h0_l{k}"]
        node_out = [f"Y{k}", f"Yh{k}"]
        inputs.append(helper.make_tensor_value_info(f"h0_l{k}", elem, [D, B, H]))
        if cfg.cell == "lstm":
            node_in.append(f"c0_l{k}")
            node_out.append(f"Yc{k}")
            inputs.append(helper.make_tensor_value_info(f"c0_l{k}", elem, [D, B, H]))
            c_names.append(f"Yc{k}")
        h_names.append(f"Yh{k}")
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if cfg.cell == "gru":
            attrs["linear_before_reset"] = 1 if cfg.reset_after else 0
        nodes.append(helper.make_node(op, node_in, node_out, name=f"{op}_l{k}", **attrs))
        nxt = "out" if k == L - 1 else f"X{k + 1}"
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Yt{k}", "TBx"], [nxt]))
        cur = nxt
    outputs = [helper.make_tensor_value_info("out", elem, [T, B, D * H]),
               helper.make_tensor_value_info("h_n", elem, [L * D, B, H])]
    nodes.append(helper.make_node("Concat", h_names, ["h_n"], axis=0))
    if c_names:
        nodes.append(helper.make_node("Concat", c_names, ["c_n"], axis=0))
        outputs.append(helper.make_tensor_value_info("c_n", elem, [L * D, B, H]))
    graph = helper.make_graph(nodes, "fusedrnn_bench", inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="fusedrnn.bench",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


_ORT_DOUBLE: Dict[str, bool] = {}


def _ort_runs_double(ort, cell: str) -> bool:
    """Whether ONNX Runtime's CPU kernel of this operator accepts float64 (probed once, tiny)."""
    if cell not in _ORT_DOUBLE:
        probe = make_case(Config(cell, 1, 2, seq=1, dtype="float64"))
        so = ort.SessionOptions()
        so.log_severity_level = 4
        try:
            sess = ort.InferenceSession(onnx_model(probe).SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
            feeds = {"X": probe.x, "h0_l0": probe.h0}
            if cell == "lstm":
                feeds["c0_l0"] = probe.c0
            sess.run(None, feeds)
            _ORT_DOUBLE[cell] = True
        except Exception:
            _ORT_DOUBLE[cell] = False
    return _ORT_DOUBLE[cell]


def build_ort(case: Case, threads=None) -> Runner:
    """ONNX Runtime CPU provider, intra_op_num_threads=threads, inter_op_num_threads=1."""
    cfg = case.cfg
    model = onnx_model(case)
    ort = _import_optional("onnxruntime", "ONNX Runtime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads) if threads else 0     # 0 = ORT's default
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 4
    if cfg.dtype == "float64" and not _ort_runs_double(ort, cfg.cell):
        raise PeerUnavailable(f"ONNX Runtime {ort.__version__} has no float64 {cfg.cell.upper()} "
                              f"kernel on the CPU")
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:160]
        raise PeerUnavailable(f"ONNX Runtime cannot run this graph ({msg})") from None
    D = cfg.directions
    feeds = {"X": case.x}
    for k in range(cfg.layers):
        feeds[f"h0_l{k}"] = np.ascontiguousarray(case.h0[k * D:(k + 1) * D])
        if cfg.cell == "lstm":
            feeds[f"c0_l{k}"] = np.ascontiguousarray(case.c0[k * D:(k + 1) * D])

    def canonical(res):
        d = {"out": res[0], "h_n": res[1]}
        if cfg.cell == "lstm":
            d["c_n"] = res[2]
        return d

    return Runner("ort", lambda: sess.run(None, feeds), canonical)


FORWARD_BUILDERS: Dict[str, Callable] = OrderedDict(
    fusedrnn=build_fusedrnn, numpy=build_numpy, torch=build_torch, ort=build_ort)
TRAIN_BUILDERS: Dict[str, Callable] = OrderedDict(
    fusedrnn=build_fusedrnn_train, torch=build_torch_train)


# --------------------------------------------------------------------------------------------
# Threads and timing
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def pinned_threads(n: int):
    """Pin PyTorch, BLAS/OpenMP (threadpoolctl) and fusedrnn to ``n`` threads.

    Only libraries already imported are affected: build the runners first, then enter.
    ONNX Runtime's count is fixed when its session is built (``build_ort(case, n)``).
    """
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")
    fr = sys.modules.get("fusedrnn")
    prev_torch = prev_fr = None
    if torch is not None and hasattr(torch, "set_num_threads"):
        prev_torch = torch.get_num_threads()
        torch.set_num_threads(n)
    fr_set = getattr(fr, "set_num_threads", None)
    if callable(fr_set):
        fr_get = getattr(fr, "get_num_threads", None)
        prev_fr = fr_get() if callable(fr_get) else None
        fr_set(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if prev_torch is not None:
            torch.set_num_threads(prev_torch)
        if prev_fr is not None:
            fr_set(prev_fr)


def time_calls(fn: Callable, budget: float, min_reps: int = 3, max_reps: int = 50) -> List[float]:
    """Wall times (seconds) of repeated ``fn()`` calls: about ``budget`` seconds in all, at
    least ``min_reps`` and at most ``max_reps`` calls. Call ``fn`` once before (warm-up)."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        n = max(min_reps, min(max_reps, int(budget / max(first, 1e-9))))
        times = [first]
        for _ in range(n - 1):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    return times


def measure_gemm_peak(dtype, threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n x n NumPy matmul (SGEMM / DGEMM) at ``threads`` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    with pinned_threads(threads):
        np.matmul(a, b, out=c)
        best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


# --------------------------------------------------------------------------------------------
# Machine information
# --------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> Optional[int]:
    try:
        cores, phys, core = set(), None, None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        return len(cores) or None
    except OSError:
        return None


def _cpu_sample():
    """(all CPUs' jiffies, idle jiffies, this process's CPU seconds), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        own = os.times()
        return sum(vals[:8]), vals[3] + vals[4], own.user + own.system
    except (OSError, ValueError, IndexError):
        return None


def other_load(s0, s1) -> Optional[float]:
    """Fraction (0..1) of all CPUs' time used by *other* processes between two ``_cpu_sample``s:
    /proc/stat busy time minus this process's own CPU time (all its threads)."""
    if s0 is None or s1 is None or s1[0] <= s0[0]:
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return None
    busy = (s1[0] - s0[0]) - (s1[1] - s0[1]) - (s1[2] - s0[2]) * hz
    return min(1.0, max(0.0, busy / (s1[0] - s0[0])))


def cpu_busy(seconds: float = 0.5) -> Optional[float]:
    """Load of other processes over ``seconds`` while this process sleeps (see other_load)."""
    time.sleep(0.2)                     # let thread pools of the last timed library go idle
    s0 = _cpu_sample()
    time.sleep(seconds)
    return other_load(s0, _cpu_sample())


def wait_quiet(max_wait: float, threshold: float = 0.05, quiet: bool = False) -> Optional[float]:
    """Wait (at most ``max_wait`` seconds) until other processes use < ``threshold`` of the
    CPUs over one second. Returns the last load measured."""
    t_end = time.monotonic() + max_wait
    load = cpu_busy(1.0)
    told = False
    while load is not None and load >= threshold and time.monotonic() < t_end:
        if not told:
            _log(f"    waiting for a quiet machine (other processes: {100 * load:.0f}% of the "
                 f"CPUs; up to {max_wait:.0f} s)", quiet)
            told = True
        load = cpu_busy(1.0)
    return load


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _version(modname: str) -> Optional[str]:
    mod = sys.modules.get(modname)
    if mod is None:
        try:
            mod = __import__(modname)
        except Exception:
            mod = None
    v = getattr(mod, "__version__", None) if mod is not None else None
    if v is None:
        try:
            from importlib.metadata import version
            v = version(modname)
        except Exception:
            v = None
    return None if v is None else str(v)


def machine_info() -> dict:
    """CPU, cores, library versions and BLAS / OpenMP pools (imports the optional peers)."""
    info = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": available_cores(),
        "physical_cores": _physical_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("numpy", "torch", "onnxruntime", "onnx")},
        "env": {k: os.environ[k] for k in sorted(os.environ)
                if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", "KMP_"))},
    }
    try:
        fr = _fusedrnn_module()
        info["versions"]["fusedrnn"] = _version("fusedrnn") or getattr(fr, "__version__", None)
    except PeerUnavailable as e:
        info["versions"]["fusedrnn"] = None
        info["fusedrnn_note"] = str(e)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            info["torch_parallel"] = torch.__config__.parallel_info().splitlines()[:3]
            info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
        except Exception:
            pass
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                    "architecture", "threading_layer", "num_threads")}
            for p in threadpool_info()]
    except Exception as e:      # pragma: no cover
        info["threadpools"] = f"unavailable: {e}"
    return info


def format_machine_info(info: dict) -> str:
    lines = [f"CPU: {info['cpu']}",
             f"cores: {info['physical_cores']} physical, {info['logical_cpus']} logical, "
             f"{info['usable_cpus']} usable by this process",
             f"Python {info['python']} on {info['platform']}",
             "versions: " + ", ".join(f"{k} {v or 'not installed'}"
                                      for k, v in info["versions"].items())]
    if info.get("fusedrnn_note"):
        lines.append(f"fusedrnn: {info['fusedrnn_note']}")
    if info.get("torch_parallel"):
        lines.append("torch: " + "; ".join(s.strip() for s in info["torch_parallel"])
                     + f"; mkldnn available: {info.get('torch_mkldnn')}")
    pools = info.get("threadpools")
    if isinstance(pools, list):
        for p in pools:
            extra = ", ".join(f"{k}={p[k]}" for k in ("version", "architecture",
                                                      "threading_layer") if p.get(k))
            lines.append(f"threadpool: {p['user_api']} {p['internal_api']} ({p['prefix']}"
                         f"{', ' + extra if extra else ''}), {p['num_threads']} threads")
    if info.get("env"):
        lines.append("environment: " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def _log(msg: str, quiet: bool = False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_case(cfg: Config, impls: Sequence[str], threads: Sequence[int], budget: float,
             min_reps: int = 3, max_reps: int = 50, seed: int = 0,
             quiet: bool = False) -> List[dict]:
    """Verify and time ``impls`` on ``cfg`` at each thread count. One row dict per count."""
    builders = TRAIN_BUILDERS if cfg.train else FORWARD_BUILDERS
    impls = [i for i in impls if i in builders]
    case = make_case(cfg, seed)
    rows = [dict(config=cfg.name, params=cfg.as_dict(), kind="train" if cfg.train else "forward",
                 threads=n, flops=flops(cfg), results=OrderedDict()) for n in threads]
    skip_all = None
    if cfg.train and "fusedrnn" in impls:
        try:
            build_fusedrnn_train(case)
        except PeerUnavailable as e:
            skip_all = str(e)
    ref = None
    if skip_all is None:
        try:
            ref = reference(case)
        except PeerUnavailable as e:
            skip_all = f"no float64 reference for this row: {e}"
    if skip_all is not None:
        for row in rows:
            row["skipped"] = skip_all
        return rows
    for row, n in zip(rows, threads):
        res = row["results"]
        runners = OrderedDict()
        for impl in impls:
            try:
                runners[impl] = builders[impl](case, n)
            except PeerUnavailable as e:
                res[impl] = dict(status="skipped", note=str(e))
            except Exception as e:
                res[impl] = dict(status="error", note=f"building: {type(e).__name__}: {e}")
        s0 = _cpu_sample()
        with pinned_threads(n):
            for impl, runner in runners.items():
                try:
                    got = runner.canonical(runner())
                except Exception as e:
                    res[impl] = dict(status="error", note=f"{type(e).__name__}: {e}")
                    continue
                ok, err, msg = compare(ref, got, cfg)
                del got
                if not ok:
                    res[impl] = dict(status="mismatch", max_err=err, note=msg)
                    _log(f"    {impl}: MISMATCH {msg}", quiet)
                    continue
                times = time_calls(runner, budget, min_reps, max_reps)
                res[impl] = dict(status="ok", median_ms=1e3 * float(np.median(times)),
                                 times_ms=[1e3 * t for t in times], max_err=err)
                time.sleep(0.02)       # let spinning worker threads of this library go idle
        row["other_load"] = other_load(s0, _cpu_sample())
        del runners
        _summarise(row)
        _log(f"    threads={n}: " + ", ".join(
            f"{i} {r['median_ms']:.2f} ms" if r.get("status") == "ok" else f"{i} {r['status']}"
            for i, r in res.items())
            + (f"  [other processes: {100 * row['other_load']:.0f}% of the CPUs]"
               if _contended(row) else ""), quiet)
    return rows


BUSY_THRESHOLD = 0.15   # a row timed while other processes used more of the CPUs is flagged


def _contended(row: dict) -> bool:
    return (row.get("other_load") or 0.0) > BUSY_THRESHOLD


def _summarise(row: dict):
    res = row["results"]
    fr = res.get("fusedrnn", {})
    row["speedup"] = OrderedDict()
    if fr.get("status") == "ok":
        for impl, r in res.items():
            if impl != "fusedrnn" and r.get("status") == "ok":
                row["speedup"][impl] = r["median_ms"] / fr["median_ms"]
        row["gflops"] = row["flops"] / (fr["median_ms"] * 1e-3) / 1e9


def run(configs: Sequence[Config], impls: Sequence[str], threads: Sequence[int], mode: str,
        seed: int = 0, budget: Optional[float] = None, quiet: bool = False,
        info: Optional[dict] = None, wait: float = 0.0, attempts: int = 3) -> dict:
    """Run everything; returns the results dict written to results.json.

    ``wait`` > 0: before each config wait up to ``wait`` seconds for a quiet machine, and run a
    config again (up to ``attempts`` times in all) when other processes used more than
    BUSY_THRESHOLD of the CPUs while it was timed. Rows still contended are flagged either way.
    """
    t_start = time.perf_counter()
    m = dict(MODES[mode])
    if budget is not None:
        m["budget"] = budget
    info = info if info is not None else machine_info()
    peaks = OrderedDict()
    dtypes = sorted({c.dtype for c in configs} | {"float32"})
    for n in threads:
        peaks[str(n)] = OrderedDict()
        for dt in dtypes:
            peaks[str(n)][dt] = measure_gemm_peak(np.dtype(dt), n, m["gemm_n"], m["gemm_reps"])
        _log(f"GEMM peak at {n} thread(s): " + ", ".join(
            f"{'SGEMM' if dt == 'float32' else 'DGEMM'} {g:.1f} GFLOP/s"
            for dt, g in peaks[str(n)].items()), quiet)
    busy_start = cpu_busy()
    rows = []
    for i, cfg in enumerate(configs):
        _log(f"[{i + 1}/{len(configs)}] {cfg.name}  ({flops(cfg) / 1e9:.2f} GFLOP)", quiet)
        for attempt in range(1, (attempts if wait > 0 else 1) + 1):
            if wait > 0:
                wait_quiet(wait, quiet=quiet)
            case_rows = run_case(cfg, impls, threads, m["budget"], m["min_reps"],
                                 m["max_reps"], seed, quiet)
            for r in case_rows:
                r["attempt"] = attempt
            if not any(_contended(r) for r in case_rows):
                break
            if wait > 0 and attempt < attempts:
                _log("    other processes were busy: running this config again", quiet)
        rows.extend(case_rows)
    # Was the machine quiet? Other processes' CPU use around the run, and the SGEMM peak again.
    busy_end = cpu_busy()
    peaks_end = OrderedDict()
    for n in threads:
        peaks_end[str(n)] = OrderedDict(
            (dt, measure_gemm_peak(np.dtype(dt), n, m["gemm_n"], m["gemm_reps"]))
            for dt in dtypes)
    # % of peak against the better of the two measurements (the machine's real capability).
    best = OrderedDict((n, OrderedDict((dt, max(peaks[n][dt], peaks_end[n][dt]))
                                       for dt in dtypes)) for n in peaks)
    for row in rows:
        peak = best[str(row["threads"])].get(row["params"]["dtype"])
        if row.get("gflops") and peak:
            row["pct_peak"] = 100.0 * row["gflops"] / peak
    warnings_ = []
    for label, b in (("start", busy_start), ("end", busy_end)):
        if b is not None and b > 0.1:
            warnings_.append(f"other processes used {100 * b:.0f}% of the CPUs at the {label} "
                             f"of the run: timings (above all multi-threaded) are unreliable")
    flagged = [r for r in rows if _contended(r)]
    if flagged:
        warnings_.append(f"{len(flagged)} of {len(rows)} rows were timed while other processes "
                         f"used more than {100 * BUSY_THRESHOLD:.0f}% of the CPUs (marked (!))")
    for n in threads:
        a, b = peaks[str(n)]["float32"], peaks_end[str(n)]["float32"]
        if abs(b - a) > 0.15 * max(a, b):
            warnings_.append(f"SGEMM peak at {n} thread(s) moved from {a:.0f} to {b:.0f} "
                             f"GFLOP/s during the run: the machine's speed was not stable")
    for w in warnings_:
        _log("WARNING: " + w, quiet)
    return OrderedDict(
        version=1, mode=mode, impls=list(impls), threads=list(threads), seed=seed,
        timing=m, machine=info, gemm_peak_gflops=best, gemm_peak_gflops_start=peaks,
        gemm_peak_gflops_end=peaks_end,
        cpu_busy_other=dict(start=busy_start, end=busy_end), warnings=warnings_, rows=rows,
        elapsed_s=time.perf_counter() - t_start)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


_STATUS_CELL = {"mismatch": "MISMATCH", "skipped": "n/a", "error": "ERROR"}


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
    """Markdown tables (one per thread count and kind) and the notes."""
    out = []
    impls = results["impls"]
    notes = OrderedDict()
    for n in results["threads"]:
        peaks = results["gemm_peak_gflops"][str(n)]
        for kind in ("forward", "train"):
            rows = [r for r in results["rows"] if r["threads"] == n and r["kind"] == kind]
            if not rows:
                continue
            kind_impls = [i for i in impls if i in (TRAIN_BUILDERS if kind == "train"
                                                   else FORWARD_BUILDERS)]
            peers = [i for i in kind_impls if i != "fusedrnn"]
            title = ("Inference (forward)" if kind == "forward"
                     else "Training (forward + backward)")
            peak_txt = ", ".join(f"{'SGEMM' if dt == 'float32' else 'DGEMM'} peak "
                                 f"{g:.1f} GFLOP/s" for dt, g in peaks.items())
            out.append(f"\n### {title}, {n} thread{'s' if n > 1 else ''} ({peak_txt})\n")
            header = (["config"] + [f"{_SHORT[i]} ms" for i in kind_impls]
                      + [f"vs {_SHORT[i]}" for i in peers] + ["GFLOP/s", "% peak"])
            body = []
            for r in rows:
                if r.get("skipped"):
                    notes.setdefault(("all", r["skipped"]), []).append(r["config"])
                    body.append([r["config"]] + ["n/a"] * (len(header) - 1))
                    continue
                cells = [r["config"] + (" (!)" if _contended(r) else "")]
                for i in kind_impls:
                    res = r["results"].get(i)
                    if res is None:
                        cells.append("-")
                        continue
                    if res["status"] == "ok":
                        cells.append(_fmt_ms(res["median_ms"]))
                    else:
                        cells.append(_STATUS_CELL[res["status"]])
                        notes.setdefault((i, f"{res['status']}: {res.get('note', '')}"),
                                         []).append(f"{r['config']} @{n}t")
                for i in peers:
                    s = r.get("speedup", {}).get(i)
                    cells.append(f"{s:.2f}x" if s is not None else "-")
                cells.append(f"{r['gflops']:.1f}" if r.get("gflops") else "-")
                cells.append(f"{r['pct_peak']:.0f}%" if r.get("pct_peak") else "-")
                body.append(cells)
            out.extend(_table(header, body))
    if notes:
        out.append("\nNotes:")
        for (impl, note), where in notes.items():
            uniq = list(OrderedDict.fromkeys(w.split(" @")[0] for w in where))
            scope = (f"{len(uniq)} rows" if len(uniq) > 3 else ", ".join(uniq))
            who = "row skipped" if impl == "all" else IMPL_LABELS.get(impl, impl)
            out.append(f"- {who}: {note} [{scope}]")
    for w in results.get("warnings", []):
        out.append(f"\nWARNING: {w}")
    out.append("\nms = median wall time of one call (sequence of T steps, whole batch); "
               "vs X = X's time / fusedrnn's time (> 1: fusedrnn faster); GFLOP/s and % peak "
               "are fusedrnn's, against NumPy's GEMM at the same thread count.")
    return "\n".join(out)


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


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _sanitize(o):
    if isinstance(o, dict):
        return OrderedDict((k, _sanitize(v)) for k, v in o.items())
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def _parse_threads(s: str) -> List[int]:
    out = []
    for tok in s.split(","):
        tok = tok.strip().lower()
        if not tok:
            continue
        n = available_cores() if tok in ("all", "max") else int(tok)
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {tok}")
        if n not in out:
            out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("--threads needs at least one count, e.g. 1,2")
    return out


def _parse_impls(s: str) -> List[str]:
    got = [t.strip().lower() for t in s.split(",") if t.strip()]
    bad = [t for t in got if t not in IMPLS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown implementation(s) {bad}; choose from "
                                         f"{', '.join(IMPLS)}")
    return [i for i in IMPLS if i in got]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusedrnn.bench",
        description="Compare fusedrnn's LSTM/GRU with NumPy, PyTorch and ONNX Runtime on the "
                    "CPU: same weights, outputs verified, threads pinned, median times.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small subset, under 30 s")
    g.add_argument("--full", action="store_true",
                   help=f"the whole matrix of issue 4 ({len(FULL_CONFIGS)} configs; long)")
    p.add_argument("--threads", type=_parse_threads, default=None,
                   help="comma-separated thread counts, 'all' = usable cores "
                        f"(default: 1,all = 1,{available_cores()})")
    p.add_argument("--impls", type=_parse_impls, default=list(IMPLS),
                   help=f"comma-separated subset of {','.join(IMPLS)} (default: all)")
    p.add_argument("--filter", default=None, metavar="REGEX",
                   help="only configs whose name matches REGEX, e.g. 'lstm.*B16'")
    p.add_argument("--no-train", action="store_true", help="skip the training rows")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="timing budget per implementation and config (default by mode)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="on a shared machine: before each config wait up to SECONDS for other "
                        "processes to go idle, and time a config again (3 tries) when they "
                        "were busy meanwhile (default 0: no waiting; busy rows are flagged)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/results.json and DIR/speedup.png")
    p.add_argument("--list", action="store_true", help="list the configs and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
    mode = "quick" if args.quick else "full" if args.full else "default"
    configs = {"quick": QUICK_CONFIGS, "full": FULL_CONFIGS, "default": DEFAULT_CONFIGS}[mode]
    if args.no_train:
        configs = [c for c in configs if not c.train]
    if args.filter:
        rx = re.compile(args.filter)
        configs = [c for c in configs if rx.search(c.name)]
    threads = args.threads or _parse_threads("1,all")
    if args.list:
        for c in configs:
            print(f"{c.name}  ({flops(c) / 1e9:.2f} GFLOP)")
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
                  quiet=args.quiet, info=info, wait=args.wait_quiet)
    print(format_tables(results))
    print(f"\ntotal time {results['elapsed_s']:.0f} s")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        jpath = os.path.join(args.out, "results.json")
        with open(jpath, "w") as f:
            json.dump(_sanitize(results), f, indent=1, default=_json_default)
        print(f"wrote {jpath}")
        png = plot_speedups(results, os.path.join(args.out, "speedup.png"))
        if png:
            print(f"wrote {png}")
        else:
            print("no chart: needs matplotlib and fusedrnn timed against PyTorch or "
                  "ONNX Runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
