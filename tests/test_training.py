"""Training API (forward_train / backward) against torch autograd, plus dropout, truncated BPTT
and the tape's contract.  Finite-difference checks (GRU reset_after=False, dropout masks) are in
test_training_fd.py.

Loss used throughout: L = sum(out * go) + sum(h_n * gh) [+ sum(c_n * gc)] with random go, gh,
gc; fusedrnn's backward gets (go, gh[, gc]) and must return dL/dx, dL/dhx and dL/dparams equal
to torch's autograd on a torch module with the same state_dict.
"""
import itertools
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _train_utils import (TORCH_PROJ_WARNING, assert_grad_close, assert_grads_close,  # noqa: E402
                          assert_tree_close, expected_tape_nbytes, import_fusedrnn,
                          input_shape, random_state, state_shapes, torch_grads, torch_twin,
                          zeros_state)

fusedrnn = import_fusedrnn()

# every kernel test runs once per SIMD path the CPU has (conftest.isa_path)
pytestmark = [pytest.mark.filterwarnings(TORCH_PROJ_WARNING), pytest.mark.usefixtures("isa_path")]

DTYPES = (np.float32, np.float64)
LAYOUTS = ("seq_first", "batch_first", "unbatched")
# exact-agreement tolerance for two fusedrnn paths that do the same arithmetic
SAME_TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}


def as_tuple(state):
    """() for None, the tuple itself for LSTM states, (h,) for a single array."""
    if state is None:
        return ()
    return state if isinstance(state, tuple) else (state,)


def make_model(kind, dtype, I, H, *, num_layers=1, bidirectional=False, layout="seq_first",
               bias=True, proj_size=0, dropout=0.0, reset_after=True, seed=0):
    if kind == "lstm":
        return fusedrnn.LSTM(I, H, num_layers, bias, layout == "batch_first", dropout,
                             bidirectional, proj_size, dtype=dtype, seed=seed)
    return fusedrnn.GRU(I, H, num_layers, bias, layout == "batch_first", dropout,
                        bidirectional, reset_after=reset_after, dtype=dtype, seed=seed)


def model_state_shapes(model, kind, B, layout):
    P = getattr(model, "proj_size", 0) or model.hidden_size
    return state_shapes(kind, model.num_layers, model.num_directions, B, model.hidden_size, P,
                        layout == "unbatched")


def cotangents(rng, kind, out, h_n, mode, dtype):
    """(go, d_h_n) for fusedrnn and the flat list [go, gh(, gc)] for torch.

    mode: "all"; "state" (d_out=None); "out" (d_h_n=None); LSTM only: "h" (d_h_n=(gh, None)),
    "c" (d_out=None, d_h_n=(None, gc))."""
    rand = lambda a: rng.standard_normal(np.shape(a)).astype(dtype)  # noqa: E731
    go = None if mode in ("state", "c") else rand(out)
    if kind == "gru":
        gh = None if mode == "out" else rand(h_n)
        return go, gh, [go, gh]
    gh = None if mode in ("out", "c") else rand(h_n[0])
    gc = None if mode in ("out", "h") else rand(h_n[1])
    d_h_n = None if mode == "out" else (gh, gc)
    return go, d_h_n, [go, gh, gc]


def check_against_torch(rng, kind, dtype, T, B, I, H, *, mode="all", hx_given=True, **cfg):
    """Run forward_train/backward and torch autograd on the same weights and data; compare
    outputs, dx, dhx and every parameter gradient."""
    layout = cfg.get("layout", "seq_first")
    model = make_model(kind, dtype, I, H, seed=int(rng.integers(2**31)), **cfg)
    shapes = model_state_shapes(model, kind, B, layout)
    x = rng.standard_normal(input_shape(T, B, I, layout)).astype(dtype)
    hx = random_state(rng, shapes, dtype) if hx_given else None
    inputs_before = [np.copy(a) for a in (x, *as_tuple(hx))]

    out, h_n, tape = model.forward_train(x, hx)
    go, d_h_n, flat_cot = cotangents(rng, kind, out, h_n, mode, dtype)
    dx, dhx, grads = model.backward(tape, go, d_h_n)

    # forward_train returns what inference returns
    ref_out, ref_h_n = model(x, hx)
    tol = SAME_TOL[np.dtype(dtype)]
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol, err_msg="forward_train out")
    for a, e in zip(as_tuple(h_n), as_tuple(ref_h_n)):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol, err_msg="forward_train h_n")
    # backward leaves the caller's arrays alone
    for before, after in zip(inputs_before, [x, *as_tuple(hx)]):
        np.testing.assert_array_equal(after, before, err_msg="input modified by training")

    tm = torch_twin(model, kind)
    t_hx = hx if hx_given else zeros_state(shapes, dtype)
    t_outs, t_dx, t_dhx, t_grads = torch_grads(tm, x, t_hx, flat_cot)

    assert_grad_close(out, t_outs[0], dtype, "out")
    assert_tree_close(h_n, tuple(t_outs[1:]) if kind == "lstm" else t_outs[1], dtype, "h_n")
    assert_grad_close(dx, t_dx, dtype, "dx")
    assert_tree_close(dhx, t_dhx, dtype, "dhx")
    assert list(grads) == list(model.state_dict()), "grads keys != state_dict keys"
    for name, g in grads.items():
        assert g.dtype == np.dtype(dtype), f"grads[{name!r}] dtype {g.dtype}"
    assert_grads_close(grads, t_grads, dtype)


def layer_grid():
    for kind, dtype, L, bi, layout, bias, hx in itertools.product(
            ("lstm", "gru"), DTYPES, (1, 2, 3), (False, True), LAYOUTS, (True, False),
            (True, False)):
        for proj in ((0, 3) if kind == "lstm" else (0,)):
            yield pytest.param(
                kind, dtype, L, bi, layout, bias, proj, hx,
                id=f"{kind}-{np.dtype(dtype).name}-L{L}-{'bi' if bi else 'uni'}-{layout}-"
                   f"{'bias' if bias else 'nobias'}-P{proj}-{'hx' if hx else 'nohx'}")


@pytest.mark.parametrize("kind, dtype, num_layers, bidirectional, layout, bias, proj_size, hx",
                         list(layer_grid()))
def test_layer_grads_match_torch(rng_t, kind, dtype, num_layers, bidirectional, layout, bias,
                                 proj_size, hx):
    check_against_torch(rng_t, kind, dtype, T=5, B=3, I=4, H=6, hx_given=hx,
                        num_layers=num_layers, bidirectional=bidirectional, layout=layout,
                        bias=bias, proj_size=proj_size)


# a block budget of 1536 bytes makes backward's weight-gradient blocks 2 steps long (float32)
# or 1 step (float64) at I = 4, H = 6, B = 3
SMALL_GRAD_BLOCKS = 1536


@pytest.mark.parametrize("kind, proj_size", [("lstm", 0), ("lstm", 3), ("gru", 0)])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("bidirectional", (False, True))
def test_weight_gradients_in_blocks_of_steps_match_torch(rng_t, monkeypatch, kind, proj_size,
                                                         dtype, bidirectional):
    """Backward sums the weight gradients over blocks of steps (a bounded workspace for the
    packed x and h_{t-1}); T = 7: the last block is shorter, in both directions and layers."""
    monkeypatch.setattr(fusedrnn._kernels, "GRAD_BLOCK_BYTES", SMALL_GRAD_BLOCKS)
    check_against_torch(rng_t, kind, dtype, T=7, B=3, I=4, H=6, num_layers=2,
                        bidirectional=bidirectional, proj_size=proj_size)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_weight_gradients_in_blocks_original_gru(rng_t, monkeypatch, dtype):
    """GRU reset_after=False (no torch twin; its one-block gradients are checked by finite
    differences in test_training_fd.py): blocks of steps give the one-block gradients."""
    model = make_model("gru", dtype, 4, 6, num_layers=2, bidirectional=True, reset_after=False)
    x = rng_t.standard_normal((7, 3, 4)).astype(dtype)
    out, h_n, tape = model.forward_train(x)
    go = rng_t.standard_normal(out.shape).astype(dtype)
    one = model.backward(tape, go)
    monkeypatch.setattr(fusedrnn._kernels, "GRAD_BLOCK_BYTES", SMALL_GRAD_BLOCKS)
    model = make_model("gru", dtype, 4, 6, num_layers=2, bidirectional=True, reset_after=False)
    _, _, tape = model.forward_train(x)
    blocks = model.backward(tape, go)
    tol = SAME_TOL[np.dtype(dtype)] * 10
    np.testing.assert_allclose(blocks[0], one[0], rtol=tol, atol=tol, err_msg="dx")
    for name in one[2]:
        np.testing.assert_allclose(blocks[2][name], one[2][name], rtol=tol, atol=tol,
                                   err_msg=name)


MODES = {"lstm": ("state", "out", "h", "c"), "gru": ("state", "out")}


@pytest.mark.parametrize("kind, mode", [(k, m) for k in ("lstm", "gru") for m in MODES[k]])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", ("seq_first", "unbatched"))
def test_partial_cotangents_match_torch(rng_t, kind, mode, dtype, layout):
    """d_out=None (only the final state is used), d_h_n=None, and (LSTM) one of d_h_n / d_c_n
    None: the missing ones are zeros."""
    check_against_torch(rng_t, kind, dtype, T=6, B=2, I=3, H=5, mode=mode, num_layers=2,
                        bidirectional=True, layout=layout,
                        proj_size=2 if kind == "lstm" else 0)


@pytest.mark.parametrize("kind, proj_size, dtype", [
    ("lstm", 0, np.float32), ("lstm", 0, np.float64), ("lstm", 16, np.float32),
    ("gru", 0, np.float32), ("gru", 0, np.float64)],
    ids=["lstm-float32", "lstm-float64", "lstm-proj-float32", "gru-float32", "gru-float64"])
def test_medium_size_grads_match_torch(rng_t, kind, proj_size, dtype):
    """T=20, B=8, H=64: long enough for float32 errors to accumulate over the sequence."""
    check_against_torch(rng_t, kind, dtype, T=20, B=8, I=16, H=64, num_layers=2,
                        bidirectional=True, layout="batch_first", proj_size=proj_size)


# --------------------------------------------------------------------------------------------
# cells

def cell_grid():
    for kind, dtype, batched, bias, hx in itertools.product(
            ("lstmcell", "grucell"), DTYPES, (True, False), (True, False), (True, False)):
        for mode in (("all", "h", "c") if kind == "lstmcell" else ("all",)):
            yield pytest.param(kind, dtype, batched, bias, hx, mode,
                               id=f"{kind}-{np.dtype(dtype).name}-"
                                  f"{'batched' if batched else 'unbatched'}-"
                                  f"{'bias' if bias else 'nobias'}-{'hx' if hx else 'nohx'}-"
                                  f"{mode}")


@pytest.mark.parametrize("kind, dtype, batched, bias, hx_given, mode", list(cell_grid()))
def test_cell_grads_match_torch(rng_t, kind, dtype, batched, bias, hx_given, mode):
    B, I, H = 4, 3, 5
    cls = fusedrnn.LSTMCell if kind == "lstmcell" else fusedrnn.GRUCell
    cell = cls(I, H, bias=bias, dtype=dtype, seed=int(rng_t.integers(2**31)))
    x = rng_t.standard_normal((B, I) if batched else (I,)).astype(dtype)
    sshape = (B, H) if batched else (H,)
    n_states = 2 if kind == "lstmcell" else 1
    hx = random_state(rng_t, [sshape] * n_states, dtype) if hx_given else None

    state, tape = cell.forward_train(x, hx)
    expected_state = cell(x, hx)
    tol = SAME_TOL[np.dtype(dtype)]
    for a, e in zip(as_tuple(state), as_tuple(expected_state)):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol, err_msg="forward_train state")

    rand = lambda: rng_t.standard_normal(sshape).astype(dtype)  # noqa: E731
    if kind == "lstmcell":
        d_h = None if mode == "c" else rand()
        d_c = None if mode == "h" else rand()
        dx, dhx, grads = cell.backward(tape, d_h, d_c)
        cot = [d_h, d_c]
    else:
        d_h = rand()
        dx, dhx, grads = cell.backward(tape, d_h)
        cot = [d_h]

    tm = torch_twin(cell, kind)
    t_hx = hx if hx_given else zeros_state([sshape] * n_states, dtype)
    t_outs, t_dx, t_dhx, t_grads = torch_grads(tm, x, t_hx, cot)
    assert_tree_close(state, tuple(t_outs) if n_states == 2 else t_outs[0], dtype, "state")
    assert_grad_close(dx, t_dx, dtype, "dx")
    assert_tree_close(dhx, t_dhx, dtype, "dhx")
    assert list(grads) == list(cell.state_dict())
    assert_grads_close(grads, t_grads, dtype)


# --------------------------------------------------------------------------------------------
# dropout

@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dropout_is_seeded_and_training_only(rng_t, kind, dtype):
    T, B, I, H = 7, 4, 3, 8
    model = make_model(kind, dtype, I, H, num_layers=3, bidirectional=True, dropout=0.5, seed=1)
    plain = make_model(kind, dtype, I, H, num_layers=3, bidirectional=True, seed=2)
    plain.load_state_dict(model.state_dict())
    x = rng_t.standard_normal((T, B, I)).astype(dtype)

    out_a, h_a, _ = model.forward_train(x, rng=123)
    out_b, h_b, _ = model.forward_train(x, rng=np.random.default_rng(123))
    np.testing.assert_array_equal(out_a, out_b, err_msg="same rng seed, different outputs")
    out_c, _, _ = model.forward_train(x, rng=124)
    assert np.max(np.abs(out_c - out_a)) > 1e-3, "another seed gave the same dropout masks"

    # inference never applies dropout: equal to the same weights with dropout=0
    inference = model(x)[0]
    np.testing.assert_array_equal(inference, model(x)[0])
    np.testing.assert_allclose(inference, plain(x)[0], rtol=SAME_TOL[np.dtype(dtype)], atol=0)
    assert np.max(np.abs(out_a - inference)) > 1e-3, "forward_train applied no dropout"

    # the model's own stream: seeded by the constructor's seed, advancing between calls
    twin = make_model(kind, dtype, I, H, num_layers=3, bidirectional=True, dropout=0.5, seed=1)
    first, second = model_train_outs(model, x, 2), model_train_outs(twin, x, 2)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b, err_msg="same constructor seed, different masks")
    assert np.max(np.abs(first[0] - first[1])) > 1e-3, "default masks repeat between calls"


def model_train_outs(model, x, n):
    return [model.forward_train(x)[0] for _ in range(n)]


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_layers, dropout", [(1, 0.5), (2, 0.0)])
def test_no_dropout_training_equals_inference(rng_t, kind, dtype, num_layers, dropout):
    """dropout=0, or a single layer (dropout only acts between layers): forward_train equals
    model(x) and its gradients equal torch's."""
    T, B, I, H = 6, 3, 4, 5
    model = make_model(kind, dtype, I, H, num_layers=num_layers, dropout=dropout, seed=3)
    x = rng_t.standard_normal((T, B, I)).astype(dtype)
    out, h_n, tape = model.forward_train(x, rng=5)
    ref_out, ref_h_n = model(x)
    tol = SAME_TOL[np.dtype(dtype)]
    np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
    for a, e in zip(as_tuple(h_n), as_tuple(ref_h_n)):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol)
    go = rng_t.standard_normal(out.shape).astype(dtype)
    dx, _, grads = model.backward(tape, go)
    shapes = model_state_shapes(model, kind, B, "seq_first")
    t_outs, t_dx, _, t_grads = torch_grads(torch_twin(model, kind), x,
                                           zeros_state(shapes, dtype), [go])
    assert_grad_close(dx, t_dx, dtype, "dx")
    assert_grads_close(grads, t_grads, dtype)


# --------------------------------------------------------------------------------------------
# truncated BPTT

@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("num_layers, layout", [(1, "seq_first"), (2, "batch_first"),
                                                (2, "unbatched")])
@pytest.mark.parametrize("splits", [(4,), (3, 7)], ids=["2chunks", "3chunks"])
def test_truncated_bptt_equals_whole_sequence(rng_t, kind, dtype, num_layers, layout, splits):
    """Chunks run one after the other (h_n of a chunk is hx of the next), then backward from
    the last chunk to the first, feeding each chunk's dhx as d_h_n of the one before: dx is
    the concatenation, dhx and the summed parameter gradients are those of the whole run."""
    T, B, I, H = 10, 3, 4, 5
    model = make_model(kind, dtype, I, H, num_layers=num_layers, layout=layout,
                       proj_size=2 if kind == "lstm" else 0, seed=4)
    shapes = model_state_shapes(model, kind, B, layout)
    x = rng_t.standard_normal(input_shape(T, B, I, layout)).astype(dtype)
    hx = random_state(rng_t, shapes, dtype)
    time_axis = 1 if layout == "batch_first" else 0

    out, h_n, tape = model.forward_train(x, hx)
    go = rng_t.standard_normal(out.shape).astype(dtype)
    gh = random_state(rng_t, shapes, dtype, scale=1.0)
    dx, dhx, grads = model.backward(tape, go, gh)

    x_chunks = np.split(x, splits, axis=time_axis)
    go_chunks = np.split(go, splits, axis=time_axis)
    state, tapes, outs = hx, [], []
    for xc in x_chunks:
        oc, state, tc = model.forward_train(xc, state)
        outs.append(oc)
        tapes.append(tc)
    d_state, dx_chunks, grad_sum = gh, [], None
    for tc, goc in zip(reversed(tapes), reversed(go_chunks)):
        dxc, d_state, gc = model.backward(tc, goc, d_state)
        dx_chunks.insert(0, dxc)
        grad_sum = gc if grad_sum is None else {k: grad_sum[k] + gc[k] for k in gc}

    tol = SAME_TOL[np.dtype(dtype)]
    np.testing.assert_allclose(np.concatenate(outs, axis=time_axis), out, rtol=tol, atol=tol)
    assert_tree_close(state, h_n, dtype, "h_n of the last chunk")
    assert_grad_close(np.concatenate(dx_chunks, axis=time_axis), dx, dtype, "dx")
    assert_tree_close(d_state, dhx, dtype, "dhx")
    assert_grads_close(grad_sum, grads, dtype)


# --------------------------------------------------------------------------------------------
# the tape

def small_run(kind, dtype=np.float64, **cfg):
    model = make_model(kind, dtype, 3, 4, seed=5, **cfg)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, h_n, tape = model.forward_train(x)
    return model, x, out, h_n, tape


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_forward_train_out_is_read_only(kind, batch_first):
    """forward_train's `out` is (a view of) the last layer's output the tape keeps for
    backward: an in-place edit (``out -= y``) raises, as PyTorch's autograd refuses one of a
    saved output (it silently changed the gradients); forward's out stays the caller's."""
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    m = cls(4, 6, batch_first=batch_first, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    y = rng.standard_normal((5, 3, 6)).astype(np.float32)
    out, _, tape = m.forward_train(x)
    with pytest.raises(ValueError, match="read-only"):
        out -= y
    dx, _, grads = m.backward(tape, out - y)
    out2, _, tape2 = m.forward_train(x)
    dx2, _, grads2 = m.backward(tape2, np.array(out2) - y)
    np.testing.assert_array_equal(dx, dx2)
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads2[k], err_msg=k)
    inference, _ = m(x)
    inference += 1                       # forward's out: the caller's own array


class _Holder:
    """An array-like whose __array__ hands out its own buffer (as xarray's .values does)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


@pytest.mark.parametrize("form", ["ndarray", "view", "array-like", "tensor"])
def test_tape_keeps_no_caller_memory(form):
    """The caller's input edited in place between forward_train and backward: the gradients
    are those of the input as it was (the tape holds a copy whenever x could share memory
    with it; an array-like's own buffer was kept)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    d = np.ones((4, 2, 5), np.float32)

    def grads(edit):
        m = fusedrnn.GRU(3, 5, seed=0)
        buf = x.copy()
        if form == "tensor":
            torch = pytest.importorskip("torch")
            inp = torch.from_numpy(buf)
        else:
            inp = {"ndarray": buf, "view": buf[:, :], "array-like": _Holder(buf)}[form]
        out, _, tape = m.forward_train(inp)
        if edit:
            buf[...] = 0
        return m.backward(tape, d)

    want, got = grads(False), grads(True)
    np.testing.assert_array_equal(got[0], want[0])
    for k in want[2]:
        np.testing.assert_array_equal(got[2][k], want[2][k], err_msg=k)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_tape_is_single_use(kind):
    model, x, out, h_n, tape = small_run(kind)
    go = np.ones_like(out)
    model.backward(tape, go)
    with pytest.raises(ValueError, match="tape"):
        model.backward(tape, go)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_tape_of_another_model_is_refused(kind):
    model, x, out, h_n, tape = small_run(kind)
    other, *_ = small_run(kind)                   # same configuration and weights
    with pytest.raises(TypeError, match="tape"):
        other.backward(tape, np.ones_like(out))
    with pytest.raises(TypeError, match="tape"):
        model.backward(object(), np.ones_like(out))
    cell = fusedrnn.LSTMCell(3, 4) if kind == "lstm" else fusedrnn.GRUCell(3, 4)
    with pytest.raises(TypeError, match="tape"):
        cell.backward(tape, np.ones((2, 4)))
    model.backward(tape, np.ones_like(out))       # the refused calls did not consume it


BAD_COTANGENTS = ("d_out_shape", "d_out_layout", "d_h_n_shape", "d_h_n_container", "d_out_type")


@pytest.mark.parametrize("kind, case", [("lstm", c) for c in BAD_COTANGENTS + ("d_c_n_shape",)]
                         + [("gru", c) for c in BAD_COTANGENTS])
def test_bad_cotangents_are_refused(kind, case):
    model, x, out, h_n, tape = small_run(kind, num_layers=2)
    go = np.ones_like(out)
    hs = h_n if kind == "lstm" else (h_n,)
    good_dh = tuple(np.ones_like(h) for h in hs)
    good_dh = good_dh if kind == "lstm" else good_dh[0]
    exc, name = {
        "d_out_shape": (ValueError, "d_out"),
        "d_out_layout": (ValueError, "d_out"),
        "d_h_n_shape": (ValueError, "d_h_n"),
        "d_c_n_shape": (ValueError, "d_c_n"),
        "d_h_n_container": (TypeError, "d_h_n"),
        "d_out_type": (TypeError, "d_out"),
    }[case]
    args = {"d_out": go, "d_h_n": good_dh}
    if case == "d_out_shape":
        args["d_out"] = np.ones(out.shape[:-1] + (out.shape[-1] + 1,))
    elif case == "d_out_layout":
        args["d_out"] = np.ones((out.shape[1], out.shape[0], out.shape[2]))   # batch-first
    elif case == "d_h_n_shape":
        bad = np.ones(hs[0].shape[:-1] + (hs[0].shape[-1] + 1,))
        args["d_h_n"] = (bad, good_dh[1]) if kind == "lstm" else bad
    elif case == "d_c_n_shape":
        args["d_h_n"] = (good_dh[0], np.ones((1,) + hs[1].shape))
    elif case == "d_h_n_container":
        # a tuple to a GRU, a bare array to an LSTM
        args["d_h_n"] = (good_dh, good_dh) if kind == "gru" else good_dh[0]
    elif case == "d_out_type":
        args["d_out"] = np.full(out.shape, "a")
    with pytest.raises(exc, match=name):
        model.backward(tape, args["d_out"], args["d_h_n"])
    # validation happens before anything runs: the tape is still good
    dx, _, _ = model.backward(tape, go, good_dh)
    assert dx.shape == x.shape


def test_cell_tape_checks():
    cell = fusedrnn.GRUCell(3, 4, dtype=np.float64, seed=0)
    h, tape = cell.forward_train(np.ones((2, 3)))
    with pytest.raises(ValueError, match="d_h"):
        cell.backward(tape, np.ones((2, 5)))
    with pytest.raises(TypeError, match="d_h"):
        cell.backward(tape, (np.ones((2, 4)),))
    cell.backward(tape, np.ones((2, 4)))
    with pytest.raises(ValueError, match="tape"):
        cell.backward(tape, np.ones((2, 4)))
    lstm_cell = fusedrnn.LSTMCell(3, 4, dtype=np.float64, seed=0)
    (h, c), tape = lstm_cell.forward_train(np.ones((2, 3)))
    with pytest.raises(ValueError, match="d_c"):
        lstm_cell.backward(tape, np.ones((2, 4)), np.ones((2, 3)))


@pytest.mark.parametrize("kind, cfg", [
    ("lstm", dict()), ("lstm", dict(num_layers=2, bidirectional=True, proj_size=2)),
    ("lstm", dict(num_layers=3, dropout=0.2)),
    ("gru", dict(num_layers=2, bidirectional=True)), ("gru", dict(reset_after=False)),
    ("gru", dict(num_layers=2, dropout=0.2, reset_after=False, bidirectional=True))],
    ids=["lstm", "lstm-L2-bi-proj", "lstm-L3-dropout", "gru-L2-bi", "gru-orig",
         "gru-orig-L2-bi-dropout"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("T, B", [(6, 3), (1, 2), (4, 4), (4, 3)])
def test_tape_nbytes_formula(kind, cfg, dtype, T, B):
    """tape.nbytes is the per-step formula of docs/training.md times T*B, nothing else.
    H = 4: T=1 makes h0/c0 (B, .) and W_hr (2, 4) have T*B rows, T*B = 16 = 4H and
    T*B = 12 = 3H give the LSTM / GRU weights T*B rows: none of them belongs to the tape."""
    model = make_model(kind, dtype, 3, 4, seed=0, **cfg)
    x = np.zeros((T, B, 3))
    _, _, tape = model.forward_train(x)
    assert tape.nbytes == expected_tape_nbytes(model, T, B, dropout_applied=True)


@pytest.fixture
def rng_t(request):
    """A numpy Generator seeded from the test id: fixed data per parametrisation."""
    import zlib
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_uses_the_options_of_the_recorded_run(kind, wrap):
    """batch_first and merge_mode may be reassigned between forward_train and backward: the
    gradients are still those of the run the tape recorded (as autograd's graph keeps the ops
    that ran), not of a computation with the new options (which never ran)."""
    rng = np.random.default_rng(0)
    T = B = 4                              # batch_first changes no shape: nothing else catches it
    x = rng.standard_normal((T, B, 3))
    d = rng.standard_normal((T, B, 5))

    def grads(mode=None, batch_first=None):
        cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
        m = cls(3, 5, bidirectional=not wrap, merge_mode="sum" if not wrap else "concat",
                dtype=np.float64, seed=0)
        run = fusedrnn.GoBackwards(m) if wrap else m
        _, _, tape = run.forward_train(x)
        if mode is not None:
            m.merge_mode = mode
        if batch_first is not None:
            m.batch_first = batch_first
        return run.backward(tape, d)

    want = grads()
    for mode, batch_first in [(None, True)] + ([] if wrap else [("ave", None), ("mul", None)]):
        got, what = grads(mode, batch_first), f"merge_mode {mode}, batch_first {batch_first}"
        assert_tree_close(got[:2], want[:2], np.float64, what)
        for name in want[2]:
            assert_grad_close(got[2][name], want[2][name], np.float64, f"{what}: {name}")


# forward_train's tape must not alias the caller's initial states: an in-place edit of h0/c0
# between forward_train and backward must not change the gradients (as test_training's
# test_tape_keeps_no_caller_memory checks for x).
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batched", [True, False])
def test_tape_keeps_no_caller_state_memory(kind, batched):
    rng = np.random.default_rng(0)
    T, B, I, H = 4, 2, 3, 5
    x = rng.standard_normal((T, B, I) if batched else (T, I)).astype(np.float32)
    sshape = (1, B, H) if batched else (1, H)
    h0 = rng.standard_normal(sshape).astype(np.float32)
    c0 = rng.standard_normal(sshape).astype(np.float32)
    d = np.ones((T, B, H) if batched else (T, H), np.float32)

    def run(edit):
        cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
        m = cls(I, H, seed=0)
        hb, cb = h0.copy(), c0.copy()
        hx = (hb, cb) if kind == "lstm" else hb
        _, _, tape = m.forward_train(x, hx)
        if edit:
            hb[...] = 7.0
            cb[...] = 7.0
        return m.backward(tape, d)

    want, got = run(False), run(True)
    np.testing.assert_array_equal(got[0], want[0], err_msg="dx")
    for a, b in zip(np.atleast_1d(got[1]) if kind == "gru" else got[1],
                    np.atleast_1d(want[1]) if kind == "gru" else want[1]):
        np.testing.assert_array_equal(a, b, err_msg="dhx")
    for k in want[2]:
        np.testing.assert_array_equal(got[2][k], want[2][k], err_msg=k)


# Dropout in forward_train is PyTorch's inverted dropout: each input of a layer above the first
# is either zeroed or scaled by 1 / (1 - p).  The tests elsewhere only check that the masks are
# seeded and change the output; here layer 1 of a GRU is made to read its input back out
# (z ~ 0, h_1 = tanh(a * input)), and the recovered input divided by layer 0's output (from a
# one-layer twin run by inference) must take exactly the values 0 and 1 / (1 - p).
@pytest.mark.parametrize("p", [0.25, 0.5])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_zeroes_or_scales_by_one_over_keep(p, bidirectional):
    T, B, I, H, a = 6, 4, 3, 5, 0.01
    D = 2 if bidirectional else 1
    model = fusedrnn.GRU(I, H, num_layers=2, dropout=p, bidirectional=bidirectional,
                         dtype=np.float64, seed=0)
    first = fusedrnn.GRU(I, H, bidirectional=bidirectional, dtype=np.float64, seed=1)
    sd = model.state_dict()
    for d in range(D):
        s0, s1 = "_l0" + ("_reverse" if d else ""), "_l1" + ("_reverse" if d else "")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(first, name + s0, sd[name + s0])
        w = np.zeros((3 * H, D * H))
        w[2 * H:, d * H:(d + 1) * H] = a * np.eye(H)      # n = tanh(a * this direction's input)
        b = np.zeros(3 * H)
        b[H:2 * H] = -100.0                                   # z = sigmoid(-100) ~ 0: h_t = n_t
        setattr(model, "weight_ih" + s1, w)
        setattr(model, "weight_hh" + s1, np.zeros((3 * H, H)))
        setattr(model, "bias_ih" + s1, b)
        setattr(model, "bias_hh" + s1, np.zeros(3 * H))
    x = np.random.default_rng(2).standard_normal((T, B, I))
    out0, _ = first(x)
    out, _, _ = model.forward_train(x, rng=3)
    layer1_input = np.arctanh(out) / a
    big = np.abs(out0) > 1e-2
    ratio = layer1_input[big] / out0[big]
    keep = 1.0 - p
    dropped = np.abs(ratio) < 1e-6
    kept = np.abs(ratio - 1.0 / keep) < 1e-6
    assert np.all(dropped | kept), f"ratios other than 0 and 1/keep: {np.unique(ratio.round(6))}"
    assert dropped.any() and kept.any()


# The dropout masks of forward_train come from a stream of the model's own, derived from the
# constructor's seed: a numpy Generator given as seed is used for the initial weights only, and
# training does not draw from it afterwards (nor does drawing from it change the masks).
@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_dropout_stream_is_the_models_own(cls):
    x = np.random.default_rng(1).standard_normal((5, 3, 4)).astype(np.float32)

    def make():
        gen = np.random.default_rng(0)
        model = getattr(fusedrnn, cls)(4, 6, num_layers=3, dropout=0.5, seed=gen)
        return gen, model

    gen, model = make()
    before = gen.bit_generator.state
    out_a = model.forward_train(x)[0]
    assert gen.bit_generator.state == before, "forward_train drew from the caller's Generator"

    gen2, twin = make()
    gen2.random(1000)                   # the caller uses its generator: the masks do not move
    np.testing.assert_array_equal(twin.forward_train(x)[0], out_a)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("H, threads", [(2, 1), (18, 2)])
def test_two_unit_range_odd_batch_gradients(forced_threads, isa_path, kind, H, threads):
    """Backward's passes pair rows as the forward ones (test_threads'
    test_two_unit_range_odd_batch): a 2-unit range with an odd batch, against torch autograd."""
    dtype, T, B = np.float64, 4, 3
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    model = cls(3, H, dtype=dtype, seed=9)
    rng = np.random.default_rng(H)
    x = rng.standard_normal((T, B, 3))
    hx = random_state(rng, state_shapes(kind, 1, 1, B, H, H, False), dtype)
    fusedrnn.set_num_threads(threads)
    out, h_n, tape = model.forward_train(x, hx)
    go = rng.standard_normal(out.shape)
    if kind == "lstm":
        gh, gc = rng.standard_normal(h_n[0].shape), rng.standard_normal(h_n[1].shape)
        dx, dhx, grads = model.backward(tape, go, (gh, gc))
        flat = [go, gh, gc]
    else:
        gh = rng.standard_normal(h_n.shape)
        dx, dhx, grads = model.backward(tape, go, gh)
        flat = [go, gh]
    t_outs, t_dx, t_dhx, t_grads = torch_grads(torch_twin(model, kind), x, hx, flat)
    assert_grad_close(out, t_outs[0], dtype, "out")
    assert_grad_close(dx, t_dx, dtype, "dx")
    assert_grads_close(grads, t_grads, dtype)
