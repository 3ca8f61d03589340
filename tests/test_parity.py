"""fusedrnn against torch.nn (same weights) and against the NumPy reference."""
import warnings

import numpy as np
import pytest

import reference
from conftest import (DTYPES, GRID_ARGS, assert_close, assert_tree_close, flatten,
                      import_fusedrnn, import_torch, layer_cfg, layer_data, layer_grid,
                      make_pair, ref_layer, run_torch)

fusedrnn = import_fusedrnn()

# every kernel test runs once per SIMD path the CPU has (conftest.isa_path)
pytestmark = pytest.mark.usefixtures("isa_path")
torch = import_torch()

DTYPE_IDS = {np.float32: "f32", np.float64: "f64"}
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)


def check_result(res, kind, dtype, shapes):
    """Structure (out, (h_n, c_n)) / (out, h_n), numpy arrays of the model dtype, shapes."""
    if kind == "lstm":
        assert isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], tuple)
        assert len(res[1]) == 2
    else:
        assert isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], np.ndarray)
    leaves = flatten(res)
    for a in leaves:
        assert isinstance(a, np.ndarray), type(a)
        assert a.dtype == np.dtype(dtype), a.dtype
    assert [a.shape for a in leaves] == [tuple(s) for s in shapes]


def compare(kind, dtype, I, H, T, B, rng, *, layout="seq_first", hx=False, seed=0, **kw):
    """Build twins, run both and the reference; assert all agree. Returns fusedrnn's result."""
    cfg = layer_cfg(I, H, layout=layout, **kw)
    tm, fm = make_pair(kind, dtype, seed, **cfg)
    x, h = layer_data(rng, kind, cfg, T, B, layout=layout, hx=hx, dtype=dtype)
    res = fm(x, h)
    expected = run_torch(tm, x, h)
    check_result(res, kind, dtype, [a.shape for a in flatten(expected)])
    assert_tree_close(res, expected, dtype, f"{kind} vs torch")
    assert_tree_close(res, ref_layer(kind, fm.state_dict(), x, h, cfg), dtype,
                      f"{kind} vs reference")
    return res


# ---------------------------------------------------------------------------------------------
# layers


@dtypes
@pytest.mark.parametrize(GRID_ARGS, list(layer_grid()))
def test_layer_grid(rng, dtype, kind, num_layers, bidirectional, layout, bias, proj_size, hx):
    compare(kind, dtype, 5, 6, 4, 3, rng, num_layers=num_layers, bidirectional=bidirectional,
            layout=layout, bias=bias, proj_size=proj_size, hx=hx)


SIZES = [  # I, H, T, B, num_layers, bidirectional, proj_size (LSTM only)
    (1, 1, 1, 1, 1, False, 0),
    (1, 1, 3, 1, 2, True, 0),
    (2, 3, 1, 1, 3, True, 2),
    (1, 300, 6, 1, 1, False, 0),
    (300, 1, 5, 2, 2, True, 0),
    (300, 257, 10, 4, 2, True, 0),
    (7, 300, 4, 3, 1, True, 299),
    (64, 128, 40, 8, 1, False, 0),
    (33, 65, 7, 300, 1, False, 0),
    (16, 31, 300, 2, 1, True, 1),
    # more input features than the later layers have (2H): the layers share buffers sized for
    # the most, and a float64 workspace sized for I = 300 was short for the second layer's 128
    (300, 64, 20, 65, 2, True, 0),
]


@dtypes
@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("I, H, T, B, num_layers, bidirectional, proj_size", SIZES, ids=str)
def test_layer_sizes(rng, dtype, kind, I, H, T, B, num_layers, bidirectional, proj_size):
    compare(kind, dtype, I, H, T, B, rng, num_layers=num_layers, bidirectional=bidirectional,
            proj_size=proj_size if kind == "lstm" else 0, hx=True)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_dropout_is_never_applied(rng, kind):
    cfg = layer_cfg(4, 5, num_layers=3)
    tm, fm = make_pair(kind, np.float64, dropout=0.5, **cfg)
    x, _ = layer_data(rng, kind, cfg, 6, 3)
    first = fm(x)
    assert_tree_close(first, run_torch(tm, x), np.float64)  # torch in eval(): no dropout
    for _ in range(3):
        for a, b in zip(flatten(fm(x)), flatten(first)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("layout", ("seq_first", "batch_first", "unbatched"))
def test_hx_none_means_zeros_and_call_forms(rng, kind, layout):
    cfg = layer_cfg(3, 4, num_layers=2, bidirectional=True, layout=layout,
                    proj_size=2 if kind == "lstm" else 0)
    _, fm = make_pair(kind, np.float64, **cfg)
    x, h = layer_data(rng, kind, cfg, 5, 2, layout=layout, hx=True)
    zeros = tuple(np.zeros_like(a) for a in h) if kind == "lstm" else np.zeros_like(h)
    expected = fm(x, zeros)
    for res in (fm(x), fm(x, None), fm(x, hx=None)):
        assert_tree_close(res, expected, np.float64)
    assert_tree_close(fm(x, hx=h), fm(x, h), np.float64)
    # and a given state really is used
    assert np.max(np.abs(fm(x, h)[0] - expected[0])) > 1e-3


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_unbatched_equals_batch_of_one(rng, kind):
    cfg = layer_cfg(3, 4, num_layers=2, bidirectional=True)
    _, fm = make_pair(kind, np.float64, **cfg)
    x, h = layer_data(rng, kind, cfg, 5, 1, hx=True)
    batched = fm(x, h)
    squeeze = (lambda t: tuple(a[:, 0] for a in t)) if kind == "lstm" else (lambda a: a[:, 0])
    unbatched = fm(x[:, 0], squeeze(h))
    assert_close(unbatched[0], batched[0][:, 0], np.float64)
    for a, b in zip(flatten(unbatched[1]), flatten(batched[1])):
        assert_close(a, b[:, 0], np.float64)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_call_does_not_mutate_inputs_and_is_repeatable(rng, kind):
    cfg = layer_cfg(3, 4, num_layers=2, bidirectional=True)
    _, fm = make_pair(kind, np.float32, **cfg)
    x, h = layer_data(rng, kind, cfg, 5, 2, hx=True, dtype=np.float32)
    x_copy = x.copy()
    h_copy = tuple(a.copy() for a in flatten(h))
    first = flatten(fm(x, h))
    np.testing.assert_array_equal(x, x_copy)
    for a, b in zip(flatten(h), h_copy):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(flatten(fm(x, h)), first):
        np.testing.assert_array_equal(a, b)
    # each call returns fresh arrays: no view of the inputs or of an earlier call's outputs
    second = flatten(fm(x, h))
    for a in second:
        for b in first + [x] + list(flatten(h)):
            assert not np.shares_memory(a, b)


# ---------------------------------------------------------------------------------------------
# GRU reset_after=False (no torch twin): against the reference only


def load_random_weights(model, seed):
    """Replace the default init by uniform(-s, s), s = 2/sqrt(widest fan-in): larger than the
    default (so gates leave their linear range) yet well-conditioned for float32 at any size."""
    sd = model.state_dict()
    s = 2 / np.sqrt(max(v.shape[-1] for v in sd.values() if v.ndim == 2))
    r = np.random.default_rng(seed)
    model.load_state_dict({k: r.uniform(-s, s, v.shape) for k, v in sd.items()})
    return model


def gru_before_reset(dtype, seed=3, **cfg):
    """fusedrnn GRU(reset_after=False) with random weights loaded."""
    return load_random_weights(fusedrnn.GRU(reset_after=False, dtype=dtype, seed=seed, **cfg),
                               seed)


@dtypes
@pytest.mark.parametrize(GRID_ARGS, list(layer_grid(kinds=("gru",))))
def test_gru_reset_before_grid(rng, dtype, kind, num_layers, bidirectional, layout, bias,
                               proj_size, hx):
    cfg = layer_cfg(5, 6, num_layers=num_layers, bidirectional=bidirectional, layout=layout,
                    bias=bias)
    fm = gru_before_reset(dtype, **cfg)
    x, h = layer_data(rng, "gru", cfg, 4, 3, layout=layout, hx=hx, dtype=dtype)
    res = fm(x, h)
    sd = fm.state_dict()
    check_result(res, "gru", dtype, [a.shape for a in flatten(ref_layer("gru", sd, x, h, cfg))])
    assert_tree_close(res, ref_layer("gru", sd, x, h, cfg, reset_after=False), dtype)
    # the flag matters: the other form is far away
    assert np.max(np.abs(res[0] - ref_layer("gru", sd, x, h, cfg)[0])) > 1e-4


@dtypes
@pytest.mark.parametrize("I, H, T, B, num_layers, bidirectional",
                         [(1, 1, 1, 1, 1, False), (300, 256, 8, 4, 2, True),
                          (1, 300, 5, 2, 1, False), (40, 17, 60, 300, 1, True)])
def test_gru_reset_before_sizes(rng, dtype, I, H, T, B, num_layers, bidirectional):
    cfg = layer_cfg(I, H, num_layers=num_layers, bidirectional=bidirectional)
    fm = fusedrnn.GRU(reset_after=False, dtype=dtype, seed=1, **cfg)
    x, h = layer_data(rng, "gru", cfg, T, B, hx=True, dtype=dtype)
    assert_tree_close(fm(x, h), ref_layer("gru", fm.state_dict(), x, h, cfg, reset_after=False),
                      dtype)


# ---------------------------------------------------------------------------------------------
# cells


def cell_data(rng, kind, I, H, B, unbatched, hx, dtype):
    lead = () if unbatched else (B,)
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    h = None
    if hx:
        h = (0.5 * rng.standard_normal(lead + (H,))).astype(dtype)
        if kind == "lstm":
            h = (h, (0.5 * rng.standard_normal(lead + (H,))).astype(dtype))
    return x, h


def check_cell_result(res, kind, dtype, shape):
    leaves = flatten(res)
    if kind == "lstm":
        assert isinstance(res, tuple) and len(res) == 2
    else:
        assert isinstance(res, np.ndarray)
    for a in leaves:
        assert isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype)
        assert a.shape == shape


@dtypes
@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("bias", (True, False), ids=("bias", "nobias"))
@pytest.mark.parametrize("unbatched", (False, True), ids=("batched", "unbatched"))
@pytest.mark.parametrize("hx", (False, True), ids=("nohx", "hx"))
@pytest.mark.parametrize("I, H, B", [(5, 7, 3), (1, 1, 1), (300, 256, 16), (2, 3, 300)],
                         ids=str)
def test_cell_matches_torch(rng, dtype, kind, bias, unbatched, hx, I, H, B):
    tm, fm = make_pair(kind + "cell", dtype, input_size=I, hidden_size=H, bias=bias)
    x, h = cell_data(rng, kind, I, H, B, unbatched, hx, dtype)
    res = fm(x, h)
    check_cell_result(res, kind, dtype, (H,) if unbatched else (B, H))
    assert_tree_close(res, run_torch(tm, x, h), dtype, "vs torch")
    assert_tree_close(res, reference.cell(kind, fm.state_dict(), x, h), dtype, "vs reference")


@dtypes
@pytest.mark.parametrize("bias", (True, False), ids=("bias", "nobias"))
@pytest.mark.parametrize("unbatched", (False, True), ids=("batched", "unbatched"))
@pytest.mark.parametrize("hx", (False, True), ids=("nohx", "hx"))
@pytest.mark.parametrize("I, H, B", [(5, 7, 3), (1, 1, 1), (300, 256, 16)], ids=str)
def test_grucell_reset_before(rng, dtype, bias, unbatched, hx, I, H, B):
    fm = load_random_weights(
        fusedrnn.GRUCell(I, H, bias=bias, reset_after=False, dtype=dtype, seed=5), 6)
    x, h = cell_data(rng, "gru", I, H, B, unbatched, hx, dtype)
    res = fm(x, h)
    check_cell_result(res, "gru", dtype, (H,) if unbatched else (B, H))
    sd = fm.state_dict()
    assert_close(res, reference.cell("gru", sd, x, h, reset_after=False), dtype)
    # The forms coincide when h = 0 without bias, and for H = 1 without bias (scalars commute).
    if hx and (bias or H > 1):
        assert np.max(np.abs(res - reference.cell("gru", sd, x, h))) > 1e-4


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_cell_hx_none_means_zeros(rng, kind):
    _, fm = make_pair(kind + "cell", np.float64, input_size=3, hidden_size=4)
    x = rng.standard_normal((2, 3))
    z = np.zeros((2, 4))
    assert_tree_close(fm(x), fm(x, (z, z) if kind == "lstm" else z), np.float64)
    assert_tree_close(fm(x, hx=None), fm(x), np.float64)


# ---------------------------------------------------------------------------------------------
# input forms: non-contiguous, other dtypes


def noncontiguous_variants(x):
    """Views of x with the same values but other memory layouts."""
    big = np.zeros(tuple(2 * n + 1 for n in x.shape), dtype=x.dtype)
    strided = big[tuple(slice(1, None, 2) for _ in x.shape)]
    strided[...] = x
    rev = np.ascontiguousarray(x[::-1])[::-1]
    return {
        "transposed": np.ascontiguousarray(np.moveaxis(x, 0, -1)).transpose(
            (x.ndim - 1,) + tuple(range(x.ndim - 1))),
        "fortran": np.asfortranarray(x),
        "strided": strided,
        "reversed": rev,
    }


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("layout", ("seq_first", "batch_first", "unbatched"))
@pytest.mark.parametrize("variant", ("transposed", "fortran", "strided", "reversed"))
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=DTYPE_IDS.get)
def test_noncontiguous_inputs(rng, kind, layout, variant, dtype):
    cfg = layer_cfg(5, 6, num_layers=2, bidirectional=True, layout=layout)
    tm, fm = make_pair(kind, dtype, **cfg)
    x, h = layer_data(rng, kind, cfg, 4, 3, layout=layout, hx=True, dtype=dtype)
    xv = noncontiguous_variants(x)[variant]
    hv = (tuple(noncontiguous_variants(a)[variant] for a in h) if kind == "lstm"
          else noncontiguous_variants(h)[variant])
    assert not xv.flags.c_contiguous or x.ndim < 2 or min(x.shape) == 1
    np.testing.assert_array_equal(xv, x)
    res = fm(xv, hv)
    assert_tree_close(res, fm(x, h), dtype, "vs contiguous call")
    assert_tree_close(res, run_torch(tm, x, h), dtype, "vs torch")


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("variant", ("transposed", "fortran", "strided", "reversed"))
def test_cell_noncontiguous_inputs(rng, kind, variant):
    tm, fm = make_pair(kind + "cell", np.float32, input_size=5, hidden_size=6)
    x, h = cell_data(rng, kind, 5, 6, 3, False, True, np.float32)
    xv = noncontiguous_variants(x)[variant]
    hv = (tuple(noncontiguous_variants(a)[variant] for a in h) if kind == "lstm"
          else noncontiguous_variants(h)[variant])
    assert_tree_close(fm(xv, hv), run_torch(tm, x, h), np.float32)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("model_dtype, input_dtype", [
    (np.float32, np.float64), (np.float64, np.float32), (np.float32, np.int64),
    (np.float64, np.int32), (np.float32, np.float16), (np.float64, np.int8)])
def test_input_dtype_is_cast(rng, kind, model_dtype, input_dtype):
    cfg = layer_cfg(5, 6, num_layers=2, bidirectional=True)
    tm, fm = make_pair(kind, model_dtype, **cfg)
    x, h = layer_data(rng, kind, cfg, 4, 3, hx=True, dtype=np.float64)
    x = (3 * x).astype(input_dtype)
    h = tuple(a.astype(input_dtype) for a in h) if kind == "lstm" else h.astype(input_dtype)
    res = fm(x, h)
    for a in flatten(res):
        assert a.dtype == np.dtype(model_dtype)
    cast = (lambda t: t.astype(model_dtype))
    h_cast = tuple(cast(a) for a in h) if kind == "lstm" else cast(h)
    assert_tree_close(res, fm(cast(x), h_cast), model_dtype, "vs pre-cast input")
    assert_tree_close(res, run_torch(tm, cast(x), h_cast), model_dtype, "vs torch")


@pytest.mark.parametrize("kind", ("lstm", "gru"))
@pytest.mark.parametrize("model_dtype, input_dtype", [
    (np.float32, np.float64), (np.float64, np.float32), (np.float32, np.int64)])
def test_cell_input_dtype_is_cast(rng, kind, model_dtype, input_dtype):
    tm, fm = make_pair(kind + "cell", model_dtype, input_size=5, hidden_size=6)
    x, h = cell_data(rng, kind, 5, 6, 3, False, True, np.float64)
    x = (3 * x).astype(input_dtype)
    res = fm(x, h)
    for a in flatten(res):
        assert a.dtype == np.dtype(model_dtype)
    assert_tree_close(res, run_torch(tm, x.astype(model_dtype), h), model_dtype)


# ---------------------------------------------------------------------------------------------
# large magnitudes: finite, no warnings, same as torch
#
# Gate pre-activations of ~1e4 carry float32 rounding errors of ~1e4 * eps32 ~ 1e-3; where one
# lands near 0 that shows in the output. Measured torch-float32 vs exact: up to ~2e-5 absolute
# (20 seeds). So float32 gets atol 1e-4 here; float64 keeps its normal tolerance.


def large_atol(dtype):
    return 1e-4 if np.dtype(dtype) == np.float32 else None


@dtypes
@pytest.mark.parametrize("kind", ("lstm", "gru", "gru_before"))
@pytest.mark.parametrize("scale", (1e4, -1e4, 100.0))
def test_large_inputs_finite_no_warnings(rng, dtype, kind, scale):
    cfg = layer_cfg(6, 8, num_layers=2, bidirectional=True,
                    proj_size=3 if kind == "lstm" else 0)
    base = "gru" if kind == "gru_before" else kind
    x, h = layer_data(rng, base, cfg, 5, 3, hx=True, dtype=dtype)
    x = x * dtype(scale)
    if kind == "gru_before":
        fm = gru_before_reset(dtype, **cfg)
    else:
        tm, fm = make_pair(kind, dtype, **cfg)
    res = run_strict(fm, x, h)
    if kind == "gru_before":
        expected = ref_layer("gru", fm.state_dict(), x, h, cfg, reset_after=False)
    else:
        expected = run_torch(tm, x, h)
    assert_tree_close(res, expected, dtype, atol=large_atol(dtype))


def run_strict(fm, x, h):
    """Run with every warning and floating-point error raised; outputs must be finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            res = fm(x, h)
    for a in flatten(res):
        assert np.isfinite(a).all()
    return res


@dtypes
@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_cell_large_inputs_finite_no_warnings(rng, dtype, kind):
    tm, fm = make_pair(kind + "cell", dtype, input_size=6, hidden_size=8)
    x, h = cell_data(rng, kind, 6, 8, 3, False, True, dtype)
    x = x * dtype(1e4)
    res = run_strict(fm, x, h)
    assert_tree_close(res, run_torch(tm, x, h), dtype, atol=large_atol(dtype))


# ---------------------------------------------------------------------------------------------
# batch size 0


@pytest.mark.parametrize("kind, num_layers, bidirectional, proj_size, batch_first", [
    ("lstm", 1, False, 0, False), ("lstm", 2, True, 2, True), ("lstm", 3, True, 0, False),
    ("gru", 1, False, 0, True), ("gru", 2, True, 0, False)])
@pytest.mark.parametrize("hx", (False, True), ids=("nohx", "hx"))
@dtypes
def test_batch_size_zero(rng, kind, num_layers, bidirectional, proj_size, batch_first, hx,
                         dtype):
    cfg = layer_cfg(3, 4, num_layers=num_layers, bidirectional=bidirectional,
                    layout="batch_first" if batch_first else "seq_first", proj_size=proj_size)
    tm, fm = make_pair(kind, dtype, **cfg)
    x, h = layer_data(rng, kind, cfg, 5, 0, layout="batch_first" if batch_first else "seq_first",
                      hx=hx, dtype=dtype)
    res = fm(x, h)
    expected = run_torch(tm, x, h)
    check_result(res, kind, dtype, [a.shape for a in flatten(expected)])
    assert all(a.size == 0 for a in flatten(res))


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_cell_batch_size_zero(kind):
    tm, fm = make_pair(kind + "cell", np.float32, input_size=3, hidden_size=4)
    x = np.zeros((0, 3), np.float32)
    res = fm(x)
    check_cell_result(res, kind, np.float32, (0, 4))
    assert [a.shape for a in flatten(res)] == [a.shape for a in flatten(run_torch(tm, x))]


# ---------------------------------------------------------------------------------------------
# default initialisation


def build(cls, seed, dtype=np.float32):
    kw = dict(num_layers=2, bidirectional=True)
    if cls == "LSTM":
        kw["proj_size"] = 5
    if cls.endswith("Cell"):
        kw = {}
    return getattr(fusedrnn, cls)(7, 16, dtype=dtype, seed=seed, **kw)


CLASSES = ("LSTM", "GRU", "LSTMCell", "GRUCell")


@pytest.mark.parametrize("cls", CLASSES)
@dtypes
def test_default_init_range_and_layout(cls, dtype):
    model = build(cls, 0, dtype)
    k = 1 / np.sqrt(16)
    sd = model.state_dict()
    assert sd
    for name, v in sd.items():
        p = getattr(model, name)
        assert isinstance(p, np.ndarray) and p.dtype == np.dtype(dtype), name
        assert p.flags.c_contiguous, name
        assert np.all(np.abs(p) <= k), (name, np.abs(p).max(), k)
        if p.size >= 16:
            assert np.abs(p).max() > 0.5 * k, name  # really spread over the range
            assert len(np.unique(p)) > p.size // 2, name


def test_default_init_is_uniform():
    model = fusedrnn.LSTM(300, 300, seed=1)
    w = model.weight_hh_l0
    k = 1 / np.sqrt(300)
    # uniform(-k, k): mean 0, std k/sqrt(3); each of 4 quarters of the range ~25%
    assert abs(w.mean()) < 0.01 * k
    assert abs(w.std() - k / np.sqrt(3)) < 0.01 * k
    counts = np.histogram(w, bins=4, range=(-k, k))[0] / w.size
    np.testing.assert_allclose(counts, 0.25, atol=0.01)


@pytest.mark.parametrize("cls", CLASSES)
def test_seed_reproducible_and_distinct(cls):
    a, b = build(cls, 123), build(cls, 123)
    c = build(cls, 124)
    g1, g2 = build(cls, np.random.default_rng(7)), build(cls, np.random.default_rng(7))
    n1, n2 = build(cls, None), build(cls, None)
    for name in a.state_dict():
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_array_equal(getattr(g1, name), getattr(g2, name), err_msg=name)
        assert not np.array_equal(getattr(a, name), getattr(c, name)), name
        assert not np.array_equal(getattr(n1, name), getattr(n2, name)), name
    # parameters within one model are not copies of each other
    values = [v.tobytes() for v in a.state_dict().values()]
    assert len(set(values)) == len(values)


# ---------------------------------------------------------------------------------------------
# inference of a large batch: the input projection by blocks of steps


BLOCK_CASES = [  # I, H, T, B (blocks of 4 steps, 37 = 9 blocks + 1; of 5: I = 300 rows),
    #             layers, bidirectional, variable lengths, threads
    (16, 32, 37, 64, 1, False, False, 1),
    (16, 32, 37, 64, 2, True, True, 2),
    (300, 64, 20, 65, 2, True, False, 2),
    (300, 64, 20, 65, 1, False, True, 1),
]


@dtypes
@pytest.mark.parametrize("kind", ("lstm", "gru", "gru_reset_before"))
@pytest.mark.parametrize("I, H, T, B, num_layers, bidirectional, lengths, threads", BLOCK_CASES,
                         ids=str)
def test_projection_by_blocks(forced_threads, rng, dtype, kind, I, H, T, B, num_layers,
                              bidirectional, lengths, threads):
    """Inference projects x W_ih^T block by block (Kernel.gates_block, asserted on here):
    the same results as the reference, and to the bit as training's forward, which projects
    the whole sequence at once; reverse directions, later layers (I = 2H), variable lengths,
    a last block of fewer steps, one and two threads."""
    fusedrnn.set_num_threads(threads)
    cfg = layer_cfg(I, H, num_layers=num_layers, bidirectional=bidirectional)
    reset_after = kind != "gru_reset_before"
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    model = cls(dtype=dtype, seed=2, **cfg, **({} if kind == "lstm" else
                                                {"reset_after": reset_after}))
    base = "lstm" if kind == "lstm" else "gru"
    x, hx = layer_data(rng, base, cfg, T, B, hx=True, dtype=dtype)
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, B)
        lens[rng.integers(B)] = T
    for layer in range(num_layers):
        k = model._engine.kernel(layer, 0)
        assert 1 < k.gates_block(T, B) < T, "the projection must run by blocks here"
        assert k.gates_block(T, B, keep=True) == T
    got = model(x, hx, lengths=lens)
    if lens is None:        # the inference buffers hold one block of gates
        layers = model._engine._inference(T, B, None)[-1]
        assert all(b.gates.shape[0] < T * B for _, bufs in layers for b in bufs)
    out, hn, _ = model.forward_train(x, hx, lengths=lens)
    for a, b in zip(flatten(got), flatten((out, hn))):
        np.testing.assert_array_equal(a, b)
    assert_tree_close(got, ref_layer(base, model.state_dict(), x, hx, cfg,
                                     reset_after=reset_after, lengths=lens), dtype)
