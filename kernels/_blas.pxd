# The one wrapper over BLAS for all of fusedrnn (after scikit-learn's _cython_blas).
#
# Row-major everywhere: C(m, n) = alpha * op(A)(m, k) . op(B)(k, n) + beta * C is computed by calling
# column-major GEMM with the operands swapped (C^T = op(B)^T . op(A)^T).  The functions are inline
# so that the kernel modules need no import of this module at run time.
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

# scipy's cython_blas takes `int` (LP64); every size goes through this shim.
ctypedef int blas_int

ctypedef fused floating:
    float
    double

cdef enum BLAS_Trans:
    NoTrans = 110  # ord('n')
    Trans = 116    # ord('t')


cdef inline void gemm(BLAS_Trans ta, BLAS_Trans tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      floating alpha, const floating *A, Py_ssize_t lda,
                      const floating *B, Py_ssize_t ldb, floating beta,
                      floating *C, Py_ssize_t ldc) noexcept nogil:
    """Row-major C = alpha op(A) op(B) + beta C.  A single row (m == 1) goes to GEMV."""
    cdef char cta = <char>ta
    cdef char ctb = <char>tb
    cdef blas_int bm = <blas_int>m, bn = <blas_int>n, bk = <blas_int>k
    cdef blas_int blda = <blas_int>lda, bldb = <blas_int>ldb, bldc = <blas_int>ldc
    cdef blas_int one = 1
    cdef char gta
    cdef blas_int gm, gn
    if m == 0 or n == 0:
        return
    if m == 1 and ta == NoTrans:
        # y(n) = op(B)^T a(k): B is (n, k) row-major when tb == Trans, (k, n) otherwise.
        if tb == Trans:
            gta = b't'
            gm = bk
            gn = bn
        else:
            gta = b'n'
            gm = bn
            gn = bk
        if beta == 0:
            # GEMV scales y by beta: make sure garbage (NaN) in an empty buffer cannot survive
            memset(C, 0, n * sizeof(floating))
        if floating is float:
            sgemv(&gta, &gm, &gn, &alpha, <float *>B, &bldb, <float *>A, &one, &beta, C, &one)
        else:
            dgemv(&gta, &gm, &gn, &alpha, <double *>B, &bldb, <double *>A, &one, &beta, C, &one)
        return
    if floating is float:
        sgemm(&ctb, &cta, &bn, &bm, &bk, &alpha, <float *>B, &bldb, <float *>A, &blda,
              &beta, C, &bldc)
    else:
        dgemm(&ctb, &cta, &bn, &bm, &bk, &alpha, <double *>B, &bldb, <double *>A, &blda,
              &beta, C, &bldc)

