"""Shared helpers for the fusedrnn tests: tolerances, torch twins, random data.

Helpers are plain functions, imported as ``from conftest import ...``; the ``rng`` fixture gives
each test (parametrisation) its own fixed random stream. Nothing here imports fusedrnn at module
import time, so test_reference.py runs without the package. Modules that need fusedrnn call
``import_fusedrnn()``: it skips them while the package is not installed, except under CI (env
``CI`` set) or ``FUSEDRNN_REQUIRE=1``, where a missing package is an error.
"""
import importlib
import importlib.util
import itertools
import os
import sys
import zlib

import numpy as np
import pytest

# Make `import reference` / `from conftest import ...` work whatever pytest's import mode is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

DTYPES = (np.float32, np.float64)

# (rtol, atol) by the dtype of the computation under test. float32 results are compared against
# float64 computations on the same float32-rounded weights/inputs (or against torch float32).
# float32 atol: 1e-6 also passed when measured, but its worst case (GRUCell reset_after=False,
# I=300, H=256) used 0.8 of it; 2e-6 leaves a 2x margin. float64 worst case: < 1e-3 of its
# tolerance.
TOLERANCES = {
    np.dtype(np.float32): (1e-5, 2e-6),
    np.dtype(np.float64): (1e-10, 1e-12),
}


def tol(dtype):
    """(rtol, atol) for results computed in `dtype`."""
    return TOLERANCES[np.dtype(dtype)]


def assert_close(actual, expected, dtype, what="output", atol=None):
    """Shapes equal and values within the tolerance of `dtype` (max errors shown on failure).

    `atol` overrides the dtype's absolute tolerance (only for ill-conditioned inputs)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    rtol, default_atol = tol(dtype)
    atol = default_atol if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def assert_tree_close(actual, expected, dtype, what="output", atol=None):
    """assert_close over nested tuples (out, (h_n, c_n)) / (out, h_n) / (h, c) / h."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple), f"{what}: expected a tuple, got {type(actual)}"
        assert len(actual) == len(expected), f"{what}: length {len(actual)} != {len(expected)}"
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_tree_close(a, e, dtype, f"{what}[{k}]", atol)
    else:
        assert_close(actual, expected, dtype, what, atol)


def flatten(tree):
    """Leaves of a nested tuple, in order."""
    if isinstance(tree, tuple):
        return [leaf for sub in tree for leaf in flatten(sub)]
    return [tree]


# --------------------------------------------------------------------------------------------
# package access


def import_fusedrnn():
    """Import fusedrnn; skip the calling module if it is not installed.

    Under CI (env CI set) or FUSEDRNN_REQUIRE=1, a missing package is an error rather than a
    skip, so a broken install cannot turn the suite green. An installed package whose import
    fails always raises (never skipped).
    """
    if importlib.util.find_spec("fusedrnn") is None:
        if os.environ.get("CI") or os.environ.get("FUSEDRNN_REQUIRE") == "1":
            raise ImportError("fusedrnn is not installed (pip install -e .)")
        pytest.skip("fusedrnn is not installed yet", allow_module_level=True)
    return importlib.import_module("fusedrnn")


def import_torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


# --------------------------------------------------------------------------------------------
# torch twins

# kind -> class name, the same in torch.nn and fusedrnn
CLASS_NAMES = {"lstm": "LSTM", "gru": "GRU", "lstmcell": "LSTMCell", "grucell": "GRUCell"}


def torch_model(kind, dtype=np.float32, seed=0, **cfg):
    """A torch.nn.{LSTM,GRU,LSTMCell,GRUCell} in eval mode with seeded random weights."""
    torch = import_torch()
    torch.manual_seed(seed)
    tm = getattr(torch.nn, CLASS_NAMES[kind])(**cfg)
    tm = tm.double() if np.dtype(dtype) == np.float64 else tm.float()
    return tm.eval()


def make_pair(kind, dtype=np.float32, seed=0, **cfg):
    """(torch_model, fusedrnn_model) with identical weights, via load_state_dict(torch sd)."""
    fusedrnn = import_fusedrnn()
    tm = torch_model(kind, dtype, seed, **cfg)
    fm = getattr(fusedrnn, CLASS_NAMES[kind])(dtype=dtype, **cfg)
    fm.load_state_dict(tm.state_dict())
    return tm, fm


def to_torch(tree, dtype):
    torch = import_torch()
    if tree is None:
        return None
    if isinstance(tree, tuple):
        return tuple(to_torch(t, dtype) for t in tree)
    return torch.from_numpy(np.ascontiguousarray(tree, dtype=dtype))


def to_numpy(tree):
    if isinstance(tree, tuple):
        return tuple(to_numpy(t) for t in tree)
    return tree.detach().numpy()


def run_torch(tm, x, hx=None):
    """Run a torch module on numpy inputs (cast to the module dtype); numpy outputs."""
    torch = import_torch()
    dtype = np.float64 if next(tm.parameters()).dtype == torch.float64 else np.float32
    with torch.no_grad():
        return to_numpy(tm(to_torch(x, dtype), to_torch(hx, dtype)))


def params_snapshot(model):
    """Deep copy of every parameter attribute of a fusedrnn model (by its state_dict names)."""
    return {k: np.array(getattr(model, k), copy=True) for k in model.state_dict()}


def assert_params_equal(model, snapshot):
    sd = model.state_dict()
    assert list(sd) == list(snapshot)
    for k, v in snapshot.items():
        np.testing.assert_array_equal(getattr(model, k), v, err_msg=k)


# --------------------------------------------------------------------------------------------
# layer configurations

LAYOUTS = ("seq_first", "batch_first", "unbatched")


def layer_cfg(I, H, *, num_layers=1, bidirectional=False, layout="seq_first", bias=True,
              proj_size=0):
    """Constructor kwargs shared by torch.nn.LSTM/GRU and fusedrnn.LSTM/GRU."""
    cfg = dict(input_size=I, hidden_size=H, num_layers=num_layers, bias=bias,
               batch_first=layout == "batch_first", bidirectional=bidirectional)
    if proj_size:
        cfg["proj_size"] = proj_size
    return cfg


def layer_grid(kinds=("lstm", "gru"), num_layers=(1, 2, 3), proj_sizes=(0, 3)):
    """pytest params (kind, num_layers, bidirectional, layout, bias, proj_size, hx)."""
    for kind, L, bi, layout, bias, hx in itertools.product(
            kinds, num_layers, (False, True), LAYOUTS, (True, False), (False, True)):
        for proj_size in (proj_sizes if kind == "lstm" else (0,)):
            yield pytest.param(kind, L, bi, layout, bias, proj_size, hx,
                               id=f"{kind}-L{L}-{'bi' if bi else 'uni'}-{layout}-"
                                  f"{'bias' if bias else 'nobias'}-P{proj_size}-"
                                  f"{'hx' if hx else 'nohx'}")


GRID_ARGS = "kind, num_layers, bidirectional, layout, bias, proj_size, hx"


def layer_data(rng, kind, cfg, T, B, *, layout="seq_first", hx=False, dtype=np.float64):
    """(x, hx) for a layer built with `cfg` (hx None unless requested)."""
    unbatched = layout == "unbatched"
    x = make_input(rng, T, B, cfg["input_size"], batch_first=cfg["batch_first"],
                   unbatched=unbatched, dtype=dtype)
    D = 2 if cfg["bidirectional"] else 1
    H = cfg["hidden_size"]
    h = make_state(rng, kind, cfg["num_layers"], D, B, H, cfg.get("proj_size") or H,
                   unbatched=unbatched, dtype=dtype) if hx else None
    return x, h


def ref_layer(kind, params, x, hx, cfg, reset_after=True, lengths=None):
    """reference.rnn with the configuration taken from constructor kwargs."""
    params = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in params.items()}
    return reference.rnn(kind, params, x, hx, num_layers=cfg["num_layers"],
                         bidirectional=cfg["bidirectional"], batch_first=cfg["batch_first"],
                         reset_after=reset_after, lengths=lengths)


# --------------------------------------------------------------------------------------------
# random data


def make_input(rng, T, B, I, *, batch_first=False, unbatched=False, dtype=np.float64):
    if unbatched:
        shape = (T, I)
    else:
        shape = (B, T, I) if batch_first else (T, B, I)
    return rng.standard_normal(shape).astype(dtype)


def make_state(rng, kind, num_layers, D, B, H, H_out=None, *, unbatched=False, dtype=np.float64,
               scale=0.5):
    """Random h0 (GRU) or (h0, c0) (LSTM) with the contract's shapes."""
    H_out = H if H_out is None else H_out
    lead = (num_layers * D,) if unbatched else (num_layers * D, B)
    h0 = (scale * rng.standard_normal(lead + (H_out,))).astype(dtype)
    if kind == "lstm":
        c0 = (scale * rng.standard_normal(lead + (H,))).astype(dtype)
        return (h0, c0)
    return h0


@pytest.fixture
def rng(request):
    """A Generator seeded from the test id, so each parametrisation gets its own fixed data."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_configure(config):
    # torch's own notice when it falls back from oneDNN for proj_size > 0; not about fusedrnn.
    config.addinivalue_line(
        "filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning")


# --------------------------------------------------------------------------------------------
# SIMD paths

ISA_ORDER = ("scalar", "avx2", "avx512")


def available_isas():
    """The SIMD paths this CPU can run (fusedrnn.set_isa clamps a missing one down), best last;
    ["default"] when fusedrnn is not importable (the tests using it skip or fail elsewhere)."""
    try:
        import fusedrnn
    except ImportError:
        return ["default"]
    best = fusedrnn.set_isa(None)
    return list(ISA_ORDER[:ISA_ORDER.index(best) + 1])


def pytest_generate_tests(metafunc):
    """Tests using the `isa_path` fixture run once per SIMD path the CPU has."""
    if "isa_path" in metafunc.fixturenames:
        metafunc.parametrize("isa_path", available_isas(), indirect=True)


@pytest.fixture
def forced_threads(monkeypatch):
    """Let small models use more than one thread (the size threshold is lowered,
    fusedrnn._threads.MIN_WORK_PER_THREAD); the process's thread count again after."""
    fusedrnn = import_fusedrnn()
    from fusedrnn import _threads
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    yield
    fusedrnn.set_num_threads(None)


@pytest.fixture
def isa_path(request):
    """Force one SIMD path (packed GEMM and gate passes) for the test; back to the default after."""
    if request.param == "default":
        yield request.param
        return
    fusedrnn = import_fusedrnn()
    assert fusedrnn.set_isa(request.param) == request.param
    try:
        yield request.param
    finally:
        fusedrnn.set_isa(None)
