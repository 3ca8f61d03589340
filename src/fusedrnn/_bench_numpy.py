"""Plain NumPy LSTM/GRU forward pass: the NumPy peer of ``fusedrnn.bench``.

Written from the equations in ``docs/api.md``, independent of fusedrnn's kernels and layers, so
that it can serve both as a speed baseline ("what you get with NumPy alone") and as the ground
truth that every implementation is checked against before it is timed (run in float64).

It is the textbook vectorised scheme (thinc's, and what a careful NumPy user would write):

    XWt3 = X · W_ihᵀ + b       one GEMM over all T*B rows of a layer-direction
    Gt3  = XWt3[t] + h_{t-1} · W_hhᵀ   one GEMM per step, into a preallocated buffer
    then the gate math with NumPy ufuncs writing in place (no temporaries in the time loop
    beyond what NumPy needs for a binary op).

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


def _suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction else "")


def lstm_forward(x, h0, c0, params, num_layers=1, bidirectional=False):
    """LSTM forward (PyTorch semantics, time-major). Returns (out, h_n, c_n).

    Projection (``weight_hr_l*`` present) is supported: h_t = W_hr (o * tanh(c_t)).
    The dtype of the computation is the dtype of ``x``; parameters are cast to it.
    """
    dt = x.dtype
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    layer_in = x
    h_n, c_n = [], []
    for k in range(num_layers):
        outs = []
        for d in range(D):
            sfx = _suffix(k, d)
            W_ih = np.asarray(params["weight_ih" + sfx], dtype=dt)
            W_hh = np.asarray(params["weight_hh" + sfx], dtype=dt)
            W_hr = params.get("weight_hr" + sfx)
            W_hr = None if W_hr is None else np.asarray(W_hr, dtype=dt)
            H = W_ih.shape[0] // 4
            H_out = W_hh.shape[1]
            # Input projection for all steps at once, both biases folded in.
            XWt = layer_in.reshape(T * B, -1) @ W_ih.T
            if "bias_ih" + sfx in params:
                XWt += np.asarray(params["bias_ih" + sfx], dtype=dt)
                XWt += np.asarray(params["bias_hh" + sfx], dtype=dt)
            XWt = XWt.reshape(T, B, 4 * H)
            W_hhT = np.ascontiguousarray(W_hh.T)
            W_hrT = None if W_hr is None else np.ascontiguousarray(W_hr.T)
            h = np.array(h0[k * D + d], dtype=dt)
            c = np.array(c0[k * D + d], dtype=dt)
            out = np.empty((T, B, H_out), dtype=dt)
            G = np.empty((B, 4 * H), dtype=dt)
            ig = np.empty((B, H), dtype=dt)
            tc = np.empty((B, H), dtype=dt)
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                np.matmul(h, W_hhT, out=G)
                G += XWt[t]
                i, f, g, o = G[:, :H], G[:, H:2 * H], G[:, 2 * H:3 * H], G[:, 3 * H:]
                _sigmoid_(G[:, :2 * H])          # i, f
                np.tanh(g, out=g)
                _sigmoid_(o)
                c *= f                           # c_t = f * c_{t-1} + i * g
                np.multiply(i, g, out=ig)
                c += ig
                np.tanh(c, out=tc)               # h_t = o * tanh(c_t)
                tc *= o
                if W_hrT is None:
                    h = out[t]
                    h[...] = tc
                else:
                    h = out[t]
                    np.matmul(tc, W_hrT, out=h)
            outs.append(out)
            h_n.append(np.array(h))
            c_n.append(c)
        layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)
    return layer_in, np.stack(h_n), np.stack(c_n)


def gru_forward(x, h0, params, num_layers=1, bidirectional=False, reset_after=True):
    """GRU forward (PyTorch semantics when ``reset_after``; the original GRU otherwise).

    Returns (out, h_n). The dtype of the computation is the dtype of ``x``.
    """
    dt = x.dtype
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    layer_in = x
    h_n = []
    for k in range(num_layers):
        outs = []
        for d in range(D):
            sfx = _suffix(k, d)
            W_ih = np.asarray(params["weight_ih" + sfx], dtype=dt)
            W_hh = np.asarray(params["weight_hh" + sfx], dtype=dt)
            H = W_ih.shape[0] // 3
            has_bias = "bias_ih" + sfx in params
            b_hh = np.asarray(params["bias_hh" + sfx], dtype=dt) if has_bias else None
            XWt = layer_in.reshape(T * B, -1) @ W_ih.T
            if has_bias:
                XWt += np.asarray(params["bias_ih" + sfx], dtype=dt)
                if not reset_after:             # b_hr, b_hz, b_hn all outside the reset
                    XWt += b_hh
            XWt = XWt.reshape(T, B, 3 * H)
            W_hhT = np.ascontiguousarray(W_hh.T)
            h = np.array(h0[k * D + d], dtype=dt)
            out = np.empty((T, B, H), dtype=dt)
            Gh = np.empty((B, 3 * H), dtype=dt)
            rh = np.empty((B, H), dtype=dt)
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                Xt = XWt[t]
                if reset_after:
                    np.matmul(h, W_hhT, out=Gh)
                    if has_bias:
                        Gh += b_hh
                    rz = Gh[:, :2 * H]
                    rz += Xt[:, :2 * H]
                    _sigmoid_(rz)
                    r, z, n = Gh[:, :H], Gh[:, H:2 * H], Gh[:, 2 * H:]
                    n *= r                      # n = tanh(x_n + r * (W_hn h + b_hn))
                    n += Xt[:, 2 * H:]
                    np.tanh(n, out=n)
                else:
                    np.matmul(h, W_hhT[:, :2 * H], out=Gh[:, :2 * H])
                    rz = Gh[:, :2 * H]
                    rz += Xt[:, :2 * H]
                    _sigmoid_(rz)
                    r, z, n = Gh[:, :H], Gh[:, H:2 * H], Gh[:, 2 * H:]
                    np.multiply(r, h, out=rh)   # n = tanh(x_n + W_hn (r * h) + b_hn)
                    np.matmul(rh, W_hhT[:, 2 * H:], out=n)
                    n += Xt[:, 2 * H:]
                    np.tanh(n, out=n)
                # h_t = (1 - z) * n + z * h_{t-1} = n + z * (h_{t-1} - n)
                np.subtract(h, n, out=rh)
                rh *= z
                h = out[t]
                np.add(n, rh, out=h)
            outs.append(out)
            h_n.append(np.array(h))
        layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)
    return layer_in, np.stack(h_n)
