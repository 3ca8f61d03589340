"""``Reversed(layer)``: a one-direction LSTM or GRU run from the last step to the first.

This is ONNX's ``direction="reverse"`` (and the backward half of a bidirectional layer on its
own): the layer reads the sequence in reverse time order and its outputs are put back in input
order, so ``out[t]`` is the state after reading steps ``T-1, ..., t``, and ``h_n`` (``c_n``) is
the state after step 0.  It is the wrapped layer run on the time-flipped input, with the output
flipped back; with ``lengths=`` each sequence is flipped within its own length (its padding
stays where it is), as ONNX and PyTorch's packed sequences do.

The wrapper keeps the layer's parameters, options and ``state_dict``; it is for inference
(``forward`` / call) and ``to_onnx``.  Training and streams are not offered (``forward_train``,
``backward``, ``stream`` raise AttributeError rather than silently running the layer forwards).
"""
import numpy as np

from ._rnn import GRU, LSTM
from ._validate import as_real_array

# the layer's options and read-only properties, shared through the wrapper
_OPTIONS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
            "bidirectional", "proj_size", "reset_after", "dtype", "num_directions")


class Reversed:
    """``Reversed(layer)``: ``layer`` (an ``LSTM`` or ``GRU``, not bidirectional) run from the
    last step to the first; ``out, h_n = rev(x, hx=None, lengths=None)`` as the layer's call,
    ``out`` in input order.  Parameters, options, ``state_dict`` and ``load_state_dict`` are the
    layer's (``rev.layer``)."""

    def __init__(self, layer):
        if type(layer) not in (LSTM, GRU):
            raise TypeError(f"layer must be a fusedrnn.LSTM or GRU, got {type(layer).__name__}")
        if layer.bidirectional:
            raise ValueError("layer must not be bidirectional (it already runs both ways), got "
                             "bidirectional=True")
        self.__dict__["layer"] = layer

    # ------------------------------------------------------------------ the layer's attributes
    def __getattr__(self, name):
        layer = self.__dict__.get("layer")
        if layer is not None and (name in _OPTIONS or name in layer._shapes):
            return getattr(layer, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.layer._shapes:
            setattr(self.layer, name, value)          # a parameter: checked by the layer
        else:
            raise AttributeError(f"Reversed: cannot set {name!r} (parameters only)")

    def __getstate__(self):
        return {"layer": self.layer}

    def __setstate__(self, state):
        self.__dict__["layer"] = state["layer"]

    def parameter_names(self):
        return self.layer.parameter_names()

    def state_dict(self):
        return self.layer.state_dict()

    def load_state_dict(self, state_dict, strict=True):
        return self.layer.load_state_dict(state_dict, strict)

    def __repr__(self):
        return f"Reversed({self.layer!r})"

    # ------------------------------------------------------------------ running
    def __call__(self, input, hx=None, **kwargs):
        return self.forward(input, hx, **kwargs)

    def forward(self, input, hx=None, lengths=None):
        """``out, h_n`` (``out, (h_n, c_n)`` for LSTM) of the layer read backwards in time;
        ``lengths`` (if the layer takes it) is passed on, each sequence flipped within it."""
        x = as_real_array("input", input, None)
        if x.ndim not in (2, 3):
            return self.layer(x, hx)                  # the layer raises its shape error
        axis = 1 if (x.ndim == 3 and self.layer.batch_first) else 0
        if lengths is None:
            out, state = self.layer(np.flip(x, axis), hx)
            return np.flip(out, axis), state
        T, B = (x.shape[1], x.shape[0]) if axis == 1 else (x.shape[0], x.shape[1])
        src = _flip_index(T, B, lengths) if x.ndim == 3 else None
        if src is None:
            self.layer(x, hx, lengths=lengths)        # the layer's own error for bad lengths
            raise ValueError(f"lengths must hold one integer in [0, {T}] per sequence of a "
                             f"batched input (batch {B}), got {lengths!r}")
        b = np.arange(B)[None, :]
        flip = (lambda a: a[src, b]) if axis == 0 else (lambda a: a[b.T, src.T])
        out, state = self.layer(flip(x), hx, lengths=lengths)
        return flip(out), state

    def to_onnx(self, path=None, initial_states=False):
        """An ONNX model of this layer with ``direction="reverse"`` nodes (see
        ``LSTM.to_onnx``)."""
        from ._onnx import to_onnx
        return to_onnx(self, path, initial_states)


def _flip_index(T, B, lengths):
    """(T, B) indices that reverse each sequence of a batch within its length and leave the
    padding in place (x[src[t, b], b] is read at step t; the map is its own inverse), or None
    for lengths that are not one integer in [0, T] per sequence."""
    n = np.asarray(lengths)
    if n.shape != (B,) or n.dtype.kind not in "iu" or (B and (n.min() < 0 or n.max() > T)):
        return None
    t = np.arange(T)[:, None]
    return np.where(t < n[None, :], n[None, :] - 1 - t, t)
