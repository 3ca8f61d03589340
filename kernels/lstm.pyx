"""Fused LSTM kernels: one layer, one direction, the whole sequence with the GIL released.

Notation (src/fusedrnn/_notation.py): T steps, B batch rows, I input features, H hidden units,
P = H_out (proj_size, or H without projection).  Rows of every 2-D buffer are (t, b) pairs in
time-major order, row index t * B + b.  Gate blocks per row: [i | f | g | o], each H wide.
"""
from libc.string cimport memcpy

from _blas cimport floating, gemm, NoTrans, Trans
from packed_gemm cimport (fr_packed_size_f32, fr_packed_size_f64,
                         fr_packed_work_size_f32, fr_packed_work_size_f64)
from rnn_math cimport fr_max_threads
from cython.parallel cimport parallel, prange
from rnn_common cimport (pack_weights, pgemm_cols, chunk_lo, rows_gemm, grad_gemm,
                         grad_hprev)
from rnn_math cimport (fr_lstm_fwd_f32, fr_lstm_fwd_f64, fr_lstm_bwd_f32, fr_lstm_bwd_f64,
                       fr_add_rows_f32, fr_add_rows_f64, fr_activations_f32,
                       fr_activations_f64)


cdef int lstm_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                      const floating *x, Py_ssize_t ldx,
                      const floating *W_ih, const floating *W_hh, const floating *bias,
                      const floating *W_hr, const floating *h0, const floating *c0,
                      floating *out, Py_ssize_t ldo, floating *gates,
                      floating *c_buf, bint keep_c, floating *r_buf,
                      floating *h_n, floating *c_n, bint reverse,
                      floating *wp_hh, floating *wp_hr, int n_threads,
                      floating *work, Py_ssize_t wsz) noexcept nogil:
    """Run one LSTM layer in one direction over T steps.

    x (T*B, I) row stride ldx; W_ih (4H, I); W_hh (4H, P); bias (4H) = b_ih + b_hh;
    W_hr (P, H) or NULL when there is no projection (then P == H); h0 (B, P); c0 (B, H).
    Writes h_t to out (T*B, P) at row stride ldo (a column slice of the layer output).
    gates (T*B, 4H): workspace; on return holds the activated gates i, f, g, o of every step.
    c_buf: (T*B, H) when keep_c (c_t of every step, for backward), else (2*B, H) ping-pong.
    r_buf (B, H): projection input o * tanh(c_t) (unused without projection).
    h_n (B, P), c_n (B, H): final state.  reverse: run t = T-1 .. 0.
    wp_hh, wp_hr: workspaces for the packed W_hh and W_hr (packed_gemm.h sizes).
    n_threads: OpenMP threads sharing each step (columns of the GEMMs, hidden units of the
    gate pass), with a barrier between the phases.
    """
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t s, t, tp, slot, pslot, b, c, lo, hi
    cdef const floating *hp
    cdef const floating *cp
    cdef Py_ssize_t ldhp
    cdef floating *c_t
    cdef floating *g_t
    cdef floating *hdst
    cdef Py_ssize_t ldh
    if T <= 0 or B <= 0:
        return 0
    pack_weights(G, P, W_hh, wp_hh)
    if W_hr != NULL:
        pack_weights(P, H, W_hr, wp_hr)
    with parallel(num_threads=n_threads):
        # input projection of the whole sequence: gates = x W_ih^T, one BLAS GEMM whose rows
        # are shared between the threads (BLAS itself single-threaded: see fusedrnn._threads)
        for c in prange(n_threads, schedule='static'):
            rows_gemm(c, n_threads, Trans, T * B, G, I, x, ldx, W_ih, I, <floating>0, gates, G)
        for s in range(T):
            t = T - 1 - s if reverse else s
            slot = t if keep_c else (s & 1)
            if s == 0:
                hp = h0
                ldhp = P
                cp = c0
            else:
                tp = t + 1 if reverse else t - 1
                pslot = tp if keep_c else ((s - 1) & 1)
                hp = out + tp * B * ldo
                ldhp = ldo
                cp = c_buf + pslot * B * H
            g_t = gates + t * B * G
            c_t = c_buf + slot * B * H
            if W_hr != NULL:
                hdst = r_buf
                ldh = H
            else:
                hdst = out + t * B * ldo
                ldh = ldo
            # recurrent part: gates_t += h_{t-1} W_hh^T, columns shared between threads
            for c in prange(n_threads, schedule='static'):
                pgemm_cols(c, n_threads, B, 0, G, P, hp, ldhp, wp_hh, G, <floating>1, g_t, G,
                           work + c * wsz)
            # fused gate pass, hidden units shared between threads
            for c in prange(n_threads, schedule='static'):
                lo = chunk_lo(H, 16, c, n_threads)
                hi = chunk_lo(H, 16, c + 1, n_threads)
                if lo < hi:
                    if floating is float:
                        fr_lstm_fwd_f32(B, H, lo, hi, g_t, G, bias, cp, c_t, hdst, ldh)
                    else:
                        fr_lstm_fwd_f64(B, H, lo, hi, g_t, G, bias, cp, c_t, hdst, ldh)
            if W_hr != NULL:
                # h_t = W_hr (o * tanh(c_t))
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, P, H, r_buf, H, wp_hr, P, <floating>0,
                               out + t * B * ldo, ldo, work + c * wsz)
    # final state
    t = 0 if reverse else T - 1
    slot = t if keep_c else ((T - 1) & 1)
    for b in range(B):
        memcpy(h_n + b * P, out + (t * B + b) * ldo, P * sizeof(floating))
    memcpy(c_n, c_buf + slot * B * H, B * H * sizeof(floating))
    return 0


def lstm_forward_layer(const floating[:, ::1] x, Py_ssize_t T,
                       const floating[:, ::1] W_ih, const floating[:, ::1] W_hh,
                       const floating[::1] bias, const floating[:, ::1] W_hr,
                       const floating[:, ::1] h0, const floating[:, ::1] c0,
                       floating[:, ::1] out, Py_ssize_t col,
                       floating[:, ::1] gates, floating[:, ::1] c_buf, floating[:, ::1] r_buf,
                       floating[:, ::1] h_n, floating[:, ::1] c_n, bint reverse, bint keep_c,
                       floating[::1] wp_hh, floating[::1] wp_hr, int n_threads,
                      floating[::1] work):
    """Python entry for lstm_forward; shapes are checked by the caller (fusedrnn._rnn).

    x (T*B, I); out (T*B, D*P) with this direction's block starting at column `col`;
    W_hr has 0 rows when there is no projection; c_buf has T*B rows (keep_c) or 2*B.
    wp_hh, wp_hr: packed-weight workspaces of packed_size(4H, P) and packed_size(P, H).
    """
    cdef Py_ssize_t B = h0.shape[0], I = x.shape[1], H = c0.shape[1], P = h0.shape[1]
    cdef const floating *whr = &W_hr[0, 0] if W_hr.shape[0] > 0 else NULL
    cdef int status
    if T == 0 or B == 0:
        return 0
    with nogil:
        status = lstm_forward(T, B, I, H, P, &x[0, 0], I, &W_ih[0, 0], &W_hh[0, 0], &bias[0],
                              whr, &h0[0, 0], &c0[0, 0], &out[0, col], out.shape[1],
                              &gates[0, 0], &c_buf[0, 0], keep_c, &r_buf[0, 0],
                              &h_n[0, 0], &c_n[0, 0], reverse, &wp_hh[0],
                              &wp_hr[0] if W_hr.shape[0] > 0 else NULL, n_threads,
            &work[0], work.shape[0] // max(n_threads, 1))
    return status


def packed_size(Py_ssize_t N, Py_ssize_t K, bint double):
    """Elements of the packed copy of an (N, K) weight (packed_gemm.h)."""
    return fr_packed_size_f64(N, K) if double else fr_packed_size_f32(N, K)


def max_threads():
    """OpenMP's thread count for a parallel region (1 without OpenMP); threadpoolctl's
    limits apply to it."""
    return fr_max_threads()


cdef int lstm_backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                       const floating *x, const floating *W_ih, const floating *W_hh,
                       const floating *W_hr, const floating *h0, const floating *c0,
                       const floating *out, Py_ssize_t ldo, floating *gates,
                       const floating *c_buf, const floating *dout, Py_ssize_t lddo,
                       const floating *dh_n, const floating *dc_n,
                       floating *dx, bint accumulate_dx, floating *dh0, floating *dc0,
                       floating *dW_ih, floating *dW_hh, floating *db, floating *dW_hr,
                       floating *dh, floating *dr, floating *dhtot, floating *r_all,
                       const floating *ones, bint reverse,
                       const floating *W_hhT, const floating *W_hrT, floating *wt_hh,
                       floating *wt_hr, int n_threads, floating *work,
                       Py_ssize_t wsz) noexcept nogil:
    """Backpropagation through time for one layer and direction run by lstm_forward(keep_c).

    Tape: x (T*B, I) the layer input, out (T*B, P) at row stride ldo, gates (T*B, 4H) the
    activated gates (overwritten here by the pre-activation gradients dG), c_buf (T*B, H).
    dout (T*B, P) at row stride lddo: dL/dh_t from above; dh_n (B, P), dc_n (B, H).
    Outputs: dx (T*B, I) (= dG W_ih, added to dx when accumulate_dx), dh0 (B, P), dc0 (B, H),
    dW_ih (4H, I), dW_hh (4H, P), db (4H) (the gradient of both b_ih and b_hh),
    dW_hr (P, H) when W_hr != NULL.
    Workspaces: dh (B, P), dr (B, H), dhtot (T*B, P) and r_all (T*B, H) with a projection
    (else dhtot unused, r_all (B, H)), ones (T*B) filled with 1; W_hhT (P, 4H) and W_hrT (H, P)
    the transposed weights, packed into wt_hh and wt_hr for the per-step products.
    The only GEMMs inside the time loop are the recurrent one (and the projection's), shared
    between n_threads OpenMP threads; weight gradients are one BLAS GEMM each after the loop
    (output rows shared between the threads).
    """
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t s, t, tp, b, c, lo, hi
    cdef const floating *cp
    cdef floating *dr_t
    cdef floating *r_t
    cdef floating *g_t
    cdef floating beta_dx = 1 if accumulate_dx else 0
    if T <= 0 or B <= 0:
        return 0
    memcpy(dh, dh_n, B * P * sizeof(floating))
    memcpy(dc0, dc_n, B * H * sizeof(floating))      # dc0 is the running dL/dc
    pack_weights(P, G, W_hhT, wt_hh)
    if W_hr != NULL:
        pack_weights(H, P, W_hrT, wt_hr)
    with parallel(num_threads=n_threads):
        for s in range(T):
            t = s if reverse else T - 1 - s
            g_t = gates + t * B * G
            if t == (T - 1 if reverse else 0):
                cp = c0
            else:
                tp = t + 1 if reverse else t - 1
                cp = c_buf + tp * B * H
            if W_hr != NULL:
                dr_t = dr
                r_t = r_all + t * B * H
            else:
                dr_t = dh
                r_t = r_all
            # dL/dh_t = dout_t + the recurrent part already in dh
            for c in prange(n_threads, schedule='static'):
                lo = chunk_lo(P, 16, c, n_threads)
                hi = chunk_lo(P, 16, c + 1, n_threads)
                if lo < hi:
                    if floating is float:
                        fr_add_rows_f32(B, P, lo, hi, dh, dout + t * B * lddo, lddo)
                    else:
                        fr_add_rows_f64(B, P, lo, hi, dh, dout + t * B * lddo, lddo)
                    if W_hr != NULL:
                        for b in range(B):
                            memcpy(dhtot + (t * B + b) * P + lo, dh + b * P + lo,
                                   (hi - lo) * sizeof(floating))
            if W_hr != NULL:
                # d(o tanh c_t) = dh_t W_hr
                for c in prange(n_threads, schedule='static'):
                    pgemm_cols(c, n_threads, B, 0, H, P, dh, P, wt_hr, H, <floating>0, dr, H,
                               work + c * wsz)
            for c in prange(n_threads, schedule='static'):
                lo = chunk_lo(H, 16, c, n_threads)
                hi = chunk_lo(H, 16, c + 1, n_threads)
                if lo < hi:
                    if floating is float:
                        fr_lstm_bwd_f32(B, H, lo, hi, g_t, c_buf + t * B * H, cp, dr_t, dc0, r_t)
                    else:
                        fr_lstm_bwd_f64(B, H, lo, hi, g_t, c_buf + t * B * H, cp, dr_t, dc0, r_t)
            # recurrent part of dL/dh_{t-1} = dG_t W_hh
            for c in prange(n_threads, schedule='static'):
                pgemm_cols(c, n_threads, B, 0, P, G, g_t, G, wt_hh, P, <floating>0, dh, P,
                           work + c * wsz)
        # weight gradients and dx: one GEMM each over all T*B rows, its output rows shared
        # between the threads
        for c in prange(n_threads, schedule='static'):
            grad_gemm(c, n_threads, G, I, T * B, gates, G, x, I, dW_ih, I)
            grad_hprev(c, n_threads, T, B, G, P, gates, G, out, ldo, h0, dW_hh, P, reverse,
                       ones, db)
            rows_gemm(c, n_threads, NoTrans, T * B, I, G, gates, G, W_ih, I, beta_dx, dx, I)
            if W_hr != NULL:
                grad_gemm(c, n_threads, P, H, T * B, dhtot, P, r_all, H, dW_hr, H)
    memcpy(dh0, dh, B * P * sizeof(floating))
    return 0


def lstm_backward_layer(const floating[:, ::1] x, Py_ssize_t T,
                        const floating[:, ::1] W_ih, const floating[:, ::1] W_hh,
                        const floating[:, ::1] W_hr,
                        const floating[:, ::1] h0, const floating[:, ::1] c0,
                        const floating[:, ::1] out, Py_ssize_t col,
                        floating[:, ::1] gates, const floating[:, ::1] c_buf,
                        const floating[:, ::1] dout, const floating[:, ::1] dh_n,
                        const floating[:, ::1] dc_n, floating[:, ::1] dx, bint accumulate_dx,
                        floating[:, ::1] dh0, floating[:, ::1] dc0,
                        floating[:, ::1] dW_ih, floating[:, ::1] dW_hh, floating[::1] db,
                        floating[:, ::1] dW_hr, floating[:, ::1] dh, floating[:, ::1] dr,
                        floating[:, ::1] dhtot, floating[:, ::1] r_all,
                        const floating[::1] ones, bint reverse,
                        const floating[:, ::1] W_hhT, const floating[:, ::1] W_hrT,
                        floating[::1] wt_hh, floating[::1] wt_hr, int n_threads,
                      floating[::1] work):
    """Python entry for lstm_backward; shapes are checked by the caller (fusedrnn._train).

    out and dout are (T*B, D*P) with this direction's block starting at column `col`;
    W_hr, dW_hr, dhtot, W_hrT have 0 rows without projection.  W_hhT = W_hh^T, W_hrT = W_hr^T
    (contiguous); wt_hh, wt_hr: packed workspaces of packed_size(P, 4H), packed_size(H, P).
    """
    cdef Py_ssize_t B = h0.shape[0], I = x.shape[1], H = c0.shape[1], P = h0.shape[1]
    cdef bint proj = W_hr.shape[0] > 0
    cdef int status
    if T == 0 or B == 0:
        return 0
    with nogil:
        status = lstm_backward(
            T, B, I, H, P, &x[0, 0], &W_ih[0, 0], &W_hh[0, 0], &W_hr[0, 0] if proj else NULL,
            &h0[0, 0], &c0[0, 0], &out[0, col], out.shape[1], &gates[0, 0], &c_buf[0, 0],
            &dout[0, col], dout.shape[1], &dh_n[0, 0], &dc_n[0, 0], &dx[0, 0], accumulate_dx,
            &dh0[0, 0], &dc0[0, 0], &dW_ih[0, 0], &dW_hh[0, 0], &db[0],
            &dW_hr[0, 0] if proj else NULL, &dh[0, 0], &dr[0, 0],
            &dhtot[0, 0] if proj else NULL, &r_all[0, 0], &ones[0], reverse, &W_hhT[0, 0],
            &W_hrT[0, 0] if proj else NULL, &wt_hh[0], &wt_hr[0], n_threads,
            &work[0], work.shape[0] // max(n_threads, 1))
    return status


def activations_memview(const floating[::1] x, floating[::1] sig, floating[::1] th):
    """sig = sigmoid(x), th = tanh(x) with the kernels' own activations (used only by tests)."""
    with nogil:
        if floating is float:
            fr_activations_f32(x.shape[0], &x[0], &sig[0], &th[0])
        else:
            fr_activations_f64(x.shape[0], &x[0], &sig[0], &th[0])


def packed_work_size(Py_ssize_t M, Py_ssize_t K, bint double):
    """Elements of one thread's workspace for pgemm on an (M, K) left operand."""
    return fr_packed_work_size_f64(M, K) if double else fr_packed_work_size_f32(M, K)


# ---------------------------------------------------------------- test hooks (SIMD headers)
from fr_isa cimport fr_isa, fr_set_isa, fr_isa_name
from packed_gemm cimport fr_pack_f32, fr_pack_f64, fr_pack_trans_f32, fr_pack_trans_f64


def isa_memview(int isa=-1):
    """Name of the SIMD path of this module (fr_isa.h); isa >= 0 first forces one
    (fr_set_isa: 1 scalar, 2 avx2, 3 avx512, 0 back to the CPU and FUSEDRNN_ISA). Tests only."""
    if isa >= 0:
        fr_set_isa(isa)
    return fr_isa_name(fr_isa()).decode()


def pack_memview(const floating[:, ::1] W, floating[::1] Wp, bint trans):
    """Wp = fr_pack(W) for W (N, K), or fr_pack_trans(W) = the packing of W^T for W (K, N).
    Tests only."""
    cdef Py_ssize_t N = W.shape[1] if trans else W.shape[0]
    cdef Py_ssize_t K = W.shape[0] if trans else W.shape[1]
    if Wp.shape[0] < fr_packed_size_f32(N, K):
        raise ValueError(f"Wp must have {fr_packed_size_f32(N, K)} elements, got {Wp.shape[0]}")
    if N == 0 or K == 0:
        return
    with nogil:
        if floating is float:
            if trans:
                fr_pack_trans_f32(N, K, &W[0, 0], W.shape[1], &Wp[0])
            else:
                fr_pack_f32(N, K, &W[0, 0], W.shape[1], &Wp[0])
        else:
            if trans:
                fr_pack_trans_f64(N, K, &W[0, 0], W.shape[1], &Wp[0])
            else:
                fr_pack_f64(N, K, &W[0, 0], W.shape[1], &Wp[0])
