"""Random configurations (hypothesis): fusedrnn in float64 against the NumPy reference."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from conftest import (CLASS_NAMES, assert_tree_close, import_fusedrnn, layer_cfg, layer_data,
                      ref_layer)

fusedrnn = import_fusedrnn()

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layer_cases(draw):
    kind = draw(st.sampled_from(["lstm", "gru"]))
    H = draw(st.integers(1, 9))
    proj_size = draw(st.integers(0, H - 1)) if kind == "lstm" else 0
    return dict(
        kind=kind,
        I=draw(st.integers(1, 9)), H=H, proj_size=proj_size,
        T=draw(st.integers(1, 7)), B=draw(st.integers(0, 5)),
        num_layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()),
        layout=draw(st.sampled_from(["seq_first", "batch_first", "unbatched"])),
        bias=draw(st.booleans()), hx=draw(st.booleans()),
        reset_after=draw(st.booleans()),
        weight_scale=draw(st.sampled_from([None, 0.1, 1.0, 3.0])),
        input_scale=draw(st.sampled_from([1.0, 10.0])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@FUZZ
@given(case=layer_cases())
def test_layer_matches_reference(case):
    kind, rng = case["kind"], np.random.default_rng(case["seed"])
    cfg = layer_cfg(case["I"], case["H"], num_layers=case["num_layers"],
                    bidirectional=case["bidirectional"], layout=case["layout"],
                    bias=case["bias"], proj_size=case["proj_size"])
    extra = {"reset_after": case["reset_after"]} if kind == "gru" else {}
    cls = getattr(fusedrnn, CLASS_NAMES[kind])
    model = cls(dtype=np.float64, seed=case["seed"], **cfg, **extra)
    if case["weight_scale"] is not None:  # otherwise keep the default init
        s = case["weight_scale"]
        model.load_state_dict({k: rng.uniform(-s, s, v.shape)
                               for k, v in model.state_dict().items()})
    B = 1 if case["layout"] == "unbatched" else case["B"]
    x, h = layer_data(rng, kind, cfg, case["T"], B, layout=case["layout"], hx=case["hx"])
    x = x * case["input_scale"]
    expected = ref_layer(kind, model.state_dict(), x, h, cfg,
                         reset_after=case.get("reset_after", True))
    assert_tree_close(model(x, h), expected, np.float64)


@st.composite
def cell_cases(draw):
    return dict(
        kind=draw(st.sampled_from(["lstm", "gru"])),
        I=draw(st.integers(1, 9)), H=draw(st.integers(1, 9)), B=draw(st.integers(0, 6)),
        unbatched=draw(st.booleans()), bias=draw(st.booleans()), hx=draw(st.booleans()),
        reset_after=draw(st.booleans()), weight_scale=draw(st.sampled_from([0.3, 2.0])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@FUZZ
@given(case=cell_cases())
def test_cell_matches_reference(case):
    kind, rng = case["kind"], np.random.default_rng(case["seed"])
    I, H = case["I"], case["H"]
    extra = {"reset_after": case["reset_after"]} if kind == "gru" else {}
    cls = getattr(fusedrnn, CLASS_NAMES[kind + "cell"])
    model = cls(I, H, bias=case["bias"], dtype=np.float64, seed=case["seed"], **extra)
    s = case["weight_scale"]
    model.load_state_dict({k: rng.uniform(-s, s, v.shape) for k, v in model.state_dict().items()})
    lead = () if case["unbatched"] else (case["B"],)
    x = rng.standard_normal(lead + (I,))
    h = None
    if case["hx"]:
        h = rng.standard_normal(lead + (H,))
        if kind == "lstm":
            h = (h, rng.standard_normal(lead + (H,)))
    expected = reference.cell(kind, model.state_dict(), x, h,
                              reset_after=case["reset_after"] or kind == "lstm")
    assert_tree_close(model(x, h), expected, np.float64)
