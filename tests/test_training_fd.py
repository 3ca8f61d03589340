"""Finite-difference checks of backward in float64 on tiny sizes.

The reference is fusedrnn's own forward pass differentiated numerically (central differences,
every entry of every parameter, of x and of hx), so it covers what torch cannot: the original
GRU form (reset_after=False) and dropout (the masks are reproduced by re-running forward_train
with the same seeded rng for each evaluation).  The forward pass itself is checked against torch
and a NumPy reference by the forward tests, so a correct derivative of it is a correct gradient.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _train_utils import (fd_check, import_fusedrnn, input_shape, random_state,  # noqa: E402
                          state_shapes, weighted_sum)

fusedrnn = import_fusedrnn()

# every kernel test runs once per SIMD path the CPU has (conftest.isa_path)
pytestmark = pytest.mark.usefixtures("isa_path")

T, B, I, H = 3, 2, 3, 4

LAYER_CASES = {
    # id: (kind, constructor kwargs besides batch_first, layout, hx given)
    "lstm-L2-bi-proj": ("lstm", dict(num_layers=2, bidirectional=True, proj_size=2), "seq_first",
                        True),
    "lstm-nobias-batch_first-nohx": ("lstm", dict(bias=False), "batch_first", False),
    "lstm-proj-unbatched": ("lstm", dict(proj_size=3), "unbatched", True),
    "gru-L2-bi": ("gru", dict(num_layers=2, bidirectional=True), "seq_first", True),
    "gru-orig-L2-bi": ("gru", dict(num_layers=2, bidirectional=True, reset_after=False),
                       "seq_first", True),
    "gru-orig-nobias-unbatched": ("gru", dict(bias=False, reset_after=False), "unbatched", True),
    "gru-orig-batch_first-nohx": ("gru", dict(reset_after=False), "batch_first", False),
    # dropout between layers: forward_train(rng=seed) replays the same masks
    "lstm-L3-dropout": ("lstm", dict(num_layers=3, dropout=0.4), "seq_first", True),
    "lstm-L2-bi-proj-dropout": ("lstm", dict(num_layers=2, bidirectional=True, proj_size=2,
                                             dropout=0.5), "batch_first", True),
    "gru-L2-bi-dropout": ("gru", dict(num_layers=2, bidirectional=True, dropout=0.3),
                          "seq_first", True),
    "gru-orig-L3-dropout": ("gru", dict(num_layers=3, reset_after=False, dropout=0.4),
                            "unbatched", True),
}


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_backward_matches_finite_differences(case):
    kind, cfg, layout, hx_given = LAYER_CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    model = cls(I, H, dtype=np.float64, seed=int(rng.integers(2**31)),
                batch_first=layout == "batch_first", **cfg)
    P = cfg.get("proj_size") or H
    shapes = state_shapes(kind, model.num_layers, model.num_directions, B, H, P,
                          layout == "unbatched")
    x = rng.standard_normal(input_shape(T, B, I, layout))
    hx = random_state(rng, shapes, np.float64) if hx_given else None
    seed = 7           # dropout masks: the same for every evaluation

    out, h_n, tape = model.forward_train(x, hx, rng=seed)
    cot = [rng.standard_normal(a.shape) for a in [out] + as_list(h_n)]
    d_h_n = tuple(cot[1:]) if kind == "lstm" else cot[1]
    dx, dhx, grads = model.backward(tape, cot[0], d_h_n)

    params = model.state_dict()      # writable copies, perturbed by fd_check and loaded

    def loss():
        model.load_state_dict(params)   # also checks that a weight change reaches the kernels
        o, s, _ = model.forward_train(x, hx, rng=seed)
        return weighted_sum([o] + as_list(s), cot)

    if model.dropout > 0:      # the masks do something (else the dropout cases prove nothing)
        assert not np.allclose(out, model(x, hx)[0])
    arrays = dict(params)
    analytic = dict(grads)
    arrays["x"], analytic["x"] = x, dx
    if hx_given:
        for k, (s, d) in enumerate(zip(as_list(hx), as_list(dhx))):
            arrays[f"hx[{k}]"], analytic[f"hx[{k}]"] = s, d
    else:
        assert all(np.shape(d) == s for d, s in zip(as_list(dhx), shapes))
    fd_check(loss, analytic, arrays, case)


CELL_CASES = {
    "lstmcell": (fusedrnn.LSTMCell, dict(), True),
    "lstmcell-nobias-unbatched": (fusedrnn.LSTMCell, dict(bias=False), False),
    "grucell": (fusedrnn.GRUCell, dict(), True),
    "grucell-orig": (fusedrnn.GRUCell, dict(reset_after=False), True),
    "grucell-orig-nobias-unbatched": (fusedrnn.GRUCell, dict(reset_after=False, bias=False),
                                      False),
}


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cell_backward_matches_finite_differences(case):
    cls, cfg, batched = CELL_CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    cell = cls(I, H, dtype=np.float64, seed=int(rng.integers(2**31)), **cfg)
    lstm = cls is fusedrnn.LSTMCell
    x = rng.standard_normal((B, I) if batched else (I,))
    sshape = (B, H) if batched else (H,)
    hx = random_state(rng, [sshape] * (2 if lstm else 1), np.float64)

    state, tape = cell.forward_train(x, hx)
    cot = [rng.standard_normal(sshape) for _ in as_list(state)]
    dx, dhx, grads = cell.backward(tape, *cot)

    params = cell.state_dict()

    def loss():
        cell.load_state_dict(params)
        return weighted_sum(as_list(cell(x, hx)), cot)

    arrays = dict(params)
    analytic = dict(grads)
    arrays["x"], analytic["x"] = x, dx
    for k, (s, d) in enumerate(zip(as_list(hx), as_list(dhx))):
        arrays[f"hx[{k}]"], analytic[f"hx[{k}]"] = s, d
    fd_check(loss, analytic, arrays, case)
