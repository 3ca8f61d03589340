"""LSTMCell and GRUCell: one time step, torch.nn.LSTMCell / GRUCell compatible.

Notation: see fusedrnn._notation.  A cell is the layer kernel run with T = 1.
"""
import numpy as np

from . import _gru, _lstm
from ._params import Parametrized
from ._validate import as_real_array, check_bool, check_dtype, check_shape, check_size


class _CellBase(Parametrized):
    _gates = None

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, seed=None):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = check_bool("bias", bias)
        self.dtype = check_dtype(dtype)
        G, H = self._gates, self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        self._init_params(shapes, H, seed)

    def _biases(self):
        if self.bias:
            return self._param("bias_ih"), self._param("bias_hh")
        z = np.zeros(self._gates * self.hidden_size, dtype=self.dtype)
        return z, z

    def _check_input(self, x):
        """-> (x as (B, I) C-contiguous of the model dtype, batched)."""
        x = as_real_array("input", x, None)
        I = self.input_size
        if x.ndim not in (1, 2):
            raise ValueError(f"input must have 2 dims (batch, {I}) or 1 dim ({I},) for "
                             f"unbatched input, got shape {x.shape}")
        if x.shape[-1] != I:
            raise ValueError(f"input must have {I} features (input_size) on its last axis, "
                             f"got shape {x.shape}")
        batched = x.ndim == 2
        return np.ascontiguousarray(x if batched else x[None, :], dtype=self.dtype), batched

    def _check_state(self, name, value, B, batched):
        H = self.hidden_size
        if value is None:
            return np.zeros((B, H), dtype=self.dtype)
        arr = as_real_array(name, value, self.dtype)
        if batched:
            return check_shape(name, arr, (B, H), "(batch, hidden_size)")
        return check_shape(name, arr, (H,), "(hidden_size,) for unbatched input")[None, :]

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        extra += self._extra_repr()
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype.name})")

    def _extra_repr(self):
        return ""


class LSTMCell(_CellBase):
    """One LSTM step: ``h_1, c_1 = cell(x, (h_0, c_0))``; gates i, f, g, o."""

    _gates = 4

    def forward(self, input, hx=None):
        x, batched = self._check_input(input)
        B, H = x.shape[0], self.hidden_size
        if hx is None:
            h0 = c0 = None
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx for an LSTMCell must be a tuple (h_0, c_0), "
                                f"got {type(hx).__name__}")
            h0, c0 = hx
        h0 = self._check_state("h_0", h0, B, batched)
        c0 = self._check_state("c_0", c0, B, batched)
        h = np.zeros((B, H), dtype=self.dtype)
        c = np.zeros((B, H), dtype=self.dtype)
        if B > 0:
            b_ih, b_hh = self._biases()
            _lstm.lstm_forward_layer(
                x, 1, self._param("weight_ih"), self._param("weight_hh"), b_ih + b_hh,
                np.empty((0, H), dtype=self.dtype), h0, c0, h, 0,
                np.empty((B, 4 * H), dtype=self.dtype), np.empty((2 * B, H), dtype=self.dtype),
                np.empty((B, H), dtype=self.dtype), np.empty((B, H), dtype=self.dtype), c,
                False, False)
        return (h, c) if batched else (h[0], c[0])


class GRUCell(_CellBase):
    """One GRU step: ``h_1 = cell(x, h_0)``; gates r, z, n; ``reset_after`` as in fusedrnn.GRU."""

    _gates = 3

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32,
                 seed=None):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, bias, dtype, seed)

    def _extra_repr(self):
        return "" if self.reset_after else ", reset_after=False"

    def forward(self, input, hx=None):
        x, batched = self._check_input(input)
        B, H = x.shape[0], self.hidden_size
        if isinstance(hx, (tuple, list)):
            raise TypeError("hx for a GRUCell must be a single array h_0, got a "
                            f"{type(hx).__name__}")
        h0 = self._check_state("hx", hx, B, batched)
        h = np.zeros((B, H), dtype=self.dtype)
        if B > 0:
            b_ih, b_hh = self._biases()
            bias_x = b_ih + b_hh
            if self.reset_after:
                bias_x[2 * H:] = b_ih[2 * H:]
            ws = np.empty((B, 3 * H), dtype=self.dtype)
            _gru.gru_forward_layer(
                x, 1, self._param("weight_ih"), self._param("weight_hh"), bias_x,
                np.ascontiguousarray(b_hh[2 * H:]), h0, h, 0, np.empty((B, 3 * H), self.dtype),
                ws, np.empty((B, H), self.dtype), np.empty((B, H), self.dtype),
                np.empty((B, H), self.dtype), self.reset_after, False, False)
        return h if batched else h[0]
