"""state_dict / load_state_dict: PyTorch names, order, shapes, strictness, copies."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import (CLASS_NAMES, DTYPES, assert_params_equal, flatten, import_fusedrnn,
                      import_torch, params_snapshot, torch_model)

fusedrnn = import_fusedrnn()
torch = import_torch()

CONFIGS = [  # (kind, kwargs)
    ("lstm", dict(input_size=3, hidden_size=5)),
    ("lstm", dict(input_size=3, hidden_size=5, num_layers=3, bidirectional=True)),
    ("lstm", dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2)),
    ("lstm", dict(input_size=3, hidden_size=5, num_layers=2, proj_size=4, bias=False)),
    ("lstm", dict(input_size=1, hidden_size=1, num_layers=2, bias=False, bidirectional=True)),
    ("gru", dict(input_size=3, hidden_size=5)),
    ("gru", dict(input_size=4, hidden_size=2, num_layers=3, bidirectional=True)),
    ("gru", dict(input_size=4, hidden_size=6, num_layers=2, bias=False)),
    ("lstmcell", dict(input_size=3, hidden_size=5)),
    ("lstmcell", dict(input_size=3, hidden_size=5, bias=False)),
    ("grucell", dict(input_size=3, hidden_size=5)),
    ("grucell", dict(input_size=3, hidden_size=5, bias=False)),
]


def cfg_id(c):
    return c[0] + "-" + "-".join(f"{k}{v}" for k, v in c[1].items())


configs = pytest.mark.parametrize("kind, cfg", CONFIGS, ids=[cfg_id(c) for c in CONFIGS])
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))


def fused(kind, dtype=np.float32, seed=0, **cfg):
    return getattr(fusedrnn, CLASS_NAMES[kind])(dtype=dtype, seed=seed, **cfg)


def other_weights(model, seed=99):
    """A full valid numpy state dict for `model` whose every value differs from the model's."""
    r = np.random.default_rng(seed)
    return {k: r.uniform(2.0, 3.0, v.shape) for k, v in model.state_dict().items()}


@configs
@dtypes
def test_keys_order_shapes_match_torch(kind, cfg, dtype):
    tsd = torch_model(kind, dtype, **cfg).state_dict()
    model = fused(kind, dtype, **cfg)
    sd = model.state_dict()
    assert list(sd) == list(tsd)
    for k, v in sd.items():
        assert isinstance(v, np.ndarray), k
        assert v.shape == tuple(tsd[k].shape), k
        assert v.dtype == np.dtype(dtype), k
        p = getattr(model, k)  # parameters are attributes with the same names
        assert isinstance(p, np.ndarray) and p.shape == v.shape and p.dtype == np.dtype(dtype)
        assert p.flags.c_contiguous, k
        np.testing.assert_array_equal(p, v)


@pytest.mark.parametrize("num_layers", (1, 2))
def test_gru_reset_before_has_torch_keys(num_layers):
    tsd = torch_model("gru", input_size=3, hidden_size=4, num_layers=num_layers,
                      bidirectional=True).state_dict()
    sd = fusedrnn.GRU(3, 4, num_layers=num_layers, bidirectional=True,
                      reset_after=False).state_dict()
    assert list(sd) == list(tsd)
    assert [v.shape for v in sd.values()] == [tuple(v.shape) for v in tsd.values()]
    sd = fusedrnn.GRUCell(3, 4, reset_after=False).state_dict()
    assert list(sd) == list(torch_model("grucell", input_size=3, hidden_size=4).state_dict())


@configs
@dtypes
def test_load_from_torch_tensors(kind, cfg, dtype):
    tm = torch_model(kind, np.float64, seed=5, **cfg)  # float64 tensors, cast to model dtype
    model = fused(kind, dtype, **cfg)
    model.load_state_dict(tm.state_dict())
    for k, v in tm.state_dict().items():
        p = getattr(model, k)
        assert isinstance(p, np.ndarray) and p.dtype == np.dtype(dtype) and p.flags.c_contiguous
        np.testing.assert_array_equal(p, v.numpy().astype(dtype), err_msg=k)


@configs
@dtypes
def test_load_from_numpy(kind, cfg, dtype):
    model = fused(kind, dtype, **cfg)
    new = other_weights(model)
    # a mix of layouts and dtypes: Fortran order, reversed strides, float32/float64, int
    mixed = {}
    for n, (k, v) in enumerate(new.items()):
        form = n % 4
        if form == 0:
            mixed[k] = np.asfortranarray(v)
        elif form == 1:
            mixed[k] = np.ascontiguousarray(v[::-1])[::-1]
        elif form == 2:
            mixed[k] = v.astype(np.float32)
        else:
            mixed[k] = v.astype(np.float64)
    model.load_state_dict(mixed)
    for k, v in mixed.items():
        p = getattr(model, k)
        assert p.dtype == np.dtype(dtype) and p.flags.c_contiguous, k
        np.testing.assert_array_equal(p, v.astype(dtype), err_msg=k)


def test_load_int_values_are_cast():
    model = fusedrnn.GRU(2, 3)
    ints = {k: np.ones(v.shape, dtype=np.int64) for k, v in model.state_dict().items()}
    model.load_state_dict(ints)
    for k in ints:
        p = getattr(model, k)
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p, 1.0)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_roundtrip_into_torch(kind):
    cfg = dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    if kind == "lstm":
        cfg["proj_size"] = 2
    model = fused(kind, np.float64, seed=11, **cfg)
    tm = torch_model(kind, np.float64, **cfg)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()},
                       strict=True)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), getattr(model, k))


# ---------------------------------------------------------------------------------------------
# strict loading: errors leave the model unchanged


def call_outputs(model):
    kind = type(model).__name__
    I = model.state_dict()["weight_ih_l0" if "Cell" not in kind else "weight_ih"].shape[1]
    x = np.linspace(-1, 1, 4 * 2 * I).reshape(4, 2, I)
    if "Cell" in kind:
        x = x[0]
    return [np.array(a) for a in flatten(model(x))]


def check_failed_load(model, bad, match):
    before = params_snapshot(model)
    outs = call_outputs(model)
    with pytest.raises(ValueError, match=match):
        model.load_state_dict(bad)
    assert_params_equal(model, before)
    for a, b in zip(call_outputs(model), outs):
        np.testing.assert_array_equal(a, b)


@configs
@pytest.mark.parametrize("position", ("first", "middle", "last"))
def test_missing_key_raises_and_keeps_model(kind, cfg, position):
    model = fused(kind, **cfg)
    bad = other_weights(model)
    keys = list(bad)
    key = {"first": keys[0], "middle": keys[len(keys) // 2], "last": keys[-1]}[position]
    del bad[key]
    check_failed_load(model, bad, match=key)


@configs
def test_unexpected_key_raises_and_keeps_model(kind, cfg):
    model = fused(kind, **cfg)
    bad = other_weights(model)
    bad["weight_ih_l7_bogus"] = np.zeros((3, 3))
    check_failed_load(model, bad, match="weight_ih_l7_bogus")


@configs
@pytest.mark.parametrize("position", ("first", "middle", "last"))
@pytest.mark.parametrize("how", ("transposed", "extra_row", "flat", "scalar"))
def test_misshaped_entry_raises_and_keeps_model(kind, cfg, position, how):
    model = fused(kind, **cfg)
    bad = other_weights(model)
    keys = list(bad)
    key = {"first": keys[0], "middle": keys[len(keys) // 2], "last": keys[-1]}[position]
    v = bad[key]
    if how == "transposed":
        if v.ndim < 2 or v.shape[0] == v.shape[1]:
            v = np.zeros(v.shape + (1,))
        else:
            v = v.T
    elif how == "extra_row":
        v = np.zeros((v.shape[0] + 1,) + v.shape[1:])
    elif how == "flat":
        v = v.reshape(-1) if v.ndim == 2 else v.reshape(1, -1)
    else:
        v = np.float64(1.0)
    bad[key] = v
    check_failed_load(model, bad, match=key)


@pytest.mark.parametrize("src, dst", [("lstm", "gru"), ("gru", "lstm")])
def test_wrong_architecture_raises(src, dst):
    cfg = dict(input_size=3, hidden_size=4, num_layers=2)
    model = fused(dst, **cfg)
    check_failed_load(model, fused(src, **cfg).state_dict(), match="weight|shape")


def test_wrong_num_layers_raises():
    model = fused("lstm", input_size=3, hidden_size=4, num_layers=2)
    check_failed_load(model, fused("lstm", input_size=3, hidden_size=4).state_dict(),
                      match="l1")
    check_failed_load(model, fused("lstm", input_size=3, hidden_size=4,
                                   num_layers=3).state_dict(), match="l2")


def test_missing_and_extra_together_name_both():
    model = fused("gru", input_size=3, hidden_size=4)
    bad = other_weights(model)
    del bad["bias_hh_l0"]
    bad["bias_hh_l9"] = np.zeros(12)
    check_failed_load(model, bad, match="bias_hh_l0")
    check_failed_load(model, bad, match="bias_hh_l9")


def test_non_strict_loads_subset():
    """strict=False: the keys given are loaded, absent ones are left as they are (as torch)."""
    model = fused("lstm", input_size=3, hidden_size=4, num_layers=2)
    before = params_snapshot(model)
    new = other_weights(model)
    subset = {"weight_ih_l1": new["weight_ih_l1"], "bias_hh_l0": new["bias_hh_l0"]}
    model.load_state_dict(subset, strict=False)
    for k, v in before.items():
        expected = subset[k].astype(np.float32) if k in subset else v
        np.testing.assert_array_equal(getattr(model, k), expected, err_msg=k)


# ---------------------------------------------------------------------------------------------
# copies


@configs
def test_state_dict_returns_copies(kind, cfg):
    model = fused(kind, **cfg)
    before = params_snapshot(model)
    outs = call_outputs(model)
    sd = model.state_dict()
    for k, v in sd.items():
        assert not np.shares_memory(v, getattr(model, k)), k
        v[...] = 7.0
    assert_params_equal(model, before)
    for a, b in zip(call_outputs(model), outs):
        np.testing.assert_array_equal(a, b)
    # a fresh state_dict is unaffected by the mutation of an earlier one
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
def test_load_copies_source_arrays(dtype):
    """Mirrors torch (load copies into the parameters): later changes to the source arrays,
    even ones already of the model dtype and C-contiguous, must not reach the model."""
    model = fused("gru", dtype, input_size=3, hidden_size=4, num_layers=2)
    src = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in other_weights(model).items()}
    model.load_state_dict(src)
    snap = params_snapshot(model)
    for v in src.values():
        v[...] = -5.0
    assert_params_equal(model, snap)


def test_load_from_torch_does_not_alias_tensors():
    tm = torch_model("lstm", np.float32, input_size=3, hidden_size=4)
    model = fused("lstm", np.float32, input_size=3, hidden_size=4)
    model.load_state_dict(tm.state_dict())
    snap = params_snapshot(model)
    with torch.no_grad():
        for p in tm.parameters():
            p.fill_(3.0)
    assert_params_equal(model, snap)


def test_numpy_only_use_does_not_import_torch():
    code = (
        "import sys, numpy as np, fusedrnn\n"
        "m = fusedrnn.LSTM(3, 4, num_layers=2, proj_size=2, seed=0)\n"
        "g = fusedrnn.GRUCell(3, 4, seed=0)\n"
        "m.load_state_dict({k: np.ones_like(v) for k, v in m.state_dict().items()})\n"
        "m(np.zeros((2, 1, 3))); g(np.zeros((1, 3)))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
