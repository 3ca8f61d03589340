"""Python-visible twins of the BLAS wrappers in _blas.pxd, used only by the tests."""
from _blas cimport floating, gemm, BLAS_Trans, NoTrans, Trans


def gemm_memview(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
                 const floating[:, ::1] B, double beta, floating[:, ::1] C):
    """Row-major C = alpha op(A) op(B) + beta C on C-contiguous 2-D arrays."""
    cdef BLAS_Trans ta = Trans if trans_a else NoTrans
    cdef BLAS_Trans tb = Trans if trans_b else NoTrans
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    with nogil:
        gemm(ta, tb, m, n, k, <floating>alpha, &A[0, 0], A.shape[1], &B[0, 0], B.shape[1],
             <floating>beta, &C[0, 0], C.shape[1])
