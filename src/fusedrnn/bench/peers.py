"""How each implementation is built and called: fusedrnn, the NumPy reference, PyTorch and
ONNX Runtime (with the ONNX graph it runs).

A builder takes (case, threads) and returns a Runner; ``runner()`` is the timed call,
``runner.canonical(result)`` turns its result into named numpy arrays for ``cases.compare``
(``out``, ``h_n``, ``c_n``; training adds ``dx``, ``dh0``, ``dc0`` and ``grad.<name>``).
``threads`` only matters to builders that fix it at construction (ONNX Runtime); the others
follow ``timing.pinned_threads``. Each builder dispatches on ``case.cfg.kind``: a ``cell`` row
runs ``LSTMCell`` / ``GRUCell`` (ONNX Runtime: a 1-step graph), a ``train`` row forward +
backward; a case with lengths (a ``lengths`` row) runs them: fusedrnn ``lengths=``, PyTorch
its packed path, ONNX Runtime ``sequence_lens``, NumPy its own loop over the running rows.
``padded`` is fusedrnn's own full-length run of the same x (``model(x)``), timed next to it
and checked against the full-length reference (``Runner.full_length``).
fusedrnn is used through its public API only.

torch, onnx and onnxruntime are imported inside the builders; one that is missing raises
PeerUnavailable (reported as skipped).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict

import numpy as np

from .cases import Case, make_case
from .configs import LATENCY_KINDS, ONE_STEP_KINDS, Config
from .numpy_ref import gru_forward, lstm_forward

IMPLS = ("fusedrnn", "numpy", "torch", "ort")
IMPL_LABELS = {"fusedrnn": "fusedrnn", "numpy": "NumPy", "torch": "PyTorch",
               "ort": "ONNX Runtime", "padded": "fusedrnn padded"}
# Timed whenever its implementation is chosen (--impls): fusedrnn's own padded run.
FOLLOWS = {"padded": "fusedrnn"}


class PeerUnavailable(Exception):
    """An implementation cannot run this configuration (not installed, or not supported)."""


class Runner:
    """``full_length``: the runner ignores the case's lengths (every sequence runs T steps), so
    it is checked against the reference of ``case.full_length()``.  ``carries``: each call
    continues from the state the previous one left (a stream), so its second call is checked
    too, against the reference started from the first's final state."""

    def __init__(self, impl: str, fn: Callable, canonical: Callable, note: str = "",
                 full_length: bool = False, carries: bool = False):
        self.impl, self.fn, self.canonical, self.note = impl, fn, canonical, note
        self.full_length, self.carries = full_length, carries

    def __call__(self):
        return self.fn()


def _import_optional(name: str, what: str):
    try:
        return __import__(name)
    except ImportError as e:
        raise PeerUnavailable(f"{what} is not installed ({e})") from None


def _hx(case: Case, layer_axis: bool = True):
    """Initial state(s) in the case's dtype: (L*D, B, .) arrays, or (B, .) for a cell."""
    h0, c0 = (case.h0, case.c0) if layer_axis else (case.h0[0], None if case.c0 is None
                                                    else case.c0[0])
    return h0 if case.cfg.cell == "gru" else (h0, c0)


def _as_numpy(a) -> np.ndarray:
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def _state_arrays(cfg: Config, hn, names=("h_n", "c_n")) -> Dict[str, np.ndarray]:
    """h / (h, c) (numpy or torch) -> {names[0]: h[, names[1]: c]} of numpy arrays."""
    if cfg.cell == "lstm":
        return {names[0]: _as_numpy(hn[0]), names[1]: _as_numpy(hn[1])}
    return {names[0]: _as_numpy(hn)}


def _split_state(cfg: Config, out, hn) -> Dict[str, np.ndarray]:
    """out, h_n / out, (h_n, c_n) -> dict of numpy arrays."""
    return {"out": _as_numpy(out), **_state_arrays(cfg, hn)}


def _split_cell(cfg: Config, res) -> Dict[str, np.ndarray]:
    """A cell's h_1 / (h_1, c_1) of shape (B, H) -> the arrays of a 1-step layer (out = h_n)."""
    h = res[0] if cfg.cell == "lstm" else res
    add_axis = (lambda a: a[None])
    hn = (add_axis(h), add_axis(res[1])) if cfg.cell == "lstm" else add_axis(h)
    return _split_state(cfg, add_axis(h), hn)


def _cell_state_dict(case: Case) -> "OrderedDict[str, np.ndarray]":
    """The one-layer weights under a cell's names (``weight_ih_l0`` -> ``weight_ih``)."""
    return OrderedDict((k[:-len("_l0")], v) for k, v in case.state.items())


# --------------------------------------------------------------------------------------------
# NumPy reference
# --------------------------------------------------------------------------------------------

def build_numpy(case: Case, threads=None) -> Runner:
    cfg, st = case.cfg, case.state
    if cfg.train:
        raise PeerUnavailable("the NumPy reference has no backward pass")
    if cfg.cell == "lstm":
        def fn():
            out, h_n, c_n = lstm_forward(case.x, case.h0, case.c0, st, cfg.layers,
                                         cfg.bidirectional, case.lengths)
            return out, (h_n, c_n)
    else:
        def fn():
            return gru_forward(case.x, case.h0, st, cfg.layers, cfg.bidirectional,
                               cfg.reset_after, case.lengths)
    return Runner("numpy", fn, lambda res: _split_state(cfg, *res))


# --------------------------------------------------------------------------------------------
# fusedrnn
# --------------------------------------------------------------------------------------------

def fusedrnn_module():
    try:
        import fusedrnn
    except Exception as e:      # ImportError, or a failing extension import
        raise PeerUnavailable(f"fusedrnn is not importable ({type(e).__name__}: {e})") from None
    if not hasattr(fusedrnn, "LSTM") or not hasattr(fusedrnn, "GRU"):
        raise PeerUnavailable("fusedrnn has no LSTM/GRU (package not built or not installed)")
    return fusedrnn


def _fusedrnn_model(case: Case):
    fusedrnn = fusedrnn_module()
    cfg = case.cfg
    kw = dict(dtype=cfg.np_dtype.type)
    if cfg.cell == "gru" and not cfg.reset_after:
        kw["reset_after"] = False
    if cfg.kind == "cell":
        cls = fusedrnn.LSTMCell if cfg.cell == "lstm" else fusedrnn.GRUCell
        model = cls(cfg.input, cfg.hidden, **kw)
        model.load_state_dict(_cell_state_dict(case))
        return model
    kw.update(num_layers=cfg.layers, bidirectional=cfg.bidirectional)
    if cfg.proj_size:
        kw["proj_size"] = cfg.proj_size
    model = (fusedrnn.LSTM if cfg.cell == "lstm" else fusedrnn.GRU)(cfg.input, cfg.hidden, **kw)
    model.load_state_dict(case.state)
    return model


def build_fusedrnn(case: Case, threads=None) -> Runner:
    cfg = case.cfg
    if cfg.train:
        return build_fusedrnn_train(case, threads)
    model = _fusedrnn_model(case)
    if cfg.kind == "cell":
        x, hx = case.x[0], _hx(case, layer_axis=False)
        return Runner("fusedrnn", lambda: model(x, hx), lambda res: _split_cell(cfg, res))
    if cfg.kind == "stream":
        # starts from the case's state (the checked first call); later calls carry it on
        stream = model.stream(batch=cfg.batch, hx=_hx(case))
        return Runner("fusedrnn", lambda: (stream(case.x), stream.state),
                      lambda res: _split_state(cfg, *res), carries=True)
    x, hx, lengths = case.x, _hx(case), case.lengths
    if lengths is not None:
        return Runner("fusedrnn", lambda: model(x, hx, lengths=lengths),
                      lambda res: _split_state(cfg, *res))
    return Runner("fusedrnn", lambda: model(x, hx), lambda res: _split_state(cfg, *res))


def build_fusedrnn_padded(case: Case, threads=None) -> Runner:
    """fusedrnn on the case's x without its lengths: the padded batch run to T."""
    r = build_fusedrnn(case.full_length(), threads)
    return Runner("padded", r.fn, r.canonical, full_length=True)


def build_fusedrnn_train(case: Case, threads=None) -> Runner:
    """``model.forward_train`` + ``model.backward`` with dL/d(out) = d_out."""
    cfg = case.cfg
    model = _fusedrnn_model(case)
    x, hx, d_out = case.x, _hx(case), case.d_out

    def fn():
        out, h_n, tape = model.forward_train(x, hx)
        dx, dhx, grads = model.backward(tape, d_out)
        return out, h_n, dx, dhx, grads

    def canonical(res):
        out, h_n, dx, dhx, grads = res
        d = _split_state(cfg, out, h_n)
        d["dx"] = np.asarray(dx)
        d.update(_state_arrays(cfg, dhx, ("dh0", "dc0")))
        d.update(("grad." + k, np.asarray(v)) for k, v in grads.items())
        return d

    return Runner("fusedrnn", fn, canonical)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------

def _torch_module(case: Case):
    torch = _import_optional("torch", "PyTorch")
    cfg = case.cfg
    if cfg.cell == "gru" and not cfg.reset_after:
        raise PeerUnavailable("torch.nn.GRU has no reset_after=False (original GRU) variant")
    tdtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    if cfg.kind in ONE_STEP_KINDS:       # a stream step's peer is the cell
        cls = torch.nn.LSTMCell if cfg.cell == "lstm" else torch.nn.GRUCell
        model = cls(cfg.input, cfg.hidden, bias=True, dtype=tdtype)
        state = _cell_state_dict(case)
    else:
        kw = dict(num_layers=cfg.layers, bias=True, bidirectional=cfg.bidirectional,
                  dtype=tdtype)
        if cfg.cell == "lstm":
            model = torch.nn.LSTM(cfg.input, cfg.hidden, proj_size=cfg.proj_size, **kw)
        else:
            model = torch.nn.GRU(cfg.input, cfg.hidden, **kw)
        state = case.state
    model.load_state_dict(OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)))
                                      for k, v in state.items()))
    return torch, model


def _to_torch(torch, tree):
    return tuple(_to_torch(torch, a) for a in tree) if isinstance(tree, tuple) else \
        torch.from_numpy(tree)


def build_torch(case: Case, threads=None) -> Runner:
    """torch.nn.LSTM / GRU (LSTMCell / GRUCell for a cell row), eval(), under torch.no_grad()."""
    cfg = case.cfg
    if cfg.train:
        return build_torch_train(case, threads)
    torch, model = _torch_module(case)
    model.eval()
    cell = cfg.kind in ONE_STEP_KINDS
    x = torch.from_numpy(case.x[0] if cell else case.x)
    hx = _to_torch(torch, _hx(case, layer_axis=not cell))

    if case.lengths is not None:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        lengths = torch.from_numpy(case.lengths.astype(np.int64))

        def fn():
            # what a user runs: pack, the module, pad back to T (all timed)
            with torch.no_grad():
                packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
                out, hn = model(packed, hx)
                return pad_packed_sequence(out, total_length=cfg.seq)[0], hn
    else:
        def fn():
            with torch.no_grad():
                return model(x, hx)

    if cell:
        return Runner("torch", fn, lambda res: _split_cell(cfg, res))
    return Runner("torch", fn, lambda res: _split_state(cfg, *res))


def build_torch_train(case: Case, threads=None) -> Runner:
    """Forward + backward with PyTorch autograd, loss = sum(out * d_out)."""
    cfg = case.cfg
    torch, model = _torch_module(case)
    model.train()                       # dropout is 0: same maths as eval()
    x = torch.from_numpy(case.x.copy()).requires_grad_()
    h0 = torch.from_numpy(case.h0.copy()).requires_grad_()
    c0 = torch.from_numpy(case.c0.copy()).requires_grad_() if cfg.cell == "lstm" else None
    hx = h0 if c0 is None else (h0, c0)
    d_out = torch.from_numpy(case.d_out)
    params = list(model.named_parameters())
    leaves = [x, h0] + ([c0] if c0 is not None else []) + [p for _, p in params]

    def fn():
        for t in leaves:
            t.grad = None
        out, hn = model(x, hx)
        out.backward(d_out)
        return out, hn

    def canonical(res):
        d = {k: v.copy() for k, v in _split_state(cfg, *res).items()}
        d["dx"] = x.grad.numpy().copy()
        d["dh0"] = h0.grad.numpy().copy()
        if c0 is not None:
            d["dc0"] = c0.grad.numpy().copy()
        for name, p in params:
            d["grad." + name] = p.grad.numpy().copy()
        return d

    return Runner("torch", fn, canonical)


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------

_ONNX_PERM = {"lstm": (0, 3, 1, 2),   # PyTorch i,f,g,o -> ONNX i,o,f,c
              "gru": (1, 0, 2)}       # PyTorch r,z,n   -> ONNX z,r,h


def onnx_model(case: Case):
    """A one-node-per-layer ONNX graph of LSTM/GRU operators with the case's weights, using
    ONNX's gate order (LSTM i,o,f,c; GRU z,r,h) and its [W_b, R_b] bias layout.

    Inputs X (T, B, I), h0_l{k} (D, B, H) [, c0_l{k}] [, seq_lens (B,) int32 when the case has
    lengths: every node's ``sequence_lens``]; outputs out (T, B, D*H), h_n, c_n.
    Between layers (and at the end) Y (T, D, B, H) is transposed to (T, B, D, H) and reshaped
    to (T, B, D*H), PyTorch's layout, inside the graph. A cell row is one LSTM/GRU node with
    seq_len 1 and the initial states as inputs; it outputs only h_n (, c_n), as a cell does.
    """
    onnx = _import_optional("onnx", "onnx")
    from onnx import TensorProto, helper, numpy_helper
    cfg, st = case.cfg, case.state
    if cfg.proj_size:
        raise PeerUnavailable("the ONNX LSTM operator has no projection (proj_size)")
    if cfg.train:
        raise PeerUnavailable("ONNX Runtime inference session: no backward pass")
    dt = cfg.np_dtype
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[cfg.dtype]
    T, B, H, D, L = cfg.seq, cfg.batch, cfg.hidden, cfg.directions, cfg.layers
    op = cfg.cell.upper()
    perm = _ONNX_PERM[cfg.cell]
    cell = cfg.kind == "cell"

    def reorder(a):
        return np.concatenate([a[j * H:(j + 1) * H] for j in perm], axis=0)

    sfxs = ["", "_reverse"][:D]
    inputs = [helper.make_tensor_value_info("X", elem, [T, B, cfg.input])]
    inits = [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "TBx")]
    seq_lens = ""
    if case.lengths is not None:
        seq_lens = "seq_lens"
        inputs.append(helper.make_tensor_value_info(seq_lens, TensorProto.INT32, [B]))
    nodes, h_names, c_names = [], [], []
    cur = "X"
    for k in range(L):
        W = np.stack([reorder(st[f"weight_ih_l{k}{s}"]) for s in sfxs]).astype(dt)
        R = np.stack([reorder(st[f"weight_hh_l{k}{s}"]) for s in sfxs]).astype(dt)
        Bk = np.stack([np.concatenate([reorder(st[f"bias_ih_l{k}{s}"]),
                                       reorder(st[f"bias_hh_l{k}{s}"])]) for s in sfxs])
        inits += [numpy_helper.from_array(np.ascontiguousarray(W), f"W{k}"),
                  numpy_helper.from_array(np.ascontiguousarray(R), f"R{k}"),
                  numpy_helper.from_array(np.ascontiguousarray(Bk.astype(dt)), f"B{k}")]
        node_in = [cur, f"W{k}", f"R{k}", f"B{k}", seq_lens, f"h0_l{k}"]
        # A cell's (1-layer) states are the graph's outputs themselves: no Y, no Concat.
        h_names.append("h_n" if cell else f"Yh{k}")
        node_out = ["" if cell else f"Y{k}", h_names[-1]]
        inputs.append(helper.make_tensor_value_info(f"h0_l{k}", elem, [D, B, H]))
        if cfg.cell == "lstm":
            c_names.append("c_n" if cell else f"Yc{k}")
            node_in.append(f"c0_l{k}")
            node_out.append(c_names[-1])
            inputs.append(helper.make_tensor_value_info(f"c0_l{k}", elem, [D, B, H]))
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if cfg.cell == "gru":
            attrs["linear_before_reset"] = 1 if cfg.reset_after else 0
        nodes.append(helper.make_node(op, node_in, node_out, name=f"{op}_l{k}", **attrs))
        if not cell:
            nxt = "out" if k == L - 1 else f"X{k + 1}"
            nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Yt{k}", "TBx"], [nxt]))
            cur = nxt
    outputs = [] if cell else [helper.make_tensor_value_info("out", elem, [T, B, D * H])]
    outputs.append(helper.make_tensor_value_info("h_n", elem, [L * D, B, H]))
    if c_names:
        outputs.append(helper.make_tensor_value_info("c_n", elem, [L * D, B, H]))
    if not cell:
        nodes.append(helper.make_node("Concat", h_names, ["h_n"], axis=0))
        if c_names:
            nodes.append(helper.make_node("Concat", c_names, ["c_n"], axis=0))
    graph = helper.make_graph(nodes, "fusedrnn_bench", inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="fusedrnn.bench",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort_feeds(case: Case) -> Dict[str, np.ndarray]:
    D = case.cfg.directions
    feeds = {"X": case.x}
    for k in range(case.cfg.layers):
        feeds[f"h0_l{k}"] = np.ascontiguousarray(case.h0[k * D:(k + 1) * D])
        if case.cfg.cell == "lstm":
            feeds[f"c0_l{k}"] = np.ascontiguousarray(case.c0[k * D:(k + 1) * D])
    if case.lengths is not None:
        feeds["seq_lens"] = case.lengths.astype(np.int32)
    return feeds


_ORT_DOUBLE: Dict[str, bool] = {}


def _ort_runs_double(ort, cell: str) -> bool:
    """Whether ONNX Runtime's CPU kernel of this operator accepts float64 (probed once, tiny)."""
    if cell not in _ORT_DOUBLE:
        probe = make_case(Config(cell, 1, 2, seq=1, dtype="float64"))
        so = ort.SessionOptions()
        so.log_severity_level = 4
        try:
            sess = ort.InferenceSession(onnx_model(probe).SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
            sess.run(None, _ort_feeds(probe))
            _ORT_DOUBLE[cell] = True
        except Exception:
            _ORT_DOUBLE[cell] = False
    return _ORT_DOUBLE[cell]


def build_ort(case: Case, threads=None) -> Runner:
    """ONNX Runtime CPU provider, intra_op_num_threads=threads, inter_op_num_threads=1."""
    cfg = case.cfg
    model = onnx_model(case)
    ort = _import_optional("onnxruntime", "ONNX Runtime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads) if threads else 0     # 0 = ORT's default
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 4
    if cfg.dtype == "float64" and not _ort_runs_double(ort, cfg.cell):
        raise PeerUnavailable(f"ONNX Runtime {ort.__version__} has no float64 {cfg.cell.upper()} "
                              f"kernel on the CPU")
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:160]
        raise PeerUnavailable(f"ONNX Runtime cannot run this graph ({msg})") from None
    feeds = _ort_feeds(case)

    if cfg.kind == "cell":
        def canonical(res):
            return _split_cell(cfg, tuple(a[0] for a in res) if cfg.cell == "lstm"
                               else res[0][0])
    else:
        def canonical(res):
            return _split_state(cfg, res[0], tuple(res[1:]) if cfg.cell == "lstm" else res[1])

    return Runner("ort", lambda: sess.run(None, feeds), canonical)


FORWARD_BUILDERS: Dict[str, Callable] = OrderedDict(
    fusedrnn=build_fusedrnn, numpy=build_numpy, torch=build_torch, ort=build_ort)
TRAIN_BUILDERS: Dict[str, Callable] = OrderedDict(
    fusedrnn=build_fusedrnn_train, torch=build_torch_train)
# The latency table: fusedrnn with PyTorch and ONNX Runtime for context.
LATENCY_BUILDERS: Dict[str, Callable] = OrderedDict(
    fusedrnn=build_fusedrnn, torch=build_torch, ort=build_ort)
# Variable lengths: the inference peers, and fusedrnn's own padded run next to fusedrnn.
LENGTHS_BUILDERS: Dict[str, Callable] = OrderedDict(
    fusedrnn=build_fusedrnn, padded=build_fusedrnn_padded, numpy=build_numpy, torch=build_torch,
    ort=build_ort)


def builders_for(cfg: Config) -> Dict[str, Callable]:
    """The implementations that time a row of this kind, by name."""
    if cfg.train:
        return TRAIN_BUILDERS
    if cfg.kind == "lengths":
        return LENGTHS_BUILDERS
    return LATENCY_BUILDERS if cfg.kind in LATENCY_KINDS else FORWARD_BUILDERS


def chosen(builders: Dict[str, Callable], impls) -> list:
    """The names of ``builders`` that run when ``impls`` are chosen, in the builders' order
    (``padded`` runs with fusedrnn)."""
    return [i for i in builders if FOLLOWS.get(i, i) in impls]


def reference(case: Case) -> Dict[str, np.ndarray]:
    """float64 ground truth for ``case`` (inputs and weights as rounded to the case's dtype).

    Inference (all kinds, a cell as a 1-step layer, a case with lengths as PyTorch's packed
    path): the NumPy reference in float64.
    Training: PyTorch autograd in float64 (raises PeerUnavailable without PyTorch).
    """
    c64 = case.astype(np.float64)
    if case.cfg.train:
        r = build_torch_train(c64, threads=None)
        return r.canonical(r())
    r = build_numpy(c64, threads=None)
    return r.canonical(r())
