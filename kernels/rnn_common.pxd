# Support shared by every cell's kernels (inline): BLAS and packed GEMMs split between the
# threads of a time loop, chunk bounds.  Notation: src/fusedrnn/_notation.py.  Rows are (t, b)
# pairs, row index t * B + b.  A helper taking (c, nc) does chunk c of nc of its product, so that
# thread c of nc calling it runs its share (BLAS single-threaded, see fusedrnn._threads).
from _blas cimport floating, gemm, BLAS_Trans, NoTrans, Trans
from fr_threads cimport fr_barrier

cdef enum:
    UNIT_ALIGN = 16      # chunks of hidden units / gradient rows: multiples of 16 (cache lines)


cdef inline void colsum(Py_ssize_t R, Py_ssize_t N, const floating *A, Py_ssize_t lda,
                        const floating *ones, floating *y) noexcept nogil:
    """y (N) = sum over the R rows of A (row stride lda); `ones` holds R ones."""
    gemm(NoTrans, NoTrans, 1, N, R, <floating>1, ones, R, A, lda, <floating>0, y, N)


# ---------------------------------------------------------------- packed recurrent GEMM
from packed_gemm cimport (fr_packed_nr, fr_pack_f32, fr_pack_f64, fr_pack_trans_f32,
                          fr_pack_trans_f64, fr_pack_trans_rows_f32, fr_pack_trans_rows_f64,
                          fr_gemm_packed_at_f32, fr_gemm_packed_at_f64,
                          fr_gemm_packed_rows_f32, fr_gemm_packed_rows_f64,
                          fr_gemm_packed_blocks_f32, fr_gemm_packed_blocks_f64,
                          fr_pack_left_f32, fr_pack_left_f64, fr_gemm_packed_pre_f32,
                          fr_gemm_packed_pre_f64)
from libc.string cimport memset


cdef inline void pack_weights(Py_ssize_t N, Py_ssize_t K, const floating *W, floating *Wp,
                              bint trans) noexcept nogil:
    """Pack the (N, K) matrix W (row-major), or W^T when trans (W stored row-major as (K, N):
    no transposed copy), for pgemm (packed_gemm.h)."""
    if floating is float:
        if trans:
            fr_pack_trans_f32(N, K, W, N, Wp)
        else:
            fr_pack_f32(N, K, W, K, Wp)
    else:
        if trans:
            fr_pack_trans_f64(N, K, W, N, Wp)
        else:
            fr_pack_f64(N, K, W, K, Wp)


cdef inline void unit_chunk(Py_ssize_t n, int c, int nc, Py_ssize_t *lo,
                            Py_ssize_t *hi) noexcept nogil:
    """Bounds of thread c's chunk of n hidden units."""
    lo[0] = chunk_lo(n, UNIT_ALIGN, c, nc)
    hi[0] = chunk_lo(n, UNIT_ALIGN, c + 1, nc)


cdef inline void pgemm(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t K,
                       const floating *A, Py_ssize_t lda, const floating *Wp, Py_ssize_t N,
                       floating beta, floating *C, Py_ssize_t ldc, floating *work,
                       bint rev) noexcept nogil:
    """C[:, n0:n1] = A (M, K) . W[n0:n1]^T + beta C[:, n0:n1] with W packed by pack_weights;
    work: this thread's workspace of packed_work_size(M, K) elements.  rev: W may be walked
    last panel first (a time loop passes its odd steps: packed_gemm.h fr_rev_bytes)."""
    if floating is float:
        fr_gemm_packed_blocks_f32(M, n0, n1, 1, 0, K, A, NULL, lda, Wp, N, beta, C, ldc, work,
                                  rev)
    else:
        fr_gemm_packed_blocks_f64(M, n0, n1, 1, 0, K, A, NULL, lda, Wp, N, beta, C, ldc, work,
                                  rev)


cdef inline void pgemm_cols(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t M, Py_ssize_t n0,
                            Py_ssize_t n, Py_ssize_t K, const floating *A, Py_ssize_t lda,
                            const floating *Wp, Py_ssize_t N, floating beta, floating *C,
                            Py_ssize_t ldc, floating *work, bint rev) noexcept nogil:
    """Chunk c of nc (panel-aligned) of the columns n0 .. n0+n of pgemm: threads share a step."""
    cdef Py_ssize_t NR = fr_packed_nr()
    cdef Py_ssize_t lo = chunk_lo(n, NR, c, nc), hi = chunk_lo(n, NR, c + 1, nc)
    if lo < hi:
        pgemm(M, n0 + lo, n0 + hi, K, A, lda, Wp, N, beta, C, ldc, work, rev)


cdef inline bint units_split(Py_ssize_t H, int nc) noexcept nogil:
    """Whether H hidden units split into the same number of whole panels for each of nc
    threads (pgemm_gates' own-units split)."""
    return nc >= 1 and H % (fr_packed_nr() * nc) == 0


cdef inline void pgemm_gates(int c, int nc, bint own, Py_ssize_t n0, Py_ssize_t ngates,
                             Py_ssize_t H,
                             Py_ssize_t M, Py_ssize_t K, const floating *A, Py_ssize_t lda,
                             const floating *Wp, Py_ssize_t N, floating beta, floating *C,
                             Py_ssize_t ldc, floating *work, Py_ssize_t *lo,
                             Py_ssize_t *hi, bint rev) noexcept nogil:
    """Thread c's share of the recurrent product of a forward step, C[:, n0 + q H + j] for
    the gate blocks q < ngates, and the hidden units [lo, hi) of its gate pass, which can run
    right after.  own (units_split(H, nc), decided for the whole team, whose barriers must
    match): each thread computes the gate columns of its own units (its gate pass then reads
    nothing another thread wrote: no barrier, no cache lines moving between cores);
    otherwise the threads split the columns and a barrier ends the product."""
    if own:
        lo[0] = H // nc * c
        hi[0] = H // nc * (c + 1)
        pgemm_units(lo[0], hi[0], n0, ngates, H, M, K, A, lda, Wp, N, beta, C, ldc, work, rev)
    else:
        pgemm_cols(c, nc, M, n0, ngates * H, K, A, lda, Wp, N, beta, C, ldc, work, rev)
        fr_barrier()
        unit_chunk(H, c, nc, lo, hi)


cdef inline void pgemm_units(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n0, Py_ssize_t ngates,
                             Py_ssize_t H, Py_ssize_t M, Py_ssize_t K, const floating *A,
                             Py_ssize_t lda, const floating *Wp, Py_ssize_t N, floating beta,
                             floating *C, Py_ssize_t ldc, floating *work,
                             bint rev) noexcept nogil:
    """Columns n0 + q H + [lo, hi) of pgemm C = A W^T + beta C, q < ngates (the gate blocks
    of hidden units lo .. hi; one product when they are all the units), A packed once."""
    if lo >= hi:
        return
    if lo == 0 and hi == H:
        pgemm(M, n0, n0 + ngates * H, K, A, lda, Wp, N, beta, C, ldc, work, rev)
    elif floating is float:
        fr_gemm_packed_blocks_f32(M, n0 + lo, n0 + hi, ngates, H, K, A, NULL, lda, Wp, N, beta,
                                  C, ldc, work, rev)
    else:
        fr_gemm_packed_blocks_f64(M, n0 + lo, n0 + hi, ngates, H, K, A, NULL, lda, Wp, N, beta,
                                  C, ldc, work, rev)


cdef inline void pgemm_prepacked(bint *packed, Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1,
                                 Py_ssize_t nblk, Py_ssize_t bstride, Py_ssize_t K,
                                 const floating *A, Py_ssize_t lda, floating *Ap,
                                 const floating *Wp, Py_ssize_t N, floating beta, floating *C,
                                 Py_ssize_t ldc, bint rev) noexcept nogil:
    """fr_gemm_packed_blocks' columns [n0 + q bstride, n1 + q bstride), q < nblk, of C = A W^T
    + beta C, with A packed into Ap (M * K elements) first unless `packed` says it already is
    (then True): a thread's many small products of one step on one A pack it once."""
    if floating is float:
        if not packed[0]:
            fr_pack_left_f32(M, K, A, lda, Ap)
        fr_gemm_packed_pre_f32(M, n0, n1, nblk, bstride, K, A, lda, Ap, Wp, N, beta, C, ldc, rev)
    else:
        if not packed[0]:
            fr_pack_left_f64(M, K, A, lda, Ap)
        fr_gemm_packed_pre_f64(M, n0, n1, nblk, bstride, K, A, lda, Ap, Wp, N, beta, C, ldc, rev)
    packed[0] = True


cdef inline void pgemm_rows(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t M, Py_ssize_t N,
                            Py_ssize_t K, const floating *A, Py_ssize_t lda, const floating *Wp,
                            floating beta, floating *C, Py_ssize_t ldc,
                            floating *work) noexcept nogil:
    """Chunk c of nc of the rows of pgemm C (M, N) = A (M, K) . W^T + beta C: threads share a
    product of many rows (work: packed_work_size(M, K) elements per thread suffice)."""
    cdef Py_ssize_t lo = chunk_lo(M, 1, c, nc), hi = chunk_lo(M, 1, c + 1, nc)
    if lo < hi:
        pgemm(hi - lo, 0, N, K, A + lo * lda, lda, Wp, N, beta, C + lo * ldc, ldc, work, False)


cdef enum:
    # pgemm_steps: pieces of at least this many rows are one product over all columns; smaller
    # ones (the steps of a variable-length batch once sequences end) go column block by column
    # block, all pieces per block, so that the block of W stays in L2 instead of W being read
    # from memory once per piece
    STEP_ROWS_BIG = 48
    STEP_BLOCK_BYTES = 256 * 1024


cdef inline void pgemm_steps(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t T, Py_ssize_t B,
                             const Py_ssize_t *nact, Py_ssize_t N, Py_ssize_t K,
                             const floating *A, const Py_ssize_t *arow, Py_ssize_t lda,
                             const floating *Wp, floating *C, Py_ssize_t ldc,
                             floating *work) noexcept nogil:
    """Chunk c of nc (panel-aligned columns) of C (T*B, N) = A W^T restricted to the running
    rows of every step (rows t*B .. t*B + nact[t]; the others are not computed).  Row q of A is
    at A + arow[q] * lda (a gather), or A + q * lda when arow is NULL.  Rows contiguous in C
    across steps (a full step followed by the next) go into one product (a piece).  The
    threads split the columns, not the rows: every thread then has the same mix of long and
    short pieces (a row split gave one thread the long ones and the other the slower short
    ones)."""
    cdef Py_ssize_t NR = fr_packed_nr()
    cdef Py_ssize_t lo = chunk_lo(N, NR, c, nc), hi = chunk_lo(N, NR, c + 1, nc), n0 = lo
    cdef Py_ssize_t nb = STEP_BLOCK_BYTES // (K * <Py_ssize_t>sizeof(floating)) // NR * NR
    nb = NR if nb < NR else nb
    if lo >= hi:
        return
    steps_pieces(T, B, nact, True, lo, hi, N, K, A, arow, lda, Wp, C, ldc, work)
    while n0 < hi:
        steps_pieces(T, B, nact, False, n0, n0 + nb if n0 + nb < hi else hi, N, K, A, arow,
                     lda, Wp, C, ldc, work)
        n0 += nb


cdef inline void steps_pieces(Py_ssize_t T, Py_ssize_t B, const Py_ssize_t *nact, bint big,
                              Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t N, Py_ssize_t K,
                              const floating *A, const Py_ssize_t *arow, Py_ssize_t lda,
                              const floating *Wp, floating *C, Py_ssize_t ldc,
                              floating *work) noexcept nogil:
    """pgemm_steps' pieces that are big (>= STEP_ROWS_BIG rows) or not, columns n0 .. n1."""
    cdef Py_ssize_t t, q0 = 0, m = 0
    for t in range(T + 1):
        if t < T and m > 0 and t * B == q0 + m:     # this step continues the piece
            m += nact[t]
            continue
        if m > 0 and (m >= STEP_ROWS_BIG) == big:  # a finished piece
            pgemm_gather(m, n0, n1, N, K, A, arow, q0, lda, Wp, C, ldc, work)
        if t < T:
            q0, m = t * B, nact[t]


cdef inline void pgemm_gather(Py_ssize_t M, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t N,
                              Py_ssize_t K, const floating *A, const Py_ssize_t *arow,
                              Py_ssize_t q0, Py_ssize_t lda, const floating *Wp, floating *C,
                              Py_ssize_t ldc, floating *work) noexcept nogil:
    """Rows q0 .. q0+M, columns n0 .. n1 of C = A W^T (pgemm_steps' row addressing)."""
    if arow == NULL:
        A = A + q0 * lda
    else:
        arow = arow + q0
    if floating is float:
        fr_gemm_packed_rows_f32(M, n0, n1, K, A, arow, lda, Wp, N, 0, C + q0 * ldc, ldc, work)
    else:
        fr_gemm_packed_rows_f64(M, n0, n1, K, A, arow, lda, Wp, N, 0, C + q0 * ldc, ldc, work)


cdef inline void zero_rows(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t r0, Py_ssize_t r1,
                           floating *A, Py_ssize_t lda) noexcept nogil:
    """A[r0:r1, lo:hi] = 0 (padding rows of a step, a thread's columns)."""
    cdef Py_ssize_t r
    if lo < hi:
        for r in range(r0, r1):
            memset(A + r * lda + lo, 0, (hi - lo) * sizeof(floating))


cdef inline Py_ssize_t chunk_lo(Py_ssize_t n, Py_ssize_t align, Py_ssize_t c,
                                Py_ssize_t nc) noexcept nogil:
    """Start of chunk c of nc over [0, n), bounds multiples of align (chunk c ends at
    chunk_lo(n, align, c + 1, nc))."""
    cdef Py_ssize_t units = (n + align - 1) // align
    cdef Py_ssize_t per = (units + nc - 1) // nc
    cdef Py_ssize_t lo = c * per * align
    return lo if lo < n else n


# ---------------------------------------------------------------- BLAS GEMMs shared by threads

cdef inline void rows_gemm(Py_ssize_t c, Py_ssize_t nc, BLAS_Trans tw, Py_ssize_t R,
                           Py_ssize_t N, Py_ssize_t K, const floating *A, Py_ssize_t lda,
                           const floating *W, Py_ssize_t ldw, floating beta, floating *C,
                           Py_ssize_t ldc) noexcept nogil:
    """Rows of C (R, N) = A (R, K) . op(W) + beta C, op(W) = W^T (tw == Trans) or W."""
    cdef Py_ssize_t lo = chunk_lo(R, 1, c, nc), hi = chunk_lo(R, 1, c + 1, nc)
    if lo < hi:
        gemm(NoTrans, tw, hi - lo, N, K, <floating>1, A + lo * lda, lda, W, ldw, beta,
             C + lo * ldc, ldc)


cdef inline void grad_gemm(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t M, Py_ssize_t N,
                           Py_ssize_t R, const floating *dG, Py_ssize_t ldg,
                           const floating *X, Py_ssize_t ldx, floating *dW,
                           Py_ssize_t ldw) noexcept nogil:
    """Rows of dW (M, N) = dG (R, M)^T . X (R, N): a weight gradient summed over R rows."""
    cdef Py_ssize_t lo = chunk_lo(M, UNIT_ALIGN, c, nc), hi = chunk_lo(M, UNIT_ALIGN, c + 1, nc)
    if lo < hi:
        gemm(Trans, NoTrans, hi - lo, N, R, <floating>1, dG + lo, ldg, X, ldx, <floating>0,
             dW + lo * ldw, ldw)


cdef inline void pack_rows(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t N, Py_ssize_t K,
                           Py_ssize_t k0, Py_ssize_t k1, const floating *src, Py_ssize_t lds,
                           floating *Xp) noexcept nogil:
    """Thread c's share of rows k0 .. k1 of X (K, N), src pointing at row k0 (row stride lds),
    packed as the (N, K) matrix X^T into Xp (packed_size(N, K)) for grad_packed."""
    cdef Py_ssize_t lo = k0 + chunk_lo(k1 - k0, 1, c, nc)
    cdef Py_ssize_t hi = k0 + chunk_lo(k1 - k0, 1, c + 1, nc)
    if lo < hi:
        if floating is float:
            fr_pack_trans_rows_f32(N, K, lo, hi, src + (lo - k0) * lds, lds, Xp)
        else:
            fr_pack_trans_rows_f64(N, K, lo, hi, src + (lo - k0) * lds, lds, Xp)


cdef inline void pack_hprev(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t T, Py_ssize_t B,
                            Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t N, const floating *out,
                            Py_ssize_t ldo, const floating *h0, bint reverse,
                            floating *Xp) noexcept nogil:
    """pack_rows of the ((t1 - t0) B, N) matrix of h_{t-1} for the steps t0 <= t < t1, B rows
    each: h0 (B, N) at the direction's first step (t = 0, or T - 1 when reverse), else out at
    time t - 1 (forward) or t + 1 (reverse), row stride ldo."""
    cdef Py_ssize_t K = (t1 - t0) * B, first = T - 1 if reverse else 0
    cdef Py_ssize_t a = t0, b = t1          # the steps whose h_{t-1} is a row block of out
    if t0 <= first < t1:
        pack_rows(c, nc, N, K, (first - t0) * B, (first - t0 + 1) * B, h0, N, Xp)
        if reverse:
            b = first
        else:
            a = first + 1
    if a < b:
        pack_rows(c, nc, N, K, (a - t0) * B, (b - t0) * B,
                  out + (a + 1 if reverse else a - 1) * B * ldo, ldo, Xp)


cdef inline void grad_packed(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t M, Py_ssize_t R,
                             const floating *dG, Py_ssize_t ldg, Py_ssize_t N,
                             const floating *Xp, floating *dW, Py_ssize_t ldw, Py_ssize_t N2,
                             const floating *X2p, floating *dW2, Py_ssize_t ldw2, bint add,
                             floating *work) noexcept nogil:
    """Rows of the weight gradients dW (M, N) (=, or += when add) dG (R, M)^T . X (R, N) and,
    when X2p is not NULL, dW2 (M, N2) (=|+=) dG^T . X2 (R, N2): sums over R rows, X and X2
    packed by pack_rows / pack_hprev (Xp, X2p; every thread's share packed before this is
    called), through the packed GEMM (dG read transposed as it is packed, once for both; work:
    this thread's packed_work_size(M, R))."""
    cdef Py_ssize_t lo = chunk_lo(M, UNIT_ALIGN, c, nc), hi = chunk_lo(M, UNIT_ALIGN, c + 1, nc)
    if lo < hi:
        if floating is float:
            fr_gemm_packed_at_f32(hi - lo, R, dG + lo, ldg, Xp, N, dW + lo * ldw, ldw, X2p, N2,
                                  dW2 + lo * ldw2 if X2p != NULL else NULL, ldw2, add, work)
        else:
            fr_gemm_packed_at_f64(hi - lo, R, dG + lo, ldg, Xp, N, dW + lo * ldw, ldw, X2p, N2,
                                  dW2 + lo * ldw2 if X2p != NULL else NULL, ldw2, add, work)


cdef inline void colsum_rows(Py_ssize_t c, Py_ssize_t nc, Py_ssize_t R, Py_ssize_t N,
                             const floating *A, Py_ssize_t lda, const floating *ones,
                             floating *y) noexcept nogil:
    """Entries of y (N) = the sum of the R rows of A (a bias gradient), as grad_packed splits
    the rows of a weight gradient."""
    cdef Py_ssize_t lo = chunk_lo(N, UNIT_ALIGN, c, nc), hi = chunk_lo(N, UNIT_ALIGN, c + 1, nc)
    if lo < hi:
        colsum(R, hi - lo, A + lo, lda, ones, y + lo)
