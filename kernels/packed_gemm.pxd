# Declarations of the packed-weight GEMM in packed_gemm.h (see that file for the layout).
cdef extern from "packed_gemm.h" nogil:
    Py_ssize_t fr_packed_nr()
    # bytes of panels up to which small-row products of odd steps walk W last panel first
    Py_ssize_t fr_rev_bytes()
    Py_ssize_t fr_packed_size_f32(Py_ssize_t N, Py_ssize_t K)
    Py_ssize_t fr_packed_size_f64(Py_ssize_t N, Py_ssize_t K)
    Py_ssize_t fr_packed_work_size_f32(Py_ssize_t M, Py_ssize_t K)
    Py_ssize_t fr_packed_work_size_f64(Py_ssize_t M, Py_ssize_t K)
    # the most of fr_packed_work_size(M, k) over k <= K (not monotone in K)
    Py_ssize_t fr_packed_work_bound_f32(Py_ssize_t M, Py_ssize_t K)
    Py_ssize_t fr_packed_work_bound_f64(Py_ssize_t M, Py_ssize_t K)
    void fr_pack_f32(Py_ssize_t N, Py_ssize_t K, const float *W, Py_ssize_t ldw, float *Wp)
    void fr_pack_f64(Py_ssize_t N, Py_ssize_t K, const double *W, Py_ssize_t ldw, double *Wp)
    # the same layout for W^T, W stored row-major as (K, N) with row stride ldw
    void fr_pack_trans_f32(Py_ssize_t N, Py_ssize_t K, const float *W, Py_ssize_t ldw,
                           float *Wp)
    void fr_pack_trans_f64(Py_ssize_t N, Py_ssize_t K, const double *W, Py_ssize_t ldw,
                           double *Wp)
    # rows k0 .. k1 of that layout from Wr, which points at row k0 of the (K, N) matrix
    void fr_pack_trans_rows_f32(Py_ssize_t N, Py_ssize_t K, Py_ssize_t k0, Py_ssize_t k1,
                                const float *Wr, Py_ssize_t ldw, float *Wp)
    void fr_pack_trans_rows_f64(Py_ssize_t N, Py_ssize_t K, Py_ssize_t k0, Py_ssize_t k1,
                                const double *Wr, Py_ssize_t ldw, double *Wp)
    # row i of A at A + arow[i] * lda (arow NULL: A + i * lda): rows gathered, not copied
    void fr_gemm_packed_rows_f32(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t K,
                                 const float *A, const Py_ssize_t *arow, Py_ssize_t lda,
                                 const float *Wp, Py_ssize_t N, float beta, float *C,
                                 Py_ssize_t ldc, float *work)
    void fr_gemm_packed_rows_f64(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t K,
                                 const double *A, const Py_ssize_t *arow, Py_ssize_t lda,
                                 const double *Wp, Py_ssize_t N, double beta, double *C,
                                 Py_ssize_t ldc, double *work)
    # nblk column blocks, block q the columns [n0 + q bstride, n1 + q bstride), A packed once;
    # rev: W may be walked last panel first (odd steps of a time loop; the same result)
    void fr_gemm_packed_blocks_f32(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t nblk,
                                   Py_ssize_t bstride, Py_ssize_t K, const float *A,
                                   const Py_ssize_t *arow, Py_ssize_t lda, const float *Wp,
                                   Py_ssize_t N, float beta, float *C, Py_ssize_t ldc,
                                   float *work, bint rev)
    void fr_gemm_packed_blocks_f64(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t nblk,
                                   Py_ssize_t bstride, Py_ssize_t K, const double *A,
                                   const Py_ssize_t *arow, Py_ssize_t lda, const double *Wp,
                                   Py_ssize_t N, double beta, double *C, Py_ssize_t ldc,
                                   double *work, bint rev)
    # C (=, += when add) A W^T and (W2p not NULL) C2 (=|+=) A W2^T, A (M, K) given transposed
    # as At (K, M), row stride ldat, packed once for both (weight gradients dG^T x, dG^T h)
    void fr_gemm_packed_at_f32(Py_ssize_t M, Py_ssize_t K, const float *At, Py_ssize_t ldat,
                               const float *Wp, Py_ssize_t N, float *C, Py_ssize_t ldc,
                               const float *W2p, Py_ssize_t N2, float *C2, Py_ssize_t ldc2,
                               bint add, float *work)
    void fr_gemm_packed_at_f64(Py_ssize_t M, Py_ssize_t K, const double *At, Py_ssize_t ldat,
                               const double *Wp, Py_ssize_t N, double *C, Py_ssize_t ldc,
                               const double *W2p, Py_ssize_t N2, double *C2, Py_ssize_t ldc2,
                               bint add, double *work)
    # A (M, K) packed once (M * K elements of Ap) for many fr_gemm_packed_pre calls, which
    # compute what fr_gemm_packed_blocks does with that A (the same results, to the bit)
    void fr_pack_left_f32(Py_ssize_t M, Py_ssize_t K, const float *A, Py_ssize_t lda, float *Ap)
    void fr_pack_left_f64(Py_ssize_t M, Py_ssize_t K, const double *A, Py_ssize_t lda,
                          double *Ap)
    void fr_gemm_packed_pre_f32(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t nblk,
                                Py_ssize_t bstride, Py_ssize_t K, const float *A,
                                Py_ssize_t lda, const float *Ap, const float *Wp, Py_ssize_t N,
                                float beta, float *C, Py_ssize_t ldc, bint rev)
    void fr_gemm_packed_pre_f64(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t nblk,
                                Py_ssize_t bstride, Py_ssize_t K, const double *A,
                                Py_ssize_t lda, const double *Ap, const double *Wp,
                                Py_ssize_t N, double beta, double *C, Py_ssize_t ldc, bint rev)
