"""LSTM and GRU layers with torch.nn's constructor arguments, parameters and outputs.

Notation: see fusedrnn._notation.  The layers hold the arguments and parameters, validate and
cast in Python and lay out the outputs; their Engine (fusedrnn._engine) runs one kernel per layer
and direction (fusedrnn._kernels), which runs the whole time loop without the GIL.  Training:
``forward_train`` keeps a tape (gate activations and states of every step) and ``backward`` runs
the BPTT kernels layer by layer, top to bottom.
"""
import numpy as np

from . import _kernels
from ._engine import Engine, Tape, hx_form
from ._lengths import Lengths
from ._params import Parametrized, make_rng
from ._stream import Stream
from ._validate import (as_real_array, check_bool, check_dropout, check_dtype, check_lengths,
                        check_merge_mode, check_shape, check_size, kernel_array)


class _RNNBase(Parametrized):
    """Shared by LSTM and GRU: arguments, parameters, input/state checks, output layout."""

    _gates = None   # 4 (LSTM) or 3 (GRU)
    merge_mode = "concat"   # the default, also for models pickled before merge_mode existed
    # options the weights, packed kernels and buffers are made for: set by the constructor only
    _FIXED = frozenset({"input_size", "hidden_size", "num_layers", "bias", "bidirectional",
                        "proj_size", "dtype", "reset_after"})

    def __setattr__(self, name, value):
        """The options that only change how a call runs (batch_first, dropout, merge_mode) may
        be assigned, checked as by the constructor; the others are fixed once set."""
        if name in self._FIXED and name in self.__dict__:
            raise AttributeError(f"{name} is fixed when the model is made (its weights and "
                                 f"kernels depend on it): make a new {type(self).__name__}")
        if name == "batch_first":
            value = check_bool(name, value)
        elif name == "dropout":
            value = check_dropout(value)
        elif name == "merge_mode":
            value = check_merge_mode(value, self.bidirectional)
        super().__setattr__(name, value)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype=np.float32, seed=None,
                 merge_mode="concat"):
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = batch_first             # checked by __setattr__
        self.dropout = dropout
        self.bidirectional = check_bool("bidirectional", bidirectional)
        self.merge_mode = merge_mode
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), "
                             f"got {self.proj_size}")
        self.dtype = check_dtype(dtype)
        rng = make_rng(seed)
        self._init_params(self._param_shapes(), self.hidden_size, rng)
        # dropout masks of forward_train: a stream of its own, derived from the same seed
        self._dropout_rng = np.random.default_rng(rng.integers(2**63))

    # ------------------------------------------------------------------ layout
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _P(self):
        """H_out: the size of h_t."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def _out_size(self):
        return self._merged_size(self.merge_mode)

    def _merged_size(self, mode):
        """Features of out merged by `mode`: D*P (concat), P when it combines the directions."""
        return self.num_directions * self._P if mode == "concat" else self._P

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
        given = x.shape
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        if x.shape[0] == 0:
            raise ValueError(f"input must have a sequence length > 0, got shape {given}")
        if x.shape[0] * x.shape[1] >= 2**31:
            raise ValueError("input is too large: seq_len * batch must be < 2**31 (BLAS takes "
                             f"32-bit sizes), got shape {given}")
        return kernel_array(x, self.dtype), batched

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

    def _format_output(self, out, batched, batch_first=None):
        """(T, B, D*P) time-major -> the user's layout (batch_first: the model's if None)."""
        if not batched:
            return out[:, 0, :]
        if self.batch_first if batch_first is None else batch_first:
            return out.transpose(1, 0, 2)
        return out

    @staticmethod
    def _format_state(state, batched):
        return state if batched else state[:, 0, :]

    def __call__(self, input, hx=None, lengths=None):
        return self.forward(input, hx, lengths)

    # ------------------------------------------------------------------ running
    def forward(self, input, hx=None, lengths=None):
        """Inference (PyTorch eval() + no_grad()): returns ``out, h_n`` (``h_n`` is
        ``(h_n, c_n)`` for LSTM), shaped as torch.nn's.

        ``lengths`` (one integer in [1, seq_len] per sequence, any order; a list, numpy
        array or torch tensor): a padded batch, run as PyTorch runs
        ``pack_padded_sequence(x, lengths, enforce_sorted=False)``: ``out`` is zero past each
        sequence's length, ``h_n`` holds each sequence's state at its own last step, the
        reverse direction starts there.  Padded steps cost no arithmetic."""
        if lengths is None and type(input) is np.ndarray:
            fast = self._short_call(input, hx, cell=False)
            if fast is not None:
                return fast[0], hx_form(fast[1])
        out, finals, _ = self._run(input, hx, train=False, rng=None, lengths=lengths)
        return out, finals

    def _short_call(self, x, hx, cell):
        """Inference without the general checks and conversions, when a one-layer,
        one-direction model (not batch_first) gets x and hx (or None) already as the kernels
        take them: x (T, B, I) or unbatched (T, I), states (1, B, size) or (1, size) (a cell:
        x (B, I) or (I,), states (B, size) or (size,)).  -> (out shaped like x with P
        features, the final states shaped like hx's), or None: then the general path checks
        everything and raises its errors (``_kernels.ShortCall``)."""
        if self.num_layers != 1 or self.bidirectional or self.batch_first:
            return None
        return self._engine.short(x, hx, cell)

    def forward_train(self, input, hx=None, rng=None, lengths=None):
        """Like ``forward``, plus a tape for ``backward``: returns ``out, h_n, tape``.
        ``lengths`` as in ``forward`` (the tape keeps them; the gradient reaching padded steps
        of the input is zero).

        Dropout (``dropout > 0``) is applied to the outputs of every layer but the last, with
        masks drawn from ``rng`` (a numpy Generator or seed; default: the model's own stream,
        seeded by the constructor's ``seed``) and kept on the tape.  The tape holds per layer
        and direction the layer input, the outputs h_t, the activated gates and the cell states
        (LSTM) or ``W_hn h_{t-1} + b_hn`` (GRU); see docs/training.md for the bytes per step.
        """
        rng = self._dropout_rng if rng is None else make_rng(rng, "rng")
        return self._run(input, hx, train=True, rng=rng, lengths=lengths)

    def _run(self, input, hx, train, rng, lengths=None):
        x, batched = self._check_input(input)
        init = self._check_hx(hx, x.shape[1], batched)
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[1], batched)
            # every sequence full length: the plain run (the same code path, bit for bit)
            lengths = None if lengths.size == 0 or lengths.min() == x.shape[0] else (
                Lengths(lengths, x.shape[0]))
        if train:
            # the tape must not alias the caller's memory (in-place edits would corrupt grads):
            # an ndarray is compared with x; a list made x afresh; anything else (a tensor, an
            # object whose __array__ hands out its own buffer) is copied
            alias = (np.shares_memory(x, input) if isinstance(input, np.ndarray)
                     else not isinstance(input, (list, tuple)))
            x = x.copy() if alias else x
            init = tuple(np.array(s, copy=True) for s in init)
        out, finals, tape = self._run_checked(x, batched, init, train, rng, lengths)
        return out, hx_form(tuple([self._format_state(f, batched) for f in finals])), tape

    def _run_checked(self, x, batched, init, train=False, rng=None, lengths=None):
        """Run checked input x (T, B, I) from checked states init ((L*D, B, size) each), with
        checked lengths (a Lengths or None): -> (out in the user's layout, final states
        (L*D, B, size), tape or None)."""
        T, B, _ = x.shape
        new = np.empty_like if B > 0 else np.zeros_like
        finals = tuple([new(s) for s in init])
        tape = (Tape(self, T, B, batched, init, self.batch_first, self.merge_mode) if train
                else None)
        if B > 0:
            out = self._engine.forward(x, init, finals, tape, rng, lengths)
        else:
            out = np.zeros((T * B, self.num_directions * self._P), dtype=self.dtype)
        if tape is not None:
            tape.out = out      # the last layer's output in the caller's order, before merging
        out = self._merge(out)
        out = self._format_output(out.reshape(T, B, out.shape[1]), batched)
        if tape is not None:
            # backward reads the last layer's output from the tape, which `out` may be a view
            # of: an in-place edit raises, as PyTorch's autograd refuses one of a saved output
            out = out.view()
            out.flags.writeable = False
        return out, finals, tape

    def _merge(self, out):
        """The last layer's output (T*B, D*P) combined by merge_mode (concat: as it is)."""
        if self.merge_mode == "concat":
            return out
        P = self._P
        fwd, rev = out[:, :P], out[:, P:]
        if self.merge_mode == "sum":
            return fwd + rev
        if self.merge_mode == "mul":
            return fwd * rev
        return (fwd + rev) / 2                          # ave

    def _unmerge(self, d, out, mode):
        """dL/d(merged out) (T*B, out_size) -> dL/d(the last layer's output) (T*B, D*P), given
        that output `out` merged by `mode`: sum gives d to both halves, ave d/2, mul d times
        the other half."""
        if mode == "concat":
            return d
        P = self._P
        if mode == "sum":
            return np.concatenate([d, d], axis=1)
        if mode == "ave":
            return np.concatenate([d / 2, d / 2], axis=1)
        return np.concatenate([d * out[:, P:], d * out[:, :P]], axis=1)     # mul

    def stream(self, batch=1, hx=None):
        """A Stream: this model run on a sequence in pieces, the state carried between them
        (``out = stream(x_chunk)``, ``stream.state``, ``stream.reset(hx)``; see
        fusedrnn._stream).  ``batch``: sequences run side by side (None: unbatched chunks)."""
        return Stream(self, batch, hx)

    def save(self, path):
        """Write the configuration and weights to `path`: ``.safetensors`` (needs the
        safetensors package) or ``.npz``, never pickle; ``fusedrnn.load(path)`` reads it back
        (see fusedrnn._files)."""
        from ._files import save
        save(self, path)

    def backward(self, tape, d_out, d_h_n=None):
        """Backpropagation through time for a ``forward_train`` tape.

        ``d_out``: dL/d(out), shaped like ``out`` (None: only the final state is used);
        ``d_h_n``: dL/d(h_n) (``(d_h_n, d_c_n)`` for LSTM, either may be None; None: zeros).
        Returns ``dx, dhx, grads``: ``dx`` shaped like the input, ``dhx`` like ``hx``
        (``(dh0, dc0)`` for LSTM), ``grads`` a dict with exactly the keys of ``state_dict()``.
        Gradients are those of the run the tape recorded: its weights, batch_first and
        merge_mode, even if they were changed since.  A tape can be used once
        (backward overwrites it with gradients, like PyTorch frees its graph).
        """
        if not isinstance(tape, Tape) or tape.model is not self:
            raise TypeError("tape must be the tape returned by this model's forward_train")
        if tape.used:
            raise ValueError("tape was already used by backward (run forward_train again)")
        T, B, batched = tape.T, tape.B, tape.batched
        D, P = self.num_directions, self._P
        # the layout and merge_mode of the forward pass the tape recorded (they may have been
        # reassigned since: the gradients are those of the computation that ran, as autograd's)
        bf, mode = tape.batch_first, tape.merge_mode
        out_size = self._merged_size(mode)
        out_shape = self._format_output(np.empty((T, B, out_size), dtype=self.dtype), batched,
                                        bf).shape
        if d_out is None:
            dout = np.zeros((T * B, D * P), dtype=self.dtype)
        else:
            d = check_shape("d_out", as_real_array("d_out", d_out, None), out_shape,
                            "(the shape of out)")
            if batched and bf:
                d = d.transpose(1, 0, 2)
            d = kernel_array(d, self.dtype).reshape(T * B, out_size)
            dout = (np.ascontiguousarray(self._unmerge(d, tape.out, mode)) if B > 0
                    else np.zeros((0, D * P), dtype=self.dtype))
        dfinal = self._check_d_h_n(d_h_n, B, batched, self._d_state_names)
        grads = {name: np.zeros(shape, dtype=self.dtype) for name, shape in self._shapes.items()}
        dinit = tuple(np.zeros_like(s) for s in tape.init)
        tape.used = True
        if B > 0:
            dinp = self._engine.backward(tape, dout, dfinal, dinit, grads)
        else:
            dinp = np.zeros((T * B, self.input_size), dtype=self.dtype)
        dx = self._format_output(dinp.reshape(T, B, self.input_size), batched, bf)
        dhx = tuple(self._format_state(s, batched) for s in dinit)
        return dx, hx_form(dhx), grads

    _d_state_names = ("d_h_n", "d_c_n")

    def to_onnx(self, path=None, initial_states=False):
        """This model as a standard ONNX model (onnx is needed only for this call): one ONNX
        LSTM/GRU node per layer, graph input ``input`` (dynamic batch and seq axes, laid out as
        this model's input), with ``initial_states`` also ``h0`` (``c0``), outputs ``out``,
        ``h_n`` (``c_n``) as this model's call (cells: ``h``, ``c``).  Written to ``path`` if
        given; returns the ``onnx.ModelProto``.  ``proj_size > 0`` raises ValueError (ONNX has
        no projection); ``dropout`` is kept in the metadata only (inference)."""
        from ._onnx import to_onnx
        return to_onnx(self, path, initial_states)

    @property
    def _engine(self):
        """The model's Engine (packed kernels, buffers): made on first use, not pickled."""
        engine = self.__dict__.get("_engine_")
        if engine is None:
            engine = self.__dict__["_engine_"] = Engine(self)
        return engine

    def _invalidate(self):
        engine = self.__dict__.get("_engine_")
        if engine is not None:
            engine.invalidate()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_engine_", None)        # packed copies and scratch memory, not the model
        return state

    def _check_d_h_n(self, d_h_n, B, batched, names):
        """-> tuple of (L*D, B, size) arrays (zeros for None); `names` name the arguments."""
        sizes = self._state_sizes()
        if len(sizes) == 1:
            if isinstance(d_h_n, (tuple, list)):
                raise TypeError(f"{names[0]} for a GRU must be a single array, got a "
                                f"{type(d_h_n).__name__}")
            parts = (d_h_n,)
        else:
            if d_h_n is None:
                parts = (None, None)
            elif not isinstance(d_h_n, (tuple, list)) or len(d_h_n) != 2:
                raise TypeError(f"{names[0]} for an LSTM must be a tuple ({names[0]}, "
                                f"{names[1]}), got {type(d_h_n).__name__}")
            else:
                parts = tuple(d_h_n)
        return tuple(np.ascontiguousarray(self._check_state(n, p, B, size, batched))
                     for n, p, size in zip(names, parts, sizes))

    def __repr__(self):
        args = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        args += self._extra_repr()
        if self.merge_mode != "concat":
            args.append(f"merge_mode={self.merge_mode!r}")
        args.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(args)})"

    def _extra_repr(self):
        return []




class LSTM(_RNNBase):
    """Multi-layer LSTM with torch.nn.LSTM's arguments, parameters and outputs.

    ``out, (h_n, c_n) = lstm(x, (h0, c0))``; ``hx=None`` means zeros.  Gates i, f, g, o;
    ``proj_size > 0`` gives ``h_t = W_hr (o * tanh(c_t))``.  Calling the model is inference
    (dropout is not applied); ``forward_train`` / ``backward`` train it.
    """

    _gates = 4

    def _extra_repr(self):
        return [f"proj_size={self.proj_size}"] if self.proj_size else []

    def _state_sizes(self):
        return (self._P, self.hidden_size)

    def _check_hx(self, hx, B, batched):
        if hx is None:
            h0 = c0 = None
        else:
            if not isinstance(hx, (tuple, list)):
                raise TypeError("hx for an LSTM must be a tuple (h0, c0), "
                                f"got {type(hx).__name__}")
            if len(hx) != 2:
                raise TypeError("hx for an LSTM must be a tuple (h0, c0) of 2 arrays, "
                                f"got a {type(hx).__name__} of {len(hx)}")
            h0, c0 = hx
        return (self._check_state("h0", h0, B, self._P, batched),
                self._check_state("c0", c0, B, self.hidden_size, batched))

    def _make_kernel(self, layer, d):
        s = self._suffix(layer, d)
        b_ih, b_hh = self._biases(layer, d)
        return _kernels.Kernel("lstm", self._param("weight_ih" + s), self._param("weight_hh" + s),
                               self._param("weight_hr" + s) if self.proj_size else None,
                               b_ih + b_hh, None)


class GRU(_RNNBase):
    """Multi-layer GRU with torch.nn.GRU's arguments, parameters and outputs.

    ``out, h_n = gru(x, h0)``; ``hx=None`` means zeros.  Gates r, z, n.  ``reset_after=True``
    (default) is PyTorch's form, ``reset_after=False`` the original one (Keras
    ``reset_after=False``, ONNX ``linear_before_reset=0``).  Calling the model is inference
    (dropout is not applied); ``forward_train`` / ``backward`` train it.
    """

    _gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, reset_after=True, dtype=np.float32,
                 seed=None, merge_mode="concat"):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, seed, merge_mode)

    def _extra_repr(self):
        return [] if self.reset_after else ["reset_after=False"]

    def _state_sizes(self):
        return (self.hidden_size,)

    def _check_hx(self, hx, B, batched):
        if isinstance(hx, (tuple, list)):
            raise TypeError("hx for a GRU must be a single array h0, got a "
                            f"{type(hx).__name__} (tuple states are for LSTM)")
        return (self._check_state("hx", hx, B, self.hidden_size, batched),)

    def _make_kernel(self, layer, d):
        s = self._suffix(layer, d)
        b_ih, b_hh = self._biases(layer, d)
        bias_x, b_hn = gru_biases(b_ih, b_hh, self.hidden_size, self.reset_after)
        return _kernels.Kernel("gru" if self.reset_after else "gru_orig",
                               self._param("weight_ih" + s), self._param("weight_hh" + s), None,
                               bias_x, b_hn if self.reset_after else None)


def gru_biases(b_ih, b_hh, H, reset_after):
    """(bias_x, b_hn) as the GRU kernels want them (kernels/rnn_types.pxd): reset_after folds
    b_hr, b_hz into the input bias and keeps b_hn apart (it is multiplied by r); the original
    form folds all of b_hh."""
    bias_x = b_ih + b_hh
    if reset_after:
        bias_x[2 * H:] = b_ih[2 * H:]
    return bias_x, np.ascontiguousarray(b_hh[2 * H:])
