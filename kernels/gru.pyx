"""Fused GRU kernels: one layer, one direction, the whole sequence with the GIL released.

Notation (src/fusedrnn/_notation.py): T steps, B batch rows, I input features, H hidden units.
Rows of every 2-D buffer are (t, b) pairs in time-major order, row index t * B + b.  Gate blocks
per row: [r | z | n], each H wide.  Two forms: reset_after (PyTorch, ONNX linear_before_reset=1)
applies r to (W_hn h_{t-1} + b_hn); the original form applies r to h_{t-1} before the product.
"""
from libc.string cimport memcpy

from cython.parallel cimport parallel, prange

from _blas cimport floating, gemm, NoTrans, Trans
from rnn_common cimport (pack_weights, pgemm_cols, chunk_lo, rows_gemm, grad_gemm,
                         grad_hprev, colsum_chunk)
from rnn_math cimport (fr_gru_fwd_f32, fr_gru_fwd_f64, fr_gru_rz_f32, fr_gru_rz_f64,
                       fr_gru_n_f32, fr_gru_n_f64, fr_gru_bwd_f32, fr_gru_bwd_f64,
                       fr_gru_bwd1_f32, fr_gru_bwd1_f64, fr_gru_bwd2_f32, fr_gru_bwd2_f64,
                       fr_add_rows_f32, fr_add_rows_f64)


cdef int gru_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                     const floating *x, Py_ssize_t ldx,
                     const floating *W_ih, const floating *W_hh, const floating *bias_x,
                     const floating *b_hn, const floating *h0,
                     floating *out, Py_ssize_t ldo, floating *gates, floating *hg,
                     floating *hn_buf, bint keep_hn, floating *rh,
                     floating *h_n, bint reset_after, bint reverse,
                     floating *wp_hh, int n_threads, floating *work,
                     Py_ssize_t wsz) noexcept nogil:
    """Run one GRU layer in one direction over T steps.

    x (T*B, I) row stride ldx; W_ih (3H, I); W_hh (3H, H); h0 (B, H).
    reset_after: bias_x (3H) = b_ih + [b_hr, b_hz, 0], b_hn (H) the hidden bias of n;
    original form: bias_x = b_ih + b_hh and b_hn is unused.
    Writes h_t to out (T*B, H) at row stride ldo (a column slice of the layer output).
    gates (T*B, 3H): workspace; on return holds r, z, n of every step.
    hg (B, 3H): workspace for h_{t-1} W_hh^T (reset_after only).
    hn_buf: W_hn h_{t-1} + b_hn of every step (T*B, H) when keep_hn, else (B, H) (reset_after).
    rh (B, H): workspace for r * h_{t-1} (original form).  h_n (B, H): final state.
    wp_hh: workspace for the packed W_hh.  n_threads: OpenMP threads sharing each step.
    """
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t s, t, tp, b, c, lo, hi
    cdef const floating *hp
    cdef Py_ssize_t ldhp
    cdef floating *g_t
    cdef floating *hn_t
    cdef floating *h_t
    if T <= 0 or B <= 0:
        return 0
    pack_weights(G, H, W_hh, wp_hh)
    with parallel(num_threads=n_threads):
        # input projection of the whole sequence: gates = x W_ih^T, one BLAS GEMM whose rows
        # are shared between the threads (BLAS itself single-threaded: see fusedrnn._threads)
        for c in prange(n_threads, schedule='static'):
            rows_gemm(c, n_threads, Trans, T * B, G, I, x, ldx, W_ih, I, <floating>0, gates, G)
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
            h_t = out + t * B * ldo
            if reset_after:
                hn_t = hn_buf + t * B * H if keep_hn else hn_buf
                # hg = h_{t-1} W_hh^T, then one fused pass
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, G, H, hp, ldhp, wp_hh, G, <floating>0, hg, G,
                               work + c * wsz)
                for c in prange(n_threads, schedule='static'):
                    lo = chunk_lo(H, 16, c, n_threads)
                    hi = chunk_lo(H, 16, c + 1, n_threads)
                    if lo < hi:
                        if floating is float:
                            fr_gru_fwd_f32(B, H, lo, hi, g_t, bias_x, hg, b_hn, hp, ldhp, h_t,
                                           ldo, hn_t)
                        else:
                            fr_gru_fwd_f64(B, H, lo, hi, g_t, bias_x, hg, b_hn, hp, ldhp, h_t,
                                           ldo, hn_t)
            else:
                # [r | z] += h_{t-1} [W_hr | W_hz]^T ; r, z ; rh = r h_{t-1}
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, 2 * H, H, hp, ldhp, wp_hh, G, <floating>1, g_t,
                               G, work + c * wsz)
                for c in prange(n_threads, schedule='static'):
                    lo = chunk_lo(H, 16, c, n_threads)
                    hi = chunk_lo(H, 16, c + 1, n_threads)
                    if lo < hi:
                        if floating is float:
                            fr_gru_rz_f32(B, H, lo, hi, g_t, bias_x, hp, ldhp, rh)
                        else:
                            fr_gru_rz_f64(B, H, lo, hi, g_t, bias_x, hp, ldhp, rh)
                # n += (r h_{t-1}) W_hn^T ; n ; h_t
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 2 * H, H, H, rh, H, wp_hh, G, <floating>1, g_t, G,
                               work + c * wsz)
                for c in prange(n_threads, schedule='static'):
                    lo = chunk_lo(H, 16, c, n_threads)
                    hi = chunk_lo(H, 16, c + 1, n_threads)
                    if lo < hi:
                        if floating is float:
                            fr_gru_n_f32(B, H, lo, hi, g_t, bias_x, hp, ldhp, h_t, ldo)
                        else:
                            fr_gru_n_f64(B, H, lo, hi, g_t, bias_x, hp, ldhp, h_t, ldo)
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
                      bint reset_after, bint reverse, bint keep_hn, floating[::1] wp_hh,
                      int n_threads,
                      floating[::1] work):
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
                             reset_after, reverse, &wp_hh[0], n_threads,
            &work[0], work.shape[0] // max(n_threads, 1))
    return status


cdef int gru_backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                      const floating *x, const floating *W_ih, const floating *W_hh,
                      const floating *h0, const floating *out, Py_ssize_t ldo,
                      floating *gates, floating *hn_buf,
                      const floating *dout, Py_ssize_t lddo, const floating *dh_n,
                      floating *dx, bint accumulate_dx, floating *dh0,
                      floating *dW_ih, floating *dW_hh, floating *db_ih, floating *db_hh,
                      floating *dgh, floating *drh, floating *rh_all,
                      const floating *ones, bint reset_after, bint reverse,
                      const floating *Wt_a, const floating *Wt_n, floating *wt_a,
                      floating *wt_n, int n_threads, floating *work,
                      Py_ssize_t wsz) noexcept nogil:
    """Backpropagation through time for one layer and direction run by gru_forward(keep_hn).

    Tape: x (T*B, I) the layer input, out (T*B, H) at row stride ldo, gates (T*B, 3H) the
    activated r, z, n (overwritten by dGx, the pre-activation gradients of the input part),
    hn_buf (T*B, H) = W_hn h_{t-1} + b_hn (reset_after; overwritten by its gradient).
    dout (T*B, H) at row stride lddo, dh_n (B, H).
    Outputs: dx (T*B, I) (added when accumulate_dx), dh0 (B, H) (also the running dL/dh),
    dW_ih (3H, I), dW_hh (3H, H), db_ih, db_hh (3H).
    Workspaces: dgh (B, 3H), drh (B, H), rh_all (T*B, H) (original form), ones (T*B).
    Transposed recurrent weights, packed into wt_a / wt_n for the per-step products:
    reset_after: Wt_a = W_hh^T (H, 3H); original form: Wt_a = [W_hr | W_hz]^T (H, 2H) and
    Wt_n = W_hn^T (H, H).  n_threads OpenMP threads share each step.
    """
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t s, t, tp, c, lo, hi
    cdef const floating *hp
    cdef Py_ssize_t ldhp
    cdef floating *g_t
    cdef floating beta_dx = 1 if accumulate_dx else 0
    cdef floating *dh = dh0
    if T <= 0 or B <= 0:
        return 0
    memcpy(dh, dh_n, B * H * sizeof(floating))
    if reset_after:
        pack_weights(H, G, Wt_a, wt_a)
    else:
        pack_weights(H, 2 * H, Wt_a, wt_a)
        pack_weights(H, H, Wt_n, wt_n)
    with parallel(num_threads=n_threads):
        for s in range(T):
            t = s if reverse else T - 1 - s
            if t == (T - 1 if reverse else 0):
                hp = h0
                ldhp = H
            else:
                tp = t + 1 if reverse else t - 1
                hp = out + tp * B * ldo
                ldhp = ldo
            g_t = gates + t * B * G
            # dL/dh_t = dout_t + the recurrent part already in dh; then the fused pass(es)
            for c in prange(n_threads, schedule='static'):
                lo = chunk_lo(H, 16, c, n_threads)
                hi = chunk_lo(H, 16, c + 1, n_threads)
                if lo < hi:
                    if floating is float:
                        fr_add_rows_f32(B, H, lo, hi, dh, dout + t * B * lddo, lddo)
                    else:
                        fr_add_rows_f64(B, H, lo, hi, dh, dout + t * B * lddo, lddo)
                    if reset_after:
                        if floating is float:
                            fr_gru_bwd_f32(B, H, lo, hi, g_t, hn_buf + t * B * H, hp, ldhp, dh,
                                           dgh)
                        else:
                            fr_gru_bwd_f64(B, H, lo, hi, g_t, hn_buf + t * B * H, hp, ldhp, dh,
                                           dgh)
                    else:
                        if floating is float:
                            fr_gru_bwd1_f32(B, H, lo, hi, g_t, hp, ldhp, dh)
                        else:
                            fr_gru_bwd1_f64(B, H, lo, hi, g_t, hp, ldhp, dh)
            if reset_after:
                # dL/dh_{t-1} = z dh_t + [dr | dz | dhn] W_hh
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, H, G, dgh, G, wt_a, H, <floating>1, dh, H,
                               work + c * wsz)
            else:
                # d(r h_{t-1}) = dn_pre W_hn
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, H, H, g_t + 2 * H, G, wt_n, H, <floating>0, drh,
                               H, work + c * wsz)
                for c in prange(n_threads, schedule='static'):
                    lo = chunk_lo(H, 16, c, n_threads)
                    hi = chunk_lo(H, 16, c + 1, n_threads)
                    if lo < hi:
                        if floating is float:
                            fr_gru_bwd2_f32(B, H, lo, hi, g_t, hp, ldhp, drh, dh,
                                            rh_all + t * B * H)
                        else:
                            fr_gru_bwd2_f64(B, H, lo, hi, g_t, hp, ldhp, drh, dh,
                                            rh_all + t * B * H)
                # dL/dh_{t-1} += [dr | dz] [W_hr | W_hz]
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, H, 2 * H, g_t, G, wt_a, H, <floating>1, dh, H,
                               work + c * wsz)
        # weight gradients and dx: one GEMM each over all T*B rows, its output rows shared
        # between the threads
        for c in prange(n_threads, schedule='static'):
            grad_gemm(c, n_threads, G, I, T * B, gates, G, x, I, dW_ih, I)
            # [W_hr | W_hz]: their pre-activation gradients are those of the input part
            grad_hprev(c, n_threads, T, B, 2 * H, H, gates, G, out, ldo, h0, dW_hh, H, reverse,
                       ones, db_ih)
            if reset_after:
                # W_hn: the gradient of W_hn h_{t-1} + b_hn is in hn_buf
                grad_hprev(c, n_threads, T, B, H, H, hn_buf, H, out, ldo, h0,
                           dW_hh + 2 * H * H, H, reverse, ones, db_hh + 2 * H)
                colsum_chunk(c, n_threads, T * B, H, gates + 2 * H, G, ones, db_ih + 2 * H)
            else:
                # W_hn multiplies r h_{t-1} (rh_all); the n block's bias gradient is shared
                grad_gemm(c, n_threads, H, H, T * B, gates + 2 * H, G, rh_all, H,
                          dW_hh + 2 * H * H, H)
                colsum_chunk(c, n_threads, T * B, H, gates + 2 * H, G, ones, db_ih + 2 * H)
            rows_gemm(c, n_threads, NoTrans, T * B, I, G, gates, G, W_ih, I, beta_dx, dx, I)
    if reset_after:
        memcpy(db_hh, db_ih, 2 * H * sizeof(floating))
    else:
        memcpy(db_hh, db_ih, G * sizeof(floating))
    return 0


def gru_backward_layer(const floating[:, ::1] x, Py_ssize_t T,
                       const floating[:, ::1] W_ih, const floating[:, ::1] W_hh,
                       const floating[:, ::1] h0, const floating[:, ::1] out, Py_ssize_t col,
                       floating[:, ::1] gates, floating[:, ::1] hn_buf,
                       const floating[:, ::1] dout, const floating[:, ::1] dh_n,
                       floating[:, ::1] dx, bint accumulate_dx, floating[:, ::1] dh0,
                       floating[:, ::1] dW_ih, floating[:, ::1] dW_hh, floating[::1] db_ih,
                       floating[::1] db_hh, floating[:, ::1] dgh, floating[:, ::1] drh,
                       floating[:, ::1] rh_all, const floating[::1] ones,
                       bint reset_after, bint reverse, const floating[:, ::1] Wt_a,
                       const floating[:, ::1] Wt_n, floating[::1] wt_a, floating[::1] wt_n,
                       int n_threads,
                      floating[::1] work):
    """Python entry for gru_backward; shapes are checked by the caller (fusedrnn._train).

    out and dout are (T*B, D*H) with this direction's block starting at column `col`.
    Wt_a, Wt_n: the transposed recurrent weights (see gru_backward; Wt_n has 0 rows with
    reset_after); wt_a, wt_n: their packed workspaces.
    """
    cdef Py_ssize_t B = h0.shape[0], I = x.shape[1], H = h0.shape[1]
    cdef int status
    if T == 0 or B == 0:
        return 0
    with nogil:
        status = gru_backward(
            T, B, I, H, &x[0, 0], &W_ih[0, 0], &W_hh[0, 0], &h0[0, 0], &out[0, col],
            out.shape[1], &gates[0, 0], &hn_buf[0, 0], &dout[0, col], dout.shape[1],
            &dh_n[0, 0], &dx[0, 0], accumulate_dx, &dh0[0, 0], &dW_ih[0, 0], &dW_hh[0, 0],
            &db_ih[0], &db_hh[0], &dgh[0, 0], &drh[0, 0], &rh_all[0, 0], &ones[0],
            reset_after, reverse, &Wt_a[0, 0], &Wt_n[0, 0] if Wt_n.shape[0] > 0 else NULL,
            &wt_a[0], &wt_n[0], n_threads,
            &work[0], work.shape[0] // max(n_threads, 1))
    return status
