"""fusedrnn.from_onnx and model.to_onnx against the ONNX project's own LSTM/GRU test cases,
ONNX Runtime (float32) and onnx's ReferenceEvaluator (float64) on random-weight models of every
attribute combination, and round trips (fusedrnn -> ONNX -> ONNX Runtime / from_onnx).

Our outputs become ONNX's with the reshapes of the README: ``Y = out.reshape(T, B, D, H)
.transpose(0, 2, 1, 3)`` (layout 0; layout 1: ``out.reshape(B, T, D, H)``), ``Y_h = h_n``
(layout 1: ``h_n.transpose(1, 0, 2)``).
"""
import importlib
import inspect
import itertools
import pickle
import subprocess
import sys

import numpy as np
import pytest

from _onnx_models import node_model, reference_outputs, run_reference
from conftest import flatten, import_fusedrnn

fusedrnn = import_fusedrnn()
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

HAS_LENGTHS = "lengths" in inspect.signature(fusedrnn.LSTM.forward).parameters
ATOL32 = 1e-6       # float32: rtol 1e-5 plus this (values of order 1; ORT's own rounding)


def tolerance(dtype):
    return dict(rtol=1e-5, atol=ATOL32) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-10, atol=1e-12)


def as_onnx(layer, out, finals, layout):
    """Our call's outputs as ONNX's Y, Y_h (, Y_c) (the README's reshapes)."""
    D, H = layer.num_directions, layer.hidden_size
    if layout == 0:
        T, B = out.shape[:2]
        Y = out.reshape(T, B, D, H).transpose(0, 2, 1, 3)
    else:
        B, T = out.shape[:2]
        Y = out.reshape(B, T, D, H)
    states = finals if isinstance(finals, tuple) else (finals,)
    if layout == 1:
        states = tuple(s.transpose(1, 0, 2) for s in states)
    return [Y, *states]


def run_ours(layer, feeds, layout):
    """Our layer on an ONNX model's feeds (X, initial_h/initial_c, sequence_lens)."""
    hx = [feeds[s] for s in ("initial_h", "initial_c") if s in feeds]
    if layout == 1:
        hx = [h.transpose(1, 0, 2) for h in hx]
    hx = None if not hx else (tuple(hx) if len(hx) == 2 else hx[0])
    kw = {"lengths": feeds["sequence_lens"]} if "sequence_lens" in feeds else {}
    out, finals = layer(feeds["X"], hx, **kw)
    return as_onnx(layer, out, finals, layout)


def assert_outputs(got, want, dtype, names=("Y", "Y_h", "Y_c")):
    assert len(got) == len(want)
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, err_msg=name, **tolerance(dtype))


# ============================================================== (a) ONNX's own test cases
def onnx_reference_cases():
    """The node test cases onnx ships for LSTM and GRU (onnx/backend/test/case/node/lstm.py,
    gru.py): their export functions run when the modules are imported, and `expect` records
    each case (model, inputs, expected outputs)."""
    node_cases = importlib.import_module("onnx.backend.test.case.node")
    for op in ("lstm", "gru"):
        importlib.import_module(f"onnx.backend.test.case.node.{op}")
    recorded = getattr(node_cases, "_NodeTestCases", None)
    if recorded is None:        # the public way, slower: it imports every operator's cases
        recorded = node_cases.collect_testcases(None)
    cases = [c for c in recorded if c.model.graph.node[0].op_type in ("LSTM", "GRU")]
    return {c.name: c for c in cases}


CASES = onnx_reference_cases()


def test_reference_cases_found():
    names = sorted(CASES)
    assert sum(n.startswith("test_lstm") for n in names) >= 6, names
    assert sum(n.startswith("test_gru") for n in names) >= 6, names


def with_constant_weights(case):
    """The case's model with W, R, B, P bound to its input values as initializers (from_onnx
    reads weights from constants; the cases feed them as graph inputs), and the other feeds."""
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    node = model.graph.node[0]
    role = dict(zip(node.input, ("X", "W", "R", "B", "sequence_lens", "initial_h",
                                 "initial_c", "P")))
    inputs, outputs = case.data_sets[0]
    values = dict(zip([i.name for i in case.model.graph.input], inputs))
    feeds = {}
    del model.graph.input[:]
    for vi in case.model.graph.input:
        if role[vi.name] in ("W", "R", "B", "P"):
            model.graph.initializer.append(numpy_helper.from_array(values[vi.name], vi.name))
        else:
            model.graph.input.append(vi)
            feeds[role[vi.name]] = values[vi.name]
    expected = dict(zip([o.name for o in case.model.graph.output], outputs))
    return model, feeds, expected, role


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_reference_case(name):
    model, feeds, expected, role = with_constant_weights(CASES[name])
    node = model.graph.node[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    P = {numpy_name: v for numpy_name, v in
         [(i.name, onnx.numpy_helper.to_array(i)) for i in model.graph.initializer]
         if role[numpy_name] == "P"}
    if any(np.any(p != 0) for p in P.values()):
        with pytest.raises(ValueError, match=r"peepholes P"):
            fusedrnn.from_onnx(model)
        return
    layer = fusedrnn.from_onnx(model)
    layout = attrs.get("layout", 0)
    got = dict(zip(["Y", "Y_h", "Y_c"], run_ours(layer, feeds, layout)))
    # the case's outputs, by the node output (ONNX name) they are
    outs = dict(zip(["Y", "Y_h", "Y_c"], node.output))
    compared = [ours for ours, onnx_name in outs.items() if onnx_name in expected]
    assert compared, (outs, list(expected))
    for ours in compared:
        np.testing.assert_allclose(got[ours], expected[outs[ours]], rtol=1e-5, atol=ATOL32,
                                   err_msg=f"{name}: {ours}")


# ============================================================== (b) random one-node models
def random_feeds(op, layout, dtype, initial, T=5, B=2, I=3, H=4, D=1, seq_lens=None, seed=1):
    rng = np.random.default_rng(seed)
    feeds = {"X": rng.standard_normal((T, B, I) if layout == 0 else (B, T, I)).astype(dtype)}
    if seq_lens is not None:
        feeds["sequence_lens"] = np.asarray(seq_lens, dtype=np.int32)
    if initial == "input":
        for s in ("initial_h", "initial_c")[:2 if op == "LSTM" else 1]:
            feeds[s] = rng.standard_normal((D, B, H) if layout == 0 else (B, D, H)).astype(dtype)
    return feeds


GRID = [(op, lbr, direction, layout, bias, initial, np.float32)
        for op in ("LSTM", "GRU") for lbr in ((None,) if op == "LSTM" else (0, 1))
        for direction, layout, bias, initial in itertools.product(
            ("forward", "reverse", "bidirectional"), (0, 1), (True, False), ("input", None))]
# float64 (onnx.reference): the combinations with every input given
GRID += [p[:-1] + (np.float64,) for p in GRID if p[4] and p[5]]


def grid_id(p):
    op, lbr, direction, layout, bias, initial, dtype = p
    return (f"{op}{'' if lbr is None else f'-lbr{lbr}'}-{direction}-layout{layout}-"
            f"{'B' if bias else 'noB'}-{'h0' if initial else 'noh0'}-{np.dtype(dtype).name}")


@pytest.mark.parametrize("op, lbr, direction, layout, bias, initial, dtype", GRID,
                         ids=[grid_id(p) for p in GRID])
def test_random_node_vs_reference(op, lbr, direction, layout, bias, initial, dtype):
    """Every attribute combination against ONNX Runtime (float32) / onnx.reference (float64)."""
    attrs = {} if lbr is None else {"linear_before_reset": lbr}
    kw = dict(direction=direction, bias=bias, initial=initial, dtype=dtype, attrs=attrs)
    model, _ = node_model(op, layout=layout, **kw)
    layer = fusedrnn.from_onnx(model)
    D = 2 if direction == "bidirectional" else 1
    assert isinstance(layer, fusedrnn.Reversed) == (direction == "reverse")
    assert layer.dtype == dtype and layer.bias == bias and layer.batch_first == (layout == 1)
    assert layer.bidirectional == (D == 2) and type(layer.__dict__.get("model", layer)) is \
        getattr(fusedrnn, op)
    if op == "GRU":
        assert layer.reset_after == bool(lbr)
    feeds = random_feeds(op, layout, dtype, initial, D=D)
    assert_outputs(run_ours(layer, feeds, layout), reference_outputs(op, feeds, layout, **kw),
                   dtype)


@pytest.mark.parametrize("weights", ["initializer", "constant"])
def test_weights_from_constant_nodes(weights):
    model, _ = node_model("GRU", weights=weights, direction="bidirectional")
    feeds = random_feeds("GRU", 0, np.float32, None, D=2)
    assert_outputs(run_ours(fusedrnn.from_onnx(model), feeds, 0), run_reference(model, feeds),
                   np.float32)


def test_constant_zero_initial_states_are_no_states():
    """Constant all-zero initial_h / initial_c are accepted (the same as none); non-zero
    constants are refused (tests/test_bad_input_table.py)."""
    model, _ = node_model("LSTM", initial="zeros", direction="bidirectional")
    layer = fusedrnn.from_onnx(model)
    feeds = random_feeds("LSTM", 0, np.float32, None, D=2)     # batch 2: the constants' batch
    assert_outputs(run_ours(layer, feeds, 0), run_reference(model, feeds), np.float32)


def test_zero_peepholes_accepted():
    model, _ = node_model("LSTM", P=np.zeros((1, 12)), initial="input")
    feeds = random_feeds("LSTM", 0, np.float32, "input")
    assert_outputs(run_ours(fusedrnn.from_onnx(model), feeds, 0), run_reference(model, feeds),
                   np.float32)


@pytest.mark.skipif(not HAS_LENGTHS, reason="lengths= not yet available")
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_sequence_lens_vs_onnxruntime(op, direction, layout):
    """sequence_lens -> lengths=: ONNX Runtime's outputs, padding included (zeros in Y)."""
    D = 2 if direction == "bidirectional" else 1
    kw = dict(direction=direction, initial="input", seq_lens=True)
    model, _ = node_model(op, layout=layout, **kw)
    feeds = random_feeds(op, layout, np.float32, "input", T=6, B=4, D=D, seq_lens=[6, 3, 1, 5])
    assert_outputs(run_ours(fusedrnn.from_onnx(model), feeds, layout),
                   reference_outputs(op, feeds, layout, **kw), np.float32)


def test_flip_index_reverses_each_sequence_within_its_length():
    """What Reversed does with lengths= (independent of ONNX: a loop over the sequences)."""
    from fusedrnn._reversed import _flip_index

    lengths = [4, 1, 2, 3]
    src = _flip_index(4, np.array(lengths))
    for b, n in enumerate(lengths):
        assert list(src[:, b]) == list(range(n - 1, -1, -1)) + list(range(n, 4))


@pytest.mark.skipif(not HAS_LENGTHS, reason="lengths= not yet available")
@pytest.mark.parametrize("batch_first", [False, True])
def test_reversed_lengths_is_each_sequence_reversed_alone(batch_first, rng):
    """Reversed(model)(x, lengths=n) equals running each sequence alone on its first n steps
    (padding zero); unbatched input with lengths too."""
    rev = fusedrnn.Reversed(fusedrnn.LSTM(3, 4, batch_first=batch_first, seed=4))
    lengths = [5, 2, 4]
    x = rng.standard_normal((3, 5, 3) if batch_first else (5, 3, 3)).astype(np.float32)
    out, (h_n, c_n) = rev(x, lengths=lengths)
    for b, n in enumerate(lengths):
        xb = x[b, :n] if batch_first else x[:n, b]
        ob, (hb, cb) = rev(xb)
        got = out[b] if batch_first else out[:, b]
        np.testing.assert_allclose(got[:n], ob, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(got[n:], 0)
        np.testing.assert_allclose(h_n[:, b], hb, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(c_n[:, b], cb, rtol=1e-6, atol=1e-7)
        o1, _ = rev(np.concatenate([xb, np.ones((2, 3), np.float32)]), lengths=n)
        np.testing.assert_allclose(o1[:n], ob, rtol=1e-6, atol=1e-7)


def test_multi_node_model_gives_a_dict():
    """Two stacked LSTM nodes with ops between: a dict node name -> layer (the unnamed node
    keyed "LSTM_3", its index in graph.node); chaining the layers gives ORT's output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    I, H1, H2 = 3, 5, 4
    f32 = lambda *s: rng.uniform(-0.5, 0.5, s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("W1", f32(1, 4 * H1, I)),
        ("R1", f32(1, 4 * H1, H1)), ("B1", f32(1, 8 * H1)), ("W2", f32(2, 4 * H2, H1)),
        ("R2", f32(2, 4 * H2, H2)), ("axis1", np.array([1], dtype=np.int64))]]
    nodes = [helper.make_node("LSTM", ["X", "W1", "R1", "B1"], ["Y1"], hidden_size=H1,
                              name="enc"),
             helper.make_node("Squeeze", ["Y1", "axis1"], ["S1"]),
             helper.make_node("Tanh", ["S1"], ["T1"]),
             helper.make_node("LSTM", ["T1", "W2", "R2"], ["Y2", "Y2_h"], hidden_size=H2,
                              direction="bidirectional")]
    graph = helper.make_graph(
        nodes, "two", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y2", "Y2_h")],
        inits)
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", 14)])
    layers = fusedrnn.from_onnx(model)
    assert list(layers) == ["enc", "LSTM_3"]
    x = rng.standard_normal((6, 2, I)).astype(np.float32)
    out1, _ = layers["enc"](x)
    out2, (h2, _) = layers["LSTM_3"](np.tanh(out1))
    Y2, Y2_h = run_reference(model, {"X": x})
    assert_outputs(as_onnx(layers["LSTM_3"], out2, h2, 0), [Y2, Y2_h], np.float32)


def test_from_path(tmp_path):
    model, _ = node_model("GRU", attrs={"linear_before_reset": 1})
    path = tmp_path / "gru.onnx"
    onnx.save(model, str(path))
    for arg in (path, str(path)):
        layer = fusedrnn.from_onnx(arg)
        assert type(layer) is fusedrnn.GRU and layer.reset_after


# ============================================================== (c) to_onnx round trips
EXPORTS = [(kind, L, bi, bf) for kind in ("LSTM", "GRU", "GRU-orig") for L in (1, 2, 3)
           for bi in (False, True) for bf in (False, True)]


def make(kind, **kw):
    if kind == "GRU-orig":
        return fusedrnn.GRU(3, 4, reset_after=False, seed=2, **kw)
    return getattr(fusedrnn, kind)(3, 4, seed=2, **kw)


def export_feeds(model, initial_states, rng, T=5, B=3):
    cell = isinstance(model, (fusedrnn.LSTMCell, fusedrnn.GRUCell))
    x_shape = (B, 3) if cell else ((B, T, 3) if model.batch_first else (T, B, 3))
    feeds = {"input": rng.standard_normal(x_shape).astype(model.dtype)}
    hx = None
    if initial_states:
        n = 2 if isinstance(model.__dict__.get("model", model), fusedrnn.LSTM) else 1
        shape = (B, 4) if cell else (model.num_layers * model.num_directions, B, 4)
        hs = [rng.standard_normal(shape).astype(model.dtype) for _ in range(n)]
        feeds.update(zip(("h0", "c0"), hs))
        hx = tuple(hs) if n == 2 else hs[0]
    return feeds, hx


def check_export(model, initial_states, rng, tmp_path=None):
    """ONNX Runtime (onnx.reference for float64) runs the export with our outputs, and
    from_onnx gives back the model: same class, options and bitwise state_dict."""
    path = None if tmp_path is None else tmp_path / "model.onnx"
    proto = model.to_onnx(path, initial_states=initial_states)
    feeds, hx = export_feeds(model, initial_states, rng)
    want = flatten(model(feeds["input"], hx))
    got = run_reference(proto, feeds)
    assert_outputs(got, want, model.dtype, names=[o.name for o in proto.graph.output])
    back = fusedrnn.from_onnx(proto if path is None else path)
    assert type(back) is type(model) and repr(back) == repr(model)
    for name in ("dropout", "batch_first", "num_layers", "bias", "merge_mode"):
        assert getattr(back, name, None) == getattr(model, name, None), name
    sd, sd_back = model.state_dict(), back.state_dict()
    assert list(sd) == list(sd_back)
    for k in sd:
        assert sd[k].dtype == sd_back[k].dtype and sd[k].tobytes() == sd_back[k].tobytes(), k


@pytest.mark.parametrize("kind, L, bi, bf", EXPORTS,
                         ids=[f"{k}-L{L}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tf'}"
                              for k, L, bi, bf in EXPORTS])
def test_export_round_trip(kind, L, bi, bf, rng):
    model = make(kind, num_layers=L, bidirectional=bi, batch_first=bf, dropout=0.25 * (L > 1))
    check_export(model, initial_states=(L + bi) % 2 == 0, rng=rng)


@pytest.mark.parametrize("case", ["reversed-lstm-L2", "reversed-gru-bf", "lstmcell",
                                  "grucell-orig-nobias", "lstm-nobias-f64", "gru-bi-f64",
                                  "lstm-sum", "gru-mul-bf", "lstm-ave-L2-f64"])
@pytest.mark.parametrize("initial_states", [False, True])
def test_export_round_trip_more(case, initial_states, rng, tmp_path):
    model = {
        "reversed-lstm-L2": lambda: fusedrnn.Reversed(fusedrnn.LSTM(3, 4, num_layers=2)),
        "reversed-gru-bf": lambda: fusedrnn.Reversed(fusedrnn.GRU(3, 4, batch_first=True,
                                                                 reset_after=False)),
        "lstmcell": lambda: fusedrnn.LSTMCell(3, 4),
        "grucell-orig-nobias": lambda: fusedrnn.GRUCell(3, 4, bias=False, reset_after=False),
        "lstm-nobias-f64": lambda: fusedrnn.LSTM(3, 4, num_layers=2, bias=False,
                                                 dtype=np.float64),
        "gru-bi-f64": lambda: fusedrnn.GRU(3, 4, bidirectional=True, batch_first=True,
                                           dtype=np.float64),
        "lstm-sum": lambda: fusedrnn.LSTM(3, 4, bidirectional=True, merge_mode="sum"),
        "gru-mul-bf": lambda: fusedrnn.GRU(3, 4, bidirectional=True, batch_first=True,
                                           merge_mode="mul"),
        "lstm-ave-L2-f64": lambda: fusedrnn.LSTM(3, 4, num_layers=2, bidirectional=True,
                                                 merge_mode="ave", dtype=np.float64),
    }[case]()
    check_export(model, initial_states, rng, tmp_path)


def test_export_is_one_node_per_layer_with_dynamic_axes():
    proto = fusedrnn.LSTM(3, 4, num_layers=3, bidirectional=True, batch_first=True).to_onnx(
        initial_states=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 3 and set(ops) <= {"LSTM", "Transpose", "Reshape", "Slice",
                                                   "Concat"}
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa
    assert [vi.name for vi in proto.graph.input] == ["input", "h0", "c0"]
    assert dims(proto.graph.input[0]) == ["batch", "seq", 3]
    assert dims(proto.graph.input[1]) == [6, "batch", 4]
    assert [vi.name for vi in proto.graph.output] == ["out", "h_n", "c_n"]
    assert dims(proto.graph.output[0]) == ["batch", "seq", 8]


def test_edited_export_is_an_ordinary_model(rng):
    """A to_onnx graph changed by hand (a Relu between the layers) is no longer taken for our
    export: from_onnx gives the nodes' layers as for any model."""
    from onnx import helper

    model = fusedrnn.GRU(3, 4, num_layers=2)
    proto = model.to_onnx()
    nodes = list(proto.graph.node)
    k = next(i for i, n in enumerate(nodes) if n.output[0] == "X_l1")
    nodes[k].output[0] = "X_l1_pre"
    nodes.insert(k + 1, helper.make_node("Relu", ["X_l1_pre"], ["X_l1"]))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    layers = fusedrnn.from_onnx(proto)
    assert list(layers) == ["gru_l0", "gru_l1"]
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out0, _ = layers["gru_l0"](x)
    out1, h1 = layers["gru_l1"](np.maximum(out0, 0))
    want = run_reference(proto, {"input": x})
    assert_outputs([out1], want[:1], np.float32)
    # without the metadata, an exact export is an ordinary model too (batch_first is lost)
    proto = fusedrnn.LSTM(3, 4, batch_first=True).to_onnx()
    del proto.metadata_props[:]
    layer = fusedrnn.from_onnx(proto)
    assert type(layer) is fusedrnn.LSTM and not layer.batch_first


def test_metadata_that_does_not_fit_the_graph_is_ignored():
    """The "fusedrnn" metadata is the file's word, checked before it costs anything: a
    num_layers other than the graph's node count (the constructor would allocate that many
    layers) or JSON nested too deep to parse makes an ordinary model of the nodes."""
    import json
    import tracemalloc

    from onnx import helper

    proto = fusedrnn.GRU(64, 64, batch_first=True).to_onnx()
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["fusedrnn"])
    for bad in (json.dumps({**meta, "num_layers": 1000}), "[" * 100000 + "]" * 100000):
        helper.set_model_props(proto, {"fusedrnn": bad})
        tracemalloc.start()
        try:
            layer = fusedrnn.from_onnx(proto)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # an ordinary model: batch_first (known from the metadata only) is lost
        assert type(layer) is fusedrnn.GRU and not layer.batch_first
        assert peak < 20e6      # 1000 layers of GRU(64, 64) would be ~100 MB of weights


# ============================================================== Reversed
def test_reversed_is_the_reverse_half_of_a_bidirectional_layer(rng):
    """Independent check of Reversed: a bidirectional GRU's reverse direction (its second
    half of out and of h_n) is Reversed of a one-direction GRU with its _reverse weights."""
    bi = fusedrnn.GRU(3, 4, bidirectional=True, batch_first=True, seed=5)
    rev = fusedrnn.Reversed(fusedrnn.GRU(3, 4, batch_first=True))
    rev.load_state_dict({k.replace("_reverse", ""): v for k, v in bi.state_dict().items()
                         if k.endswith("_reverse")})
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    out, h_n = bi(x, h0)
    out_r, h_r = rev(x, h0[1:])
    np.testing.assert_array_equal(out_r, out[..., 4:])
    np.testing.assert_array_equal(h_r, h_n[1:])
    unbatched, _ = rev(x[0], h0[1:, 0])
    np.testing.assert_array_equal(unbatched, out[0, :, 4:])


def test_reversed_is_go_backwards_with_out_flipped_back(rng):
    m = fusedrnn.LSTM(3, 4, num_layers=2, batch_first=True, seed=6)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    out, (h, c) = fusedrnn.Reversed(m)(x)
    out_gb, (h_gb, c_gb) = fusedrnn.GoBackwards(m)(x)
    for a, b in ((out, out_gb[:, ::-1]), (h, h_gb), (c, c_gb)):
        np.testing.assert_array_equal(a, b)


def test_reversed_wrapper_api():
    rev = fusedrnn.Reversed(fusedrnn.LSTM(3, 4, num_layers=2, seed=1))
    assert repr(rev) == "Reversed(LSTM(3, 4, num_layers=2, dtype=float32))"
    assert rev.hidden_size == 4 and rev.num_layers == 2 and rev.parameter_names() == \
        rev.model.parameter_names()
    rev.weight_hh_l1 = np.ones((16, 4))
    np.testing.assert_array_equal(rev.model.weight_hh_l1, 1)
    twin = pickle.loads(pickle.dumps(rev))
    x = np.ones((3, 2, 3), dtype=np.float32)
    for a, b in zip(flatten(twin(x)), flatten(rev(x))):
        np.testing.assert_array_equal(a, b)
    for name in ("forward_train", "backward", "stream"):
        with pytest.raises(AttributeError):
            getattr(rev, name)
    with pytest.raises(AttributeError):
        rev.batch_first = True


def test_onnx_not_imported_by_the_package():
    code = ("import sys, fusedrnn; fusedrnn.LSTM(3, 4)(__import__('numpy').ones((2, 3)));"
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
