"""Property tests (hypothesis).

Valid random configurations (both dtypes, batch 0 included: empty outputs, as docs/api.md
promises; padded batches with random lengths) equal the NumPy reference; random shapes and dtypes are accepted exactly when the API's
rules say so, and otherwise raise ValueError / TypeError, never anything else (or a crash).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from conftest import (CLASS_NAMES, DTYPES, assert_tree_close, import_fusedrnn, layer_cfg,
                      layer_data, ref_layer)

fusedrnn = import_fusedrnn()

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(FUZZ, max_examples=150)


def rounded(tree, dtype):
    """Inputs as the model sees them (cast to its dtype), in float64 for the reference."""
    if tree is None:
        return None
    if isinstance(tree, tuple):
        return tuple(rounded(t, dtype) for t in tree)
    return np.asarray(tree, dtype=dtype).astype(np.float64)


@st.composite
def layer_cases(draw):
    kind = draw(st.sampled_from(["lstm", "gru"]))
    H = draw(st.integers(1, 16))
    proj_size = draw(st.integers(0, H - 1)) if kind == "lstm" else 0
    return dict(
        kind=kind, dtype=draw(st.sampled_from(DTYPES)),
        I=draw(st.integers(1, 16)), H=H, proj_size=proj_size,
        T=draw(st.integers(1, 8)), B=draw(st.integers(0, 5)),
        num_layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()),
        layout=draw(st.sampled_from(["seq_first", "batch_first", "unbatched"])),
        bias=draw(st.booleans()), hx=draw(st.booleans()),
        reset_after=draw(st.booleans()),
        weight_scale=draw(st.sampled_from([None, 0.1, 1.0, 3.0])),
        input_scale=draw(st.sampled_from([1.0, 10.0])),
        seed=draw(st.integers(0, 2**32 - 1)), lengths=draw(st.booleans()),
    )


@FUZZ
@given(case=layer_cases())
def test_layer_matches_reference(case):
    kind, dtype, rng = case["kind"], case["dtype"], np.random.default_rng(case["seed"])
    cfg = layer_cfg(case["I"], case["H"], num_layers=case["num_layers"],
                    bidirectional=case["bidirectional"], layout=case["layout"],
                    bias=case["bias"], proj_size=case["proj_size"])
    extra = {"reset_after": case["reset_after"]} if kind == "gru" else {}
    cls = getattr(fusedrnn, CLASS_NAMES[kind])
    model = cls(dtype=dtype, seed=case["seed"], **cfg, **extra)
    if case["weight_scale"] is not None:  # otherwise keep the default init
        s = case["weight_scale"]
        model.load_state_dict({k: rng.uniform(-s, s, v.shape)
                               for k, v in model.state_dict().items()})
    B = 1 if case["layout"] == "unbatched" else case["B"]
    x, h = layer_data(rng, kind, cfg, case["T"], B, layout=case["layout"], hx=case["hx"])
    x = x * case["input_scale"]
    lengths = None
    if case["lengths"]:     # a padded batch (unbatched: one length)
        lengths = rng.integers(1, case["T"] + 1, B)
        lengths = int(lengths[0]) if case["layout"] == "unbatched" else lengths
    expected = ref_layer(kind, model.state_dict(), rounded(x, dtype), rounded(h, dtype), cfg,
                         reset_after=case.get("reset_after", True), lengths=lengths)
    got = model(x, h, lengths=lengths)
    for a in (got[0],) + (got[1] if isinstance(got[1], tuple) else (got[1],)):
        assert a.dtype == np.dtype(dtype)
    assert_tree_close(got, expected, dtype)


@st.composite
def cell_cases(draw):
    return dict(
        kind=draw(st.sampled_from(["lstm", "gru"])), dtype=draw(st.sampled_from(DTYPES)),
        I=draw(st.integers(1, 16)), H=draw(st.integers(1, 16)), B=draw(st.integers(0, 5)),
        unbatched=draw(st.booleans()), bias=draw(st.booleans()), hx=draw(st.booleans()),
        reset_after=draw(st.booleans()), weight_scale=draw(st.sampled_from([0.3, 2.0])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@FUZZ
@given(case=cell_cases())
def test_cell_matches_reference(case):
    kind, dtype, rng = case["kind"], case["dtype"], np.random.default_rng(case["seed"])
    I, H = case["I"], case["H"]
    extra = {"reset_after": case["reset_after"]} if kind == "gru" else {}
    cls = getattr(fusedrnn, CLASS_NAMES[kind + "cell"])
    model = cls(I, H, bias=case["bias"], dtype=dtype, seed=case["seed"], **extra)
    s = case["weight_scale"]
    model.load_state_dict({k: rng.uniform(-s, s, v.shape) for k, v in model.state_dict().items()})
    lead = () if case["unbatched"] else (case["B"],)
    x = rng.standard_normal(lead + (I,))
    h = None
    if case["hx"]:
        h = rng.standard_normal(lead + (H,))
        if kind == "lstm":
            h = (h, rng.standard_normal(lead + (H,)))
    expected = reference.cell(kind, model.state_dict(), rounded(x, dtype), rounded(h, dtype),
                              reset_after=case["reset_after"] or kind == "lstm")
    assert_tree_close(model(x, h), expected, dtype)


# --------------------------------------------------------------------------------------------
# invalid input: accepted exactly when the rules of docs/api.md say so

SMALL = dict(input_size=3, hidden_size=4)


def small_model(kind, **kw):
    return getattr(fusedrnn, CLASS_NAMES[kind])(**SMALL, seed=0, **kw)


shapes = st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple)


def input_ok(kind, shape, batch_first):
    """docs/api.md: which input shapes a model accepts."""
    if kind.endswith("cell"):
        return len(shape) in (1, 2) and shape[-1] == 3
    if len(shape) not in (2, 3) or shape[-1] != 3:
        return False
    seq = shape[1] if (len(shape) == 3 and batch_first) else shape[0]
    return seq > 0


@QUICK
@given(kind=st.sampled_from(sorted(CLASS_NAMES)), shape=shapes, batch_first=st.booleans())
def test_input_shapes(kind, shape, batch_first):
    model = small_model(kind, **({} if kind.endswith("cell") else {"batch_first": batch_first}))
    x = np.ones(shape)
    if input_ok(kind, shape, batch_first):
        result = model(x)
        first = result[0] if kind in ("lstm", "gru", "lstmcell") else result
        assert first.ndim == len(shape)
    else:
        with pytest.raises(ValueError, match="input"):
            model(x)


def expected_state_shapes(kind, L, D, B, unbatched):
    """(h0 shape, c0 shape or None) that docs/api.md requires for input batch B."""
    lead = () if unbatched else (B,)
    if kind.endswith("cell"):
        return lead + (4,), (lead + (4,) if kind == "lstmcell" else None)
    lead = (L * D,) + lead
    return lead + (4,), (lead + (4,) if kind == "lstm" else None)


@QUICK
@given(kind=st.sampled_from(sorted(CLASS_NAMES)), L=st.integers(1, 2), bi=st.booleans(),
       B=st.integers(0, 3), unbatched=st.booleans(), h_shape=shapes, c_shape=shapes,
       which=st.sampled_from(["h", "c"]))
def test_state_shapes(kind, L, bi, B, unbatched, h_shape, c_shape, which):
    cell = kind.endswith("cell")
    model = small_model(kind, **({} if cell else {"num_layers": L, "bidirectional": bi}))
    want_h, want_c = expected_state_shapes(kind, 1 if cell else L, 2 if bi and not cell else 1,
                                           B, unbatched)
    if want_c is None:
        which = "h"
    h_shape, c_shape = (h_shape, want_c) if which == "h" else (want_h, c_shape)
    x = np.ones(((3,) if cell else (2, 3)) if unbatched else ((B, 3) if cell else (2, B, 3)))
    hx = np.ones(h_shape) if want_c is None else (np.ones(h_shape), np.ones(c_shape))
    if h_shape == want_h and (want_c is None or c_shape == want_c):
        model(x, hx)
    else:
        with pytest.raises(ValueError, match=r"hx|h0|c0"):
            model(x, hx)


BAD_DTYPES = [bool, np.complex64, np.complex128, object, "U3", "S3", "datetime64[s]",
              "timedelta64[s]", np.dtype([("a", np.float64)])]


@QUICK
@given(kind=st.sampled_from(sorted(CLASS_NAMES)), dtype=st.sampled_from(BAD_DTYPES),
       where=st.sampled_from(["input", "hx"]), shape_ok=st.booleans())
def test_non_numeric_dtypes(kind, dtype, where, shape_ok):
    """TypeError, also when that argument's shape is wrong too (the dtype is checked first)."""
    cell = kind.endswith("cell")
    model = small_model(kind)
    x_shape, h_shape = ((2, 3), (2, 4)) if cell else ((5, 2, 3), (1, 2, 4))
    x, h, c = np.zeros(x_shape), np.zeros(h_shape), np.zeros(h_shape)
    bad = lambda a: (a if shape_ok else a[..., None]).astype(dtype)  # noqa: E731
    if where == "input":
        x = bad(x)
    else:
        h = bad(h)
    hx = (h, c) if kind in ("lstm", "lstmcell") else h
    with pytest.raises(TypeError, match=r"input|hx|h0"):
        model(x, hx)


size_values = st.one_of(
    st.integers(-3, 0), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.none(), st.text(max_size=2), st.just(np.float64("nan")), st.just(2 + 0j),
    st.just(np.bool_(True)), st.just([3]))


@QUICK
@given(kind=st.sampled_from(sorted(CLASS_NAMES)),
       arg=st.sampled_from(["input_size", "hidden_size", "num_layers"]), value=size_values)
def test_invalid_sizes(kind, arg, value):
    if kind.endswith("cell") and arg == "num_layers":
        arg = "hidden_size"
    with pytest.raises((TypeError, ValueError), match=arg):
        getattr(fusedrnn, CLASS_NAMES[kind])(**{**SMALL, arg: value})
