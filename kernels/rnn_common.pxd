# Helpers shared by the LSTM and GRU kernels (inline: no run-time import).
# Notation: src/fusedrnn/_notation.py.  Rows are (t, b) pairs, row index t * B + b.
from _blas cimport floating, gemm, NoTrans, Trans


cdef inline void gemm_hprev(Py_ssize_t T, Py_ssize_t B, Py_ssize_t M, Py_ssize_t N,
                            const floating *dG, Py_ssize_t ldg,
                            const floating *out, Py_ssize_t ldo, const floating *h0,
                            floating *dW, Py_ssize_t ldw, bint reverse) noexcept nogil:
    """dW (M, N) = sum_t dG_t^T h_{t-1}: two GEMMs over the whole sequence.

    dG (T*B, M) at row stride ldg; h_{t-1} is h0 (B, N) at the first step of the direction and
    out[t -/+ 1] (row stride ldo) otherwise.
    """
    cdef Py_ssize_t first = (T - 1) * B if reverse else 0
    gemm(Trans, NoTrans, M, N, B, <floating>1, dG + first * ldg, ldg, h0, N,
         <floating>0, dW, ldw)
    if T > 1:
        if reverse:
            gemm(Trans, NoTrans, M, N, (T - 1) * B, <floating>1, dG, ldg, out + B * ldo, ldo,
                 <floating>1, dW, ldw)
        else:
            gemm(Trans, NoTrans, M, N, (T - 1) * B, <floating>1, dG + B * ldg, ldg, out, ldo,
                 <floating>1, dW, ldw)


cdef inline void colsum(Py_ssize_t R, Py_ssize_t N, const floating *A, Py_ssize_t lda,
                        const floating *ones, floating *y) noexcept nogil:
    """y (N) = sum over the R rows of A (row stride lda); `ones` holds R ones."""
    gemm(NoTrans, NoTrans, 1, N, R, <floating>1, ones, R, A, lda, <floating>0, y, N)
