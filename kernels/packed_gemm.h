/* Packed-weight GEMM for the recurrent step of the LSTM and GRU kernels, float32 and float64.
 *
 * One time step computes  C (M x N) = A (M x K) . W^T (+ C)  where W (N x K, row-major) is the
 * recurrent weight, fixed for the whole sequence.  W is packed once (fr_pack_*) into a layout made
 * for the micro-kernel and the packed copy is reused at every step, so unlike sgemm/dgemm nothing
 * of W is repacked per call.
 *
 * Packed layout (the same whatever the CPU: packing under one ISA and computing under another is
 * consistent).  Columns of C (= rows of W) are cut into panels of FR_PACKED_NR = 32 columns, for
 * float32 and float64 alike; the last panel is padded with zeros.  Panel p holds, for k = 0..K-1,
 * the 32 values W[32 p + j, k], j = 0..31, contiguously:
 *
 *     Wp[(p K + k) 32 + j] = W[32 p + j, k]     (0 when 32 p + j >= N)
 *
 * so fr_packed_size = ceil(N / 32) * 32 * K elements.  A k-range of a panel is contiguous, and so
 * is a range of whole panels.  fr_pack_trans_* writes the same layout for W given transposed
 * (stored as K x N: W[j, k] at Wt[k ldw + j]), e.g. W_hh^T for the backward pass.
 * fr_pack_trans_rows_* packs a range of k only (rows of W^T gathered from several arrays).
 * Wp needs no particular alignment; 64-byte alignment avoids cache-line splits and is faster.
 *
 * Besides the recurrent step, fr_gemm_packed_at_* serves the weight gradients of backward,
 * dW = dG^T X summed over the T*B rows: A = dG^T is read transposed while it is packed (mr
 * contiguous values per k) and W^T = X is packed by fr_pack_trans(_rows), reading X row by row.
 * (OpenBLAS's sgemm on that shape spends about 15% of its time copying dG^T.)
 *
 * Kernels (one block kernel per ISA chosen by fr_isa(), kernels/fr_isa.h; no -march flag is
 * needed: the SIMD functions carry target attributes).  A block kernel computes up to mrmax rows
 * of one panel, with the accumulators in registers and one broadcast of A[i, k] per row and k:
 *   AVX-512: the whole panel (2 zmm float32, 4 zmm float64 per row), mrmax 12 / 6.
 *   AVX2+FMA: the panel in column blocks of 2 ymm (16 float32 / 8 float64 columns), mrmax 6;
 *     but when M fits one block of the whole-panel kernel (4 ymm float32, 8 ymm float64 per row:
 *     M <= 3 float32, M = 1 float64; memory-bound, e.g. batch 1) that one, so that W streams
 *     linearly instead of in two passes over every other cache line.
 *   Scalar: plain C (vectorised by the compiler for the baseline ISA), mrmax 8.
 * With few rows the k loop is unrolled into up to FRP_UNROLL = 4 sets of accumulators (as many as
 * the registers allow), so that enough independent FMA chains and loads are in flight; with one
 * set (the block kernels of many rows) the k loop is unrolled by 4 over that set: the same sums,
 * a quarter of the loop's own instructions (AVX2 issues two FMAs for AVX-512's one, so it has
 * the most of them; in-process A/B on a busy host, AVX2 path: LSTM / GRU B16 H256, LSTM B64
 * H512, GRU B256 H256 on 2 threads 1.04-1.14x, 1 thread 0.99-1.20x; AVX-512 0.97-1.05x).
 * Measured (Zen 4, 1 thread, float32, W_hh of an LSTM, H = 256 / 512 / 1024 = 1 / 4 / 16 MiB):
 * batch 1 reads W at 90-96% of a plain streaming read of the same buffer on the AVX-512 path and
 * 90-98% on the AVX2 path (was 93/80/~75% and 85/66/53%); M >= 16 runs at 90-97% of the FMA
 * peak (measured against a plain FMA loop in the same run).
 *
 * Threads: fr_gemm_packed_* only writes C[:, n0:n1], so threads may share A, Wp and C and each
 * take a column range whose bounds are multiples of fr_packed_nr() (the last one may end at N).
 * (Other bounds are accepted and are correct, only slower.)  A call reads (and prefetches) only
 * the panels of its column range.
 */
#ifndef FUSEDRNN_PACKED_GEMM_H
#define FUSEDRNN_PACKED_GEMM_H

#include <stddef.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "fr_isa.h"

#define FR_PACKED_NR 32

#if defined(__GNUC__) || defined(__clang__)
#define FRP_API static __attribute__((unused))
#define FRP_INLINE static inline __attribute__((always_inline))
#define FRP_RESTRICT __restrict__
#else
#define FRP_API static
#define FRP_INLINE static inline
#define FRP_RESTRICT
#endif

#if FR_X86
#include <immintrin.h>
#endif

/* the largest row count of any block kernel (mrmax); sizes the accumulators, the tile and the
 * A buffer on the stack, and the minimum rows of the caller's workspace (fr_packed_work_size) */
#define FRP_MR_MAX 12

/* blocking over K: all row blocks of A go through a 32-column panel block of KC values of k
 * (a single row block walks the whole k-range instead).  KC = 1024 (128 KB of panel: L2, not
 * L1) rather than 256 (32 KB, L1): a panel's strip of C is then written once instead of once per
 * k-block for K up to 1024, and L2 feeds the broadcast-bound kernels fast enough.  Measured on
 * Zen 4 (float32, 1 thread, C harness, KC 256 -> 512 / 1024): M64 K512 N2048 1.02-1.03x, M6400
 * K512 N2048 (a whole sequence's input projection) 1.02x, M16 K1024 N4096 1.01-1.03x; LSTM
 * forward B64 H512 1.03x, B16 H1024 1.05x (1 thread), 1.03x (2 threads).  float64 keeps 128
 * (32 KB): 256 and 512 measured 0.92-0.93x at K = 1024 (1.0-1.04x at K 512). */
#ifndef FRP_KC_F32
#define FRP_KC_F32 1024
#endif
#ifndef FRP_KC_F64
#define FRP_KC_F64 128
#endif
/* rows of A processed per pass over W: the A block should stay in L2 (1-2 MB on recent x86) */
#ifndef FRP_A_BYTES
#define FRP_A_BYTES (1024 * 1024)
#endif
/* software prefetch distance (bytes) of a single row block streaming W; 0: none (the hardware
 * prefetcher follows the linear stream) */
#ifndef FRP_PF_STREAM
#define FRP_PF_STREAM 0
#endif
/* rows of a transposed A prefetched ahead while it is packed (fr_gemm_packed_at) */
#ifndef FRP_PF_AT
#define FRP_PF_AT 8
#endif

/* Time loops read the same W at every step.  A single row block (batch 1 and other small M)
 * streams W panel after panel, and when W is about the size of L2 a walk in the same order at
 * every step finds none of it there (LRU drops each line just before it is needed again).  Walking
 * the odd steps last panel first (fr_gemm_packed_blocks' rev) starts each step on the lines the
 * previous one read last.  Measured (Zen 4, 1 MiB L2, 1 thread, float32 LSTM W_hh, 100 steps of
 * batch 1), forward / alternating: H = 128 (256 KiB) 1.03-1.07x, 256 (1 MiB) 1.11-1.13x, 320
 * (1.6 MiB) 1.01-1.07x, 384 (2.3 MiB) 0.94-0.99x, 512 and 1024 0.95-0.99x; 2 rows 1.04x, 3-8
 * rows 0.98-1.0x.  So only for up to FRP_REV_ROWS rows and fr_rev_bytes() of panels per call:
 * twice the L2 size the system reports (FRP_REV_DEFAULT, 2 MiB, when it reports none;
 * -DFRP_REV_BYTES=n fixes it). */
#ifndef FRP_REV_DEFAULT
#define FRP_REV_DEFAULT (2 * 1024 * 1024)
#endif
#ifndef FRP_REV_ROWS
#define FRP_REV_ROWS 2
#endif

FRP_API ptrdiff_t fr_packed_nr(void) { return FR_PACKED_NR; }

static ptrdiff_t frp_rev_state = 0; /* 0: not decided yet */
FRP_API ptrdiff_t fr_rev_bytes(void)
{
#ifdef FRP_REV_BYTES
    return FRP_REV_BYTES;
#else
    ptrdiff_t b = FR_ISA_LOAD(&frp_rev_state);
    if (b == 0) { /* every thread computes the same value */
        long l2 = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        b = l2 > 0 ? 2 * (ptrdiff_t)l2 : FRP_REV_DEFAULT;
        FR_ISA_STORE(&frp_rev_state, b);
    }
    return b;
#endif
}

/* ---------------------------------------------------------------- packing (ISA independent)
 * fr_pack: W (N, K) row-major; fr_pack_trans(_rows): W^T given as (K, N), read row by row. */
#define FRP_DEFINE_PACK(SFX, real)                                                                 \
FRP_API ptrdiff_t fr_packed_size_##SFX(ptrdiff_t N, ptrdiff_t K)                                   \
{                                                                                                  \
    return (N + FR_PACKED_NR - 1) / FR_PACKED_NR * FR_PACKED_NR * K;                               \
}                                                                                                  \
/* W (N, K) row-major, row stride ldw */                                                           \
FRP_API void fr_pack_##SFX(ptrdiff_t N, ptrdiff_t K, const real *W, ptrdiff_t ldw, real *Wp)       \
{                                                                                                  \
    for (ptrdiff_t j0 = 0; j0 < N; j0 += FR_PACKED_NR) {                                           \
        ptrdiff_t w = N - j0 < FR_PACKED_NR ? N - j0 : FR_PACKED_NR;                               \
        real *FRP_RESTRICT P = Wp + j0 * K;                                                        \
        for (ptrdiff_t k = 0; k < K; k++) {                                                        \
            ptrdiff_t j = 0;                                                                       \
            for (; j < w; j++)                                                                     \
                P[k * FR_PACKED_NR + j] = W[(j0 + j) * ldw + k];                                   \
            for (; j < FR_PACKED_NR; j++)                                                          \
                P[k * FR_PACKED_NR + j] = 0;                                                       \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* rows k0 .. k1 of the packed (N, K) matrix W^T, W stored row-major as (K, N) with row stride   \
 * ldw and Wr pointing at its row k0 (the other rows of Wp are not touched: a matrix whose rows    \
 * come from several arrays, or threads sharing the work).  k outer: W is read row by row. */     \
FRP_API void fr_pack_trans_rows_##SFX(ptrdiff_t N, ptrdiff_t K, ptrdiff_t k0, ptrdiff_t k1,        \
                                      const real *Wr, ptrdiff_t ldw, real *Wp)                     \
{                                                                                                  \
    for (ptrdiff_t k = k0; k < k1; k++) {                                                          \
        const real *FRP_RESTRICT w = Wr + (k - k0) * ldw;                                          \
        for (ptrdiff_t j0 = 0; j0 < N; j0 += FR_PACKED_NR) {                                       \
            real *FRP_RESTRICT P = Wp + j0 * K + k * FR_PACKED_NR;                                 \
            ptrdiff_t n = N - j0 < FR_PACKED_NR ? N - j0 : FR_PACKED_NR, j = 0;                    \
            for (; j < n; j++)                                                                     \
                P[j] = w[j0 + j];                                                                  \
            for (; j < FR_PACKED_NR; j++)                                                          \
                P[j] = 0;                                                                          \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* the (N, K) matrix W^T, W stored row-major as (K, N) with row stride ldw */                      \
FRP_API void fr_pack_trans_##SFX(ptrdiff_t N, ptrdiff_t K, const real *W, ptrdiff_t ldw,           \
                                 real *Wp)                                                         \
{                                                                                                  \
    fr_pack_trans_rows_##SFX(N, K, 0, K, W, ldw, Wp);                                              \
}

FRP_DEFINE_PACK(f32, float)
FRP_DEFINE_PACK(f64, double)

/* ---------------------------------------------------------------- block kernels
 * A block kernel computes, for one row block (mr rows) and one k-block (kc values of k) of one
 * panel, C[0:mr, 0:32] = A[0:mr, 0:kc] . Bp^T (+ C if acc), with Bp the panel at that k-block
 * (row stride 32) and A packed k-major: A(i, k) at A[k mr + i], so that the broadcasts read one
 * contiguous stream (rows of the caller's A, often 4 KB apart, would fight for the same L1 sets).
 * On the way it prefetches into L2 the packed row pfd elements ahead of the one it reads (pfd a
 * multiple of 32; 0: no prefetch) as long as that row lies in [B, B + pfn), pfn a multiple of 32:
 * no pointer out of that range is formed.
 * Signature shared by all ISAs: */
typedef void (*frp_blk_f32)(int mr, ptrdiff_t kc, const float *A, const float *B, ptrdiff_t pfd,
                            ptrdiff_t pfn, int acc, float *C, ptrdiff_t ldc);
typedef void (*frp_blk_f64)(int mr, ptrdiff_t kc, const double *A, const double *B,
                            ptrdiff_t pfd, ptrdiff_t pfn, int acc, double *C, ptrdiff_t ldc);

/* C[0:m, 0:32] (=|+=) c[0:m][0:32]: the common store of the scalar kernel and the tile */
#define FRP_DEFINE_STORE(SFX, real)                                                                \
FRP_INLINE void frp_store_##SFX(int m, const real *FRP_RESTRICT c, ptrdiff_t ldcc, int acc,        \
                                real *FRP_RESTRICT C, ptrdiff_t ldc, ptrdiff_t ja, ptrdiff_t jb)   \
{                                                                                                  \
    for (int i = 0; i < m; i++)                                                                    \
        for (ptrdiff_t j = ja; j < jb; j++)                                                        \
            C[i * ldc + j] = acc ? C[i * ldc + j] + c[i * ldcc + j] : c[i * ldcc + j];             \
}

/* scalar: rows in blocks of 4, the 32 columns as an inner loop the compiler can vectorise */
#define FRP_DEFINE_SCALAR(SFX, real)                                                               \
static void frp_blk_scalar_##SFX(int mr, ptrdiff_t kc, const real *FRP_RESTRICT A,                 \
        const real *FRP_RESTRICT B, ptrdiff_t pfd, ptrdiff_t pfn, int acc, real *FRP_RESTRICT C,   \
        ptrdiff_t ldc)                                                                             \
{                                                                                                  \
    (void)pfd, (void)pfn;                                                                          \
    for (int i0 = 0; i0 < mr; i0 += 4) {                                                           \
        int m = mr - i0 < 4 ? mr - i0 : 4;                                                         \
        real c[4][FR_PACKED_NR];                                                                   \
        for (int i = 0; i < 4; i++)                                                                \
            for (int j = 0; j < FR_PACKED_NR; j++)                                                 \
                c[i][j] = 0;                                                                       \
        for (ptrdiff_t k = 0; k < kc; k++) {                                                       \
            const real *FRP_RESTRICT b = B + k * FR_PACKED_NR;                                     \
            for (int i = 0; i < m; i++) {                                                          \
                real a = A[k * mr + i0 + i];                                                       \
                for (int j = 0; j < FR_PACKED_NR; j++)                                             \
                    c[i][j] += a * b[j];                                                           \
            }                                                                                      \
        }                                                                                          \
        frp_store_##SFX(m, &c[0][0], FR_PACKED_NR, acc, C + i0 * ldc, ldc, 0, FR_PACKED_NR);       \
    }                                                                                              \
}

FRP_DEFINE_STORE(f32, float)
FRP_DEFINE_STORE(f64, double)
FRP_DEFINE_SCALAR(f32, float)
FRP_DEFINE_SCALAR(f64, double)

#if FR_X86
/* prefetch into L2 the cache lines of [p, p + bytes) */
FRP_INLINE void frp_prefetch(const void *p, size_t bytes)
{
    for (size_t l = 0; l < bytes; l += 64)
        __builtin_prefetch((const char *)p + l, 0, 2);
}

#endif /* FR_X86 */

/* prefetch into L1 the cache lines of [p, p + bytes) (a no-op where the compiler has none) */
FRP_INLINE void frp_prefetch_l1(const void *p, size_t bytes)
{
#if defined(__GNUC__) || defined(__clang__)
    for (size_t l = 0; l < bytes; l += 64)
        __builtin_prefetch((const char *)p + l, 0, 3);
#else
    (void)p;
    (void)bytes;
#endif
}

#if FR_X86
/* SIMD micro-kernel, generic over the vector type VEC_ (W bits, S = ps | pd: the intrinsics'
 * names): MR rows (a compile-time constant once inlined) x NV vectors of VL lanes, columns at
 * B[k * 32 + 0 .. NV*VL).  With few rows the k loop is unrolled by U into U sets of accumulators
 * (as many as fit in the REGS vector registers), so that enough FMA chains and loads are in
 * flight. */
#ifndef FRP_UNROLL
#define FRP_UNROLL 4
#endif
/* the intrinsic _mm<W>_<op>_<S>, e.g. FRP_V(512, ps, fmadd) is _mm512_fmadd_ps */
#define FRP_V(W, S, op) _mm##W##_##op##_##S
#define FRP_UK_STEP(W, S, k, c, PF)                                                                \
    do {                                                                                           \
        const ptrdiff_t o_ = (k) * FR_PACKED_NR;                                                   \
        if (PF)                                                                                    \
            frp_prefetch(B + o_ + pfd, NV * VL * sizeof(*B));                                      \
        if (!bfirst) {                                                                             \
            /* the MR broadcasts live, one vector of B at a time */                               \
            VEC a_[MR];                                                                            \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                  \
                a_[i] = FRP_V(W, S, set1)(A[(k) * MR + i]);                                        \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) {                                 \
                const VEC b_ = FRP_V(W, S, loadu)(B + o_ + v * VL);                                \
                _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                              \
                    c[i][v] = FRP_V(W, S, fmadd)(a_[i], b_, c[i][v]);                              \
            }                                                                                      \
        } else {                                                                                   \
            VEC b_[NV];                                                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                   \
                b_[v] = FRP_V(W, S, loadu)(B + o_ + v * VL);                                       \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                \
                const VEC a_ = FRP_V(W, S, set1)(A[(k) * MR + i]);                                 \
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                               \
                    c[i][v] = FRP_V(W, S, fmadd)(a_, b_[v], c[i][v]);                              \
            }                                                                                      \
        }                                                                                          \
    } while (0)
#define FRP_DEFINE_UKERNEL(NAME, TARGET, real, VEC_, W, S, VL_, NV_, REGS)                         \
TARGET FRP_INLINE void NAME(const int MR, ptrdiff_t kc, const real *FRP_RESTRICT A,                \
        const real *FRP_RESTRICT B, ptrdiff_t pfd, ptrdiff_t pfn, int acc, real *FRP_RESTRICT C,   \
        ptrdiff_t ldc)                                                                             \
{                                                                                                  \
    typedef VEC_ VEC;                                                                              \
    enum { VL = VL_, NV = NV_ };                                                                   \
    /* sets of accumulators: as many as fit with the MR broadcasts, at most FRP_UNROLL */         \
    const int U = FRP_UNROLL * MR * (NV + 1) <= REGS - 2 ? FRP_UNROLL                             \
                  : 2 * MR * (NV + 1) <= REGS - 2 ? 2 : 1;                                         \
    /* a k step loads the NV vectors of B, then broadcasts A row by row, when the registers      \
     * hold that besides the accumulators; otherwise (AVX2, 3 rows x 4 vectors: a spill, half    \
     * the speed) the MR broadcasts first, then B one vector at a time */                         \
    const int bfirst = U * MR * NV + NV + 1 <= REGS || U * MR * NV + MR + 1 > REGS;               \
    VEC c[FRP_UNROLL][FRP_MR_MAX][NV];                                                             \
    _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                            \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                      \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                   \
                c[u][i][v] = FRP_V(W, S, setzero)();                                               \
    /* rows k < kpf prefetch row k + pfd / 32, which lies in [B, B + pfn) */                     \
    ptrdiff_t kpf = pfd <= 0 || pfn <= pfd ? 0 : (pfn - pfd + FR_PACKED_NR - 1) / FR_PACKED_NR;    \
    kpf = kpf < kc ? kpf : kc;                                                                     \
    ptrdiff_t k = 0;                                                                               \
    if (U == 1) { /* one set of accumulators: the k loop unrolled instead (top of this file) */ \
        _Pragma("GCC unroll 4") for (; k < kpf; k++)                                               \
            FRP_UK_STEP(W, S, k, c[0], 1);                                                         \
        _Pragma("GCC unroll 4") for (; k < kc; k++)                                                \
            FRP_UK_STEP(W, S, k, c[0], 0);                                                         \
    }                                                                                              \
    for (; k + U <= kpf; k += U)                                                                   \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                        \
            FRP_UK_STEP(W, S, k + u, c[u], 1);                                                     \
    for (; k + U <= kc; k += U)                                                                    \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                        \
            FRP_UK_STEP(W, S, k + u, c[u], 0);                                                     \
    for (; k < kc; k++)                                                                            \
        FRP_UK_STEP(W, S, k, c[0], k < kpf);                                                       \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                          \
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) {                                     \
            real *ci = C + i * ldc + v * VL;                                                       \
            VEC s = c[0][i][v];                                                                    \
            _Pragma("GCC unroll 4") for (int u = 1; u < U; u++)                                    \
                s = FRP_V(W, S, add)(s, c[u][i][v]);                                               \
            FRP_V(W, S, storeu)(ci, acc ? FRP_V(W, S, add)(s, FRP_V(W, S, loadu)(ci)) : s);        \
        }                                                                                          \
}

/* block kernel: switch on the row count to the constant-MR micro-kernels (rows beyond the
 * kernel's mrmax are never asked for), then loop over the column blocks of the panel */
#define FRP_CASE(UK, STEP, MRMAX, m)                                                               \
    case m:                                                                                        \
        if (m <= MRMAX) /* no code for row counts the kernel is never given */                    \
            for (int s = 0; s < FR_PACKED_NR; s += STEP)                                           \
                UK(m, kc, A, B + s, pfd, pfn - s, acc, C + s, ldc);                                \
        break;
#define FRP_DEFINE_BLK(NAME, UK, TARGET, real, STEP, MRMAX)                                        \
TARGET static void NAME(int mr, ptrdiff_t kc, const real *A, const real *B, ptrdiff_t pfd,         \
                        ptrdiff_t pfn, int acc, real *C, ptrdiff_t ldc)                            \
{                                                                                                  \
    switch (mr) {                                                                                  \
    FRP_CASE(UK, STEP, MRMAX, 1) FRP_CASE(UK, STEP, MRMAX, 2) FRP_CASE(UK, STEP, MRMAX, 3)         \
    FRP_CASE(UK, STEP, MRMAX, 4) FRP_CASE(UK, STEP, MRMAX, 5) FRP_CASE(UK, STEP, MRMAX, 6)         \
    FRP_CASE(UK, STEP, MRMAX, 7) FRP_CASE(UK, STEP, MRMAX, 8) FRP_CASE(UK, STEP, MRMAX, 9)         \
    FRP_CASE(UK, STEP, MRMAX, 10) FRP_CASE(UK, STEP, MRMAX, 11) FRP_CASE(UK, STEP, MRMAX, 12)      \
    default: break;                                                                                \
    }                                                                                              \
}

/* (name, target, type, vector type, bits, ps|pd, lanes, vectors per row, vector registers) */
FRP_DEFINE_UKERNEL(frp_uk_avx512_f32, FR_TARGET_AVX512, float, __m512, 512, ps, 16, 2, 32)
FRP_DEFINE_UKERNEL(frp_uk_avx512_f64, FR_TARGET_AVX512, double, __m512d, 512, pd, 8, 4, 32)
FRP_DEFINE_UKERNEL(frp_uk_avx2_f32, FR_TARGET_AVX2, float, __m256, 256, ps, 8, 2, 16)
FRP_DEFINE_UKERNEL(frp_uk_avx2_f64, FR_TARGET_AVX2, double, __m256d, 256, pd, 4, 2, 16)
FRP_DEFINE_UKERNEL(frp_uk_avx2_small_f32, FR_TARGET_AVX2, float, __m256, 256, ps, 8, 4, 16)
FRP_DEFINE_UKERNEL(frp_uk_avx2_small_f64, FR_TARGET_AVX2, double, __m256d, 256, pd, 4, 8, 16)

/* row counts (mrmax) of the block kernels */
#define FRP_MR_AVX512_f32 12
#define FRP_MR_AVX512_f64 6
#define FRP_MR_AVX2_f32 6
#define FRP_MR_AVX2_f64 6
#define FRP_MR_AVX2_SMALL_f32 3
#define FRP_MR_AVX2_SMALL_f64 1

/* (name, micro-kernel, target, type, column step, mrmax) */
FRP_DEFINE_BLK(frp_blk_avx512_f32, frp_uk_avx512_f32, FR_TARGET_AVX512, float, 32,
               FRP_MR_AVX512_f32)
FRP_DEFINE_BLK(frp_blk_avx512_f64, frp_uk_avx512_f64, FR_TARGET_AVX512, double, 32,
               FRP_MR_AVX512_f64)
FRP_DEFINE_BLK(frp_blk_avx2_f32, frp_uk_avx2_f32, FR_TARGET_AVX2, float, 16, FRP_MR_AVX2_f32)
FRP_DEFINE_BLK(frp_blk_avx2_f64, frp_uk_avx2_f64, FR_TARGET_AVX2, double, 8, FRP_MR_AVX2_f64)
FRP_DEFINE_BLK(frp_blk_avx2_small_f32, frp_uk_avx2_small_f32, FR_TARGET_AVX2, float, 32,
               FRP_MR_AVX2_SMALL_f32)
FRP_DEFINE_BLK(frp_blk_avx2_small_f64, frp_uk_avx2_small_f64, FR_TARGET_AVX2, double, 32,
               FRP_MR_AVX2_SMALL_f64)

/* the switch cases of frp_select: (block kernel, mrmax, whole) of an ISA for M rows; AVX2 walks
 * whole panels when M fits one row block */
#define FRP_SELECT_SIMD(SFX)                                                                       \
    case FR_ISA_AVX512: *blk = frp_blk_avx512_##SFX; *mrmax = FRP_MR_AVX512_##SFX; break;          \
    case FR_ISA_AVX2:                                                                              \
        if (M <= FRP_MR_AVX2_SMALL_##SFX) {                                                        \
            *blk = frp_blk_avx2_small_##SFX;                                                       \
            *mrmax = FRP_MR_AVX2_SMALL_##SFX;                                                      \
        } else {                                                                                   \
            *blk = frp_blk_avx2_##SFX;                                                             \
            *mrmax = FRP_MR_AVX2_##SFX;                                                            \
            *whole = 0;                                                                            \
        }                                                                                          \
        break;
#else
#define FRP_SELECT_SIMD(SFX)
#endif /* FR_X86 */

/* ---------------------------------------------------------------- driver
 * Rows of A are taken in chunks of at most mc rows (the packed chunk, mc x K, fits FRP_A_BYTES so
 * it stays in L2 while W streams by), each chunk in balanced row blocks of at most mrmax rows.
 * Per chunk the loop order is: panels of the column range, k-blocks, row blocks, so one panel
 * block (32 x KC) stays in L1/L2 while all row blocks go through it, and the chunk's strip of C
 * (mc x 32, updated once per k-block) stays in L1/L2; the first row block prefetches the next
 * block.  A single row block (small M) of a whole-panel kernel takes the whole k-range at once:
 * W then streams linearly, panel after panel.  A chunk is packed once per call into the caller's
 * workspace `work` (fr_packed_work_size(M, K) elements; nothing is allocated here, and each
 * thread needs its own).
 * Without it (work NULL) the loop order is k-blocks, row blocks (packed into a buffer on the
 * stack), panels: correct, only slower for large M; and faster for a single row block of a
 * kernel that walks the panel in two column passes (AVX2, 4-6 rows: 82% of the FMA peak instead
 * of 74% at H = 256), so that case takes it too.
 * Partial panels (column range not covering the whole panel) go through a small tile.
 */
/* d[0:m] = s[0:m] for m <= FRP_MR_MAX = 12, a constant count per case: a few moves (a loop of
 * variable count became a memcpy call) */
#define FRP_COPY_CASE(m)                                                                           \
    case m:                                                                                        \
        for (int i = 0; i < (m); i++)                                                              \
            d[i] = s[i];                                                                           \
        break;
/* frp_pack_a's case of m rows */
#define FRP_PACK_CASE(m)                                                                           \
    case m:                                                                                        \
        for (ptrdiff_t k = 0; k < kc; k++)                                                         \
            for (int i = 0; i < (m); i++)                                                          \
                Ap[k * (m) + i] = r[i][k];                                                         \
        break;
#define FRP_DEFINE_DRIVER_HELPERS(SFX, real)                                                       \
static inline void frp_copy_small_##SFX(int m, const real *FRP_RESTRICT s, real *FRP_RESTRICT d)   \
{                                                                                                  \
    switch (m) {                                                                                   \
    FRP_COPY_CASE(1) FRP_COPY_CASE(2) FRP_COPY_CASE(3) FRP_COPY_CASE(4) FRP_COPY_CASE(5)           \
    FRP_COPY_CASE(6) FRP_COPY_CASE(7) FRP_COPY_CASE(8) FRP_COPY_CASE(9) FRP_COPY_CASE(10)          \
    FRP_COPY_CASE(11) FRP_COPY_CASE(12)                                                            \
    default: break;                                                                                \
    }                                                                                              \
}                                                                                                  \
/* the block kernel for M rows, its mrmax, and whether it reads each k-row of a panel once      \
 * (whole panel per pass), so that a single row block needs no blocking over K */                  \
static void frp_select_##SFX(ptrdiff_t M, frp_blk_##SFX *blk, int *mrmax, int *whole)             \
{                                                                                                  \
    (void)M;                                                                                       \
    *whole = 1;                                                                                    \
    switch (fr_isa()) {                                                                            \
    FRP_SELECT_SIMD(SFX)                                                                           \
    default: *blk = frp_blk_scalar_##SFX; *mrmax = 8; break;                                       \
    }                                                                                              \
}                                                                                                  \
/* Ap[k mr + i] = A(i0 + i, k0 + k), i < mr, k < kc, where row r of A is at A + r lda, or at   \
 * A + arow[r] lda when arow is given (a gather: rows picked from a larger matrix, no copy).       \
 * k outer, mr a constant per case: Ap is written in order, the mr rows read side by side         \
 * (rows outer wrote Ap at a stride of mr, one scalar store at a time: 2-3x slower, about 4% of  \
 * a 2-thread LSTM B16 H256 step) */                                                              \
static void frp_pack_a_##SFX(int mr, ptrdiff_t kc, const real *FRP_RESTRICT A, ptrdiff_t lda,      \
                             const ptrdiff_t *arow, ptrdiff_t i0, ptrdiff_t k0,                    \
                             real *FRP_RESTRICT Ap)                                                \
{                                                                                                  \
    const real *FRP_RESTRICT r[FRP_MR_MAX];                                                        \
    for (int i = 0; i < mr; i++)                                                                   \
        r[i] = A + (arow ? arow[i0 + i] : i0 + i) * lda + k0;                                      \
    switch (mr) {                                                                                  \
    FRP_PACK_CASE(1) FRP_PACK_CASE(2) FRP_PACK_CASE(3) FRP_PACK_CASE(4) FRP_PACK_CASE(5)           \
    FRP_PACK_CASE(6) FRP_PACK_CASE(7) FRP_PACK_CASE(8) FRP_PACK_CASE(9) FRP_PACK_CASE(10)          \
    FRP_PACK_CASE(11) FRP_PACK_CASE(12)                                                            \
    default: break;                                                                                \
    }                                                                                              \
}                                                                                                  \
/* frp_pack_a of nb row blocks (mb rows, mb + 1 for the first nbig) of A given transposed,      \
 * A(i, k) at At[k lda + i], k < kc: block b (rows i0 ..) at Ap + i0 ldp.  k outer: At is read   \
 * row by row, each row's part of every block at once (prefetched FRP_PF_AT rows ahead: the      \
 * parts are short and far apart) */                                                              \
static void frp_pack_at_##SFX(ptrdiff_t nb, ptrdiff_t mb, ptrdiff_t nbig, ptrdiff_t kc,            \
                              const real *At, ptrdiff_t lda, ptrdiff_t ldp, real *Ap)              \
{                                                                                                  \
    ptrdiff_t m = nb * mb + nbig;                                                                  \
    for (ptrdiff_t k = 0; k < kc; k++) {                                                           \
        if (k + FRP_PF_AT < kc)                                                                    \
            frp_prefetch_l1(At + (k + FRP_PF_AT) * lda, m * sizeof(real));                         \
        for (ptrdiff_t b = 0, i0 = 0; b < nb; b++) {                                               \
            int mr = (int)(b < nbig ? mb + 1 : mb);                                                \
            frp_copy_small_##SFX(mr, At + k * lda + i0, Ap + i0 * ldp + k * mr);                   \
            i0 += mr;                                                                              \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* one row block x one k-block x one panel; columns [ja, jb) of the panel are written.  acc: the \
 * tile adds to C, whose rows are prefetched first: the C of a step's product (the LSTM's gates,  \
 * written by the input projection long before) is seldom in cache, and the block kernel reads    \
 * it only after its k loop, which would then wait for memory once per tile */                    \
static inline void frp_tile_##SFX(frp_blk_##SFX blk, int mr, ptrdiff_t kc, const real *Ap,         \
        const real *B, ptrdiff_t pfd, ptrdiff_t pfn, int acc, real *C, ptrdiff_t ldc,              \
        ptrdiff_t ja, ptrdiff_t jb)                                                                \
{                                                                                                  \
    if (acc)                                                                                       \
        for (int i = 0; i < mr; i++)                                                               \
            frp_prefetch_l1(C + i * ldc + ja, (size_t)(jb - ja) * sizeof(real));                   \
    if (ja == 0 && jb == FR_PACKED_NR) {                                                           \
        blk(mr, kc, Ap, B, pfd, pfn, acc, C, ldc);                                                 \
    } else {                                                                                       \
        real tile[FRP_MR_MAX * FR_PACKED_NR];                                                      \
        blk(mr, kc, Ap, B, pfd, pfn, 0, tile, FR_PACKED_NR);                                       \
        frp_store_##SFX(mr, tile, FR_PACKED_NR, acc, C, ldc, ja, jb);                              \
    }                                                                                              \
}

#define FRP_DEFINE_DRIVER(SFX, real, KC)                                                           \
/* the chunk's rows are packed in Ap: block b (rows i0 .. i0 + mr) at Ap + i0 K, k-major */        \
static void frp_gemm_chunk_##SFX(frp_blk_##SFX blk, int mrmax, int whole, ptrdiff_t M,             \
        ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K, const real *Ap, const real *Wp, real beta,        \
        real *C, ptrdiff_t ldc, int rev)                                                           \
{                                                                                                  \
    ptrdiff_t nb = (M + mrmax - 1) / mrmax, mb = M / nb, nbig = M % nb;                            \
    ptrdiff_t kcmax = nb == 1 && whole ? K : KC;                                                   \
    ptrdiff_t pbeg = n0 / FR_PACKED_NR, pend = (n1 + FR_PACKED_NR - 1) / FR_PACKED_NR;            \
    for (ptrdiff_t pi = pbeg; pi < pend; pi++) { /* panels [pbeg, pend), last first when rev */   \
        ptrdiff_t p = rev ? pbeg + pend - 1 - pi : pi;                                             \
        ptrdiff_t j0 = p * FR_PACKED_NR;                                                           \
        ptrdiff_t ja = n0 > j0 ? n0 - j0 : 0;                                                      \
        ptrdiff_t jb = n1 - j0 < FR_PACKED_NR ? n1 - j0 : FR_PACKED_NR;                            \
        for (ptrdiff_t k0 = 0; k0 < K; k0 += kcmax) {                                              \
            ptrdiff_t kc = K - k0 < kcmax ? K - k0 : kcmax;                                        \
            int acc = k0 > 0 || beta != 0;                                                         \
            const real *B = Wp + (p * K + k0) * FR_PACKED_NR;                                      \
            ptrdiff_t pfn = (pend * K - p * K - k0) * FR_PACKED_NR;                                \
            for (ptrdiff_t b = 0, i0 = 0; b < nb; b++) {                                           \
                int mr = (int)(b < nbig ? mb + 1 : mb);                                            \
                /* the first row block brings the next k-block (or panel) into L2 */               \
                ptrdiff_t pfd = nb == 1 ? FRP_PF_STREAM / (ptrdiff_t)sizeof(real) / 32 * 32        \
                                : b == 0 ? kc * FR_PACKED_NR : 0;                                  \
                frp_tile_##SFX(blk, mr, kc, Ap + i0 * K + k0 * mr, B, pfd, pfn, acc,               \
                               C + i0 * ldc + j0, ldc, ja, jb);                                    \
                i0 += mr;                                                                          \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* no heap buffer: k-blocks, row blocks packed on the stack, panels */                             \
static void frp_gemm_stack_##SFX(frp_blk_##SFX blk, int mrmax, ptrdiff_t M, ptrdiff_t n0,          \
        ptrdiff_t n1, ptrdiff_t K, const real *A, ptrdiff_t lda, const ptrdiff_t *arow, int at,    \
        const real *Wp, real beta, real *C, ptrdiff_t ldc)                                         \
{                                                                                                  \
    real Ap[FRP_MR_MAX * KC];                                                                      \
    ptrdiff_t nb = (M + mrmax - 1) / mrmax, mb = M / nb, nbig = M % nb;                            \
    ptrdiff_t pend = (n1 + FR_PACKED_NR - 1) / FR_PACKED_NR;                                       \
    for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {                                                     \
        ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;                                                  \
        int acc = k0 > 0 || beta != 0;                                                             \
        for (ptrdiff_t b = 0, i0 = 0; b < nb; b++) {                                               \
            int mr = (int)(b < nbig ? mb + 1 : mb);                                                \
            if (at)                                                                                \
                frp_pack_at_##SFX(1, mr, 0, kc, A + k0 * lda + i0, lda, kc, Ap);                   \
            else                                                                                   \
                frp_pack_a_##SFX(mr, kc, A, lda, arow, i0, k0, Ap);                                \
            for (ptrdiff_t p = n0 / FR_PACKED_NR; p < pend; p++) {                                 \
                ptrdiff_t j0 = p * FR_PACKED_NR;                                                   \
                ptrdiff_t ja = n0 > j0 ? n0 - j0 : 0;                                              \
                ptrdiff_t jb = n1 - j0 < FR_PACKED_NR ? n1 - j0 : FR_PACKED_NR;                    \
                const real *B = Wp + (p * K + k0) * FR_PACKED_NR;                                  \
                ptrdiff_t pfn = (pend * K - p * K - k0) * FR_PACKED_NR;                            \
                /* prefetch the same k-block of the next panel */                                  \
                frp_tile_##SFX(blk, mr, kc, Ap, B, K * FR_PACKED_NR, pfn, acc,                     \
                               C + i0 * ldc + j0, ldc, ja, jb);                                    \
            }                                                                                      \
            i0 += mr;                                                                              \
        }                                                                                          \
    }                                                                                              \
}

/* The products of one call: C = A W^T for up to FRP_NOUT pairs (W, C) sharing A, which is packed
 * once for all of them.  Output o writes nblk column blocks of its C, block q the columns
 * [n0 + q bstride, n1 + q bstride) clipped to N (the gate blocks of some hidden units). */
#define FRP_NOUT 2
#define FRP_DEFINE_OUT(SFX, real)                                                                  \
typedef struct {                                                                                   \
    const real *Wp;                                                                                \
    ptrdiff_t N, n0, n1, nblk, bstride;                                                            \
    real *C;                                                                                       \
    ptrdiff_t ldc;                                                                                 \
} frp_out_##SFX;
FRP_DEFINE_OUT(f32, float)
FRP_DEFINE_OUT(f64, double)
/* loop over every column block [a, b) of every output out[u_] (an empty block is skipped), the
 * blocks of an output last first when rev */
#define FRP_FOR_BLOCKS                                                                             \
    for (int u_ = 0; u_ < nout; u_++)                                                              \
        for (ptrdiff_t qi_ = 0; qi_ < out[u_].nblk; qi_++)                                         \
            for (ptrdiff_t q_ = rev ? out[u_].nblk - 1 - qi_ : qi_,                                \
                           a = out[u_].n0 + q_ * out[u_].bstride,                                  \
                           b = out[u_].n1 + q_ * out[u_].bstride > out[u_].N                       \
                               ? out[u_].N : out[u_].n1 + q_ * out[u_].bstride,                    \
                           once_ = 0; !once_ && a < b; once_ = 1)

/* loop over the chunks of A's M rows that frp_gemm packs and multiplies one at a time (balanced,
 * frp_nch of them): chunk of rows [m0, m0 + Mc).  The one rule for frp_gemm and fr_pack_left,
 * whose layouts must agree */
#define FRP_FOR_CHUNKS(SFX, M, K, mrmax)                                                           \
    for (ptrdiff_t nch_ = frp_nch_##SFX(M, K, mrmax), ch_ = 0, m0 = 0,                             \
                   Mc = M / nch_ + (M % nch_ > 0);                                                 \
         ch_ < nch_; m0 += Mc, ch_++, Mc = M / nch_ + (ch_ < M % nch_))

#define FRP_DEFINE_GEMM(SFX, real)                                                                 \
FRP_API ptrdiff_t fr_packed_work_size_##SFX(ptrdiff_t M, ptrdiff_t K)                              \
{                                                                                                  \
    ptrdiff_t mc = K > 0 ? FRP_A_BYTES / ((ptrdiff_t)sizeof(real) * K) : 0;                        \
    mc = mc < FRP_MR_MAX ? FRP_MR_MAX : mc;                                                        \
    mc = mc > M ? M : mc;                                                                          \
    return mc * (K > 0 ? K : 0);                                                                   \
}                                                                                                  \
/* the most fr_packed_work_size(M, k) for any k <= K (which is not monotone in K: a chunk of A    \
 * takes about FRP_A_BYTES): a workspace that serves products of A with up to K columns */        \
FRP_API ptrdiff_t fr_packed_work_bound_##SFX(ptrdiff_t M, ptrdiff_t K)                             \
{                                                                                                  \
    ptrdiff_t w = FRP_MR_MAX * K, a = FRP_A_BYTES / (ptrdiff_t)sizeof(real);                       \
    w = w > a ? w : a;                                                                             \
    return M > 0 && K > 0 ? (w < M * K ? w : M * K) : 0;                                           \
}                                                                                                  \
/* whether frp_gemm packs A (M rows) into its workspace: not for one row of a whole-panel kernel \
 * (read in place) nor for a single row block of the two-pass AVX2 kernel (packed on the stack) */ \
FRP_INLINE int frp_packs_a_##SFX(ptrdiff_t M, int mrmax, int whole)                                \
{                                                                                                  \
    return !(M == 1 && whole) && !(M <= mrmax && !whole);                                          \
}                                                                                                  \
/* the number of chunks (of at most mc rows, FRP_A_BYTES) that frp_gemm packs A's M rows of K in   \
 * (FRP_FOR_CHUNKS walks them) */                                                                  \
FRP_INLINE ptrdiff_t frp_nch_##SFX(ptrdiff_t M, ptrdiff_t K, int mrmax)                            \
{                                                                                                  \
    ptrdiff_t mc = FRP_A_BYTES / ((ptrdiff_t)sizeof(real) * K);                                    \
    mc = mc < mrmax ? mrmax : mc > M ? M : mc;                                                     \
    return (M + mc - 1) / mc;                                                                      \
}                                                                                                  \
/* pack the Mc rows m0 .. m0+Mc of A (or of A given transposed, at) into Ap, row blocks of at    \
 * most mrmax rows, block i0 at Ap + i0 K (k-major within a block) */                            \
static void frp_pack_chunk_##SFX(ptrdiff_t Mc, int mrmax, ptrdiff_t K, const real *A,              \
        const ptrdiff_t *arow, ptrdiff_t lda, int at, ptrdiff_t m0, real *Ap)                      \
{                                                                                                  \
    ptrdiff_t nb = (Mc + mrmax - 1) / mrmax, mb = Mc / nb, nbig = Mc % nb;                         \
    if (at) {                                                                                      \
        frp_pack_at_##SFX(nb, mb, nbig, K, A + m0, lda, K, Ap);                                    \
        return;                                                                                    \
    }                                                                                              \
    for (ptrdiff_t bl = 0, i0 = 0; bl < nb; bl++) {                                                \
        int mr = (int)(bl < nbig ? mb + 1 : mb);                                                   \
        frp_pack_a_##SFX(mr, K, A, lda, arow, m0 + i0, 0, Ap + i0 * K);                            \
        i0 += mr;                                                                                  \
    }                                                                                              \
}                                                                                                  \
/* the products out[0 .. nout) of A (M, K): row i of A at A + arow[i] lda (arow NULL: A + i lda),  \
 * or A given transposed (at: A(i, k) at A[k lda + i]).  prepacked: `work` already holds A as     \
 * fr_pack_left leaves it (all chunks, chunk m0 at work + m0 K), so nothing is packed here */     \
FRP_INLINE void frp_gemm_##SFX(ptrdiff_t M, ptrdiff_t K, const real *A, const ptrdiff_t *arow,     \
        ptrdiff_t lda, int at, int nout, const frp_out_##SFX *out, real beta, real *work,          \
        int rev, int prepacked)                                                                    \
{                                                                                                  \
    frp_blk_##SFX blk;                                                                             \
    int mrmax, whole;                                                                              \
    if (M <= 0)                                                                                    \
        return;                                                                                    \
    if (K <= 0) {                                                                                  \
        FRP_FOR_BLOCKS {                                                                           \
            real *C = out[u_].C;                                                                   \
            ptrdiff_t ldc = out[u_].ldc;                                                           \
            for (ptrdiff_t i = 0; i < M; i++)                                                      \
                for (ptrdiff_t j = a; j < b; j++)                                                  \
                    C[i * ldc + j] = beta != 0 ? C[i * ldc + j] : 0;                               \
        }                                                                                          \
        return;                                                                                    \
    }                                                                                              \
    frp_select_##SFX(M, &blk, &mrmax, &whole);                                                     \
    /* the reverse walk pays for one row block of a few rows streaming whole panels, W of at       \
     * most fr_rev_bytes() (see there) */                                                          \
    rev = rev && M <= FRP_REV_ROWS && M <= mrmax && whole && work != NULL && !at;                  \
    if (rev) {                                                                                     \
        ptrdiff_t bytes = 0;                                                                       \
        FRP_FOR_BLOCKS                                                                             \
            bytes += ((b + FR_PACKED_NR - 1) / FR_PACKED_NR - a / FR_PACKED_NR)                    \
                     * FR_PACKED_NR * K * (ptrdiff_t)sizeof(real);                                 \
        rev = bytes <= fr_rev_bytes();                                                             \
    }                                                                                              \
    if (M == 1 && whole && !at) {                                                                  \
        /* one row packed k-major is the row itself: no copy (a batch-1 step) */                   \
        FRP_FOR_BLOCKS                                                                             \
            frp_gemm_chunk_##SFX(blk, mrmax, whole, 1, a, b, K, A + (arow ? arow[0] : 0) * lda,    \
                                 out[u_].Wp, beta, out[u_].C, out[u_].ldc, rev);                   \
        return;                                                                                    \
    }                                                                                              \
    if (work == NULL || (M <= mrmax && !whole)) {                                                  \
        FRP_FOR_BLOCKS                                                                             \
            frp_gemm_stack_##SFX(blk, mrmax, M, a, b, K, A, lda, arow, at, out[u_].Wp, beta,       \
                                 out[u_].C, out[u_].ldc);                                          \
        return;                                                                                    \
    }                                                                                              \
    FRP_FOR_CHUNKS(SFX, M, K, mrmax) {                                                             \
        real *Ap = prepacked ? work + m0 * K : work;                                               \
        if (!prepacked)                                                                            \
            frp_pack_chunk_##SFX(Mc, mrmax, K, A, arow, lda, at, m0, Ap);                          \
        FRP_FOR_BLOCKS                                                                             \
            frp_gemm_chunk_##SFX(blk, mrmax, whole, Mc, a, b, K, Ap, out[u_].Wp, beta,             \
                                 out[u_].C + m0 * out[u_].ldc, out[u_].ldc, rev);                  \
    }                                                                                              \
}                                                                                                  \
/* A (M, K) packed as the products of frp_gemm pack it, all of it (M K elements of Ap; nothing    \
 * when they read A in place), for fr_gemm_packed_pre: threads that share a step's columns in     \
 * many small calls pack A once each instead of once per call */                                  \
FRP_API void fr_pack_left_##SFX(ptrdiff_t M, ptrdiff_t K, const real *A, ptrdiff_t lda, real *Ap)  \
{                                                                                                  \
    frp_blk_##SFX blk;                                                                             \
    int mrmax, whole;                                                                              \
    if (M <= 0 || K <= 0)                                                                          \
        return;                                                                                    \
    frp_select_##SFX(M, &blk, &mrmax, &whole);                                                     \
    if (!frp_packs_a_##SFX(M, mrmax, whole))                                                       \
        return;                                                                                    \
    FRP_FOR_CHUNKS(SFX, M, K, mrmax)                                                               \
        frp_pack_chunk_##SFX(Mc, mrmax, K, A, NULL, lda, 0, m0, Ap + m0 * K);                      \
}                                                                                                  \
/* fr_gemm_packed_blocks with A already packed by fr_pack_left(M, K, A, lda, Ap): the same       \
 * results, to the bit */                                                                          \
FRP_API void fr_gemm_packed_pre_##SFX(ptrdiff_t M, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t nblk,     \
        ptrdiff_t bstride, ptrdiff_t K, const real *A, ptrdiff_t lda, const real *Ap,              \
        const real *Wp, ptrdiff_t N, real beta, real *C, ptrdiff_t ldc, int rev)                   \
{                                                                                                  \
    frp_out_##SFX o = {Wp, N, n0 < 0 ? 0 : n0, n1, nblk, bstride, C, ldc};                         \
    frp_gemm_##SFX(M, K, A, NULL, lda, 0, 1, &o, beta, (real *)Ap, rev, 1);                        \
}                                                                                                  \
/* C[:, J] = A W[J]^T + beta C[:, J], A (M, K), W (N, K) packed by fr_pack, for the nblk column    \
 * blocks J = [n0 + q bstride, n1 + q bstride) clipped to N (the gate blocks of some hidden        \
 * units), A packed once for all of them; row i of A at A + arow[i] lda (arow NULL: A + i lda).    \
 * rev: W may be walked last panel first (the odd steps of a time loop, see fr_rev_bytes); the     \
 * result is the same either way */                                                                \
FRP_API void fr_gemm_packed_blocks_##SFX(ptrdiff_t M, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t nblk,  \
        ptrdiff_t bstride, ptrdiff_t K, const real *A, const ptrdiff_t *arow, ptrdiff_t lda,       \
        const real *Wp, ptrdiff_t N, real beta, real *C, ptrdiff_t ldc, real *work, int rev)       \
{                                                                                                  \
    frp_out_##SFX o = {Wp, N, n0 < 0 ? 0 : n0, n1, nblk, bstride, C, ldc};                         \
    frp_gemm_##SFX(M, K, A, arow, lda, 0, 1, &o, beta, work, rev, 0);                              \
}                                                                                                  \
/* C = A W^T (M, N) (+ C when add) and, when W2p is not NULL, C2 = A W2^T (M, N2) (+ C2), with     \
 * A (M, K) given transposed, as At (K, M) with row stride ldat, and packed once for both: sums    \
 * over K rows such as the weight gradients dW_ih = dG^T x and dW_hh = dG^T h_{t-1} (At = dG;      \
 * the W^T are x and h_{t-1}, packed by fr_pack_trans(_rows)) */                                   \
FRP_API void fr_gemm_packed_at_##SFX(ptrdiff_t M, ptrdiff_t K, const real *At, ptrdiff_t ldat,     \
        const real *Wp, ptrdiff_t N, real *C, ptrdiff_t ldc, const real *W2p, ptrdiff_t N2,        \
        real *C2, ptrdiff_t ldc2, int add, real *work)                                             \
{                                                                                                  \
    frp_out_##SFX o[FRP_NOUT] = {{Wp, N, 0, N, 1, 0, C, ldc}, {W2p, N2, 0, N2, 1, 0, C2, ldc2}};   \
    frp_gemm_##SFX(M, K, At, NULL, ldat, 1, W2p != NULL ? 2 : 1, o, add ? 1 : 0, work, 0, 0);       \
}                                                                                                  \
/* one block: columns [n0, n1) */                                                                  \
FRP_API void fr_gemm_packed_rows_##SFX(ptrdiff_t M, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K,       \
        const real *A, const ptrdiff_t *arow, ptrdiff_t lda, const real *Wp, ptrdiff_t N,          \
        real beta, real *C, ptrdiff_t ldc, real *work)                                             \
{                                                                                                  \
    fr_gemm_packed_blocks_##SFX(M, n0, n1, 1, 0, K, A, arow, lda, Wp, N, beta, C, ldc, work, 0);   \
}

FRP_DEFINE_DRIVER_HELPERS(f32, float)
FRP_DEFINE_DRIVER_HELPERS(f64, double)
FRP_DEFINE_DRIVER(f32, float, FRP_KC_F32)
FRP_DEFINE_DRIVER(f64, double, FRP_KC_F64)
FRP_DEFINE_GEMM(f32, float)
FRP_DEFINE_GEMM(f64, double)

#endif /* FUSEDRNN_PACKED_GEMM_H */
