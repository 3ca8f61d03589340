"""Notation used throughout fusedrnn (kernels, layers, tests, docs).

Shapes
------
``T``  sequence length, ``B`` batch size, ``I`` input features (``input_size``),
``H``  hidden units (``hidden_size``), ``P = H_out`` = ``proj_size`` if > 0 else ``H``,
``D``  2 if ``bidirectional`` else 1, ``L`` ``num_layers``, ``G`` gates per unit (4 LSTM, 3 GRU).

``x_t`` (B, I) the input at step t, ``h_{t-1}`` (B, P) the previous hidden state,
``c_{t-1}`` (B, H) the previous cell state (LSTM).  A sequence ``x`` is time-major (T, B, I)
unless ``batch_first``; the kernels always see it as a (T*B, I) matrix whose row ``t*B + b`` is
``x_t[b]``.

Parameters (PyTorch's names, shapes and gate order)
---------------------------------------------------
``weight_ih_l{k}`` (G*H, I_k), ``weight_hh_l{k}`` (G*H, P), ``bias_ih_l{k}``, ``bias_hh_l{k}``
(G*H,), ``weight_hr_l{k}`` (P, H) (LSTM with projection), suffix ``_reverse`` for the backward
direction; ``I_0 = I`` and ``I_k = D*P`` above the first layer.  Row blocks of the G*H axis:

LSTM, gates ``i, f, g, o``::

    i = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)              (with projection: h_t = W_hr (o * tanh(c_t)))

GRU, gates ``r, z, n``::

    r = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))     reset_after=True (PyTorch,
                                                              ONNX linear_before_reset=1)
    n = tanh(W_in x_t + b_in + W_hn (r * h_{t-1}) + b_hn)     reset_after=False (original,
                                                              ONNX linear_before_reset=0)
    h_t = (1 - z) * n + z * h_{t-1}

Kernel buffers
--------------
``gates`` (T*B, G*H): ``x W_ih^T`` for all steps in one GEMM, then per step ``+= h_{t-1} W_hh^T``
and overwritten in place by the activated gates (kept for backward).  ``state`` holds ``c_t``
(LSTM) or ``W_hn h_{t-1} + b_hn`` (GRU, reset_after); see kernels/rnn_types.pxd.
"""
