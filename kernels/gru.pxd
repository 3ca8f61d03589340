# C-level API of the GRU kernels.  Notation: src/fusedrnn/_notation.py.
from _blas cimport floating

cdef int gru_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                     const floating *x, Py_ssize_t ldx,
                     const floating *W_ih, const floating *W_hh, const floating *bias_x,
                     const floating *b_hn, const floating *h0,
                     floating *out, Py_ssize_t ldo, floating *gates, floating *hg,
                     floating *hn_buf, bint keep_hn, floating *rh,
                     floating *h_n, bint reset_after, bint reverse) noexcept nogil
