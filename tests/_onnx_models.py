"""ONNX models for the tests, written with onnx.helper from the operator spec (no fusedrnn code),
and the references that run them: ONNX Runtime (float32) and onnx's ReferenceEvaluator (float64:
ONNX Runtime's GRU has no double kernel).  ONNX Runtime refuses layout=1, so a layout-1 model is
run as its layout-0 twin (the same weights) on transposed inputs, with the outputs transposed
back as the spec defines: X (B, T, I), initial states (B, D, H), Y (B, T, D, H), Y_h (B, D, H).
"""
import numpy as np

GATES = {"LSTM": 4, "GRU": 3}
INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")


def node_model(op="LSTM", *, I=3, H=4, direction="forward", layout=0, bias=True, initial=None,
               seq_lens=False, dtype=np.float32, attrs=None, P=None, weights="initializer",
               seed=0, name="rnn", override=None):
    """A model of one LSTM/GRU node with random weights (the same for the same seed, whatever
    the layout).  Graph inputs: X, then sequence_lens if `seq_lens` (`"constant"`: an
    initializer), then initial_h (and initial_c) if `initial == "input"`; `initial`
    "zeros"/"random" makes them constants.  `override`: name -> array replacing a value.
    `weights`: "initializer", "constant" (Constant nodes) or "input" (graph inputs: not
    constants).  `P`: peepholes (LSTM), an initializer.  `attrs`: more node attributes."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    G, D = GATES[op], 2 if direction == "bidirectional" else 1
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    values = {"W": rng.uniform(-0.5, 0.5, (D, G * H, I)),
              "R": rng.uniform(-0.5, 0.5, (D, G * H, H)),
              "B": rng.uniform(-0.5, 0.5, (D, 2 * G * H))}
    states = ["initial_h", "initial_c"][:2 if op == "LSTM" else 1]
    state_shape = [D, "batch", H] if layout == 0 else ["batch", D, H]
    for s in states:
        values[s] = (rng.standard_normal((D, 2, H)) if initial == "random"
                     else np.zeros((D, 2, H)))
        if layout == 1:
            values[s] = values[s].transpose(1, 0, 2)
    if P is not None:
        values["P"] = P
    values.update(override or {})
    values = {k: np.asarray(v, dtype=dtype) for k, v in values.items()}

    names = {"X": "X", "W": "W", "R": "R", "B": "B" if bias else "",
             "sequence_lens": "sequence_lens" if seq_lens else "",
             "P": "P" if P is not None else ""}
    for s in states:
        names[s] = s if initial else ""
    node_inputs = [names.get(k, "") for k in INPUTS[:8 if op == "LSTM" else 6]]
    while not node_inputs[-1]:
        node_inputs.pop()

    x_shape = ["seq", "batch", I] if layout == 0 else ["batch", "seq", I]
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    nodes, inits = [], []
    if seq_lens == "constant":
        inits.append(numpy_helper.from_array(np.array([1, 1], dtype=np.int32), "sequence_lens"))
    elif seq_lens:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                          ["batch"]))
    constants = [k for k in ("W", "R", "B", "P") if names.get(k)]
    if initial == "input":
        graph_inputs += [helper.make_tensor_value_info(s, elem, state_shape) for s in states]
    elif initial:
        constants += states
    for k in constants:
        if weights == "input" and k in ("W", "R"):
            graph_inputs.append(helper.make_tensor_value_info(k, elem, values[k].shape))
        elif weights == "constant":
            nodes.append(helper.make_node("Constant", [], [k],
                                          value=numpy_helper.from_array(values[k], k)))
        else:
            inits.append(numpy_helper.from_array(values[k], k))
    outputs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    node_attrs = {"hidden_size": H, "direction": direction, **(attrs or {})}
    if layout:
        node_attrs["layout"] = layout
    nodes.append(helper.make_node(op, node_inputs, outputs, name=name, **node_attrs))
    graph = helper.make_graph(nodes, "g", graph_inputs,
                              [helper.make_tensor_value_info(o, elem, None) for o in outputs],
                              inits)
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", 14)])
    return model, values


def run_reference(model, feeds):
    """The model's outputs by ONNX Runtime (float32) or onnx.reference (float64)."""
    if any(v.dtype == np.float64 for v in feeds.values()):
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(None, feeds)
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def reference_outputs(op, feeds, layout=0, **kw):
    """Y, Y_h (, Y_c) of node_model(op, layout=layout, **kw) on `feeds`, laid out for `layout`
    (layout 1 runs the layout-0 twin on transposed inputs)."""
    model, _ = node_model(op, layout=0, **kw)
    if layout == 1:
        feeds = {k: (v.transpose(1, 0, 2) if v.ndim == 3 else v) for k, v in feeds.items()}
    outs = run_reference(model, feeds)
    if layout == 1:
        outs = [outs[0].transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in outs[1:]]
    return outs
