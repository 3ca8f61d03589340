"""LSTM and GRU layers with torch.nn's constructor arguments, parameters and outputs.

Notation: see fusedrnn._notation.  The layers validate and cast in Python, then call one kernel per
layer and direction (fusedrnn._lstm / fusedrnn._gru), which runs the whole time loop without the
GIL.
"""
import numpy as np

from . import _gru, _lstm
from ._params import Parametrized
from ._validate import (as_real_array, check_bool, check_dropout, check_dtype, check_shape,
                        check_size)


class _RNNBase(Parametrized):
    """Shared by LSTM and GRU: arguments, parameters, input/state checks, output layout."""

    _gates = None   # 4 (LSTM) or 3 (GRU)
    _kind = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype=np.float32, seed=None):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.dropout = check_dropout(dropout)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), "
                             f"got {self.proj_size}")
        self.dtype = check_dtype(dtype)
        self._init_params(self._param_shapes(), self.hidden_size, seed)

    # ------------------------------------------------------------------ layout
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _P(self):
        """H_out: the size of h_t."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _suffix(self, layer, direction):
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def _param_shapes(self):
        G, H, P, D = self._gates, self.hidden_size, self._P, self.num_directions
        shapes = {}
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else D * P
            for d in range(D):
                s = self._suffix(layer, d)
                shapes["weight_ih" + s] = (G * H, in_size)
                shapes["weight_hh" + s] = (G * H, P)
                if self.bias:
                    shapes["bias_ih" + s] = (G * H,)
                    shapes["bias_hh" + s] = (G * H,)
                if self.proj_size > 0:
                    shapes["weight_hr" + s] = (P, H)
        return shapes

    def _biases(self, layer, d):
        """(b_ih, b_hh) of the model dtype; zeros when bias=False."""
        if self.bias:
            s = self._suffix(layer, d)
            return self._param("bias_ih" + s), self._param("bias_hh" + s)
        z = np.zeros(self._gates * self.hidden_size, dtype=self.dtype)
        return z, z

    # ------------------------------------------------------------------ checks
    def _check_input(self, x):
        """-> (x as (T, B, I) C-contiguous of the model dtype, batched)."""
        x = as_real_array("input", x, None)
        I = self.input_size
        axes = "(batch, seq, %d)" % I if self.batch_first else "(seq, batch, %d)" % I
        if x.ndim not in (2, 3):
            raise ValueError(f"input must have 3 dims {axes} or 2 dims (seq, {I}) for unbatched "
                             f"input, got shape {x.shape}")
        if x.shape[-1] != I:
            raise ValueError(f"input must have {I} features (input_size) on its last axis, "
                             f"got shape {x.shape}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[0] == 0:
            raise ValueError(f"input must have a sequence length > 0, got shape {x.shape}")
        return np.ascontiguousarray(x, dtype=self.dtype), batched

    def _check_state(self, name, value, B, size, batched):
        """One state array (h0 or c0): (L*D, B, size), or (L*D, size) unbatched."""
        LD = self.num_layers * self.num_directions
        if value is None:
            return np.zeros((LD, B, size), dtype=self.dtype)
        arr = as_real_array(name, value, self.dtype)
        if batched:
            check_shape(name, arr, (LD, B, size), "(num_layers * num_directions, batch, "
                        f"{'hidden_size' if size == self.hidden_size else 'proj_size'})")
            return arr
        check_shape(name, arr, (LD, size), "(num_layers * num_directions, "
                    f"{'hidden_size' if size == self.hidden_size else 'proj_size'}) "
                    "for unbatched input")
        return arr[:, None, :]

    def _format_output(self, out, batched):
        """(T, B, D*P) time-major -> the user's layout."""
        if not batched:
            return out[:, 0, :]
        if self.batch_first:
            return out.transpose(1, 0, 2)
        return out

    @staticmethod
    def _format_state(state, batched):
        return state if batched else state[:, 0, :]

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def __repr__(self):
        args = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        args += self._extra_repr()
        args.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(args)})"

    def _extra_repr(self):
        return []


class LSTM(_RNNBase):
    """Multi-layer LSTM with torch.nn.LSTM's arguments, parameters and outputs.

    ``out, (h_n, c_n) = lstm(x, (h0, c0))``; ``hx=None`` means zeros.  Gates i, f, g, o;
    ``proj_size > 0`` gives ``h_t = W_hr (o * tanh(c_t))``.  Inference only: dropout is not
    applied here (PyTorch's eval() semantics).
    """

    _gates = 4
    _kind = "LSTM"

    def _extra_repr(self):
        return [f"proj_size={self.proj_size}"] if self.proj_size else []

    def _check_hx(self, hx, B, batched):
        if hx is None:
            h0 = c0 = None
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx for an LSTM must be a tuple (h0, c0), "
                                f"got {type(hx).__name__}")
            h0, c0 = hx
        return (self._check_state("h0", h0, B, self._P, batched),
                self._check_state("c0", c0, B, self.hidden_size, batched))

    def forward(self, input, hx=None):
        """Run the LSTM: returns ``out, (h_n, c_n)`` shaped as torch.nn.LSTM's."""
        x, batched = self._check_input(input)
        T, B, _ = x.shape
        h0, c0 = self._check_hx(hx, B, batched)
        L, D, H, P = self.num_layers, self.num_directions, self.hidden_size, self._P
        h_n = np.zeros((L * D, B, P), dtype=self.dtype)
        c_n = np.zeros((L * D, B, H), dtype=self.dtype)
        out = np.zeros((T * B, D * P), dtype=self.dtype)
        if B > 0:
            gates = np.empty((T * B, 4 * H), dtype=self.dtype)
            c_buf = np.empty((2 * B, H), dtype=self.dtype)
            r_buf = np.empty((B, H), dtype=self.dtype)
            no_proj = np.empty((0, H), dtype=self.dtype)
            inp = x.reshape(T * B, -1)
            for layer in range(L):
                out = np.empty((T * B, D * P), dtype=self.dtype)
                for d in range(D):
                    s, k = self._suffix(layer, d), layer * D + d
                    b_ih, b_hh = self._biases(layer, d)
                    W_hr = self._param("weight_hr" + s) if self.proj_size else no_proj
                    _lstm.lstm_forward_layer(
                        inp, T, self._param("weight_ih" + s), self._param("weight_hh" + s),
                        b_ih + b_hh, W_hr, h0[k], c0[k], out, d * P, gates, c_buf, r_buf,
                        h_n[k], c_n[k], d == 1, False)
                inp = out
        out = out.reshape(T, B, D * P)
        return (self._format_output(out, batched),
                (self._format_state(h_n, batched), self._format_state(c_n, batched)))


class GRU(_RNNBase):
    """Multi-layer GRU with torch.nn.GRU's arguments, parameters and outputs.

    ``out, h_n = gru(x, h0)``; ``hx=None`` means zeros.  Gates r, z, n.  ``reset_after=True``
    (default) is PyTorch's form, ``reset_after=False`` the original one (Keras
    ``reset_after=False``, ONNX ``linear_before_reset=0``).  Inference only: dropout is not
    applied here.
    """

    _gates = 3
    _kind = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, dtype=np.float32,
                 seed=None):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, seed)

    def _extra_repr(self):
        return [] if self.reset_after else ["reset_after=False"]

    def _check_hx(self, hx, B, batched):
        if isinstance(hx, (tuple, list)):
            raise TypeError("hx for a GRU must be a single array h0, got a "
                            f"{type(hx).__name__} (tuple states are for LSTM)")
        return self._check_state("hx", hx, B, self.hidden_size, batched)

    def _gru_biases(self, layer, d):
        """(bias_x, b_hn) as the kernel wants them (see gru.pyx)."""
        b_ih, b_hh = self._biases(layer, d)
        H = self.hidden_size
        if self.reset_after:
            bias_x = b_ih.copy()
            bias_x[:2 * H] += b_hh[:2 * H]
            return bias_x, np.ascontiguousarray(b_hh[2 * H:])
        return b_ih + b_hh, np.ascontiguousarray(b_hh[2 * H:])

    def forward(self, input, hx=None):
        """Run the GRU: returns ``out, h_n`` shaped as torch.nn.GRU's."""
        x, batched = self._check_input(input)
        T, B, _ = x.shape
        h0 = self._check_hx(hx, B, batched)
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        h_n = np.zeros((L * D, B, H), dtype=self.dtype)
        out = np.zeros((T * B, D * H), dtype=self.dtype)
        if B > 0:
            gates = np.empty((T * B, 3 * H), dtype=self.dtype)
            hg = np.empty((B, 3 * H), dtype=self.dtype)
            hn_buf = np.empty((B, H), dtype=self.dtype)
            rh = np.empty((B, H), dtype=self.dtype)
            inp = x.reshape(T * B, -1)
            for layer in range(L):
                out = np.empty((T * B, D * H), dtype=self.dtype)
                for d in range(D):
                    s, k = self._suffix(layer, d), layer * D + d
                    bias_x, b_hn = self._gru_biases(layer, d)
                    _gru.gru_forward_layer(
                        inp, T, self._param("weight_ih" + s), self._param("weight_hh" + s),
                        bias_x, b_hn, h0[k], out, d * H, gates, hg, hn_buf, rh, h_n[k],
                        self.reset_after, d == 1, False)
                inp = out
        out = out.reshape(T, B, D * H)
        return self._format_output(out, batched), self._format_state(h_n, batched)
