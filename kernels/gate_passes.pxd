# The fused gate passes of rnn_math.h for either dtype: one wrapper per pass, the float/double
# choice made here once (inline: no run-time import).  What each pass computes: rnn_math.h.
from _blas cimport floating
from rnn_math cimport (fr_lstm_fwd_f32, fr_lstm_fwd_f64, fr_lstm_bwd_f32, fr_lstm_bwd_f64,
                       fr_gru_fwd_f32, fr_gru_fwd_f64, fr_gru_rz_f32, fr_gru_rz_f64,
                       fr_gru_n_f32, fr_gru_n_f64, fr_gru_bwd_f32, fr_gru_bwd_f64,
                       fr_gru_bwd1_f32, fr_gru_bwd1_f64, fr_gru_bwd2_f32, fr_gru_bwd2_f64,
                       fr_add_rows_f32, fr_add_rows_f64)

ctypedef Py_ssize_t ssize


cdef inline void lstm_fwd(ssize B, ssize H, ssize lo, ssize hi, floating *g, ssize ldg,
                          const floating *bias, const floating *cp, floating *c, floating *h,
                          ssize ldh) noexcept nogil:
    if floating is float:
        fr_lstm_fwd_f32(B, H, lo, hi, g, ldg, bias, cp, c, h, ldh)
    else:
        fr_lstm_fwd_f64(B, H, lo, hi, g, ldg, bias, cp, c, h, ldh)


cdef inline void lstm_bwd(ssize B, ssize H, ssize lo, ssize hi, floating *g, const floating *c,
                          const floating *cp, const floating *dh, floating *dc,
                          floating *r) noexcept nogil:
    if floating is float:
        fr_lstm_bwd_f32(B, H, lo, hi, g, c, cp, dh, dc, r)
    else:
        fr_lstm_bwd_f64(B, H, lo, hi, g, c, cp, dh, dc, r)


cdef inline void gru_fwd(ssize B, ssize H, ssize lo, ssize hi, floating *g,
                         const floating *bias_x, const floating *hg, const floating *b_hn,
                         const floating *hp, ssize ldhp, floating *h, ssize ldh,
                         floating *hn) noexcept nogil:
    if floating is float:
        fr_gru_fwd_f32(B, H, lo, hi, g, bias_x, hg, b_hn, hp, ldhp, h, ldh, hn)
    else:
        fr_gru_fwd_f64(B, H, lo, hi, g, bias_x, hg, b_hn, hp, ldhp, h, ldh, hn)


cdef inline void gru_rz(ssize B, ssize H, ssize lo, ssize hi, floating *g,
                        const floating *bias_x, const floating *hp, ssize ldhp,
                        floating *rh) noexcept nogil:
    if floating is float:
        fr_gru_rz_f32(B, H, lo, hi, g, bias_x, hp, ldhp, rh)
    else:
        fr_gru_rz_f64(B, H, lo, hi, g, bias_x, hp, ldhp, rh)


cdef inline void gru_n(ssize B, ssize H, ssize lo, ssize hi, floating *g,
                       const floating *bias_x, const floating *hp, ssize ldhp, floating *h,
                       ssize ldh) noexcept nogil:
    if floating is float:
        fr_gru_n_f32(B, H, lo, hi, g, bias_x, hp, ldhp, h, ldh)
    else:
        fr_gru_n_f64(B, H, lo, hi, g, bias_x, hp, ldhp, h, ldh)


cdef inline void gru_bwd(ssize B, ssize H, ssize lo, ssize hi, floating *g, floating *hn,
                         const floating *hp, ssize ldhp, floating *dh,
                         floating *dgh) noexcept nogil:
    if floating is float:
        fr_gru_bwd_f32(B, H, lo, hi, g, hn, hp, ldhp, dh, dgh)
    else:
        fr_gru_bwd_f64(B, H, lo, hi, g, hn, hp, ldhp, dh, dgh)


cdef inline void gru_bwd1(ssize B, ssize H, ssize lo, ssize hi, floating *g, const floating *hp,
                          ssize ldhp, floating *dh) noexcept nogil:
    if floating is float:
        fr_gru_bwd1_f32(B, H, lo, hi, g, hp, ldhp, dh)
    else:
        fr_gru_bwd1_f64(B, H, lo, hi, g, hp, ldhp, dh)


cdef inline void gru_bwd2(ssize B, ssize H, ssize lo, ssize hi, floating *g, const floating *hp,
                          ssize ldhp, const floating *drh, floating *dh,
                          floating *rh) noexcept nogil:
    if floating is float:
        fr_gru_bwd2_f32(B, H, lo, hi, g, hp, ldhp, drh, dh, rh)
    else:
        fr_gru_bwd2_f64(B, H, lo, hi, g, hp, ldhp, drh, dh, rh)


cdef inline void add_rows(ssize B, ssize n, ssize lo, ssize hi, floating *dst,
                          const floating *src, ssize lds) noexcept nogil:
    if floating is float:
        fr_add_rows_f32(B, n, lo, hi, dst, src, lds)
    else:
        fr_add_rows_f64(B, n, lo, hi, dst, src, lds)
