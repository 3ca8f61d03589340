"""``Reversed(model)``: a one-direction LSTM or GRU run from the last step to the first.

This is ONNX's ``direction="reverse"`` (and the backward half of a bidirectional model on its
own): the model reads the sequence in reverse time order and its outputs are put back in input
order, so ``out[t]`` is the state after reading steps ``T-1, ..., t``, and ``h_n`` (``c_n``) is
the state after step 0.  It is the model run on the time-flipped input, with the output flipped
back; with ``lengths=`` each sequence is flipped within its own length (its padding stays where
it is), as ONNX and PyTorch's packed sequences do.  (Keras's ``go_backwards``,
``fusedrnn.GoBackwards``, keeps the outputs in the order run and takes no lengths.)

The wrapper keeps the model's parameters, options and ``state_dict``; it is for inference
(``forward`` / call) and ``to_onnx``.  Training and streams are not offered (``forward_train``,
``backward``, ``stream`` raise AttributeError rather than silently running the model forwards).
"""
import numpy as np

from ._rnn import GRU, LSTM
from ._validate import as_real_array, check_lengths
from ._wrapper import ModelWrapper


class Reversed(ModelWrapper):
    """``Reversed(model)``: ``model`` (an ``LSTM`` or ``GRU``, not bidirectional) run from the
    last step to the first; ``out, h_n = rev(x, hx=None, lengths=None)`` as the model's call,
    ``out`` in input order.  Parameters, options, ``state_dict`` and ``load_state_dict`` are the
    model's (``rev.model``)."""

    def __init__(self, model):
        if type(model) not in (LSTM, GRU):
            raise TypeError(f"model must be a fusedrnn.LSTM or GRU, got {type(model).__name__}")
        if model.bidirectional:
            raise ValueError("model must not be bidirectional (it already runs both ways), got "
                             "bidirectional=True")
        super().__init__(model)

    # ------------------------------------------------------------------ running
    def __call__(self, input, hx=None, **kwargs):
        return self.forward(input, hx, **kwargs)

    def forward(self, input, hx=None, lengths=None):
        """``out, h_n`` (``out, (h_n, c_n)`` for LSTM) of the model read backwards in time;
        with ``lengths`` (as the model's) each sequence is flipped within its length."""
        x = as_real_array("input", input, None)
        batched = x.ndim == 3
        axis = 1 if (batched and self.model.batch_first) else 0
        if x.ndim not in (2, 3) or x.shape[axis] == 0:
            return self.model(x, hx, lengths)         # the model raises its shape error
        if lengths is None:
            out, state = self.model(np.flip(x, axis), hx)
            return np.flip(out, axis), state
        T, B = x.shape[axis], (x.shape[1 - axis] if batched else 1)
        src = _flip_index(T, check_lengths(lengths, T, B, batched))
        b = np.arange(B)[None, :]
        flip = ((lambda a: a[src[:, 0]]) if not batched else
                (lambda a: a[src, b]) if axis == 0 else (lambda a: a[b.T, src.T]))
        out, state = self.model(flip(x), hx, lengths)
        return flip(out), state

    def to_onnx(self, path=None, initial_states=False):
        """An ONNX model of this model with ``direction="reverse"`` nodes (see
        ``LSTM.to_onnx``)."""
        from ._onnx import to_onnx
        return to_onnx(self, path, initial_states)


def _flip_index(T, lengths):
    """(T, B) indices that reverse each sequence of a batch within its length (checked, in
    [1, T]) and leave the padding in place: step t of sequence b reads step src[t, b]; the map
    is its own inverse."""
    t = np.arange(T)[:, None]
    n = np.asarray(lengths)[None, :]
    return np.where(t < n, n - 1 - t, t)
