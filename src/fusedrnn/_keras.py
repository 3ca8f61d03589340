"""Keras 3 models in one call: ``fusedrnn.from_keras(layer)``, and ``GoBackwards``.

keras is imported only by ``from_keras`` (any Keras 3 backend).  Keras lays weights out as
``kernel`` (I, G*H), ``recurrent_kernel`` (H, G*H) and ``bias``; its gate orders are i, f, c, o
(LSTM: ours, PyTorch's i, f, g, o) and z, r, h (GRU: ours r, z, n).  Its GRU bias is
(2, 3*H) = (input bias, recurrent bias) with ``reset_after=True`` (PyTorch's form) and one
(3*H,) input bias with ``reset_after=False``, where ours takes it as ``bias_ih`` and
``bias_hh = 0`` (``W_hn (r * h) + b_hn`` and the input bias are simply added).

Keras's outputs in ours (``x`` of shape (batch, seq, features), ``batch_first=True``):

- ``return_sequences=True``: Keras's sequences are our ``out``;
- ``return_sequences=False``: Keras's output is the last step ``out[:, -1]``, that is
  ``h_n[0]``; a Bidirectional's is its ``merge_mode`` applied to ``h_n[0]`` and ``h_n[1]``
  (its backward layer's last output is the one at the first time step);
- ``return_state=True``: Keras's states are ``h_n[0]`` (GRU) or ``h_n[0], c_n[0]`` (LSTM); a
  Bidirectional's are ``h_n[0], c_n[0], h_n[1], c_n[1]`` (forward layer first);
- ``go_backwards=True``: Keras runs the reversed sequence and returns the outputs in the order
  it ran them; ``from_keras`` returns a ``GoBackwards`` wrapper that does the same.
- ``Bidirectional(merge_mode=None)``: Keras's two outputs are ``np.split(out, 2, axis=-1)``
  (the model is made with ``merge_mode="concat"``).
- dtype: the layers' weights' (float32 or float64).  A Bidirectional casts its outputs to its
  own dtype: float64 layers in a float32 wrapper give Keras's float64 numbers rounded to float32.
- Masks: a Keras layer does not hold its mask (it comes from the inputs, e.g. ``Masking`` or
  ``Embedding(mask_zero=True)``).  A right-padded batch's mask is our ``lengths``:
  ``lengths = mask.sum(axis=1)`` (the same final states, and the same outputs at the valid steps).
"""
import numpy as np

from ._cells import GRUCell, LSTMCell
from ._rnn import GRU, LSTM
from ._validate import as_real_array
from ._wrapper import ModelWrapper

# Keras's gate blocks (in units of H) in our order: ours[k] = keras[_GATES[cls][k]]
_GATES = {LSTM: (0, 1, 2, 3), GRU: (1, 0, 2)}


def from_keras(layer):
    """The fusedrnn twin of a built Keras 3 ``keras.layers.LSTM``, ``GRU`` or ``Bidirectional``
    wrapper of one: a ``batch_first=True`` LSTM/GRU (wrapped in ``GoBackwards`` when the Keras
    layer has ``go_backwards=True``) of the layer's dtype (float32/float64) and weights whose
    call gives Keras's outputs (see the module docstring for how they map).

    Refused (ValueError naming the option): ``activation`` other than tanh,
    ``recurrent_activation`` other than sigmoid, ``stateful=True`` (use ``model.stream()``), an
    unbuilt layer, compute dtypes other than float32/float64 (mixed precision), Bidirectional
    wrappers whose two layers differ.  Accepted: ``dropout`` and ``recurrent_dropout`` (applied
    only in Keras training; inference is unaffected, and our model gets ``dropout=0``),
    ``unroll``, ``use_cudnn``, ``unit_forget_bias`` and initialisers (only how weights start)."""
    import keras

    kinds = {keras.layers.LSTM: LSTM, keras.layers.GRU: GRU}
    if type(layer) is keras.layers.Bidirectional:
        layers = (layer.forward_layer, layer.backward_layer)
        merge_mode = "concat" if layer.merge_mode is None else layer.merge_mode
        for part, sub in zip(("forward_layer", "backward_layer"), layers):
            if type(sub) not in kinds:
                raise TypeError(f"layer.{part} must be a keras.layers.LSTM or GRU, got "
                                f"{_qualname(sub)}")
    elif type(layer) in kinds:
        layers = (layer,)
        merge_mode = "concat"
    else:
        raise TypeError("layer must be a keras.layers.LSTM, GRU or Bidirectional wrapper of one, "
                        f"got {_qualname(layer)}")
    cls = kinds[type(layers[0])]
    configs = [_check(keras, sub) for sub in layers]
    unlike = [f"{k} {configs[0][k]} != {configs[1][k]}" for k in configs[0]
              if len(layers) == 2 and configs[0][k] != configs[1][k]]
    if unlike:
        raise ValueError("layer: a Bidirectional's forward and backward layers must be alike, "
                         f"got {', '.join(unlike)}")
    config = configs[0]
    kw = {"reset_after": config["reset_after"]} if cls is GRU else {}
    weights = [_weights(cls, sub) for sub in layers]
    model = cls(weights[0]["weight_ih"].shape[1], config["units"], bias=config["use_bias"],
                batch_first=True, bidirectional=len(layers) == 2, dtype=config["dtype"],
                merge_mode=merge_mode, **kw)
    model.load_state_dict({name + model._suffix(0, d): w
                           for d, ws in enumerate(weights) for name, w in ws.items()})
    # Bidirectional: Keras checks that its two layers' go_backwards differ; its output at step t
    # is the forward layer's t-th output merged with the backward layer's output at the same
    # time step.  So a forward layer with go_backwards=True is our model on the reversed input.
    return GoBackwards(model) if layers[0].go_backwards else model


def _qualname(obj):
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _check(keras, layer):
    """Refuse what fusedrnn cannot run; -> its configuration (class, units, use_bias,
    reset_after, dtype)."""
    cell = layer.cell
    name = f"{type(layer).__name__} {layer.name!r}"
    if not layer.built:
        raise ValueError(f"layer must be built (call it once or layer.build(input_shape)): "
                         f"{name} has no weights yet")
    for option, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        fn = getattr(cell, option)
        if not _computes(keras, fn, want):
            got = _activation_name(keras, fn)
            what = " (a function of that name that computes something else)" if got == want else ""
            raise ValueError(f"{option} must be {want!r} (the only one fusedrnn runs), got "
                             f"{got!r}{what} in {name}")
    if layer.stateful:
        raise ValueError(f"stateful=True is not supported ({name}): convert the layer with "
                         "stateful=False and carry the state with model.stream(batch)")
    dtypes = {np.dtype(keras.backend.standardize_dtype(v.dtype)) for v in layer.weights}
    dtypes.add(np.dtype(keras.backend.standardize_dtype(layer.compute_dtype)))
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(f"dtype: {name} must compute in float32 or float64 with weights of "
                         f"that dtype, got {sorted(str(d) for d in dtypes)} (dtype policy "
                         f"{layer.dtype_policy.name!r})")
    return {"class": type(layer).__name__, "units": int(cell.units),
            "use_bias": bool(cell.use_bias),
            "reset_after": bool(getattr(cell, "reset_after", True)),
            "dtype": next(iter(dtypes)).type}


def _computes(keras, fn, want):
    """Whether the activation fn computes `want` ("tanh" or "sigmoid"): checked on values, since
    a name says nothing (a user's function named tanh serialises as "tanh")."""
    x = np.linspace(-12.0, 12.0, 241, dtype=np.float32)
    ref = np.tanh(x) if want == "tanh" else 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    try:
        got = np.asarray(keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(x))),
                         dtype=np.float64)
    except Exception:                    # not an elementwise function of one tensor
        return False
    return got.shape == x.shape and bool(np.all(np.abs(got - ref) <= 1e-5))


def _activation_name(keras, fn):
    try:
        name = keras.activations.serialize(fn)
    except Exception:                    # an arbitrary callable
        name = None
    return name if isinstance(name, str) else getattr(fn, "__name__", repr(fn))


def _weights(cls, layer):
    """Keras cell weights -> ours (PyTorch's names without the layer suffix), float64 copies."""
    cell = layer.cell
    H = cell.units
    order = _GATES[cls]

    def ours(w):                          # (..., G*H) in Keras's gate order -> ours, transposed
        w = np.asarray(w)
        return np.concatenate([w[..., g * H:(g + 1) * H] for g in order], axis=-1).T

    out = {"weight_ih": ours(_numpy(cell.kernel)),
           "weight_hh": ours(_numpy(cell.recurrent_kernel))}
    if cell.use_bias:
        b = _numpy(cell.bias)
        if b.ndim == 2:                   # GRU reset_after=True: (input bias, recurrent bias)
            out["bias_ih"], out["bias_hh"] = ours(b[0]), ours(b[1])
        else:                             # LSTM, GRU reset_after=False: one bias, added once
            out["bias_ih"], out["bias_hh"] = ours(b), np.zeros_like(b)
    return out


def _numpy(variable):
    import keras
    return np.array(keras.ops.convert_to_numpy(variable))


class GoBackwards(ModelWrapper):
    """A model run on the time-reversed input, its outputs in the order it ran them: Keras's
    ``go_backwards=True``.  ``out, h_n = GoBackwards(model)(x, hx)`` is ``model(x reversed on
    its time axis, hx)``; ``out[:, 0]`` is the output after the last step of x (batch_first).

    ``forward_train`` / ``backward`` work the same way (``dx`` is in x's own order);
    ``state_dict`` / ``load_state_dict`` are the model's; ``.model`` is the model.  No streams
    (the first step run is the sequence's last) and no ``lengths``: a reversed right-padded
    batch starts with its padding."""

    def __init__(self, model):
        if not isinstance(model, (LSTM, GRU)) or isinstance(model, (LSTMCell, GRUCell)):
            raise TypeError(f"model must be a fusedrnn.LSTM or GRU (a sequence model), got "
                            f"{type(model).__name__}")
        super().__init__(model)

    def _reversed(self, input, batch_first=None):
        """input reversed on its time axis (batch_first: the model's if None)."""
        x = as_real_array("input", input, None)
        if x.ndim == 3 and (self.model.batch_first if batch_first is None else batch_first):
            return x[:, ::-1]
        return x[::-1] if x.ndim in (2, 3) else x      # other shapes: the model's error

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def forward(self, input, hx=None):
        """``model.forward`` on the reversed input: ``out, h_n`` (``(h_n, c_n)`` for LSTM)."""
        return self.model.forward(self._reversed(input), hx)

    def forward_train(self, input, hx=None, rng=None):
        """``model.forward_train`` on the reversed input: ``out, h_n, tape``."""
        return self.model.forward_train(self._reversed(input), hx, rng)

    def backward(self, tape, d_out, d_h_n=None):
        """``model.backward``; ``dx`` is put back in the input's own time order."""
        dx, dhx, grads = self.model.backward(tape, d_out, d_h_n)
        # dx is laid out as the recorded run's input (batch_first may have changed since)
        return np.ascontiguousarray(self._reversed(dx, tape.batch_first)), dhx, grads

