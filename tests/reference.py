"""Plain-NumPy reference for the equations in docs/api.md.

Written from the equations only: it shares no code with fusedrnn and does not import it.
Everything is computed in float64; results are float64 arrays.

Parameters are passed as a dict of arrays keyed by PyTorch names (``weight_ih_l0``, ...,
``weight_ih`` for cells); hidden_size, proj_size, bias and the per-layer input sizes are read from
the shapes, the rest of the configuration is given explicitly.
"""
import numpy as np

GATES = {"lstm": 4, "gru": 3}


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp is only taken of non-positive numbers."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def lstm_step(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None):
    """One LSTM step for a batch. x (B, I), h (B, H_out), c (B, H) -> (h, c)."""
    gates = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = np.split(gates, 4, axis=1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    if w_hr is not None:
        h = h @ w_hr.T
    return h, c


def gru_step(x, h, w_ih, w_hh, b_ih=None, b_hh=None, reset_after=True):
    """One GRU step for a batch. x (B, I), h (B, H) -> h."""
    H = h.shape[1]
    if b_ih is None:
        b_ih = b_hh = np.zeros(3 * H)
    x_r, x_z, x_n = np.split(x @ w_ih.T + b_ih, 3, axis=1)
    w_hr, w_hz, w_hn = np.split(w_hh, 3, axis=0)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    r = sigmoid(x_r + h @ w_hr.T + b_hr)
    z = sigmoid(x_z + h @ w_hz.T + b_hz)
    if reset_after:
        n = np.tanh(x_n + r * (h @ w_hn.T + b_hn))
    else:
        n = np.tanh(x_n + (r * h) @ w_hn.T + b_hn)
    return (1.0 - z) * n + z * h


def rnn(kind, params, x, hx=None, *, num_layers=1, bidirectional=False, batch_first=False,
        reset_after=True, lengths=None):
    """Full layer stack, same call convention as fusedrnn.LSTM / fusedrnn.GRU.

    kind: "lstm" or "gru". Returns (out, (h_n, c_n)) for LSTM, (out, h_n) for GRU.
    lengths (one per sequence): each sequence b is run alone over its first lengths[b] steps
    (the reverse direction from its own last step); its outputs past that are zero and its
    h_n / c_n are its states after its own last step.
    """
    kind = kind.lower()
    p = {k: _f64(v) for k, v in params.items()}
    G = GATES[kind]
    D = 2 if bidirectional else 1
    H = p["weight_hh_l0"].shape[0] // G
    H_out = p["weight_hh_l0"].shape[1]
    bias = "bias_ih_l0" in p

    x = _f64(x)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    T, B = x.shape[:2]
    lengths = [T] * B if lengths is None else [int(n) for n in np.asarray(lengths).reshape(-1)]

    if kind == "lstm":
        h0, c0 = (None, None) if hx is None else (_f64(hx[0]), _f64(hx[1]))
    else:
        h0, c0 = _f64(hx), None
    if unbatched:
        h0 = None if h0 is None else h0[:, None, :]
        c0 = None if c0 is None else c0[:, None, :]
    if h0 is None:
        h0 = np.zeros((num_layers * D, B, H_out))
    if c0 is None:
        c0 = np.zeros((num_layers * D, B, H))

    h_n, c_n = [], []
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = p["weight_ih" + sfx], p["weight_hh" + sfx]
            b_ih = p["bias_ih" + sfx] if bias else None
            b_hh = p["bias_hh" + sfx] if bias else None
            out = np.zeros((T, B, H_out))
            hs, cs = [], []
            for b in range(B):          # one sequence at a time, over its own steps
                h, c = h0[layer * D + d, b:b + 1], c0[layer * D + d, b:b + 1]
                n = lengths[b]
                for t in (range(n - 1, -1, -1) if d else range(n)):
                    xt = layer_in[t, b:b + 1]
                    if kind == "lstm":
                        h, c = lstm_step(xt, h, c, w_ih, w_hh, b_ih, b_hh,
                                         p.get("weight_hr" + sfx))
                    else:
                        h = gru_step(xt, h, w_ih, w_hh, b_ih, b_hh, reset_after)
                    out[t, b] = h[0]
                hs.append(h[0])
                cs.append(c[0])
            outs.append(out)
            h_n.append(np.stack(hs) if B else np.zeros((0, H_out)))
            c_n.append(np.stack(cs) if B else np.zeros((0, H)))
        layer_in = np.concatenate(outs, axis=2)

    out, h_n, c_n = layer_in, np.stack(h_n), np.stack(c_n)
    if unbatched:
        out, h_n, c_n = out[:, 0], h_n[:, 0], c_n[:, 0]
    elif batch_first:
        out = out.transpose(1, 0, 2)
    return (out, (h_n, c_n)) if kind == "lstm" else (out, h_n)


def cell(kind, params, x, hx=None, *, reset_after=True):
    """Single step, same call convention as fusedrnn.LSTMCell / fusedrnn.GRUCell.

    Returns (h, c) for LSTM, h for GRU; x is (B, I) or unbatched (I,).
    """
    kind = kind.lower()
    p = {k: _f64(v) for k, v in params.items()}
    H = p["weight_hh"].shape[1]
    x = _f64(x)
    unbatched = x.ndim == 1
    x = np.atleast_2d(x)
    B = x.shape[0]
    if kind == "lstm":
        h, c = (np.zeros((B, H)),) * 2 if hx is None else (_f64(hx[0]), _f64(hx[1]))
        h, c = lstm_step(x, np.atleast_2d(h), np.atleast_2d(c), p["weight_ih"], p["weight_hh"],
                         p.get("bias_ih"), p.get("bias_hh"))
        return (h[0], c[0]) if unbatched else (h, c)
    h = np.zeros((B, H)) if hx is None else _f64(hx)
    h = gru_step(x, np.atleast_2d(h), p["weight_ih"], p["weight_hh"], p.get("bias_ih"),
                 p.get("bias_hh"), reset_after)
    return h[0] if unbatched else h
