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
 * so fr_packed_size = ceil(N / 32) * 32 * K elements.  A k-range of a panel is contiguous, which is
 * what the kernel uses for cache blocking over K (blocks of FRP_KC_* values of k).
 * Wp needs no particular alignment; 64-byte alignment avoids cache-line splits and is faster.
 *
 * Kernels.  AVX-512: accumulators for up to 12 rows x 32 float32 columns (2 zmm per row) or
 * 6 rows x 32 float64 columns (4 zmm per row), one broadcast of A[i, k] per row and k.
 * AVX2+FMA: the panel is processed in column blocks of 2 ymm (16 float32 / 8 float64 columns)
 * with up to 6 rows.  Scalar: plain C (vectorised by the compiler for the baseline ISA).
 * Rows of A are split into balanced blocks of at most the kernel's row count.
 * The ISA is chosen at run time (__builtin_cpu_supports) on x86-64 with gcc/clang; elsewhere the
 * scalar code is used.  No -march flag is needed: the SIMD functions carry target attributes.
 *
 * Threads: fr_gemm_packed_* only writes C[:, n0:n1], so threads may share A, Wp and C and each
 * take a column range whose bounds are multiples of fr_packed_nr() (the last one may end at N).
 * (Other bounds are accepted and are correct, only slower.)
 */
#ifndef FUSEDRNN_PACKED_GEMM_H
#define FUSEDRNN_PACKED_GEMM_H

#include <stddef.h>

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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FUSEDRNN_NO_DISPATCH)
#define FRP_X86 1
#include <immintrin.h>
#else
#define FRP_X86 0
#endif

/* an upper bound of the kernels' row counts (mrmax, at most 12), used to size the caller's
 * workspace (fr_packed_work_size) */
#define FRP_MR_BOUND 16

/* cache blocking over K: a 32-column panel block of KC values of k is 32 KB, it stays in L1 while
 * all row blocks of A go through it */
#ifndef FRP_KC_F32
#define FRP_KC_F32 256
#endif
/* rows of A processed per pass over W: the A block should stay in L2 (1-2 MB on recent x86) */
#ifndef FRP_A_BYTES
#define FRP_A_BYTES (1024 * 1024)
#endif
#ifndef FRP_KC_F64
#define FRP_KC_F64 128
#endif

/* ISA codes for fr_packed_force_isa / fr_packed_isa */
#define FR_ISA_AUTO 0
#define FR_ISA_SCALAR 1
#define FR_ISA_AVX2 2
#define FR_ISA_AVX512 3

FRP_API ptrdiff_t fr_packed_nr(void) { return FR_PACKED_NR; }

/* ---------------------------------------------------------------- ISA selection */
static int frp_isa_choice = 0; /* 0: not decided yet; written only with the same value per run */

static int frp_isa_detect(void)
{
#if FRP_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return FR_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FR_ISA_AVX2;
#endif
    return FR_ISA_SCALAR;
}

/* the ISA in use (detected once, cached) */
FRP_API int fr_packed_isa(void)
{
#if defined(__GNUC__) || defined(__clang__)
    int isa = __atomic_load_n(&frp_isa_choice, __ATOMIC_RELAXED);
    if (isa == 0) {
        isa = frp_isa_detect();
        __atomic_store_n(&frp_isa_choice, isa, __ATOMIC_RELAXED);
    }
    return isa;
#else
    if (frp_isa_choice == 0)
        frp_isa_choice = frp_isa_detect();
    return frp_isa_choice;
#endif
}

/* For tests and benchmarks: force one code path (FR_ISA_SCALAR, _AVX2, _AVX512) or go back to
 * detection (FR_ISA_AUTO).  A path the CPU lacks is replaced by the best one it has.  Not
 * thread-safe against concurrent fr_gemm_packed_* calls.  Returns the ISA now in use. */
FRP_API int fr_packed_force_isa(int isa)
{
    int best = frp_isa_detect();
    if (isa == FR_ISA_AUTO || isa > best || isa < FR_ISA_SCALAR)
        isa = best;
    frp_isa_choice = isa;
    return isa;
}

/* ---------------------------------------------------------------- packing (ISA independent) */
#define FRP_DEFINE_PACK(SFX, real)                                                                 \
FRP_API ptrdiff_t fr_packed_size_##SFX(ptrdiff_t N, ptrdiff_t K)                                   \
{                                                                                                  \
    return (N + FR_PACKED_NR - 1) / FR_PACKED_NR * FR_PACKED_NR * K;                               \
}                                                                                                  \
FRP_API void fr_pack_##SFX(ptrdiff_t N, ptrdiff_t K, const real *FRP_RESTRICT W, ptrdiff_t ldw,    \
                           real *FRP_RESTRICT Wp)                                                  \
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
}

FRP_DEFINE_PACK(f32, float)
FRP_DEFINE_PACK(f64, double)

/* ---------------------------------------------------------------- block kernels
 * A block kernel computes, for one row block (mr rows) and one k-block (kc values of k) of one
 * panel, C[0:mr, 0:32] = A[0:mr, 0:kc] . Bp^T (+ C if acc), with Bp the panel at that k-block
 * (row stride 32) and A packed k-major: A(i, k) at A[k mr + i], so that the broadcasts read one
 * contiguous stream (rows of the caller's A, often 4 KB apart, would fight for the same L1 sets).
 * pf (same layout as B) is prefetched into L2 on the way: the block that comes next.
 * Signature shared by all ISAs: */
typedef void (*frp_blk_f32)(int mr, ptrdiff_t kc, const float *A, const float *B, const float *pf,
                            int acc, float *C, ptrdiff_t ldc);
typedef void (*frp_blk_f64)(int mr, ptrdiff_t kc, const double *A, const double *B,
                            const double *pf, int acc, double *C, ptrdiff_t ldc);

/* scalar: rows in blocks of 4, the 32 columns as an inner loop the compiler can vectorise */
#define FRP_DEFINE_SCALAR(SFX, real)                                                               \
static void frp_blk_scalar_##SFX(int mr, ptrdiff_t kc, const real *FRP_RESTRICT A,                 \
        const real *FRP_RESTRICT B, const real *pf, int acc, real *FRP_RESTRICT C, ptrdiff_t ldc)  \
{                                                                                                  \
    (void)pf;                                                                                      \
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
        for (int i = 0; i < m; i++) {                                                              \
            real *FRP_RESTRICT ci = C + (i0 + i) * ldc;                                            \
            if (acc)                                                                               \
                for (int j = 0; j < FR_PACKED_NR; j++)                                             \
                    ci[j] += c[i][j];                                                              \
            else                                                                                   \
                for (int j = 0; j < FR_PACKED_NR; j++)                                             \
                    ci[j] = c[i][j];                                                               \
        }                                                                                          \
    }                                                                                              \
}

FRP_DEFINE_SCALAR(f32, float)
FRP_DEFINE_SCALAR(f64, double)

#if FRP_X86
/* prefetch into L2 the cache lines of [p, p + bytes); with few rows the kernel is bound by its
 * loads of B, and extra prefetches only take load slots */
#ifndef FRP_PF_MIN_MR
#define FRP_PF_MIN_MR 4
#endif
#define FRP_PREFETCH(p, bytes)                                                                     \
    if (MR >= FRP_PF_MIN_MR)                                                                       \
        _Pragma("GCC unroll 4") for (size_t l_ = 0; l_ < (bytes); l_ += 64)                        \
            _mm_prefetch((const char *)(p) + l_, _MM_HINT_T1)

/* SIMD micro-kernel, generic over the vector type: MR rows (a compile-time constant once
 * inlined) x NV vectors of VL lanes, columns at B[k * 32 + 0 .. NV*VL).  For MR <= 2 the k loop
 * is unrolled by two with a second set of accumulators, so that enough independent FMA chains
 * hide the FMA latency. */
#define FRP_DEFINE_UKERNEL(NAME, TGT, real, vec, VL, NV, ZERO, LOADU, SET1, FMADD, ADD, STOREU)    \
__attribute__((always_inline, target(TGT))) static inline void NAME(                               \
        const int MR, ptrdiff_t kc, const real *FRP_RESTRICT A, const real *FRP_RESTRICT B,        \
        const real *pf, int acc, real *FRP_RESTRICT C, ptrdiff_t ldc)                              \
{                                                                                                  \
    vec c[12][NV];                                                                                 \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] = ZERO();                     \
    ptrdiff_t k = 0;                                                                               \
    if (MR <= 2) {                                                                                 \
        vec d[2][NV];                                                                              \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) d[i][v] = ZERO();                 \
        for (; k + 2 <= kc; k += 2) {                                                              \
            vec b0[NV], b1[NV];                                                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                 \
                b0[v] = LOADU(B + k * FR_PACKED_NR + v * VL);                                      \
                b1[v] = LOADU(B + (k + 1) * FR_PACKED_NR + v * VL);                                \
            }                                                                                      \
            FRP_PREFETCH(pf + k * FR_PACKED_NR, NV * VL * sizeof(real));                           \
            FRP_PREFETCH(pf + (k + 1) * FR_PACKED_NR, NV * VL * sizeof(real));                     \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                \
                vec a0 = SET1(A[k * MR + i]);                                                      \
                vec a1 = SET1(A[(k + 1) * MR + i]);                                                \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                             \
                    c[i][v] = FMADD(a0, b0[v], c[i][v]);                                           \
                    d[i][v] = FMADD(a1, b1[v], d[i][v]);                                           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] = ADD(c[i][v], d[i][v]);  \
    }                                                                                              \
    for (; k < kc; k++) {                                                                          \
        vec b[NV];                                                                                 \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                       \
            b[v] = LOADU(B + k * FR_PACKED_NR + v * VL);                                           \
        FRP_PREFETCH(pf + k * FR_PACKED_NR, NV * VL * sizeof(real));                               \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                    \
            vec a = SET1(A[k * MR + i]);                                                           \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                   \
                c[i][v] = FMADD(a, b[v], c[i][v]);                                                 \
        }                                                                                          \
    }                                                                                              \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                     \
            real *ci = C + i * ldc + v * VL;                                                       \
            STOREU(ci, acc ? ADD(c[i][v], LOADU(ci)) : c[i][v]);                                   \
        }                                                                                          \
}

/* block kernel: switch on the row count to the constant-MR micro-kernels, then loop over the
 * column blocks of the panel (32 / (NV VL) of them) */
#define FRP_CASE(UK, STEP, m)                                                                      \
    case m:                                                                                        \
        for (int s = 0; s < FR_PACKED_NR; s += STEP)                                               \
            UK(m, kc, A, B + s, pf + s, acc, C + s, ldc);                                          \
        break;
#define FRP_DEFINE_BLK(NAME, UK, TGT, real, STEP)                                                  \
__attribute__((target(TGT))) static void NAME(int mr, ptrdiff_t kc, const real *A,                 \
        const real *B, const real *pf, int acc, real *C, ptrdiff_t ldc)                            \
{                                                                                                  \
    switch (mr) {                                                                                  \
    FRP_CASE(UK, STEP, 1) FRP_CASE(UK, STEP, 2) FRP_CASE(UK, STEP, 3) FRP_CASE(UK, STEP, 4)        \
    FRP_CASE(UK, STEP, 5) FRP_CASE(UK, STEP, 6) FRP_CASE(UK, STEP, 7) FRP_CASE(UK, STEP, 8)        \
    FRP_CASE(UK, STEP, 9) FRP_CASE(UK, STEP, 10) FRP_CASE(UK, STEP, 11) FRP_CASE(UK, STEP, 12)     \
    default: break;                                                                                \
    }                                                                                              \
}

#define FRP_Z512S() _mm512_setzero_ps()
#define FRP_Z512D() _mm512_setzero_pd()
#define FRP_Z256S() _mm256_setzero_ps()
#define FRP_Z256D() _mm256_setzero_pd()

FRP_DEFINE_UKERNEL(frp_uk_avx512_f32, "avx512f", float, __m512, 16, 2, FRP_Z512S, _mm512_loadu_ps,
                   _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps)
FRP_DEFINE_UKERNEL(frp_uk_avx512_f64, "avx512f", double, __m512d, 8, 4, FRP_Z512D,
                   _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd,
                   _mm512_storeu_pd)
FRP_DEFINE_UKERNEL(frp_uk_avx2_f32, "avx2,fma", float, __m256, 8, 2, FRP_Z256S, _mm256_loadu_ps,
                   _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps)
FRP_DEFINE_UKERNEL(frp_uk_avx2_f64, "avx2,fma", double, __m256d, 4, 2, FRP_Z256D,
                   _mm256_loadu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd,
                   _mm256_storeu_pd)

FRP_DEFINE_BLK(frp_blk_avx512_f32, frp_uk_avx512_f32, "avx512f", float, 32)
FRP_DEFINE_BLK(frp_blk_avx512_f64, frp_uk_avx512_f64, "avx512f", double, 32)
FRP_DEFINE_BLK(frp_blk_avx2_f32, frp_uk_avx2_f32, "avx2,fma", float, 16)
FRP_DEFINE_BLK(frp_blk_avx2_f64, frp_uk_avx2_f64, "avx2,fma", double, 8)
#endif /* FRP_X86 */

/* ---------------------------------------------------------------- driver
 * Rows of A are taken in chunks of at most mc rows (the packed chunk, mc x K, fits FRP_A_BYTES so
 * it stays in L2 while W streams by), each chunk in balanced row blocks of at most mrmax rows.
 * Per chunk the loop order is: panels of the column range, k-blocks, row blocks, so one panel
 * block (32 x KC) stays in L1 while all row blocks go through it, and the chunk's strip of C
 * (mc x 32, updated once per k-block) stays in L1/L2.  A chunk is packed once per call into the
 * caller's workspace `work` (fr_packed_work_size(M, K) elements; nothing is allocated here, and
 * each thread needs its own).  Without it (work NULL, or a single row block) the loop order is
 * k-blocks, row blocks (packed into a buffer on the stack), panels: correct, only slower for large
 * M N K.
 * Partial panels (column range not covering the whole panel) go through a small tile. */
#define FRP_DEFINE_GEMM(SFX, real, KC)                                                             \
static void frp_select_##SFX(frp_blk_##SFX *blk, int *mrmax)                                       \
{                                                                                                  \
    switch (fr_packed_isa()) {                                                                     \
    FRP_SELECT_SIMD_##SFX                                                                          \
    default: *blk = frp_blk_scalar_##SFX; *mrmax = 8; break;                                       \
    }                                                                                              \
}                                                                                                  \
/* Ap[k mr + i] = A[i, k], i < mr, k < kc */                                                       \
static void frp_pack_a_##SFX(int mr, ptrdiff_t kc, const real *FRP_RESTRICT A, ptrdiff_t lda,      \
                             real *FRP_RESTRICT Ap)                                                \
{                                                                                                  \
    for (int i = 0; i < mr; i++)                                                                   \
        for (ptrdiff_t k = 0; k < kc; k++)                                                         \
            Ap[k * mr + i] = A[i * lda + k];                                                       \
}                                                                                                  \
/* one row block x one k-block x one panel; columns [ja, jb) of the panel are written */           \
static inline void frp_tile_##SFX(frp_blk_##SFX blk, int mr, ptrdiff_t kc, const real *Ap,         \
        const real *B, const real *pf, int acc, real *C, ptrdiff_t ldc, ptrdiff_t ja, ptrdiff_t jb) \
{                                                                                                  \
    if (ja == 0 && jb == FR_PACKED_NR) {                                                           \
        blk(mr, kc, Ap, B, pf, acc, C, ldc);                                                       \
    } else {                                                                                       \
        real tile[12 * FR_PACKED_NR];                                                              \
        blk(mr, kc, Ap, B, pf, 0, tile, FR_PACKED_NR);                                             \
        for (int i = 0; i < mr; i++)                                                               \
            for (ptrdiff_t j = ja; j < jb; j++)                                                    \
                C[i * ldc + j] = acc ? C[i * ldc + j] + tile[i * FR_PACKED_NR + j]                 \
                                     : tile[i * FR_PACKED_NR + j];                                 \
    }                                                                                              \
}                                                                                                  \
/* the chunk's rows are packed in Ap: block b (rows i0 .. i0 + mr) at Ap + i0 K, k-major */        \
static void frp_gemm_chunk_##SFX(frp_blk_##SFX blk, int mrmax, ptrdiff_t M, ptrdiff_t n0,          \
        ptrdiff_t n1, ptrdiff_t K, const real *Ap, const real *Wp, real beta, real *C,             \
        ptrdiff_t ldc)                                                                             \
{                                                                                                  \
    ptrdiff_t nb = (M + mrmax - 1) / mrmax, mb = M / nb, nbig = M % nb;                            \
    for (ptrdiff_t p = n0 / FR_PACKED_NR; p * FR_PACKED_NR < n1; p++) {                            \
        ptrdiff_t j0 = p * FR_PACKED_NR;                                                           \
        ptrdiff_t ja = n0 > j0 ? n0 - j0 : 0;                                                      \
        ptrdiff_t jb = n1 - j0 < FR_PACKED_NR ? n1 - j0 : FR_PACKED_NR;                            \
        for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {                                                 \
            ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;                                              \
            int acc = k0 > 0 || beta != 0;                                                         \
            const real *B = Wp + (p * K + k0) * FR_PACKED_NR;                                      \
            for (ptrdiff_t b = 0, i0 = 0; b < nb; b++) {                                           \
                int mr = (int)(b < nbig ? mb + 1 : mb);                                            \
                /* the first row block brings the next k-block (or panel) into L2 */               \
                const real *pf = b == 0 ? B + kc * FR_PACKED_NR : B;                               \
                frp_tile_##SFX(blk, mr, kc, Ap + i0 * K + k0 * mr, B, pf, acc, C + i0 * ldc + j0,  \
                               ldc, ja, jb);                                                       \
                i0 += mr;                                                                          \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
/* no heap buffer: k-blocks, row blocks packed on the stack, panels */                             \
static void frp_gemm_stack_##SFX(frp_blk_##SFX blk, int mrmax, ptrdiff_t M, ptrdiff_t n0,          \
        ptrdiff_t n1, ptrdiff_t K, const real *A, ptrdiff_t lda, const real *Wp, real beta,        \
        real *C, ptrdiff_t ldc)                                                                    \
{                                                                                                  \
    real Ap[12 * KC];                                                                              \
    ptrdiff_t nb = (M + mrmax - 1) / mrmax, mb = M / nb, nbig = M % nb;                            \
    for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {                                                     \
        ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;                                                  \
        int acc = k0 > 0 || beta != 0;                                                             \
        for (ptrdiff_t b = 0, i0 = 0; b < nb; b++) {                                               \
            int mr = (int)(b < nbig ? mb + 1 : mb);                                                \
            frp_pack_a_##SFX(mr, kc, A + i0 * lda + k0, lda, Ap);                                  \
            for (ptrdiff_t p = n0 / FR_PACKED_NR; p * FR_PACKED_NR < n1; p++) {                    \
                ptrdiff_t j0 = p * FR_PACKED_NR;                                                   \
                ptrdiff_t ja = n0 > j0 ? n0 - j0 : 0;                                              \
                ptrdiff_t jb = n1 - j0 < FR_PACKED_NR ? n1 - j0 : FR_PACKED_NR;                    \
                const real *B = Wp + (p * K + k0) * FR_PACKED_NR;                                  \
                frp_tile_##SFX(blk, mr, kc, Ap, B, B + K * FR_PACKED_NR, acc, C + i0 * ldc + j0,   \
                               ldc, ja, jb);                                                       \
            }                                                                                      \
            i0 += mr;                                                                              \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
FRP_API ptrdiff_t fr_packed_work_size_##SFX(ptrdiff_t M, ptrdiff_t K)                              \
{                                                                                                  \
    ptrdiff_t mc = K > 0 ? FRP_A_BYTES / ((ptrdiff_t)sizeof(real) * K) : 0;                        \
    mc = mc < FRP_MR_BOUND ? FRP_MR_BOUND : mc;                                                    \
    mc = mc > M ? M : mc;                                                                          \
    return mc * (K > 0 ? K : 0);                                                                   \
}                                                                                                  \
FRP_API void fr_gemm_packed_##SFX(ptrdiff_t M, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K,            \
        const real *A, ptrdiff_t lda, const real *Wp, ptrdiff_t N, real beta, real *C,             \
        ptrdiff_t ldc, real *work)                                                                 \
{                                                                                                  \
    frp_blk_##SFX blk;                                                                             \
    int mrmax;                                                                                     \
    if (n1 > N)                                                                                    \
        n1 = N;                                                                                    \
    if (n0 < 0)                                                                                    \
        n0 = 0;                                                                                    \
    if (M <= 0 || n0 >= n1)                                                                        \
        return;                                                                                    \
    if (K <= 0) {                                                                                  \
        for (ptrdiff_t i = 0; i < M; i++)                                                          \
            for (ptrdiff_t j = n0; j < n1; j++)                                                    \
                C[i * ldc + j] = beta != 0 ? C[i * ldc + j] : 0;                                   \
        return;                                                                                    \
    }                                                                                              \
    frp_select_##SFX(&blk, &mrmax);                                                                \
    ptrdiff_t mc = FRP_A_BYTES / ((ptrdiff_t)sizeof(real) * K);                                    \
    mc = mc < mrmax ? mrmax : mc > M ? M : mc;                                                     \
    real *Ap = M > mrmax ? work : NULL;                                                            \
    if (Ap == NULL) {                                                                              \
        frp_gemm_stack_##SFX(blk, mrmax, M, n0, n1, K, A, lda, Wp, beta, C, ldc);                  \
        return;                                                                                    \
    }                                                                                              \
    ptrdiff_t nch = (M + mc - 1) / mc;                                                             \
    for (ptrdiff_t ch = 0, m0 = 0; ch < nch; ch++) {                                               \
        ptrdiff_t Mc = M / nch + (ch < M % nch);                                                   \
        ptrdiff_t nb = (Mc + mrmax - 1) / mrmax, mb = Mc / nb, nbig = Mc % nb;                     \
        for (ptrdiff_t b = 0, i0 = 0; b < nb; b++) {                                               \
            int mr = (int)(b < nbig ? mb + 1 : mb);                                                \
            frp_pack_a_##SFX(mr, K, A + (m0 + i0) * lda, lda, Ap + i0 * K);                        \
            i0 += mr;                                                                              \
        }                                                                                          \
        frp_gemm_chunk_##SFX(blk, mrmax, Mc, n0, n1, K, Ap, Wp, beta, C + m0 * ldc, ldc);          \
        m0 += Mc;                                                                                  \
    }                                                                                              \
}

#if FRP_X86
#define FRP_SELECT_SIMD_f32                                                                        \
    case FR_ISA_AVX512: *blk = frp_blk_avx512_f32; *mrmax = 12; break;                             \
    case FR_ISA_AVX2: *blk = frp_blk_avx2_f32; *mrmax = 6; break;
#define FRP_SELECT_SIMD_f64                                                                        \
    case FR_ISA_AVX512: *blk = frp_blk_avx512_f64; *mrmax = 6; break;                              \
    case FR_ISA_AVX2: *blk = frp_blk_avx2_f64; *mrmax = 6; break;
#else
#define FRP_SELECT_SIMD_f32
#define FRP_SELECT_SIMD_f64
#endif

FRP_DEFINE_GEMM(f32, float, FRP_KC_F32)
FRP_DEFINE_GEMM(f64, double, FRP_KC_F64)

#endif /* FUSEDRNN_PACKED_GEMM_H */
