# C-level API of the LSTM kernels.  Notation: src/fusedrnn/_notation.py.
from _blas cimport floating

cdef int lstm_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                      const floating *x, Py_ssize_t ldx,
                      const floating *W_ih, const floating *W_hh, const floating *bias,
                      const floating *W_hr, const floating *h0, const floating *c0,
                      floating *out, Py_ssize_t ldo, floating *gates,
                      floating *c_buf, bint keep_c, floating *r_buf,
                      floating *h_n, floating *c_n, bint reverse,
                      floating *wp_hh, floating *wp_hr, int n_threads, floating *work,
                      Py_ssize_t wsz) noexcept nogil

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
                      Py_ssize_t wsz) noexcept nogil
