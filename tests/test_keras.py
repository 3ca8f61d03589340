"""fusedrnn.from_keras against Keras 3 itself (torch backend), and merge_mode on our own layers
against torch autograd on a torch.nn.LSTM/GRU whose two output halves are combined in torch.

Keras is imported once per module (a module-scoped fixture; the import takes seconds); its
backend is set to torch before that, unless the environment chose one.
"""
import inspect
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import reference
from conftest import assert_close, assert_tree_close, import_fusedrnn, import_torch
from _train_utils import assert_grad_close, assert_grads_close, torch_grads, torch_twin

os.environ.setdefault("KERAS_BACKEND", "torch")     # before keras is imported (fixture below)
fusedrnn = import_fusedrnn()

B, T, I, H = 3, 6, 5, 7
MERGES = {"concat": lambda f, r: np.concatenate([f, r], axis=-1), "sum": lambda f, r: f + r,
          "mul": lambda f, r: f * r, "ave": lambda f, r: (f + r) / 2}


@pytest.fixture(scope="module")
def keras():
    """keras with its backend chosen above; skipped only when keras is not installed (a keras
    that is installed but fails to import is an error, not a skip)."""
    import importlib.util
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    import keras
    return keras


def to_numpy(keras, tree):
    if isinstance(tree, (tuple, list)):
        return [a for t in tree for a in to_numpy(keras, t)]
    return [np.asarray(keras.ops.convert_to_numpy(tree))]


def randomize(layer, seed=0):
    """Random weights everywhere (Keras starts biases at 0 / 1: they would not test the bias
    and gate mapping)."""
    rng = np.random.default_rng(seed)
    layer.set_weights([(0.6 * rng.standard_normal(w.shape)).astype(w.dtype)
                       for w in layer.get_weights()])


# id -> factory(keras, **rnn_kwargs) of a Keras layer (rnn_kwargs go to the LSTM/GRU inside)
def bi(kind, merge_mode, **extra):
    wrapper = {"dtype": extra["dtype"]} if "dtype" in extra else {}   # outputs cast to its dtype
    return lambda k, **kw: k.layers.Bidirectional(getattr(k.layers, kind)(H, **extra, **kw),
                                                  merge_mode=merge_mode, **wrapper)


CASES = {
    "lstm": lambda k, **kw: k.layers.LSTM(H, **kw),
    "lstm-nobias": lambda k, **kw: k.layers.LSTM(H, use_bias=False, **kw),
    "lstm-f64": lambda k, **kw: k.layers.LSTM(H, dtype="float64", **kw),
    "lstm-go-backwards": lambda k, **kw: k.layers.LSTM(H, go_backwards=True, **kw),
    # dropout / recurrent_dropout act only in Keras training; unroll is how Keras loops
    "lstm-dropout-unroll": lambda k, **kw: k.layers.LSTM(H, dropout=0.3, recurrent_dropout=0.2,
                                                         unroll=True, **kw),
    "gru": lambda k, **kw: k.layers.GRU(H, **kw),
    "gru-nobias": lambda k, **kw: k.layers.GRU(H, use_bias=False, **kw),
    "gru-f64": lambda k, **kw: k.layers.GRU(H, dtype="float64", **kw),
    "gru-reset-before": lambda k, **kw: k.layers.GRU(H, reset_after=False, **kw),
    "gru-reset-before-nobias": lambda k, **kw: k.layers.GRU(H, reset_after=False,
                                                            use_bias=False, **kw),
    "gru-reset-before-f64-go-backwards": lambda k, **kw: k.layers.GRU(
        H, reset_after=False, go_backwards=True, dtype="float64", **kw),
    **{f"bi-lstm-{m}": bi("LSTM", m) for m in ("concat", "sum", "mul", "ave", None)},
    **{f"bi-gru-{m}": bi("GRU", m) for m in ("concat", "mul")},
    "bi-gru-reset-before-ave": bi("GRU", "ave", reset_after=False),
    "bi-gru-nobias-sum": bi("GRU", "sum", use_bias=False),
    "bi-lstm-f64-mul": bi("LSTM", "mul", dtype="float64"),
    # a backward layer of the user's; and the mirror image (forward layer goes backwards)
    "bi-lstm-own-backward-layer": lambda k, **kw: k.layers.Bidirectional(
        k.layers.LSTM(H, **kw), backward_layer=k.layers.LSTM(H, go_backwards=True, **kw),
        merge_mode="sum"),
    "bi-gru-forward-goes-backwards": lambda k, **kw: k.layers.Bidirectional(
        k.layers.GRU(H, go_backwards=True, **kw), backward_layer=k.layers.GRU(H, **kw),
        merge_mode="concat"),
}


# float64 cases that Keras runs cell by cell (its torch backend's fused LSTM / GRU reset_after
# paths do not cover them): Keras's type promotion turns float64 into float32 on backends other
# than TensorFlow (keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE), so its matmuls there are
# float32; ours are float64 (test_float64_where_keras_is_float32 checks them against NumPy).
KERAS_CELL_PATH_F64 = ["gru-reset-before-f64-go-backwards"]


def keras_precision(keras, case, dtype):
    """The dtype Keras really computes `case` in (for the tolerance)."""
    if case in KERAS_CELL_PATH_F64:
        one = np.ones((2, 2))
        return np.dtype(keras.backend.standardize_dtype(keras.ops.matmul(one, one).dtype)).type
    return dtype


def keras_layer(keras, case, **kw):
    layer = CASES[case](keras, **kw)
    dtype = np.dtype(layer.compute_dtype).type
    layer.build((None, T, I))
    randomize(layer)
    return layer, dtype


def expected_keras_outputs(layer, model, x, hx, return_sequences, dtype):
    """What the docs (fusedrnn._keras) say Keras returns, computed from our model's outputs."""
    out, h_n = model(x, hx)
    states = h_n if isinstance(h_n, tuple) else (h_n,)
    bidirectional = hasattr(layer, "merge_mode")
    merge = getattr(layer, "merge_mode", "concat")
    if return_sequences:
        outputs = np.split(out, 2, axis=-1) if merge is None else [out]
    elif bidirectional:
        # the last output of a return_sequences=False layer is its final state h
        outputs = [states[0][0], states[0][1]] if merge is None else \
            [MERGES[merge](states[0][0], states[0][1])]
    else:
        assert_close(out[:, -1], states[0][0], dtype, "out[:, -1] is h_n[0]")
        outputs = [states[0][0]]
    per_direction = [s[d] for d in range(2 if bidirectional else 1) for s in states]
    return outputs + per_direction


def initial_state(rng, layer, dtype):
    """Keras's initial_state list and our hx (h_n's layout) for the same numbers."""
    n_dir = 2 if hasattr(layer, "merge_mode") else 1
    n_st = 2 if type(getattr(layer, "forward_layer", layer)).__name__ == "LSTM" else 1
    states = [(0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(n_dir * n_st)]
    stacked = tuple(np.stack(states[s::n_st]) for s in range(n_st))   # (D, B, H) each
    return states, (stacked if n_st == 2 else stacked[0])


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "initial-state"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("case", list(CASES))
def test_outputs_equal_keras(keras, rng, case, return_sequences, with_state):
    layer, dtype = keras_layer(keras, case, return_sequences=return_sequences,
                               return_state=True)
    model = fusedrnn.from_keras(layer)
    inner = model.model if isinstance(model, fusedrnn.GoBackwards) else model
    assert inner.batch_first and inner.dtype == dtype and inner.dropout == 0.0
    assert isinstance(model, fusedrnn.GoBackwards) == \
        getattr(layer, "forward_layer", layer).go_backwards
    x = rng.standard_normal((B, T, I)).astype(dtype)
    k_state, hx = initial_state(rng, layer, dtype) if with_state else (None, None)
    got = to_numpy(keras, layer(x, initial_state=k_state))
    want = expected_keras_outputs(layer, model, x, hx, return_sequences, dtype)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(w, g, keras_precision(keras, case, dtype), f"Keras output {k}")


@pytest.mark.parametrize("case", KERAS_CELL_PATH_F64)
def test_float64_where_keras_is_float32(keras, rng, case):
    """Ours against the tests' NumPy reference (float64) where Keras computes in float32."""
    layer, dtype = keras_layer(keras, case, return_sequences=True)
    model = fusedrnn.from_keras(layer)
    inner = model.model if isinstance(model, fusedrnn.GoBackwards) else model
    assert dtype == np.float64 and inner.dtype == np.float64
    x = rng.standard_normal((B, T, I))
    order = slice(None, None, -1) if layer.go_backwards else slice(None)
    want = reference.rnn("gru", inner.state_dict(), x[:, order], batch_first=True,
                         reset_after=inner.reset_after)
    got = model(x)
    assert_close(got[0], want[0], dtype, "out")
    assert_close(got[1], want[1], dtype, "h_n")


@pytest.mark.parametrize("case", ["lstm", "gru-reset-before", "bi-lstm-mul"])
def test_unbatched_and_layer_not_changed(keras, rng, case):
    layer, dtype = keras_layer(keras, case, return_sequences=True)
    before = [w.copy() for w in layer.get_weights()]
    model = fusedrnn.from_keras(layer)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    out, _ = model(x)
    unbatched, _ = model(x[1])
    assert_close(unbatched, out[1], dtype, "unbatched")
    for name, p in model.state_dict().items():        # our weights are copies
        np.testing.assert_array_equal(getattr(model, name), p)
    for a, b in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_go_backwards_training_matches_keras_gradients(keras, rng):
    """GoBackwards.forward_train/backward: dx in x's own order, equal to torch autograd through
    the Keras layer (torch backend)."""
    if keras.backend.backend() != "torch":
        pytest.skip("needs Keras's torch backend for autograd")
    torch = import_torch()
    layer, dtype = keras_layer(keras, "lstm-f64", go_backwards=True, return_sequences=True)
    model = fusedrnn.from_keras(layer)
    x = rng.standard_normal((B, T, I))
    d_out = rng.standard_normal((B, T, H))
    xt = torch.from_numpy(x).requires_grad_(True)
    (layer(xt) * torch.from_numpy(d_out)).sum().backward()
    out, _, tape = model.forward_train(x)
    dx, _, grads = model.backward(tape, d_out)
    assert_close(out, keras.ops.convert_to_numpy(layer(x)), dtype)
    assert_grad_close(dx, xt.grad.numpy(), dtype, "dx")
    # the recurrent kernel's gradient, in Keras's layout (H, 4H) with gates i, f, c, o = ours
    kernel = layer.cell.recurrent_kernel.value
    assert_grad_close(grads["weight_hh_l0"].T, kernel.grad.numpy(), dtype, "recurrent_kernel")


@pytest.mark.parametrize("layout", ["seq_first", "batch_first", "unbatched"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_go_backwards_every_layout_matches_torch_on_the_flipped_input(rng, kind, layout):
    """GoBackwards(model): outputs, dx (in x's own order), dhx and grads equal torch autograd
    through the torch twin run on torch.flip(x) along the time axis."""
    torch = import_torch()
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    model = cls(I, H, num_layers=2, bidirectional=True, batch_first=layout == "batch_first",
                dtype=np.float64, seed=2)
    wrapped = fusedrnn.GoBackwards(model)
    shape = {"seq_first": (T, B, I), "batch_first": (B, T, I), "unbatched": (T, I)}[layout]
    x = rng.standard_normal(shape)
    time_axis = 1 if layout == "batch_first" else 0
    out, h_n, tape = wrapped.forward_train(x)
    states = h_n if isinstance(h_n, tuple) else (h_n,)
    d_out = rng.standard_normal(out.shape)
    d_states = tuple(rng.standard_normal(s.shape) for s in states)
    dx, dhx, grads = wrapped.backward(tape, d_out, d_states if kind == "lstm" else d_states[0])

    tm = torch_twin(model, kind)
    xt = torch.from_numpy(x).requires_grad_(True)
    t_out, t_h = tm(torch.flip(xt, [time_axis]))
    t_states = t_h if isinstance(t_h, tuple) else (t_h,)
    loss = (t_out * torch.from_numpy(d_out)).sum()
    for s, d in zip(t_states, d_states):
        loss = loss + (s * torch.from_numpy(d)).sum()
    loss.backward()
    assert_grad_close(out, t_out.detach().numpy(), np.float64, "out")
    assert_close(wrapped(x)[0], out, np.float64, "inference out = forward_train out")
    assert_grad_close(dx, xt.grad.numpy(), np.float64, "dx")
    assert_grads_close(grads, {k: p.grad.numpy() for k, p in tm.named_parameters()}, np.float64)
    assert list(wrapped.state_dict()) == list(model.state_dict())
    wrapped.load_state_dict({k: v * 0 for k, v in wrapped.state_dict().items()})
    assert not model(x)[0].any()


# -------------------------------------------------------------------------------- masks

MASK_CASES = ["lstm", "gru-reset-before", "bi-gru-mul"]
LENGTHS = np.array([T, 2, 4])


def keras_masked(keras, rng, case):
    layer, dtype = keras_layer(keras, case, return_sequences=True, return_state=True)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    mask = np.arange(T)[None, :] < LENGTHS[:, None]             # right-padded batch
    got = to_numpy(keras, layer(x, mask=mask))
    return layer, dtype, x, mask, got


def check_valid_steps(got, out, states, b, n, dtype):
    """Keras's outputs at the valid steps and its final states; (padded steps: Keras carries
    the last output in a plain layer and writes zeros in a Bidirectional)."""
    assert_close(out, got[0][b, :n], dtype, "out at the valid steps")
    per_direction = [s[d] for d in range(states[0].shape[0]) for s in states]
    for k, s in enumerate(per_direction):
        assert_close(s, got[1 + k][b], dtype, f"state {k}")


@pytest.mark.parametrize("case", MASK_CASES)
def test_mask_means_each_sequence_up_to_its_length(keras, rng, case):
    """The docs' mapping (mask -> lengths) holds: a masked Keras call gives, per sequence,
    our outputs on that sequence cut at its length."""
    layer, dtype, x, mask, got = keras_masked(keras, rng, case)
    model = fusedrnn.from_keras(layer)
    for b, n in enumerate(mask.sum(axis=1)):
        out, h_n = model(x[b, :n])
        states = h_n if isinstance(h_n, tuple) else (h_n,)
        check_valid_steps(got, out, states, b, n, dtype)


@pytest.mark.skipif("lengths" not in inspect.signature(fusedrnn.LSTM.forward).parameters,
                    reason="fusedrnn's lengths= argument (variable-length batches) has not "
                           "landed yet")
@pytest.mark.parametrize("case", MASK_CASES)
def test_mask_is_lengths(keras, rng, case):
    layer, dtype, x, mask, got = keras_masked(keras, rng, case)
    model = fusedrnn.from_keras(layer)
    lengths = mask.sum(axis=1)
    out, h_n = model(x, lengths=lengths)
    states = h_n if isinstance(h_n, tuple) else (h_n,)
    for b, n in enumerate(lengths):
        check_valid_steps(got, out[b, :n], tuple(s[:, b] for s in states), b, n, dtype)


# -------------------------------------------------------------------------------- refusals

def _named(name, fn):
    """fn under another __name__ (a user's own function named like a Keras activation)."""
    fn.__name__ = fn.__qualname__ = name
    return fn


def test_activations_are_checked_by_what_they_compute(keras, rng):
    """An activation is taken when it computes tanh (sigmoid), whatever it is called: a
    lambda or the backend's own function converts and gives Keras's output."""
    import torch
    layer = keras.layers.GRU(H, return_sequences=True, activation=lambda v: keras.ops.tanh(v),
                             recurrent_activation=torch.sigmoid)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    want, = to_numpy(keras, layer(x))
    out, _ = fusedrnn.from_keras(layer)(x)
    assert_close(out, want, np.float32)


REFUSED = {   # id -> (factory(keras), exception, regex naming the option)
    "relu": (lambda k: k.layers.LSTM(H, activation="relu"), ValueError, r"\bactivation"),
    "hard-sigmoid": (lambda k: k.layers.GRU(H, recurrent_activation="hard_sigmoid"),
                     ValueError, "recurrent_activation"),
    "custom-activation": (lambda k: k.layers.GRU(H, activation=lambda v: k.ops.tanh(v / 2)),
                          ValueError, r"\bactivation"),
    # named as the real ones (they serialise as "tanh" / "sigmoid"), computing something else
    "activation-named-tanh": (lambda k: k.layers.GRU(H, activation=_named(
        "tanh", lambda v: 1.5 * k.ops.tanh(v))), ValueError, r"\bactivation.*something else"),
    "recurrent-activation-named-sigmoid": (lambda k: k.layers.LSTM(
        H, recurrent_activation=_named("sigmoid", lambda v: k.ops.hard_sigmoid(v))),
        ValueError, r"recurrent_activation.*something else"),
    "bi-relu-backward": (lambda k: k.layers.Bidirectional(
        k.layers.GRU(H), backward_layer=k.layers.GRU(H, go_backwards=True, activation="relu")),
        ValueError, r"\bactivation"),
    "stateful": (lambda k: k.layers.LSTM(H, stateful=True), ValueError, "stateful"),
    "float16": (lambda k: k.layers.GRU(H, dtype="float16",   # (no float16 QR on the CPU)
                                       recurrent_initializer="glorot_uniform"),
                ValueError, "dtype"),
    "mixed-precision": (lambda k: k.layers.LSTM(H, dtype="mixed_float16"), ValueError, "dtype"),
    "unlike-directions": (lambda k: k.layers.Bidirectional(
        k.layers.LSTM(H), backward_layer=k.layers.LSTM(H + 1, go_backwards=True)),
        ValueError, "layer"),
    "simple-rnn": (lambda k: k.layers.SimpleRNN(H), TypeError, "layer"),
    "rnn-of-lstm-cell": (lambda k: k.layers.RNN(k.layers.LSTMCell(H)), TypeError, "layer"),
    "bi-simple-rnn": (lambda k: k.layers.Bidirectional(k.layers.SimpleRNN(H)), TypeError,
                      "forward_layer"),
    "dense": (lambda k: k.layers.Dense(H), TypeError, "layer"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused(keras, case):
    make, exc, match = REFUSED[case]
    layer = make(keras)
    layer.build((B, T, I))                   # a static batch (stateful layers need one)
    with pytest.raises(exc, match=match):
        fusedrnn.from_keras(layer)


def test_refused_unbuilt_and_not_a_layer(keras):
    with pytest.raises(ValueError, match="built"):
        fusedrnn.from_keras(keras.layers.GRU(H))
    with pytest.raises(TypeError, match="layer"):
        fusedrnn.from_keras("lstm")
    with pytest.raises(TypeError, match="model"):
        fusedrnn.GoBackwards(fusedrnn.LSTMCell(I, H))


def test_keras_not_imported_by_the_package():
    code = ("import sys, numpy as np, fusedrnn\n"
            "m = fusedrnn.GRU(3, 4, bidirectional=True, merge_mode='sum')\n"
            "fusedrnn.GoBackwards(m)(np.zeros((2, 1, 3)))\n"
            "assert 'keras' not in sys.modules, 'keras imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


# -------------------------------------------------------------------------------- merge_mode


def merged_torch_twin(model, kind):
    """torch's twin of `model` whose output halves are combined by model.merge_mode in torch."""
    tm = torch_twin(model, kind)
    P = (getattr(model, "proj_size", 0) or model.hidden_size)
    mode = model.merge_mode

    class Merged(type(tm)):
        def forward(self, x, hx=None):
            out, h = super().forward(x, hx)
            f, r = out[..., :P], out[..., P:]
            return {"concat": out, "sum": f + r, "mul": f * r, "ave": (f + r) / 2}[mode], h

    tm.__class__ = Merged
    return tm


MERGE_GRID = [  # kind, merge_mode, layout, dtype, extra constructor kwargs
    (kind, mode, layout, dtype, extra)
    for kind in ("lstm", "gru") for mode in ("concat", "sum", "mul", "ave")
    for layout, dtype, extra in (("seq_first", np.float64, dict(num_layers=2)),
                                 ("batch_first", np.float32, {}),
                                 ("unbatched", np.float64, {}))
] + [("lstm", mode, "batch_first", np.float64, dict(num_layers=2, proj_size=3))
     for mode in ("sum", "mul")]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("kind, mode, layout, dtype, extra", [
    pytest.param(*p, id=f"{p[0]}-{p[1]}-{p[2]}-{np.dtype(p[3]).name}"
                 f"{'-' + '-'.join(f'{k}{v}' for k, v in p[4].items()) if p[4] else ''}")
    for p in MERGE_GRID])
def test_merge_mode_forward_and_gradients_match_torch(rng, kind, mode, layout, dtype, extra):
    """Our merged `out` and every gradient (input, initial state, each parameter) against torch
    autograd through torch.nn.LSTM/GRU with its two output halves combined in torch."""
    cls = fusedrnn.LSTM if kind == "lstm" else fusedrnn.GRU
    model = cls(I, H, bidirectional=True, batch_first=layout == "batch_first", dtype=dtype,
                seed=1, merge_mode=mode, **extra)
    x = rng.standard_normal({"seq_first": (T, B, I), "batch_first": (B, T, I),
                             "unbatched": (T, I)}[layout]).astype(dtype)
    out, h_n, tape = model.forward_train(x)
    P = extra.get("proj_size") or H
    assert out.shape[-1] == (2 * P if mode == "concat" else P)
    states = h_n if isinstance(h_n, tuple) else (h_n,)
    d_out = rng.standard_normal(out.shape).astype(dtype)
    d_states = tuple(rng.standard_normal(s.shape).astype(dtype) for s in states)
    dx, dhx, grads = model.backward(tape, d_out, d_states if kind == "lstm" else d_states[0])

    tm = merged_torch_twin(model, kind)
    hx0 = tuple(np.zeros_like(s) for s in states)
    t_outs, t_dx, t_dhx, t_grads = torch_grads(tm, x, hx0 if kind == "lstm" else hx0[0],
                                               [d_out, *d_states])
    assert_grad_close(out, t_outs[0], dtype, "out")
    assert_close(model(x)[0], out, dtype, "inference out = forward_train out")
    assert_grad_close(dx, t_dx, dtype, "dx")
    for a, e in zip(dhx if kind == "lstm" else (dhx,), t_dhx if kind == "lstm" else (t_dhx,)):
        assert_grad_close(a, e, dtype, "dhx")
    assert_grads_close(grads, t_grads, dtype)


def test_merge_mode_empty_batch():
    model = fusedrnn.GRU(I, H, bidirectional=True, merge_mode="mul")
    out, h_n, tape = model.forward_train(np.zeros((T, 0, I)))
    assert out.shape == (T, 0, H) and h_n.shape == (2, 0, H)
    dx, dh0, grads = model.backward(tape, np.zeros((T, 0, H)))
    assert dx.shape == (T, 0, I) and not any(g.any() for g in grads.values())


def test_merge_mode_keeps_state_dict_repr_and_pickles():
    concat = fusedrnn.LSTM(I, H, bidirectional=True, seed=0)
    summed = fusedrnn.LSTM(I, H, bidirectional=True, seed=0, merge_mode="sum")
    assert repr(concat) == f"LSTM({I}, {H}, bidirectional=True, dtype=float32)"
    assert repr(summed) == f"LSTM({I}, {H}, bidirectional=True, merge_mode='sum', dtype=float32)"
    assert list(summed.state_dict()) == list(concat.state_dict())
    x = np.random.default_rng(0).standard_normal((T, B, I))
    again = pickle.loads(pickle.dumps(summed))
    assert again.merge_mode == "sum"
    np.testing.assert_array_equal(again(x)[0], summed(x)[0])
    # a model pickled before merge_mode existed has no such attribute: it is concat
    del concat.__dict__["merge_mode"]
    old = pickle.loads(pickle.dumps(concat))
    assert old.merge_mode == "concat" and old(x)[0].shape == (T, B, 2 * H)


@pytest.mark.parametrize("bad", ["max", None, "Sum", 1])
def test_merge_mode_refused(bad):
    with pytest.raises(ValueError, match=r"merge_mode.*'concat', 'sum', 'mul', 'ave'"):
        fusedrnn.LSTM(I, H, bidirectional=True, merge_mode=bad)
    with pytest.raises(ValueError, match="merge_mode='sum'.*bidirectional"):
        fusedrnn.GRU(I, H, merge_mode="sum")
    assert fusedrnn.GRU(I, H, merge_mode="concat").merge_mode == "concat"


# from_keras's documented bias mapping for GRU(reset_after=False): Keras's one (3*H,) input bias
# becomes bias_ih (our gate order r, z, n) and bias_hh is zeros.  The output tests cannot see where
# the bias went (the original GRU form adds b_ih and b_hh), but state_dict(), save files, to_onnx's
# B input and the gradients' keys can.
def test_gru_reset_after_false_bias_goes_to_bias_ih():
    keras = pytest.importorskip("keras")
    H, I = 4, 3
    layer = keras.layers.GRU(H, reset_after=False, return_sequences=True)
    layer.build((2, 5, I))
    rng = np.random.default_rng(0)
    layer.set_weights([rng.standard_normal(w.shape).astype(w.dtype) for w in layer.get_weights()])
    kernel, recurrent, bias = layer.get_weights()
    assert bias.shape == (3 * H,)
    model = fusedrnn.from_keras(layer)
    sd = model.state_dict()
    z, r, h = bias[:H], bias[H:2 * H], bias[2 * H:]               # Keras: z, r, h
    np.testing.assert_array_equal(sd["bias_ih_l0"], np.concatenate([r, z, h]))
    np.testing.assert_array_equal(sd["bias_hh_l0"], np.zeros(3 * H, np.float32))


# GoBackwards on unbatched input (seq, features) of a batch_first model (what from_keras
# returns): time is axis 0 of a 2-D input whatever batch_first says.
@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_unbatched_input_is_reversed_in_time(cls, batch_first):
    model = getattr(fusedrnn, cls)(3, 4, batch_first=batch_first, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    wrapped = fusedrnn.GoBackwards(model)
    assert_tree_close(wrapped(x), model(np.ascontiguousarray(x[::-1])), np.float64)
    out, _, tape = wrapped.forward_train(x)
    assert_tree_close(out, model(np.ascontiguousarray(x[::-1]))[0], np.float64)
    dx = wrapped.backward(tape, np.ones_like(out))[0]
    _, _, tape2 = model.forward_train(np.ascontiguousarray(x[::-1]))
    assert_tree_close(dx, model.backward(tape2, np.ones_like(out))[0][::-1], np.float64)
