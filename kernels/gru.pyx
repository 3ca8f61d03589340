"""Fused GRU kernels: one layer, one direction, the whole sequence with the GIL released.

Notation (src/fusedrnn/_notation.py): T steps, B batch rows, I input features, H hidden units.
Rows of every 2-D buffer are (t, b) pairs in time-major order, row index t * B + b.  Gate blocks
per row: [r | z | n], each H wide.  Two forms: reset_after (PyTorch, ONNX linear_before_reset=1)
applies r to (W_hn h_{t-1} + b_hn); the original form applies r to h_{t-1} before the product.
"""
from libc.string cimport memcpy

from _blas cimport floating, gemm, NoTrans, Trans
from rnn_math cimport (fr_gru_fwd_f32, fr_gru_fwd_f64, fr_gru_rz_f32, fr_gru_rz_f64,
                       fr_gru_n_f32, fr_gru_n_f64)


cdef int gru_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                     const floating *x, Py_ssize_t ldx,
                     const floating *W_ih, const floating *W_hh, const floating *bias_x,
                     const floating *b_hn, const floating *h0,
                     floating *out, Py_ssize_t ldo, floating *gates, floating *hg,
                     floating *hn_buf, bint keep_hn, floating *rh,
                     floating *h_n, bint reset_after, bint reverse) noexcept nogil:
    """Run one GRU layer in one direction over T steps.

    x (T*B, I) row stride ldx; W_ih (3H, I); W_hh (3H, H); h0 (B, H).
    reset_after: bias_x (3H) = b_ih + [b_hr, b_hz, 0], b_hn (H) the hidden bias of n;
    original form: bias_x = b_ih + b_hh and b_hn is unused.
    Writes h_t to out (T*B, H) at row stride ldo (a column slice of the layer output).
    gates (T*B, 3H): workspace; on return holds r, z, n of every step.
    hg (B, 3H): workspace for h_{t-1} W_hh^T (reset_after only).
    hn_buf: W_hn h_{t-1} + b_hn of every step (T*B, H) when keep_hn, else (B, H) (reset_after).
    rh (B, H): workspace for r * h_{t-1} (original form).  h_n (B, H): final state.
    """
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t s, t, tp, b
    cdef const floating *hp
    cdef Py_ssize_t ldhp
    cdef floating *g_t
    cdef floating *hn_t
    if T <= 0 or B <= 0:
        return 0
    # input projection of the whole sequence: gates = x W_ih^T
    gemm(NoTrans, Trans, T * B, G, I, <floating>1, x, ldx, W_ih, I, <floating>0, gates, G)
    for s in range(T):
        t = T - 1 - s if reverse else s
        if s == 0:
            hp = h0
            ldhp = H
        else:
            tp = t + 1 if reverse else t - 1
            hp = out + tp * B * ldo
            ldhp = ldo
        g_t = gates + t * B * G
        if reset_after:
            # hg = h_{t-1} W_hh^T, then one fused pass
            gemm(NoTrans, Trans, B, G, H, <floating>1, hp, ldhp, W_hh, H, <floating>0, hg, G)
            hn_t = hn_buf + t * B * H if keep_hn else hn_buf
            if floating is float:
                fr_gru_fwd_f32(B, H, g_t, bias_x, hg, b_hn, hp, ldhp, out + t * B * ldo, ldo,
                               hn_t)
            else:
                fr_gru_fwd_f64(B, H, g_t, bias_x, hg, b_hn, hp, ldhp, out + t * B * ldo, ldo,
                               hn_t)
        else:
            # [r | z] += h_{t-1} [W_hr | W_hz]^T ; r, z ; rh = r h_{t-1}
            gemm(NoTrans, Trans, B, 2 * H, H, <floating>1, hp, ldhp, W_hh, H, <floating>1,
                 g_t, G)
            if floating is float:
                fr_gru_rz_f32(B, H, g_t, bias_x, hp, ldhp, rh)
            else:
                fr_gru_rz_f64(B, H, g_t, bias_x, hp, ldhp, rh)
            # n += (r h_{t-1}) W_hn^T ; n ; h_t
            gemm(NoTrans, Trans, B, H, H, <floating>1, rh, H, W_hh + 2 * H * H, H,
                 <floating>1, g_t + 2 * H, G)
            if floating is float:
                fr_gru_n_f32(B, H, g_t, bias_x, hp, ldhp, out + t * B * ldo, ldo)
            else:
                fr_gru_n_f64(B, H, g_t, bias_x, hp, ldhp, out + t * B * ldo, ldo)
    t = 0 if reverse else T - 1
    for b in range(B):
        memcpy(h_n + b * H, out + (t * B + b) * ldo, H * sizeof(floating))
    return 0


def gru_forward_layer(const floating[:, ::1] x, Py_ssize_t T,
                      const floating[:, ::1] W_ih, const floating[:, ::1] W_hh,
                      const floating[::1] bias_x, const floating[::1] b_hn,
                      const floating[:, ::1] h0, floating[:, ::1] out, Py_ssize_t col,
                      floating[:, ::1] gates, floating[:, ::1] hg, floating[:, ::1] hn_buf,
                      floating[:, ::1] rh, floating[:, ::1] h_n,
                      bint reset_after, bint reverse, bint keep_hn):
    """Python entry for gru_forward; shapes are checked by the caller (fusedrnn._rnn).

    x (T*B, I); out (T*B, D*H) with this direction's block starting at column `col`.
    """
    cdef Py_ssize_t B = h0.shape[0], I = x.shape[1], H = h0.shape[1]
    cdef int status
    if T == 0 or B == 0:
        return 0
    with nogil:
        status = gru_forward(T, B, I, H, &x[0, 0], I, &W_ih[0, 0], &W_hh[0, 0], &bias_x[0],
                             &b_hn[0], &h0[0, 0], &out[0, col], out.shape[1], &gates[0, 0],
                             &hg[0, 0], &hn_buf[0, 0], keep_hn, &rh[0, 0], &h_n[0, 0],
                             reset_after, reverse)
    return status
