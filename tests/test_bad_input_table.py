"""One test per row of docs/errors.md, the table of every input fusedrnn rejects.

Each row: the exception type, a message naming the argument, and no trace of the failed call:
the model's state_dict is unchanged, and afterwards the model gives bitwise the outputs,
forward_train outputs (dropout masks included) and gradients of a twin that never saw the bad
call; a tape a failed ``backward`` was given is still usable.  test_errors.py sweeps many values
of the shape and type rows; test_docs_table_mirrors_rows keeps this list and the table equal.
"""
import os
import re
import tempfile
from collections import namedtuple

import numpy as np
import pytest

from _bad_files import write_bad
from _bad_input import B, H, I, L, P, T, good_input, make_model
from conftest import flatten, import_fusedrnn

fusedrnn = import_fusedrnn()

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "errors.md")

# id: the row's first column in docs/errors.md; model: a _bad_input.MODELS name (None: no model,
# the call builds one or changes the thread count); call(model, ctx) makes the bad call;
# arg: regex the message must match (the argument's name); bug: an xfail reason (a known bug).
Row = namedtuple("Row", "id model exc arg call bug", defaults=(None,))


def ctor(cls, **kw):
    base = dict(input_size=I, hidden_size=H)
    return lambda m, ctx: getattr(fusedrnn, cls)(**{**base, **kw})


def call(*args, **kwargs):
    return lambda m, ctx: m(*args, **kwargs)


def train(*args, **kwargs):
    return lambda m, ctx: m.forward_train(*args, **kwargs)


def zeros(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


def lstm_hx(h=(L * 2, B, P), c=(L * 2, B, H)):
    return (zeros(*h), zeros(*c))


def sd_with(m, **changes):
    """m.state_dict() with entries replaced (value None: removed); keys in the model's order,
    so the bad entry is the last one checked."""
    sd = m.state_dict()
    for k, v in changes.items():
        if v is None:
            del sd[k]
        else:
            sd[k] = v
    return sd


def bad_param(name, value):
    """Assign a parameter attribute directly (checked at once: the model keeps its weights),
    then call the model."""
    def run(m, ctx):
        setattr(m, name, value)
        m(good_input(ctx.name))
    return run


def edit_param(name):
    """Edit a parameter in place (parameters are read-only)."""
    def run(m, ctx):
        p = getattr(m, name)
        p += 1
    return run


def backward(*args, **kwargs):
    """m.backward(ctx.tape, *args): the bad call gets this model's fresh tape."""
    return lambda m, ctx: m.backward(ctx.tape, *args, **kwargs)


def used_tape(m, ctx):
    m.backward(ctx.tape, *good_cotangents(ctx.name, ctx.outputs))
    ctx.tape_used = True
    m.backward(ctx.tape, *good_cotangents(ctx.name, ctx.outputs))


def other_models_tape(m, ctx):
    *outputs, tape = make_model(ctx.name).forward_train(good_input(ctx.name))
    m.backward(tape, *good_cotangents(ctx.name, outputs))


def from_onnx(op="LSTM", **kw):
    """from_onnx on a one-node model of tests/_onnx_models.py (LSTM I=3, H=4 unless told)."""
    def run(m, ctx):
        from _onnx_models import node_model
        fusedrnn.from_onnx(node_model(op, **kw)[0])
    return run


def onnx_graph_without_rnn(m, ctx):
    from onnx import TensorProto, helper
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                              [vi("X", TensorProto.FLOAT, [2])], [vi("Y", TensorProto.FLOAT, [2])])
    fusedrnn.from_onnx(helper.make_model(graph))


def onnx_missing(name):
    """from_onnx on a one-node LSTM model whose node lacks its input `name` (W or R)."""
    def run(m, ctx):
        from _onnx_models import node_model
        model, _ = node_model("LSTM")
        node = model.graph.node[-1]
        inputs = ["" if k == ("X", "W", "R").index(name) else v for k, v in enumerate(node.input)]
        del node.input[:]
        node.input.extend(inputs)
        fusedrnn.from_onnx(model)
    return run


def onnx_duplicate_names(m, ctx):
    from _onnx_models import node_model
    model, _ = node_model("GRU")
    model.graph.node.append(model.graph.node[-1])        # a second GRU node named "rnn"
    fusedrnn.from_onnx(model)


def threads(n):
    return lambda m, ctx: fusedrnn.set_num_threads(n)


def from_keras(make, build=True):
    """fusedrnn.from_keras(make(keras.layers)), the layer built unless build=False; keras's
    backend is torch unless the environment chose one (skipped only when keras is missing)."""
    def run(m, ctx):
        import importlib.util
        if importlib.util.find_spec("keras") is None:
            pytest.skip("keras is not installed")
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras
        layer = make(keras.layers)
        if build:
            layer.build((B, T, I))
        fusedrnn.from_keras(layer)
    return run


OUT_SHAPE = (T, B, 2 * P)      # the "lstm" model's out
def load_bad(ext, case):
    """fusedrnn.load of the bad file `case` of tests/_bad_files.py (in a temporary directory)."""
    def run(m, ctx):
        with tempfile.TemporaryDirectory() as d:
            fusedrnn.load(write_bad(d, ext, case))
    return run


def dask_predict(shape=(B, T, I), chunks=(2, -1, -1), numpy=False, **kwargs):
    """fusedrnn.dask.predict(m, x, **kwargs), x a Dask array (numpy: a numpy one) of zeros."""
    def run(m, ctx):
        import dask.array as da
        x = np.zeros(shape) if numpy else da.zeros(shape, chunks=chunks)
        fusedrnn.dask.predict(m, x, **kwargs)
    return run


ROWS = [
    # ---- shapes of the input
    Row("input-ndim", "lstm", ValueError, "input", call(zeros(1, T, B, I))),
    Row("input-scalar", "gru", ValueError, "input", call(np.float64(1.0))),
    Row("input-features", "gru", ValueError, "input", call(zeros(T, B, I + 1))),
    Row("input-seq-len-0", "gru_bf", ValueError, "input", call(zeros(B, 0, I))),
    Row("input-too-large", "gru", ValueError, "input",
        call(np.broadcast_to(np.float32(0), (2**16, 2**15, I)))),
    Row("cell-input-ndim", "lstmcell", ValueError, "input", call(zeros(1, B, I))),
    Row("cell-input-features", "grucell", ValueError, "input", call(zeros(B, I + 1))),
    # ---- dtypes of the input
    Row("input-none", "lstm", TypeError, "input", call(None)),
    Row("input-string", "gru", TypeError, "input", call("not an array")),
    Row("input-object-array", "lstmcell", TypeError, "input",
        call(good_input("lstmcell").astype(object))),
    Row("input-complex", "grucell", TypeError, "input",
        call(good_input("grucell").astype(np.complex64))),
    Row("input-bool", "gru", TypeError, "input", call(zeros(T, B, I, dtype=bool))),
    Row("input-ragged", "lstmcell", TypeError, "input", call([[1.0, 2.0, 3.0], [1.0, 2.0]])),
    # ---- states (hx)
    Row("lstm-hx-not-tuple", "lstm", TypeError, "hx", call(zeros(T, B, I), zeros(L * 2, B, P))),
    Row("lstm-hx-tuple-length", "lstm", TypeError, "hx",
        call(zeros(T, B, I), lstm_hx() + (zeros(L * 2, B, H),))),
    Row("gru-hx-tuple", "gru", TypeError, "hx", call(zeros(T, B, I), (zeros(L * 2, B, H),))),
    Row("lstm-h0-shape", "lstm", ValueError, "h0",
        call(zeros(T, B, I), lstm_hx(h=(L * 2, B, H)))),
    Row("lstm-c0-shape", "lstm", ValueError, "c0",
        call(zeros(T, B, I), lstm_hx(c=(L * 2, B, P)))),
    Row("gru-hx-shape", "gru", ValueError, "hx", call(zeros(T, B, I), zeros(L * 2 - 1, B, H))),
    Row("gru-hx-batch-first", "gru_bf", ValueError, "hx",
        call(zeros(B, T, I), zeros(B, L * 2, H))),
    Row("hx-batched-for-unbatched-input", "gru", ValueError, "hx",
        call(zeros(T, I), zeros(L * 2, 1, H))),
    Row("h0-complex", "lstm", TypeError, "h0",
        call(zeros(T, B, I), (zeros(L * 2, B, P, dtype=complex), zeros(L * 2, B, H)))),
    Row("c0-string", "lstm", TypeError, "c0", call(zeros(T, B, I), (zeros(L * 2, B, P), "0"))),
    Row("cell-h0-shape", "lstmcell", ValueError, "h0", call(zeros(B, I), (zeros(B, P), zeros(B, H)))),
    Row("cell-c0-shape", "lstmcell", ValueError, "c0", call(zeros(B, I), (zeros(B, H), zeros(H)))),
    Row("cell-hx-shape", "grucell", ValueError, "hx", call(zeros(I), zeros(1, H))),
    Row("cell-hx-tuple", "grucell", TypeError, "hx", call(zeros(B, I), (zeros(B, H),))),
    # ---- constructor arguments
    Row("ctor-size-not-int", None, TypeError, "hidden_size", ctor("LSTM", hidden_size=2.5)),
    Row("ctor-size-bool", None, TypeError, "num_layers", ctor("GRU", num_layers=True)),
    Row("ctor-size-nan", None, TypeError, "input_size", ctor("GRUCell", input_size=float("nan"))),
    Row("ctor-size-nonpositive", None, ValueError, "input_size", ctor("LSTMCell", input_size=0)),
    Row("ctor-flag-not-bool", None, TypeError, "bidirectional", ctor("LSTM", bidirectional=1)),
    Row("ctor-reset-after-not-bool", None, TypeError, "reset_after",
        ctor("GRUCell", reset_after="no")),
    Row("ctor-dropout-type", None, TypeError, "dropout", ctor("GRU", dropout="0.1")),
    Row("ctor-dropout-range", None, ValueError, "dropout", ctor("LSTM", dropout=1.0)),
    Row("ctor-dropout-nan", None, ValueError, "dropout", ctor("GRU", dropout=float("nan"))),
    Row("ctor-proj-size-too-large", None, ValueError, "proj_size", ctor("LSTM", proj_size=H)),
    Row("ctor-proj-size-negative", None, ValueError, "proj_size", ctor("LSTM", proj_size=-1)),
    Row("ctor-proj-size-not-int", None, TypeError, "proj_size", ctor("LSTM", proj_size=1.0)),
    Row("ctor-dtype", None, TypeError, "dtype", ctor("GRU", dtype=np.float16)),
    Row("ctor-dtype-unknown", None, TypeError, "dtype", ctor("LSTMCell", dtype="banana")),
    Row("ctor-seed", None, TypeError, "seed", ctor("LSTM", seed="abc")),
    Row("ctor-merge-mode", None, ValueError, "merge_mode",
        ctor("LSTM", bidirectional=True, merge_mode="max")),
    Row("ctor-merge-mode-unidirectional", None, ValueError, "merge_mode",
        ctor("GRU", merge_mode="sum")),
    # ---- state dicts (load_state_dict) and parameter attributes
    Row("sd-not-mapping", "lstm", TypeError, "state_dict",
        lambda m, ctx: m.load_state_dict(list(m.state_dict().values()))),
    Row("sd-missing-key", "gru", ValueError, "bias_hh_l1_reverse",
        lambda m, ctx: m.load_state_dict(sd_with(m, bias_hh_l1_reverse=None))),
    Row("sd-unexpected-key", "lstmcell", ValueError, "weight_hr",
        lambda m, ctx: m.load_state_dict(sd_with(m, weight_hr=zeros(H, H)))),
    Row("sd-shape", "lstm", ValueError, "weight_hr_l1_reverse",
        lambda m, ctx: m.load_state_dict(sd_with(m, weight_hr_l1_reverse=zeros(P, P)))),
    Row("sd-shape-not-strict", "grucell", ValueError, "bias_hh",
        lambda m, ctx: m.load_state_dict(sd_with(m, bias_hh=zeros(H)), strict=False)),
    Row("sd-value-type", "gru", TypeError, "bias_hh_l1_reverse",
        lambda m, ctx: m.load_state_dict(sd_with(m, bias_hh_l1_reverse="0"))),
    Row("param-attribute-shape", "lstm", ValueError, "weight_hh_l0",
        bad_param("weight_hh_l0", zeros(4 * H, H))),
    Row("param-attribute-type", "grucell", TypeError, "weight_ih", bad_param("weight_ih", None)),
    Row("param-in-place-edit", "gru", ValueError, "read-only", edit_param("weight_hh_l0")),
    # ---- thread counts
    Row("threads-nonpositive", None, ValueError, r"\bn\b", threads(0)),
    Row("threads-not-int", None, TypeError, r"\bn\b", threads(1.5)),
    Row("threads-bool", None, TypeError, r"\bn\b", threads(True)),
    # ---- training arguments
    Row("train-input", "lstm", ValueError, "input", train(zeros(T, B, I + 1))),
    Row("train-hx", "gru", ValueError, "hx", train(zeros(T, B, I), zeros(L * 2, B + 1, H))),
    Row("train-rng", "lstm", TypeError, "rng", train(zeros(T, B, I), rng="abc")),
    Row("tape-not-a-tape", "gru", TypeError, "tape",
        lambda m, ctx: m.backward(object(), zeros(T, B, 2 * H))),
    Row("tape-other-model", "lstm", TypeError, "tape", other_models_tape),
    Row("tape-used", "grucell", ValueError, "tape", used_tape),
    Row("d_out-shape", "lstm", ValueError, "d_out", backward(zeros(T, B, 2 * H))),
    Row("d_out-type", "lstm", TypeError, "d_out", backward(zeros(*OUT_SHAPE, dtype=complex))),
    Row("d_h_n-tuple-for-gru", "gru", TypeError, "d_h_n",
        backward(None, (zeros(L * 2, B, H),))),
    Row("d_h_n-array-for-lstm", "lstm", TypeError, "d_h_n", backward(None, zeros(L * 2, B, P))),
    Row("d_h_n-shape", "gru_bf", ValueError, "d_h_n", backward(None, zeros(B, L * 2, H))),
    Row("d_c_n-shape", "lstm", ValueError, "d_c_n",
        backward(None, (zeros(L * 2, B, P), zeros(L * 2, B, P)))),
    Row("cell-d_h-shape", "lstmcell", ValueError, "d_h", backward(zeros(B, H + 1))),
    Row("cell-d_c-type", "lstmcell", TypeError, "d_c", backward(zeros(B, H), "0")),
    Row("cell-d_h-tuple", "grucell", TypeError, "d_h", backward((zeros(B, H),))),
    # ---- Keras layers
    Row("from-keras-type", None, TypeError, "layer", from_keras(lambda L: L.SimpleRNN(H))),
    Row("from-keras-bidirectional-type", None, TypeError, "forward_layer",
        from_keras(lambda L: L.Bidirectional(L.SimpleRNN(H)))),
    Row("from-keras-unbuilt", None, ValueError, "built", from_keras(lambda L: L.GRU(H), False)),
    Row("from-keras-activation", None, ValueError, r"\bactivation",
        from_keras(lambda L: L.LSTM(H, activation="relu"))),
    Row("from-keras-recurrent-activation", None, ValueError, "recurrent_activation",
        from_keras(lambda L: L.GRU(H, recurrent_activation="hard_sigmoid"))),
    Row("from-keras-stateful", None, ValueError, "stateful",
        from_keras(lambda L: L.LSTM(H, stateful=True))),
    Row("from-keras-dtype", None, ValueError, "dtype",
        from_keras(lambda L: L.LSTM(H, dtype="mixed_float16"))),
    Row("from-keras-unlike-directions", None, ValueError, "layer",
        from_keras(lambda L: L.Bidirectional(L.LSTM(H), backward_layer=L.LSTM(
            H + 1, go_backwards=True)))),
    Row("go-backwards-model", None, TypeError, "model",
        lambda m, ctx: fusedrnn.GoBackwards(fusedrnn.LSTMCell(I, H))),
    # ---- imports
    Row("from-torch-type", None, TypeError, "module", lambda m, ctx: fusedrnn.from_torch("lstm")),
    Row("from-torch-dtype", None, ValueError, "module",
        lambda m, ctx: fusedrnn.from_torch(__import__("torch").nn.GRU(3, 4).half())),
    # ---- ONNX (from_onnx, to_onnx, Reversed)
    Row("from-onnx-type", None, TypeError, "model", lambda m, ctx: fusedrnn.from_onnx(42)),
    Row("from-onnx-no-rnn", None, ValueError, "LSTM or GRU", onnx_graph_without_rnn),
    Row("from-onnx-duplicate-names", None, ValueError, "names", onnx_duplicate_names),
    Row("from-onnx-unknown-attribute", None, ValueError, "foo", from_onnx(attrs={"foo": 1})),
    Row("from-onnx-direction", None, ValueError, "direction",
        from_onnx(attrs={"direction": "sideways"})),
    Row("from-onnx-layout", None, ValueError, "layout", from_onnx(attrs={"layout": 2})),
    Row("from-onnx-clip", None, ValueError, "clip", from_onnx(attrs={"clip": 3.0})),
    Row("from-onnx-input-forget", None, ValueError, "input_forget",
        from_onnx(attrs={"input_forget": 1})),
    Row("from-onnx-activations", None, ValueError, "activations",
        from_onnx(attrs={"activations": ["Sigmoid", "Relu", "Tanh"]})),
    Row("from-onnx-activation-alpha", None, ValueError, "activation_alpha",
        from_onnx(attrs={"activation_alpha": [0.5]})),
    Row("from-onnx-linear-before-reset", None, ValueError, "linear_before_reset",
        from_onnx("GRU", attrs={"linear_before_reset": 2})),
    Row("from-onnx-weights-not-constant", None, ValueError, r"\bW\b",
        from_onnx(weights="input")),
    Row("from-onnx-W-missing", None, ValueError, r"input W is missing", onnx_missing("W")),
    Row("from-onnx-R-missing", None, ValueError, r"input R is missing", onnx_missing("R")),
    Row("from-onnx-dtype", None, ValueError, r"\bW\b", from_onnx(dtype=np.float16)),
    Row("from-onnx-W-shape", None, ValueError, r"\bW\b",
        from_onnx(direction="bidirectional", override={"W": zeros(1, 16, 3)})),
    Row("from-onnx-hidden-size", None, ValueError, "hidden_size",
        from_onnx(attrs={"hidden_size": 5})),
    Row("from-onnx-B-shape", None, ValueError, r"\bB\b", from_onnx(override={"B": zeros(1, 5)})),
    Row("from-onnx-peepholes", None, ValueError, r"\bP\b", from_onnx(P=np.ones((1, 12)))),
    Row("from-onnx-initial-state-constant", None, ValueError, "initial_h",
        from_onnx(initial="random")),
    Row("from-onnx-sequence-lens-constant", None, ValueError, "sequence_lens",
        from_onnx(seq_lens="constant")),
    Row("to-onnx-proj-size", "lstm", ValueError, "proj_size", lambda m, ctx: m.to_onnx()),
    Row("to-onnx-initial-states", "gru", TypeError, "initial_states",
        lambda m, ctx: m.to_onnx(initial_states="yes")),
    Row("reversed-type", None, TypeError, "model", lambda m, ctx: fusedrnn.Reversed("gru")),
    Row("reversed-bidirectional", "gru", ValueError, "bidirectional",
        lambda m, ctx: fusedrnn.Reversed(m)),
    # ---- streams
    Row("stream-bidirectional", "gru", ValueError, "bidirectional", lambda m, ctx: m.stream()),
    Row("stream-batch", "grucell", ValueError, "batch", lambda m, ctx: m.stream(batch=0)),
    Row("stream-chunk-batch", "lstmcell", ValueError, r"\bx\b",
        lambda m, ctx: m.stream(batch=2)(zeros(B, I))),
    Row("stream-cell-chunk-ndim", "grucell", ValueError, "input",
        lambda m, ctx: m.stream(batch=B)(zeros(T, B, I, dtype=m.dtype))),
    # ---- variable lengths
    Row("lengths-count", "lstm", ValueError, "lengths", call(zeros(T, B, I), lengths=[T] * (B - 1))),
    Row("lengths-ndim", "gru", ValueError, "lengths", call(zeros(T, B, I),
                                                           lengths=np.full((B, 1), T))),
    Row("lengths-zero", "gru", ValueError, "lengths", call(zeros(T, B, I),
                                                           lengths=[T, 0] + [T] * (B - 2))),
    Row("lengths-negative", "gru", ValueError, "lengths", call(zeros(T, B, I),
                                                               lengths=[T, -1] + [T] * (B - 2))),
    Row("lengths-too-long", "lstm", ValueError, "lengths", call(zeros(T, B, I),
                                                               lengths=[T + 1] + [T] * (B - 1))),
    Row("lengths-batch-first", "gru_bf", ValueError, "lengths",
        call(zeros(B, T, I), lengths=[T] * (B - 1) + [T + 1])),
    Row("lengths-float", "gru", TypeError, "lengths",
        call(zeros(T, B, I), lengths=[6.0, 5.5] + [T] * (B - 2))),
    Row("lengths-nan", "gru", TypeError, "lengths",
        call(zeros(T, B, I), lengths=np.array([T, np.nan] + [T] * (B - 2)))),
    Row("lengths-bool", "gru", TypeError, "lengths", call(zeros(T, B, I), lengths=True)),
    Row("lengths-strings", "gru", TypeError, "lengths", call(zeros(T, B, I), lengths=["6"] * B)),
    Row("lengths-unbatched", "gru", ValueError, "lengths", call(zeros(T, I), lengths=[T, T])),
    Row("train-lengths", "lstm", ValueError, "lengths",
        train(zeros(T, B, I), lengths=[T] * (B - 1) + [0])),
    # ---- weight files
    Row("save-extension", "lstm", ValueError, "path", lambda m, ctx: m.save("model.pt")),
    Row("save-path-type", "gru", TypeError, "path", lambda m, ctx: m.save(3)),
    Row("load-extension", None, ValueError, "path", lambda m, ctx: fusedrnn.load("model.h5")),
    Row("load-pickle-as-npz", None, ValueError, r"not a valid \.npz",
        load_bad(".npz", "pickle-disguised")),
    Row("load-npz-object-array", None, ValueError, "Python objects",
        load_bad(".npz", "weight-object-array")),
    Row("load-npy-shape-claim", None, ValueError, "claims shape",
        load_bad(".npz", "weight-claims-terabytes")),
    Row("load-safetensors-header-length", None, ValueError, "header length",
        load_bad(".safetensors", "header-length-absurd")),
    Row("load-safetensors-truncated", None, ValueError, "not a valid safetensors",
        load_bad(".safetensors", "truncated-data")),
    Row("load-no-config", None, ValueError, "configuration",
        load_bad(".safetensors", "no-config")),
    Row("load-config-json", None, ValueError, "JSON",
        load_bad(".safetensors", "config-not-json")),
    Row("load-config-value", None, TypeError, "hidden_size",
        load_bad(".safetensors", "config-size-type")),
    Row("load-config-keys", None, ValueError, "batch_first",
        load_bad(".safetensors", "config-missing-arg")),
    Row("load-weight-keys", None, ValueError, "weight_ih_l0", load_bad(".npz", "missing-key")),
    Row("load-weight-shape", None, ValueError, "weight_hh_l0",
        load_bad(".safetensors", "wrong-shape")),
    Row("load-weight-dtype", None, ValueError, "bias_hh_l0", load_bad(".npz", "wrong-dtype")),
    # ---- scoring on Dask
    Row("dask-model-cell", "lstmcell", TypeError, "model", dask_predict()),
    Row("dask-x-not-dask", "lstm", TypeError, r"\bx\b", dask_predict(numpy=True)),
    Row("dask-x-ndim", "gru", ValueError, r"\bx\b", dask_predict((B, I), (2, -1))),
    Row("dask-x-features", "gru_bf", ValueError, r"\bx\b", dask_predict((B, T, I + 1))),
    Row("dask-x-chunked-time", "lstm", ValueError, r"\bx\b", dask_predict(chunks=(2, 3, -1))),
    Row("dask-hx-shape", "lstm", ValueError, "h0",
        dask_predict(hx=(zeros(L * 2, B + 1, P), zeros(L * 2, B, H)))),
    Row("dask-hx-tuple-for-gru", "gru", TypeError, "hx", dask_predict(hx=(zeros(L * 2, B, H),))),
    Row("dask-lengths-shape", "gru", ValueError, "lengths",
        dask_predict(lengths=np.ones(B + 1, dtype=int))),
]


# --------------------------------------------------------------------------------------------
# the models' observable state


def good_cotangents(name, outputs):
    """Valid backward arguments after `outputs = forward_train(...)[:-1]` (ones everywhere)."""
    ones = lambda a: np.ones_like(a)  # noqa: E731
    if name == "lstmcell":
        return tuple(ones(a) for a in outputs[0])
    if name == "grucell":
        return (ones(outputs[0]),)
    out, h_n = outputs
    return (ones(out), tuple(ones(a) for a in h_n) if isinstance(h_n, tuple) else ones(h_n))


class Ctx:
    """Per-row context: a tape of the model's made on first use (forward_train, good input)."""

    def __init__(self, model, name):
        self.model, self.name = model, name
        self.tape_used = False
        self._tape = None

    @property
    def tape(self):
        if self._tape is None:
            *self.outputs, self._tape = self.model.forward_train(good_input(self.name))
        return self._tape


def observe(model, name, tape=None, outputs=None):
    """Everything a later valid use shows: forward outputs, forward_train outputs and the
    gradients of backward (on `tape` if given, else on a fresh one)."""
    x = good_input(name)
    seen = flatten(model(x))
    if tape is None:
        *outputs, tape = model.forward_train(x)
    dx, dhx, grads = model.backward(tape, *good_cotangents(name, outputs))
    *outputs2, tape2 = model.forward_train(x)
    return seen + flatten(tuple(outputs)) + flatten(tuple(outputs2)) + flatten(dx) + \
        flatten(dhx) + list(grads.values())


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=[pytest.mark.xfail(
    reason=r.bug, strict=True)] if r.bug else []) for r in ROWS])
def test_row(row):
    threads_before = fusedrnn.get_num_threads()
    model = make_model(row.model) if row.model else None
    ctx = Ctx(model, row.model)
    before = model.state_dict() if model else None
    with pytest.raises(row.exc) as info:
        row.call(model, ctx)
    assert re.search(row.arg, str(info.value)), f"message does not name {row.arg!r}: {info.value}"
    assert fusedrnn.get_num_threads() == threads_before
    if model is None:
        return
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    twin = make_model(row.model)
    if ctx._tape is not None:
        # the twin takes the same steps: one forward_train (and backward if the row used it)
        *twin_outputs, twin_tape = twin.forward_train(good_input(row.model))
        if ctx.tape_used:
            twin.backward(twin_tape, *good_cotangents(row.model, twin_outputs))
            got, want = observe(model, row.model), observe(twin, row.model)
        else:
            got = observe(model, row.model, ctx.tape, ctx.outputs)
            want = observe(twin, row.model, twin_tape, twin_outputs)
    else:
        got, want = observe(model, row.model), observe(twin, row.model)
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"value {k} after the failed call")


def doc_row_ids():
    with open(DOC, encoding="utf-8") as f:
        return re.findall(r"^\|\s*`([^`]+)`\s*\|", f.read(), flags=re.M)


def test_docs_table_mirrors_rows():
    """docs/errors.md lists exactly these rows, in this order."""
    assert doc_row_ids() == [r.id for r in ROWS]
