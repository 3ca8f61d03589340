# C-level API of the GRU kernels.  Notation: src/fusedrnn/_notation.py.
from _blas cimport floating

cdef int gru_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                     const floating *x, Py_ssize_t ldx,
                     const floating *W_ih, const floating *W_hh, const floating *bias_x,
                     const floating *b_hn, const floating *h0,
                     floating *out, Py_ssize_t ldo, floating *gates, floating *hg,
                     floating *hn_buf, bint keep_hn, floating *rh,
                     floating *h_n, bint reset_after, bint reverse,
                     floating *wp_hh, int n_threads, floating *work,
                      Py_ssize_t wsz) noexcept nogil

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
                      Py_ssize_t wsz) noexcept nogil
