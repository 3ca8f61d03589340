"""Plain NumPy LSTM/GRU forward pass: the NumPy peer of ``fusedrnn.bench``.

Written from the equations in ``docs/api.md``, independent of fusedrnn's kernels and layers, so
that it can serve both as a speed baseline ("what you get with NumPy alone") and as the ground
truth that every implementation is checked against before it is timed (run in float64).

It is the textbook vectorised scheme (thinc's, and what a careful NumPy user would write):

    XWt3 = X · W_ihᵀ + b       one GEMM over all T*B rows of a layer-direction
    Gt3  = XWt3[t] + h_{t-1} · W_hhᵀ   one GEMM per step, into a preallocated buffer
    then the gate math with NumPy ufuncs writing in place (no temporaries in the time loop
    beyond what NumPy needs for a binary op).

One loop (``_forward``) stacks layers and directions and runs the time loop for both cells; a
cell contributes only its input biases and its step (``_lstm_step`` / ``_gru_step``).
A padded batch with ``lengths`` runs PyTorch's packed semantics the way a NumPy user would:
the batch sorted by length once, and at each step the step run on the rows still running.

Shapes follow PyTorch: x (T, B, I), h0 (L*D, B, H_out), c0 (L*D, B, H); parameters are the
arrays of a PyTorch-style state dict (``weight_ih_l0``, ``weight_hh_l0_reverse``, ...).
Gate rows: LSTM i, f, g, o; GRU r, z, n.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lstm_forward", "gru_forward"]


def _sigmoid_(a):
    """In-place logistic sigmoid, written as 0.5 * (1 + tanh(a / 2)): no overflow for any |a|."""
    a *= 0.5
    np.tanh(a, out=a)
    a += 1.0
    a *= 0.5
    return a


class _Params:
    """The parameters of one layer-direction (suffix ``_l{k}[_reverse]``), cast to ``dt``."""

    def __init__(self, params, sfx, dt):
        self._params, self._sfx, self._dt = params, sfx, dt

    def get(self, name):
        """The array ``name + suffix`` in the computation's dtype, or None when absent."""
        a = self._params.get(name + self._sfx)
        return None if a is None else np.asarray(a, dtype=self._dt)


class _Rows:
    """Views of the first n rows of a step's (B, .) buffers, made once per n: a batch of
    variable lengths runs only its first n (still running) rows at a step."""

    def __init__(self, make):
        self._make, self._views = make, {}

    def __call__(self, n):
        v = self._views.get(n)
        if v is None:
            v = self._views[n] = self._make(n)
        return v


def _lstm_step(p: _Params, B: int):
    """(input biases, step) of an LSTM layer-direction; state (h, c), projection if W_hr
    given."""
    W_hh, W_hr = p.get("weight_hh"), p.get("weight_hr")
    H = W_hh.shape[0] // 4
    b_ih, b_hh = p.get("bias_ih"), p.get("bias_hh")
    in_biases = [] if b_ih is None else [b_ih, b_hh]
    W_hhT = np.ascontiguousarray(W_hh.T)
    W_hrT = None if W_hr is None else np.ascontiguousarray(W_hr.T)
    dt = W_hh.dtype
    bufs = (np.empty((B, 4 * H), dtype=dt), np.empty((B, H), dtype=dt),
            np.empty((B, H), dtype=dt))
    rows = _Rows(lambda n: tuple(a[:n] for a in bufs))

    def step(Xt, state, out_t):
        h, c = state
        G, ig, tc = rows(Xt.shape[0])
        np.matmul(h, W_hhT, out=G)
        np.add(G, Xt, out=G)            # ufuncs with out=: G is the closure's buffer
        i, f, g, o = G[:, :H], G[:, H:2 * H], G[:, 2 * H:3 * H], G[:, 3 * H:]
        _sigmoid_(G[:, :2 * H])          # i, f
        np.tanh(g, out=g)
        _sigmoid_(o)
        c *= f                           # c_t = f * c_{t-1} + i * g
        np.multiply(i, g, out=ig)
        c += ig
        np.tanh(c, out=tc)               # h_t = o * tanh(c_t)  [· W_hrᵀ]
        np.multiply(tc, o, out=tc)
        if W_hrT is None:
            out_t[...] = tc
        else:
            np.matmul(tc, W_hrT, out=out_t)
        return out_t, c

    return in_biases, step


def _gru_step(p: _Params, B: int, reset_after: bool):
    """(input biases, step) of a GRU layer-direction; state (h,)."""
    W_hh = p.get("weight_hh")
    H = W_hh.shape[0] // 3
    b_ih, b_hh = p.get("bias_ih"), p.get("bias_hh")
    # reset_after=False: b_hr, b_hz, b_hn all act outside the reset, so they join the input bias
    in_biases = [] if b_ih is None else [b_ih] if reset_after else [b_ih, b_hh]
    W_hhT = np.ascontiguousarray(W_hh.T)
    dt = W_hh.dtype
    Gh_all, rh_all = np.empty((B, 3 * H), dtype=dt), np.empty((B, H), dtype=dt)

    def views(n):
        Gh = Gh_all[:n]
        return Gh, rh_all[:n], Gh[:, :H], Gh[:, H:2 * H], Gh[:, 2 * H:], Gh[:, :2 * H]

    rows = _Rows(views)

    def step(Xt, state, out_t):
        (h,) = state
        Gh, rh, r, z, n, rz = rows(Xt.shape[0])
        if reset_after:
            np.matmul(h, W_hhT, out=Gh)
            if b_hh is not None:
                np.add(Gh, b_hh, out=Gh)
            np.add(rz, Xt[:, :2 * H], out=rz)
            _sigmoid_(rz)
            np.multiply(n, r, out=n)    # n = tanh(x_n + r * (W_hn h + b_hn))
        else:
            np.matmul(h, W_hhT[:, :2 * H], out=rz)
            np.add(rz, Xt[:, :2 * H], out=rz)
            _sigmoid_(rz)
            np.multiply(r, h, out=rh)   # n = tanh(x_n + W_hn (r * h) + b_hn)
            np.matmul(rh, W_hhT[:, 2 * H:], out=n)
        np.add(n, Xt[:, 2 * H:], out=n)
        np.tanh(n, out=n)
        # h_t = (1 - z) * n + z * h_{t-1} = n + z * (h_{t-1} - n)
        np.subtract(h, n, out=rh)
        np.multiply(rh, z, out=rh)
        np.add(n, rh, out=out_t)
        return (out_t,)

    return in_biases, step


def _forward(x, init, params, num_layers, bidirectional, make_step, lengths=None):
    """Stack layers and directions around one time loop, for either cell.

    ``init``: the initial states, each (L*D, B, size) (h0, or h0 and c0); ``make_step(p, B)``
    returns (the biases added to the input projection, step) where
    ``step(XWt[t], state, out[t])`` writes h_t into
    ``out[t]`` and returns the new state tuple (h_t first). Returns (out, *final states).

    ``lengths`` (one per sequence; PyTorch's packed semantics): the batch is put in order of
    length, longest first, so the sequences running at step t are the first n_t rows; a step
    runs only those, the others keep their state (not started yet in the reverse direction,
    finished in the forward one) and output zeros. The time loop ends at the longest sequence.
    """
    dt = x.dtype
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    T_run = T
    if lengths is not None:
        lengths = np.asarray(lengths).reshape(B)
        order = np.argsort(-lengths, kind="stable")
        x, init = x[:, order], tuple(s[:, order] for s in init)
        T_run = int(lengths.max())
        running = [int(np.count_nonzero(lengths > t)) for t in range(T_run)]
    layer_in = x
    finals = [[] for _ in init]
    for k in range(num_layers):
        outs = []
        for d in range(D):
            p = _Params(params, f"_l{k}" + ("_reverse" if d else ""), dt)
            in_biases, step = make_step(p, B)
            # Input projection for all steps at once, the input biases folded in.
            XWt = layer_in[:T_run].reshape(T_run * B, -1) @ p.get("weight_ih").T
            for b in in_biases:
                XWt += b
            XWt = XWt.reshape(T_run, B, -1)
            state = tuple(np.array(s[k * D + d], dtype=dt) for s in init)
            out = (np.empty if lengths is None else np.zeros)((T, B, state[0].shape[-1]),
                                                              dtype=dt)
            for t in (range(T_run - 1, -1, -1) if d else range(T_run)):
                if lengths is None:
                    state = step(XWt[t], state, out[t])
                    continue
                n = running[t]
                rows = tuple(s[:n] for s in state)
                for s, v in zip(rows, step(XWt[t, :n], rows, out[t, :n])):
                    if v is not s:              # (an LSTM's c is updated in place)
                        s[...] = v
            outs.append(out)
            for acc, s in zip(finals, state):
                acc.append(np.array(s))
        layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)
    res = (layer_in,) + tuple(np.stack(f) for f in finals)
    if lengths is not None:     # back to the caller's batch order
        inverse = np.argsort(order)
        res = tuple(a[:, inverse] for a in res)
    return res


def lstm_forward(x, h0, c0, params, num_layers=1, bidirectional=False, lengths=None):
    """LSTM forward (PyTorch semantics, time-major). Returns (out, h_n, c_n).

    ``lengths`` (one per sequence, 1 <= length <= T): PyTorch's packed path, padded back to T
    (``out`` zero past each sequence's length, ``h_n`` / ``c_n`` at its last step).
    Projection (``weight_hr_l*`` present) is supported: h_t = W_hr (o * tanh(c_t)).
    The dtype of the computation is the dtype of ``x``; parameters are cast to it.
    """
    return _forward(x, (h0, c0), params, num_layers, bidirectional, _lstm_step, lengths)


def gru_forward(x, h0, params, num_layers=1, bidirectional=False, reset_after=True,
                lengths=None):
    """GRU forward (PyTorch semantics when ``reset_after``; the original GRU otherwise).

    Returns (out, h_n). The dtype of the computation is the dtype of ``x``. ``lengths`` as in
    ``lstm_forward``.
    """
    return _forward(x, (h0,), params, num_layers, bidirectional,
                    lambda p, B: _gru_step(p, B, reset_after), lengths)
