"""ONNX interchange: ``fusedrnn.from_onnx(model)`` and ``model.to_onnx(path)``.

onnx is imported only by these functions.  ONNX's ``LSTM`` and ``GRU`` operators hold, per
direction d, ``W[d]`` (G*H, I), ``R[d]`` (G*H, H) and ``B[d] = [Wb[d], Rb[d]]`` (2*G*H,), with
the gate blocks in the orders i, o, f, c (LSTM) and z, r, h (GRU); ours (PyTorch's, see
fusedrnn._notation) are i, f, g, o and r, z, n, so ``weight_ih = W[d]``, ``weight_hh = R[d]``,
``bias_ih = Wb[d]``, ``bias_hh = Rb[d]`` with the blocks reordered.

Attributes: ``hidden_size`` (checked against R), ``direction`` forward -> a layer,
bidirectional -> ``bidirectional=True``, reverse -> ``Reversed(layer)``; ``layout`` 0/1 ->
``batch_first`` False/True; ``linear_before_reset`` 0/1 -> ``GRU(reset_after=False/True)``.
``B`` absent -> ``bias=False`` (ONNX's zeros).  Refused with ValueError naming the attribute or
input: non-zero peepholes ``P``, ``clip``, ``input_forget=1``, activations other than the
defaults (and any ``activation_alpha``/``activation_beta``), weights that are not constants
(initializers or Constant nodes), constant ``sequence_lens``, constant non-zero ``initial_h`` /
``initial_c`` (zeros are the same as no initial state).  Runtime inputs map to the call:
``initial_h``/``initial_c`` (D, B, H) are ``hx`` as given for layout 0 (layout 1: transpose
axes 0 and 1), ``sequence_lens`` is ``lengths=``.
"""
import json
import os

import numpy as np

from ._cells import GRUCell, LSTMCell
from ._reversed import Reversed
from ._rnn import GRU, LSTM
from ._validate import check_bool

OPSET = 14
_GATES = {"LSTM": 4, "GRU": 3}
# for each of our gate blocks (i, f, g, o / r, z, n), the ONNX block it is (i, o, f, c / z, r, h)
_FROM_ONNX = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}
_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_ATTRIBUTES = {"hidden_size", "direction", "layout", "activations", "activation_alpha",
               "activation_beta", "clip", "output_sequence"}    # output_sequence: opset 1 only
_REDUCE = {"sum": "ReduceSum", "mul": "ReduceProd", "ave": "ReduceMean"}   # merge_mode over D
_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")


def _gates(a, op, to_onnx=False):
    """`a` (G*H, ...) with its gate blocks reordered: ONNX -> ours, or ours -> ONNX."""
    order = np.array(_FROM_ONNX[op])
    if to_onnx:
        order = np.argsort(order)
    G = _GATES[op]
    return a.reshape(G, -1, *a.shape[1:])[order].reshape(a.shape)


# ============================================================================== from_onnx
def from_onnx(model):
    """Our layers for the ``LSTM`` and ``GRU`` nodes of an ONNX model (a path or a
    ``ModelProto``): the layer for a model with one such node, else a dict node name -> layer
    (a node without a name is keyed ``"{op_type}_{index}"``, its index in ``graph.node``).
    Layers use our (PyTorch's) conventions; see fusedrnn._onnx for the mapping.  A model
    written by ``to_onnx`` (recognised by its metadata and re-exported to check that the graph
    is exactly the one ``to_onnx`` writes) comes back as the model that wrote it."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (str, os.PathLike)):
        proto = onnx.load(os.fspath(model))
    else:
        raise TypeError("model must be a path to an ONNX file or an onnx.ModelProto, got "
                        f"{type(model).__name__}")
    graph = proto.graph
    consts = _constants(graph)
    layers = {}
    for index, node in enumerate(graph.node):
        if node.op_type in _GATES and node.domain in ("", "ai.onnx"):
            key = node.name or f"{node.op_type}_{index}"
            if key in layers:
                raise ValueError(f"node names must be unique: two LSTM/GRU nodes are named "
                                 f"{key!r}")
            layers[key] = _layer(node, consts)
    if not layers:
        raise ValueError("model has no LSTM or GRU node (in its main graph), found "
                         f"{sorted({n.op_type for n in graph.node})}")
    ours = _our_export(proto, list(layers.values()))
    if ours is not None:
        return ours
    return next(iter(layers.values())) if len(layers) == 1 else layers


def _constants(graph):
    """name -> numpy array of the graph's initializers and Constant nodes' tensors."""
    from onnx import numpy_helper

    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = a.t
    return {name: numpy_helper.to_array(t) for name, t in consts.items()}


def _attributes(node, where):
    """(direction, layout, linear_before_reset, hidden_size or None) of an LSTM/GRU node, after
    checking that every attribute is one fusedrnn runs."""
    from onnx import helper

    op = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    known = _ATTRIBUTES | ({"input_forget"} if op == "LSTM" else {"linear_before_reset"})
    for name in attrs:
        if name not in known:
            raise ValueError(f"{where}: unknown attribute {name!r}")
    direction = _text(attrs.get("direction", b"forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{where}: direction must be 'forward', 'reverse' or 'bidirectional', "
                         f"got {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{where}: layout must be 0 or 1, got {layout!r}")
    if "clip" in attrs:
        raise ValueError(f"{where}: clip (cell clipping, clip={attrs['clip']}) is not supported: "
                         "fusedrnn runs the unclipped cell")
    if attrs.get("input_forget", 0) != 0:
        raise ValueError(f"{where}: input_forget={attrs['input_forget']} (coupled input and "
                         "forget gates) is not supported, only 0")
    acts = [_text(a) for a in attrs.get("activations", [])]
    default = _ACTIVATIONS[op]
    if acts and acts not in (default, default * D):
        raise ValueError(f"{where}: activations must be the defaults {default} (per direction), "
                         f"got {acts}")
    for name in ("activation_alpha", "activation_beta"):
        if len(attrs.get(name, [])):
            raise ValueError(f"{where}: {name} is not supported (fusedrnn runs the default "
                             f"activations {default} only), got {list(attrs[name])}")
    reset_after = attrs.get("linear_before_reset", 0)
    if reset_after not in (0, 1):
        raise ValueError(f"{where}: linear_before_reset must be 0 or 1, got {reset_after!r}")
    return direction, layout, reset_after, attrs.get("hidden_size")


def _layer(node, consts):
    """The layer of one LSTM/GRU node (checks every attribute and constant input)."""
    op, G = node.op_type, _GATES[node.op_type]
    where = f"{op} node {node.name!r}" if node.name else f"{op} node"
    direction, layout, reset_after, hidden_size = _attributes(node, where)
    D = 2 if direction == "bidirectional" else 1
    names = dict(zip(_INPUTS, list(node.input) + [""] * len(_INPUTS)))

    def const(name, required=True):
        """The constant input `name`, None when absent (or, not required, given at run time)."""
        tensor = names[name]
        if not tensor:
            return None
        if tensor not in consts:
            if not required:
                return None
            raise ValueError(f"{where}: {name} ({tensor!r}) must be a constant (an initializer "
                             "or a Constant node), got a value computed at run time")
        return consts[tensor]

    W, R = const("W"), const("R")
    if W is None or R is None:
        raise ValueError(f"{where}: input {'W' if W is None else 'R'} is missing ({op} "
                         "requires X, W and R)")
    if W.dtype not in (np.float32, np.float64):
        raise ValueError(f"{where}: W must be float32 or float64, got {W.dtype}")
    dtype = W.dtype
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or W.shape[1] % G:
        raise ValueError(f"{where}: W must have shape ({D}, {G}*hidden_size, input_size) for "
                         f"direction={direction!r}, got {W.shape} (R {R.shape})")
    H, I = W.shape[1] // G, W.shape[2]
    if hidden_size not in (None, H) or R.shape != (D, G * H, H):
        raise ValueError(f"{where}: hidden_size={hidden_size} does not fit W "
                         f"{W.shape} and R {R.shape} (expected R ({D}, {G * H}, {H}))")
    B = const("B")
    if B is not None and B.shape != (D, 2 * G * H):
        raise ValueError(f"{where}: B must have shape ({D}, {2 * G * H}), got {B.shape}")
    if names["sequence_lens"] in consts:
        raise ValueError(f"{where}: sequence_lens is a constant; give it at call time "
                         "(lengths=) instead")
    for name in ("initial_h", "initial_c"):
        value = const(name, required=False)
        if value is not None and np.any(value != 0):
            raise ValueError(f"{where}: {name} is a constant with non-zero values; fusedrnn "
                             "takes initial states at call time (hx=): make it a graph input")
    P = const("P")
    if P is not None and np.any(P != 0):
        raise ValueError(f"{where}: peepholes P are not supported (only all-zero P, the same "
                         "as none)")

    kw = dict(bias=B is not None, batch_first=layout == 1, bidirectional=D == 2,
              dtype=dtype, seed=0)
    if op == "GRU":
        kw["reset_after"] = bool(reset_after)
    layer = (LSTM if op == "LSTM" else GRU)(I, H, **kw)
    sd = {}
    for d in range(D):
        s = layer._suffix(0, d)
        sd["weight_ih" + s] = _gates(W[d], op)
        sd["weight_hh" + s] = _gates(R[d], op)
        if B is not None:
            sd["bias_ih" + s] = _gates(B[d, :G * H], op)
            sd["bias_hh" + s] = _gates(B[d, G * H:], op)
    layer.load_state_dict(sd)
    return Reversed(layer) if direction == "reverse" else layer


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _our_export(proto, layers):
    """The model `to_onnx` wrote `proto` from, or None if `proto` is not exactly such a graph."""
    meta = {p.key: p.value for p in proto.metadata_props}.get("fusedrnn")
    try:
        config = json.loads(meta)
        cls = {c.__name__: c for c in (LSTM, GRU, LSTMCell, GRUCell)}[config.pop("class")]
        reverse, initial_states = config.pop("reversed"), config.pop("initial_states")
        # the metadata is the file's word: a model of as many layers as the graph has nodes,
        # checked before the constructor allocates any weights
        if config.get("num_layers", 1) != len(layers):
            return None
        first = layers[0].model if isinstance(layers[0], Reversed) else layers[0]
        model = cls(first.input_size, first.hidden_size, dtype=first.dtype, seed=0, **config)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError):
        return None                 # not ours: an ordinary model
    sd = {}
    for k, layer in enumerate(layers):
        for name, value in layer.state_dict().items():
            base, _, direction = name.partition("_l0")
            sd[base + model._suffix(k, 1 if direction else 0)] = value
    try:
        model.load_state_dict(sd)
        model = Reversed(model) if reverse else model
        again = to_onnx(model, initial_states=initial_states)
    except (TypeError, ValueError):
        return None
    same = (again.graph.SerializeToString(deterministic=True)
            == proto.graph.SerializeToString(deterministic=True))
    return model if same else None


# ============================================================================== to_onnx
def to_onnx(model, path=None, initial_states=False):
    """A standard ONNX model of `model` (an LSTM, GRU, LSTMCell, GRUCell or Reversed), one
    LSTM/GRU node per layer; written to `path` if given, and returned (a ModelProto)."""
    import onnx
    from onnx import helper, numpy_helper

    initial_states = check_bool("initial_states", initial_states)
    rnn = model.model if isinstance(model, Reversed) else model
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"to_onnx: an LSTM with proj_size > 0 has no ONNX equivalent (ONNX's "
                         f"LSTM has no projection), got proj_size={rnn.proj_size}")
    op = "LSTM" if isinstance(rnn, LSTM) else "GRU"
    cell = isinstance(rnn, (LSTMCell, GRUCell))
    H, L, D = rnn.hidden_size, rnn.num_layers, rnn.num_directions
    merge = getattr(rnn, "merge_mode", "concat")
    direction = ("reverse" if isinstance(model, Reversed)
                 else "bidirectional" if D == 2 else "forward")
    elem = helper.np_dtype_to_tensor_dtype(rnn.dtype)
    states = ("h0", "c0")[:2 if op == "LSTM" else 1]
    finals = ("h", "c") if cell else ("h_n", "c_n")
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add(op_type, inputs, output, **attrs):
        nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    # graph inputs: input, then h0 (c0) if asked; cells add and drop the time (state) axes
    if cell or initial_states:
        const("axis0", np.array([0], dtype=np.int64))
    if cell:
        in_shape, state_shape = ["batch", rnn.input_size], ["batch", H]
        x = add("Unsqueeze", ["input", "axis0"], "input_seq")
    else:
        in_shape = (["batch", "seq", rnn.input_size] if rnn.batch_first
                    else ["seq", "batch", rnn.input_size])
        state_shape = [L * D, "batch", H]
        x = add("Transpose", ["input"], "input_tm", perm=[1, 0, 2]) if rnn.batch_first \
            else "input"
    inputs = [helper.make_tensor_value_info("input", elem, in_shape)]
    if initial_states:
        inputs += [helper.make_tensor_value_info(s, elem, state_shape) for s in states]
    if not cell:
        const("flat", np.array([0, 0, -1], dtype=np.int64))   # (T, B, D, H) -> (T, B, D*H)

    layer_finals = {s: [] for s in states}
    for k in range(L):
        def param(name):        # (D, ...): this layer's directions, ONNX's gate order
            return np.stack([_gates(rnn._param(name + rnn._suffix(k, d)), op, to_onnx=True)
                             for d in range(D)])

        ins = [x, const(f"W_l{k}", param("weight_ih")), const(f"R_l{k}", param("weight_hh")),
               const(f"B_l{k}", np.concatenate([param("bias_ih"), param("bias_hh")], axis=1))
               if rnn.bias else "", ""]
        if initial_states and cell:
            ins += [add("Unsqueeze", [st, "axis0"], f"{st}_l{k}") for st in states]
        elif initial_states:      # this layer's rows k*D:(k+1)*D of h0 (c0)
            span = [const(f"start_l{k}", np.array([k * D], dtype=np.int64)),
                    const(f"end_l{k}", np.array([(k + 1) * D], dtype=np.int64)), "axis0"]
            ins += [add("Slice", [st] + span, f"{st}_l{k}") for st in states]
        outs = [f"Y_l{k}"] + [f"Y_{'hc'[i]}_l{k}" for i in range(len(states))]
        attrs = dict(hidden_size=H, direction=direction)
        if op == "GRU":
            attrs["linear_before_reset"] = int(rnn.reset_after)
        nodes.append(helper.make_node(op, _trim(ins), outs, name=f"{op.lower()}_l{k}",
                                      **attrs))
        for st, y in zip(states, outs[1:]):
            layer_finals[st].append(y)
        if not cell and k == L - 1 and merge != "concat":
            # (T, D, B, H) -> (T, B, H): the two directions summed, multiplied or averaged
            y = (add("ReduceSum", [outs[0], const("axis1", np.array([1], dtype=np.int64))],
                     "Y_merged", keepdims=0) if merge == "sum" else
                 add(_REDUCE[merge], [outs[0]], "Y_merged", axes=[1], keepdims=0))
            x = add("Transpose", [y], "out", perm=[1, 0, 2]) if rnn.batch_first \
                else add("Identity", [y], "out")
        elif not cell:
            last = k == L - 1
            perm = [2, 0, 1, 3] if last and rnn.batch_first else [0, 2, 1, 3]
            y = add("Transpose", [outs[0]], f"Y_l{k}_t", perm=perm)
            x = add("Reshape", [y, "flat"], "out" if last else f"X_l{k + 1}")

    outputs = []
    if cell:
        for st, name in zip(states, finals):
            add("Squeeze", [layer_finals[st][0], "axis0"], name)
            outputs.append(helper.make_tensor_value_info(name, elem, ["batch", H]))
    else:
        F = D * H if merge == "concat" else H
        out_shape = ["batch", "seq", F] if rnn.batch_first else ["seq", "batch", F]
        outputs.append(helper.make_tensor_value_info("out", elem, out_shape))
        for st, name in zip(states, finals):
            add("Concat", layer_finals[st], name, axis=0)
            outputs.append(helper.make_tensor_value_info(name, elem, [L * D, "batch", H]))
    graph = helper.make_graph(nodes, f"fusedrnn_{type(rnn).__name__}", inputs, outputs, inits)
    proto = helper.make_model_gen_version(graph, producer_name="fusedrnn",
                                          opset_imports=[helper.make_opsetid("", OPSET)])
    config = {"class": type(rnn).__name__, "reversed": direction == "reverse",
              "initial_states": initial_states, "bias": rnn.bias}
    if not cell:
        config.update(num_layers=L, batch_first=rnn.batch_first, dropout=rnn.dropout,
                      bidirectional=rnn.bidirectional, merge_mode=merge)
    if op == "GRU":
        config["reset_after"] = rnn.reset_after
    helper.set_model_props(proto, {"fusedrnn": json.dumps(config)})
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


def _trim(inputs):
    """A node's input list without its trailing empty (omitted) optional inputs."""
    while inputs and not inputs[-1]:
        inputs = inputs[:-1]
    return inputs
