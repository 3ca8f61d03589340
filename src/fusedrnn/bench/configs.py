"""What is measured: the benchmark configurations, the matrices of each mode, FLOP and byte counts.

Row kinds (``Config.kind``):
- ``forward``: inference of a whole layer stack (``fusedrnn.LSTM`` / ``GRU``), a sequence of T
  steps;
- ``train``: forward + backward of the same;
- ``cell``: one step of ``fusedrnn.LSTMCell`` / ``GRUCell`` (T = 1, one layer, one direction);
- ``stream``: one step of a stream (``fusedrnn.LSTM(H, H).stream(batch=1)`` fed (1, 1, H)
  chunks, its state carried between calls); PyTorch's peer is its cell, ONNX Runtime's a 1-step
  model;
- ``call``: the fixed cost of one layer call, ``fusedrnn.LSTM(16, 16)`` on x of shape (1, 1, 16);
- ``lengths``: inference of a padded batch of B sequences whose lengths are drawn uniform in
  [T/4, T] (``cases.draw_lengths``), ``model(x, lengths=lengths)``; PyTorch's peer is its packed
  path (``pack_padded_sequence`` + module + ``pad_packed_sequence``), ONNX Runtime's a graph fed
  ``sequence_lens``, and fusedrnn's own padded run (``model(x)``, every sequence run to T) is
  timed next to it.
``cell``, ``stream`` and ``call`` rows form the latency table (µs per call).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

KINDS = ("forward", "train", "cell", "stream", "call", "lengths")
LATENCY_KINDS = ("cell", "stream", "call")
ONE_STEP_KINDS = ("cell", "stream")     # one step of one layer-direction

# Rows of a packed weight are padded to a multiple of this (fusedrnn's packed GEMM layout).
PACK_ROWS = 32


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
    kind: str = "forward"          # one of KINDS

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ONE_STEP_KINDS and (self.seq, self.layers, self.bidirectional,
                                            self.proj_size) != (1, 1, False, 0):
            raise ValueError(f"a {self.kind} row is one step of one layer-direction without "
                             f"projection, got {self}")

    @property
    def train(self) -> bool:
        return self.kind == "train"

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
        first = {"forward": self.cell, "train": f"{self.cell} train",
                 "cell": f"{self.cell}cell step", "stream": f"{self.cell} stream step",
                 "call": f"{self.cell} call", "lengths": f"{self.cell} lengths"}[self.kind]
        parts = [first] + ([] if self.kind in ONE_STEP_KINDS else [f"T{self.seq}"])
        parts += [f"B{self.batch}", f"H{self.hidden}"]
        if self.input_size is not None and self.input_size != self.hidden:
            parts.append(f"I{self.input_size}")
        if self.proj_size:
            parts.append(f"P{self.proj_size}")
        if self.kind not in ONE_STEP_KINDS:
            parts.append(f"L{self.layers}")
            parts.append("bi" if self.bidirectional else "uni")
        if self.cell == "gru" and not self.reset_after:
            parts.append("reset-before")
        parts.append({"float32": "f32", "float64": "f64"}[self.dtype])
        return " ".join(parts)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = self.input
        d["train"] = self.train
        return d


def layer_input(cfg: Config, layer: int) -> int:
    """Input features of a layer: I for layer 0, D*P above."""
    return cfg.input if layer == 0 else cfg.directions * cfg.h_out


def flops(cfg: Config, lengths=None) -> int:
    """GEMM FLOPs of one call (forward; x3 for a training step). With ``lengths`` (one per
    sequence) only the valid steps count: sum(lengths) instead of T*B rows."""
    if lengths is not None:
        return flops(cfg) * int(np.sum(lengths)) // (cfg.seq * cfg.batch)
    T, B, G, H, H_out, D = cfg.seq, cfg.batch, cfg.gates, cfg.hidden, cfg.h_out, cfg.directions
    total = 0
    for k in range(cfg.layers):
        I_k = layer_input(cfg, k)
        per = 2 * T * B * G * H * (I_k + H_out)
        if cfg.proj_size:
            per += 2 * T * B * H * H_out
        total += D * per
    return 3 * total if cfg.train else total


def packed_elements(N: int, K: int) -> int:
    """Elements of fusedrnn's packed copy of an (N, K) weight: ceil(N/32)*32*K."""
    return -(-N // PACK_ROWS) * PACK_ROWS * K


def recurrent_bytes(cfg: Config) -> int:
    """Bytes of packed recurrent weights one layer-direction reads per step: LSTM W_hh (4H, P)
    (+ W_hr (P, H) with a projection), GRU W_hh (3H, H); P = H without projection."""
    H, P = cfg.hidden, cfg.h_out
    n = packed_elements(cfg.gates * H, P)
    if cfg.proj_size:
        n += packed_elements(P, H)
    return n * cfg.np_dtype.itemsize


def input_bytes(cfg: Config, layer: int) -> int:
    """Bytes of a layer-direction's packed input weights W_ih (G*H, I_k), I_k = I for layer 0,
    D*P above."""
    return packed_elements(cfg.gates * cfg.hidden, layer_input(cfg, layer)) * cfg.np_dtype.itemsize


def floor_sizes(cfg: Config) -> List[int]:
    """The buffer sizes whose read bandwidth the row's floor (measure._floor_ms) uses: the
    recurrent weights (a step), each layer's W_ih (the input projection), and for a one-step
    row both together (a call reads them one after the other)."""
    S = recurrent_bytes(cfg)
    if cfg.seq == 1:
        return [S + input_bytes(cfg, k) for k in range(cfg.layers)]
    return [S] + [input_bytes(cfg, k) for k in range(cfg.layers)]


def has_stream_bound(cfg: Config) -> bool:
    """Rows that get a "% of stream bound": batch-1 inference (reading the recurrent weights
    once per step is then the least work a step can do)."""
    return cfg.batch == 1 and cfg.kind not in ("train", "lengths")


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
                cfgs.append(Config(cell, B, H, kind="train"))
        cfgs.append(Config(cell, 16, 256, layers=2, bidirectional=True, kind="train"))
        cfgs.append(Config(cell, 16, 256, dtype="float64", kind="train"))
    return cfgs + LATENCY_CONFIGS + LENGTHS_CONFIGS


def cell_step(cell: str, hidden: int, kind: str = "cell") -> Config:
    """One LSTMCell / GRUCell step (kind "stream": one step of a layer's stream), batch 1,
    input = hidden, float32."""
    return Config(cell, 1, hidden, seq=1, kind=kind)


# Fixed cost of one call: the smallest useful layer, one step, one sequence.
CALL_CONFIG = Config("lstm", 1, 16, seq=1, kind="call")

# Latency table (issues 7 and 9): cell steps at H = I = 128 ... 1024, stream steps at 128 ... 512,
# and the fixed cost of one call.
LATENCY_CONFIGS: List[Config] = (
    [cell_step(cell, H) for cell in ("lstm", "gru") for H in (128, 256, 512, 1024)]
    + [cell_step(cell, H, "stream") for cell in ("lstm", "gru") for H in (128, 256, 512)]
    + [CALL_CONFIG])

# Variable lengths (issue 9): 64 sequences, lengths uniform in [T/4, T], T = 100, input = hidden.
LENGTHS_CONFIGS: List[Config] = (
    [Config(cell, 64, H, kind="lengths") for cell in ("lstm", "gru") for H in (256, 512)]
    + [Config("lstm", 64, 256, bidirectional=True, kind="lengths")])

FULL_CONFIGS: List[Config] = _full_matrix()

# Curated subset: latency (batch 1), mid-size, GEMM-heavy, stacked + bidirectional, float64,
# training, the latency table and the variable-lengths rows. Every entry is also in FULL_CONFIGS.
DEFAULT_CONFIGS: List[Config] = [
    Config("lstm", 1, 256), Config("gru", 1, 256),
    Config("lstm", 1, 1024), Config("gru", 1, 1024),
    Config("lstm", 16, 256), Config("gru", 16, 256),
    Config("lstm", 64, 512), Config("gru", 64, 512),
    Config("lstm", 256, 256), Config("gru", 256, 256),
    Config("lstm", 16, 128, layers=2, bidirectional=True),
    Config("gru", 16, 128, layers=2, bidirectional=True),
    Config("lstm", 16, 256, dtype="float64"), Config("gru", 16, 256, dtype="float64"),
    Config("lstm", 16, 256, kind="train"), Config("gru", 16, 256, kind="train"),
] + LATENCY_CONFIGS + LENGTHS_CONFIGS

QUICK_CONFIGS: List[Config] = [
    Config("lstm", 1, 128), Config("gru", 1, 128),
    Config("lstm", 16, 256), Config("gru", 16, 256),
    Config("lstm", 16, 128, layers=2, bidirectional=True),
    Config("lstm", 16, 128, dtype="float64"),
    Config("lstm", 16, 128, kind="train"), Config("gru", 16, 128, kind="train"),
    cell_step("lstm", 256), cell_step("gru", 256), CALL_CONFIG,
    Config("lstm", 64, 128, kind="lengths"),
]

# A smoke test of the whole report in seconds (tests/test_bench_report.py): every row kind, a
# stacked bidirectional batch-1 row for the stream bound, tiny sizes. Not part of FULL_CONFIGS.
TINY_CONFIGS: List[Config] = [
    Config("lstm", 1, 16, seq=4, layers=2, bidirectional=True),
    Config("gru", 2, 16, seq=4),
    Config("lstm", 2, 16, seq=3, kind="train"),
    cell_step("lstm", 32), cell_step("gru", 32), cell_step("lstm", 32, "stream"), CALL_CONFIG,
    Config("lstm", 6, 16, seq=8, bidirectional=True, kind="lengths"),
    Config("gru", 6, 16, seq=8, kind="lengths"),
]

MODE_CONFIGS = {"tiny": TINY_CONFIGS, "quick": QUICK_CONFIGS, "default": DEFAULT_CONFIGS,
                "full": FULL_CONFIGS}

# Time budget per implementation and configuration (seconds), min / max timed samples, pause
# between two timed blocks (seconds: until the worker threads of the library timed before have
# stopped spinning, see measure.py), timing rounds (each implementation's budget and samples
# split into that many interleaved blocks; `--rounds`), GEMM size.
MODES = {
    "tiny": dict(budget=0.01, min_reps=3, max_reps=5, pause=0.0, rounds=3, gemm_n=256,
                 gemm_reps=2),
    "quick": dict(budget=0.1, min_reps=3, max_reps=30, pause=0.05, rounds=3, gemm_n=1024,
                  gemm_reps=3),
    "default": dict(budget=0.2, min_reps=3, max_reps=50, pause=0.2, rounds=3, gemm_n=2048,
                    gemm_reps=5),
    "full": dict(budget=0.4, min_reps=3, max_reps=50, pause=0.2, rounds=3, gemm_n=2048,
                 gemm_reps=5),
}
