"""The NumPy reference (tests/reference.py) against torch.nn and ONNX Runtime.

These run without fusedrnn: they establish that the reference is a trustworthy oracle (including
GRU reset_after=False, which torch lacks, checked here against ONNX Runtime), and that the
comparison is sensitive enough to catch a wrong gate order, direction or GRU form.
"""
import warnings

import numpy as np
import pytest

import reference
from conftest import (GRID_ARGS, assert_tree_close, flatten, layer_cfg, layer_data, layer_grid,
                      make_input, make_state, ref_layer, run_torch, torch_model)

torch = pytest.importorskip("torch")


def run_both(rng, kind, dtype, I, H, T, B, *, layout="seq_first", hx=False, seed=0, **kw):
    """(reference result, torch result) for the same weights / input / state."""
    cfg = layer_cfg(I, H, layout=layout, **kw)
    tm = torch_model(kind, dtype, seed, **cfg)
    x, h = layer_data(rng, kind, cfg, T, B, layout=layout, hx=hx, dtype=dtype)
    return ref_layer(kind, tm.state_dict(), x, h, cfg), run_torch(tm, x, h)


@pytest.mark.parametrize(GRID_ARGS, list(layer_grid()))
def test_layer_matches_torch_float64(rng, kind, num_layers, bidirectional, layout, bias,
                                     proj_size, hx):
    ref, out = run_both(rng, kind, np.float64, I=5, H=6, T=4, B=3, num_layers=num_layers,
                        bidirectional=bidirectional, layout=layout, bias=bias,
                        proj_size=proj_size, hx=hx)
    assert_tree_close(ref, out, np.float64)


# Large and degenerate sizes in float32: also validates that the float32 tolerance in conftest
# is achievable by an honest float32 implementation (torch) at the sizes test_parity uses.
SIZES = [  # I, H, T, B
    (1, 1, 1, 1),
    (1, 300, 7, 1),
    (300, 1, 5, 2),
    (300, 256, 12, 4),
    (64, 128, 40, 8),
    (17, 33, 9, 65),
]


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("I, H, T, B", SIZES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_sizes_match_torch(rng, kind, I, H, T, B, dtype):
    ref, out = run_both(rng, kind, dtype, I, H, T, B, num_layers=2, bidirectional=True, hx=True)
    assert_tree_close(out, ref, dtype)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_projection_large_matches_torch(rng, dtype):
    ref, out = run_both(rng, "lstm", dtype, 200, 300, 10, 3, num_layers=2, bidirectional=True,
                        proj_size=150, hx=True)
    assert_tree_close(out, ref, dtype)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("bias", (True, False))
@pytest.mark.parametrize("unbatched", (False, True))
@pytest.mark.parametrize("hx", (False, True))
def test_cell_matches_torch(rng, kind, bias, unbatched, hx):
    I, H, B = 5, 7, 3
    tm = torch_model(kind + "cell", np.float64, input_size=I, hidden_size=H, bias=bias)
    x = rng.standard_normal((I,) if unbatched else (B, I))
    lead = () if unbatched else (B,)
    h = None
    if hx:
        h = rng.standard_normal(lead + (H,))
        if kind == "lstm":
            h = (h, rng.standard_normal(lead + (H,)))
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert_tree_close(reference.cell(kind, sd, x, h), run_torch(tm, x, h), np.float64)


# ---------------------------------------------------------------------------------------------
# The comparison can fail: wrong gate order / direction / GRU form are all detected.


def permute_gate_blocks(sd, perm):
    """Reorder the G row-blocks of every weight_ih/weight_hh/bias tensor by `perm`."""
    out = {}
    for k, v in sd.items():
        if k.startswith(("weight_ih", "weight_hh", "bias_")):
            out[k] = np.concatenate([np.split(v, len(perm), axis=0)[p] for p in perm], axis=0)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("kind, perm", [
    ("lstm", (1, 0, 2, 3)), ("lstm", (0, 1, 3, 2)), ("lstm", (0, 2, 1, 3)),
    ("lstm", (3, 1, 2, 0)), ("gru", (1, 0, 2)), ("gru", (0, 2, 1)), ("gru", (2, 1, 0)),
])
def test_wrong_gate_order_is_detected(rng, kind, perm):
    I, H, T, B = 4, 5, 6, 3
    tm = torch_model(kind, np.float64, input_size=I, hidden_size=H)
    x = make_input(rng, T, B, I)
    h = make_state(rng, kind, 1, 1, B, H)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    expected = flatten(run_torch(tm, x, h))
    good = flatten(reference.rnn(kind, sd, x, h))
    bad = flatten(reference.rnn(kind, permute_gate_blocks(sd, perm), x, h))
    np.testing.assert_allclose(good[0], expected[0], rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(bad[0] - expected[0])) > 1e-3


def test_swapped_directions_are_detected(rng):
    I, H, T, B = 4, 5, 6, 3
    tm = torch_model("gru", np.float64, input_size=I, hidden_size=H, bidirectional=True)
    x = make_input(rng, T, B, I)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    swapped = {k: sd[k + "_reverse"] if not k.endswith("_reverse") else sd[k[:-8]] for k in sd}
    expected, _ = run_torch(tm, x)
    good, _ = reference.rnn("gru", sd, x, bidirectional=True)
    bad, _ = reference.rnn("gru", swapped, x, bidirectional=True)
    np.testing.assert_allclose(good, expected, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(bad - expected)) > 1e-3


def test_gru_forms_differ(rng):
    I, H, T, B = 4, 5, 6, 3
    tm = torch_model("gru", np.float64, input_size=I, hidden_size=H)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    x = make_input(rng, T, B, I)
    h = make_state(rng, "gru", 1, 1, B, H)
    after, _ = reference.rnn("gru", sd, x, h, reset_after=True)
    before, _ = reference.rnn("gru", sd, x, h, reset_after=False)
    assert np.max(np.abs(after - before)) > 1e-3


# ---------------------------------------------------------------------------------------------
# GRU, both forms, against ONNX Runtime (linear_before_reset = 1 / 0).


def onnx_gru(sd, x, h0, *, reset_after, bidirectional):
    """Run ONNX Runtime's GRU on torch-named weights (r, z, n) -> ONNX order (z, r, h)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    D = 2 if bidirectional else 1
    T, B, I = x.shape
    H = sd["weight_hh_l0"].shape[1]
    zrn = [1, 0, 2]
    sfx = ["_l0", "_l0_reverse"][:D]

    def reorder(a):
        return np.concatenate([np.split(a, 3, axis=0)[g] for g in zrn], axis=0)

    W = np.stack([reorder(sd["weight_ih" + s]) for s in sfx]).astype(np.float32)
    R = np.stack([reorder(sd["weight_hh" + s]) for s in sfx]).astype(np.float32)
    Bias = np.stack([np.concatenate([reorder(sd["bias_ih" + s]), reorder(sd["bias_hh" + s])])
                     for s in sfx]).astype(np.float32)
    node = helper.make_node(
        "GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"], hidden_size=H,
        linear_before_reset=int(reset_after),
        direction="bidirectional" if bidirectional else "forward")
    graph = helper.make_graph(
        [node], "gru",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I]),
         helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [D, B, H])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
         numpy_helper.from_array(Bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Y_h = sess.run(None, {"X": x.astype(np.float32), "initial_h": h0.astype(np.float32)})
    return Y.transpose(0, 2, 1, 3).reshape(T, B, D * H), Y_h  # (T, D, B, H) -> (T, B, D*H)


@pytest.mark.parametrize("reset_after", (True, False))
@pytest.mark.parametrize("bidirectional", (False, True))
def test_gru_both_forms_match_onnxruntime(rng, reset_after, bidirectional):
    I, H, T, B = 6, 9, 7, 4
    D = 2 if bidirectional else 1
    # float32-representable weights/inputs, so the float64 reference sees ORT's exact inputs.
    tm = torch_model("gru", np.float32, input_size=I, hidden_size=H, bidirectional=bidirectional)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    x = make_input(rng, T, B, I, dtype=np.float32)
    h0 = make_state(rng, "gru", 1, D, B, H, dtype=np.float32)
    ref = reference.rnn("gru", sd, x, h0, bidirectional=bidirectional, reset_after=reset_after)
    ort_out = onnx_gru(sd, x, h0, reset_after=reset_after, bidirectional=bidirectional)
    assert_tree_close(tuple(ort_out), ref, np.float32)
    other = reference.rnn("gru", sd, x, h0, bidirectional=bidirectional,
                          reset_after=not reset_after)
    assert np.max(np.abs(other[0] - ort_out[0])) > 1e-3  # the two forms are told apart


# ---------------------------------------------------------------------------------------------
# reference internals


def test_sigmoid_is_stable_and_exact():
    from scipy.special import expit
    x = np.concatenate([np.linspace(-50, 50, 2001), [-1e300, -1e4, -800.0, 800.0, 1e4, 1e300]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = reference.sigmoid(x)
    np.testing.assert_allclose(y, expit(x), rtol=1e-15, atol=0)
    assert y[-3] == 1.0 and y[-6] == 0.0


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_reference_large_inputs_no_warning(rng, kind):
    tm = torch_model(kind, np.float64, input_size=3, hidden_size=4, bidirectional=True)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    x = make_input(rng, 5, 2, 3) * 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = reference.rnn(kind, sd, x, bidirectional=True)
    assert all(np.isfinite(a).all() for a in flatten(ref))
    assert_tree_close(ref, run_torch(tm, x), np.float64)
