"""LSTMCell and GRUCell: one time step, torch.nn.LSTMCell / GRUCell compatible.

Notation: see fusedrnn._notation.  A cell is a one-layer, one-direction layer run for T = 1 step
whose parameters have no ``_l0`` suffix (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``).
"""
import numpy as np

from ._engine import hx_form
from ._rnn import GRU, LSTM
from ._validate import as_real_array, check_shape, kernel_array


class _CellMixin:
    """Input (B, I) or (I,), states (B, H) or (H,), outputs without the time axis."""

    _d_state_names = ("d_h", "d_c")

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def forward(self, input, hx=None):
        """One step: h_1 (GRUCell) or (h_1, c_1) (LSTMCell) from x (B, I) or (I,) and hx."""
        if type(input) is np.ndarray:
            fast = self._short_call(input, hx, cell=True)
            if fast is not None:
                return hx_form(fast[1])
        return self._run(input, hx, train=False, rng=None)[1]

    def _suffix(self, layer, direction):
        return ""

    def _check_input(self, x):
        x = as_real_array("input", x, None)
        I = self.input_size
        if x.ndim not in (1, 2):
            raise ValueError(f"input must have 2 dims (batch, {I}) or 1 dim ({I},) for "
                             f"unbatched input, got shape {x.shape}")
        if x.shape[-1] != I:
            raise ValueError(f"input must have {I} features (input_size) on its last axis, "
                             f"got shape {x.shape}")
        batched = x.ndim == 2
        x = x if batched else x[None, :]
        return kernel_array(x[None], self.dtype), batched

    def _check_state(self, name, value, B, size, batched):
        if value is None:
            return np.zeros((1, B, size), dtype=self.dtype)
        arr = as_real_array(name, value, self.dtype)
        if batched:
            check_shape(name, arr, (B, size), "(batch, hidden_size)")
            return arr[None]
        check_shape(name, arr, (size,), "(hidden_size,) for unbatched input")
        return arr[None, None]

    def _format_output(self, out, batched, batch_first=None):
        return out[0] if batched else out[0, 0]

    @staticmethod
    def _format_state(state, batched):
        return state[0] if batched else state[0, 0]

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        extra += "" if getattr(self, "reset_after", True) else ", reset_after=False"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype.name})")


class LSTMCell(_CellMixin, LSTM):
    """One LSTM step: ``h_1, c_1 = cell(x, (h_0, c_0))``; gates i, f, g, o.

    Training: ``(h_1, c_1), tape = cell.forward_train(x, hx)`` and
    ``dx, (dh_0, dc_0), grads = cell.backward(tape, d_h_1, d_c_1=None)``.
    """

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, 1, bias, False, 0.0, False, 0, dtype, seed)

    def forward_train(self, input, hx=None):
        _, state, tape = self._run(input, hx, train=True, rng=None)
        return state, tape

    def backward(self, tape, d_h, d_c=None):
        """Gradients of one step from dL/dh_1 and dL/dc_1 (None: zeros)."""
        return LSTM.backward(self, tape, None, (d_h, d_c))


class GRUCell(_CellMixin, GRU):
    """One GRU step: ``h_1 = cell(x, h_0)``; gates r, z, n; ``reset_after`` as in fusedrnn.GRU.

    Training: ``h_1, tape = cell.forward_train(x, hx)`` and
    ``dx, dh_0, grads = cell.backward(tape, d_h_1)``.
    """

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32,
                 seed=None):
        super().__init__(input_size, hidden_size, 1, bias, False, 0.0, False, reset_after,
                         dtype, seed)

    def forward_train(self, input, hx=None):
        _, state, tape = self._run(input, hx, train=True, rng=None)
        return state, tape

    def backward(self, tape, d_h):
        """Gradients of one step from dL/dh_1."""
        return GRU.backward(self, tape, None, d_h)
