# C-level API of the LSTM kernels.  Notation: src/fusedrnn/_notation.py.
from _blas cimport floating

cdef int lstm_forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                      const floating *x, Py_ssize_t ldx,
                      const floating *W_ih, const floating *W_hh, const floating *bias,
                      const floating *W_hr, const floating *h0, const floating *c0,
                      floating *out, Py_ssize_t ldo, floating *gates,
                      floating *c_buf, bint keep_c, floating *r_buf,
                      floating *h_n, floating *c_n, bint reverse) noexcept nogil
