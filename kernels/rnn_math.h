/* Fused gate passes for the LSTM and GRU kernels (forward and backward), float32 and float64.
 *
 * Notation (fixed in src/fusedrnn/_notation.py): B = batch rows of one time step, H = hidden size,
 * gate blocks are laid out per row as PyTorch does: LSTM [i | f | g | o], GRU [r | z | n],
 * each block H wide, so one row of the gate buffer has G*H entries and a row stride `ldg`.
 *
 * Activations.  Branch-free, so that gcc vectorises the loops; the argument of every exp is
 * clamped, so no overflow or NaN for any finite input, and NaN propagates.
 * float32: exp by Cephes' range reduction and degree-5 polynomial; sigmoid = 1 / (1 + exp(-x));
 * tanh |x| = e / (e + 2), e = expm1(2 |x|) from the same reduction (one exp and one division per
 * tanh, no separate small-argument polynomial).
 * float64: Cephes' double-precision exp (rational) for sigmoid; tanh = Cephes' rational for
 * |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1).
 * Max relative error against float64 NumPy (np.tanh, a stable sigmoid) on a dense grid of
 * [-30, 30] (tests/test_activations.py asserts 2.5e-7 and 5e-16), the same on every ISA path:
 *     float32  sigmoid 1.5e-7, tanh 1.7e-7         float64  sigmoid 4.4e-16, tanh 4.0e-16
 *
 * Cost of fr_lstm_fwd (Zen 4, B = 16, H = 256, whole rows, 5 activations per unit): float32 1.44
 * ns per hidden unit on AVX-512, 1.86 on AVX2, 5.6 scalar; float64 4.65 / 6.98 / 21.0 (rows in
 * pairs, see below; one row at a time it was 1.59 / 2.34 / 23.3 and 5.07 / 7.16 / 27.9).
 *
 * Run-time dispatch: every pass is compiled for AVX-512, AVX2+FMA and the baseline
 * (FR_MULTI_ISA) and each call runs the copy fr_isa() names (kernels/fr_isa.h: one switch for
 * every SIMD path, FUSEDRNN_ISA=avx512|avx2|scalar forces one); no -march flag is needed.
 */
#ifndef FUSEDRNN_RNN_MATH_H
#define FUSEDRNN_RNN_MATH_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "fr_isa.h"

#if defined(__GNUC__) || defined(__clang__)
#define FR_INLINE static inline __attribute__((always_inline))
#define FR_RESTRICT __restrict__
#define FR_OPAQUE __attribute__((weak, visibility("hidden")))
#else
#define FR_INLINE static inline
#define FR_RESTRICT
#define FR_OPAQUE static const
#endif

/* FR_UNROLL8: unroll the next loop (of a constant trip count, at most 8) completely.
 * FR_IVDEP: the next loop has no dependence between its iterations (for the pair passes below,
 * whose two rows the compiler cannot tell apart: without it, gcc gives up vectorising them). */
#if defined(__clang__)
#define FR_UNROLL8 _Pragma("clang loop unroll(full)")
#define FR_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FR_UNROLL8 _Pragma("GCC unroll 8")
#define FR_IVDEP _Pragma("GCC ivdep")
#else
#define FR_UNROLL8
#define FR_IVDEP
#endif

/* The bounds of the activations' clamps, as values the compiler cannot see (never written;
 * weak: a definition elsewhere could replace them, so gcc does not fold them, nor does it when
 * they are not const; hidden: no other library can).  With literal bounds gcc carries each
 * activation through both out-of-range branches, folds those to constants and vectorises every
 * clamp as 4 compares, 3 mask operations and 2 blends; with these a clamp is one vmaxps /
 * vminps, with the same results to the bit.  Measured, fr_lstm_fwd float32 B16 H256 on Zen 4
 * (ns per hidden unit): AVX2 3.29 -> 2.63, AVX-512 2.15 -> 1.89, scalar 9.9 -> 8.2. */
FR_OPAQUE float fr_expf_lo = -87.3f, fr_expf_hi = 89.0f, fr_tanhf_lim = 10.0f;
FR_OPAQUE double fr_exp_lo = -708.0, fr_exp_hi = 709.0;


/* ---------------------------------------------------------------- activations, float32
 * exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2/2: 2^n from the rounded n, and
 * em1 = exp(r) - 1 = r + r^2 P(r) (Cephes' degree-5 P), from which both exp = 2^n em1 + 2^n and
 * expm1 = 2^n em1 + (2^n - 1) are one FMA (no cancellation: 2^n - 1 >= 2^n / 2 when n >= 1).
 * The argument is clamped to [-87.3, 89]: no overflow for any input in tanh; NaN propagates
 * (its integer n is garbage, the shift is done unsigned so that it is defined).
 * sigmoid(x) = 1 / (1 + 2^n (em1 + 1)): for x < -88.4 (n = 128) 2^n is +inf and sigmoid is
 * exactly 0, as PyTorch's (whose exp overflows there): a saturated gate times an infinite
 * state is then NaN, as there (the clamp at 88.3 it had gave 4.7e-39, and inf).
 * tanh |x| = e / (e + 2) with e = expm1(2 |x|): one exp, one division, no cancellation, no
 * separate small-|x| branch; 2 |x| is clamped to 20 (tanh(10) rounds to 1).
 *
 * fr_act_f32 computes K of them at once (K a constant, at most 8: its loops unroll), stage by
 * stage: bit k of tanh_mask set, v[k] = tanh(v[k]), else sigmoid(v[k]).  An activation is a
 * chain of about 20 dependent operations; written one after the other, the out-of-order window
 * holds little more than one unit's chains and the pass ran at the chains' latency.  Side by
 * side, the K chains' operations are adjacent (the gain: "Cost of fr_lstm_fwd" at the top of
 * this file); the same results to the bit. */
FR_INLINE void fr_act_f32(const int K, const unsigned tanh_mask, float *FR_RESTRICT v)
{
    float x[8], t[8], nf[8], scale[8], r[8], p[8];
    FR_UNROLL8 for (int k = 0; k < K; k++) {
        float ax = fabsf(v[k]);
        x[k] = (tanh_mask >> k & 1) ? 2.0f * (ax > fr_tanhf_lim ? fr_tanhf_lim : ax) : -v[k];
    }
    FR_UNROLL8 for (int k = 0; k < K; k++) x[k] = x[k] < fr_expf_lo ? fr_expf_lo : x[k];
    FR_UNROLL8 for (int k = 0; k < K; k++) x[k] = x[k] > fr_expf_hi ? fr_expf_hi : x[k];
    /* round x log2(e) to the nearest integer n with the 1.5 * 2^23 trick (branch-free) */
    FR_UNROLL8 for (int k = 0; k < K; k++) t[k] = x[k] * 1.44269504088896341f + 12582912.0f;
    FR_UNROLL8 for (int k = 0; k < K; k++) nf[k] = t[k] - 12582912.0f;
    FR_UNROLL8 for (int k = 0; k < K; k++) {
        unsigned int n;
        memcpy(&n, &t[k], sizeof n);
        unsigned int bits = (n - 0x4B400000u + 127u) << 23;   /* 2^n; n + 127 in [1, 255] */
        memcpy(&scale[k], &bits, sizeof bits);
    }
    FR_UNROLL8 for (int k = 0; k < K; k++) r[k] = x[k] - nf[k] * 0.693359375f;
    FR_UNROLL8 for (int k = 0; k < K; k++) r[k] = r[k] + nf[k] * 2.12194440e-4f;
    FR_UNROLL8 for (int k = 0; k < K; k++) p[k] = 1.9875691500e-4f * r[k] + 1.3981999507e-3f;
    FR_UNROLL8 for (int k = 0; k < K; k++) p[k] = p[k] * r[k] + 8.3334519073e-3f;
    FR_UNROLL8 for (int k = 0; k < K; k++) p[k] = p[k] * r[k] + 4.1665795894e-2f;
    FR_UNROLL8 for (int k = 0; k < K; k++) p[k] = p[k] * r[k] + 1.6666665459e-1f;
    FR_UNROLL8 for (int k = 0; k < K; k++) p[k] = p[k] * r[k] + 5.0000001201e-1f;
    FR_UNROLL8 for (int k = 0; k < K; k++) p[k] = p[k] * (r[k] * r[k]) + r[k];   /* em1 */
    FR_UNROLL8 for (int k = 0; k < K; k++) {
        if (tanh_mask >> k & 1) {
            float e = p[k] * scale[k] + (scale[k] - 1.0f);
            v[k] = copysignf(e / (e + 2.0f), v[k]);
        } else {   /* exp = 2^n (em1 + 1): inf from x > 88.72 (n = 128), and sigmoid 0 */
            v[k] = 1.0f / (1.0f + (p[k] + 1.0f) * scale[k]);
        }
    }
}

/* ---------------------------------------------------------------- activations, float64
 * The same split as float32: fr_exp_parts gives 2^n and em1 = exp(r) - 1 = 2 r P / (Q - r P)
 * (Cephes' rational approximation), x clamped to [-708, 709]; sigmoid is exactly 0 below -708. */
FR_INLINE double fr_exp_parts(double x, double *scale)
{
    x = x < fr_exp_lo ? fr_exp_lo : x;
    x = x > fr_exp_hi ? fr_exp_hi : x;
    double t = x * 1.4426950408889634074 + 6755399441055744.0;   /* round via 1.5 * 2^52 */
    double nf = t - 6755399441055744.0;
    unsigned long long n;
    memcpy(&n, &t, sizeof n);
    unsigned long long bits = (n - 0x4338000000000000ULL + 1023ULL) << 52;   /* 2^n */
    memcpy(scale, &bits, sizeof bits);
    double r = x - nf * 6.93145751953125e-1;
    r = r - nf * 1.42860682030941723212e-6;
    double rr = r * r;
    double p = ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                + 9.99999999999999999910e-1) * r;
    double q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    return 2.0 * p / (q - p);
}

FR_INLINE double fr_exp(double x)
{
    double scale, em1 = fr_exp_parts(x, &scale);
    return em1 * scale + scale;
}

FR_INLINE double fr_sigmoid(double x)
{
    double e = fr_exp(-fabs(x));
    e = -fabs(x) < fr_exp_lo ? 0.0 : e;   /* past the clamp exp(-|x|) underflows to 0 */
    double pos = 1.0 / (1.0 + e);
    return x >= 0.0 ? pos : e * pos;
}

FR_INLINE double fr_tanh(double x)
{
    /* |x| < 0.625: Cephes' x + x^3 P(x^2) / Q(x^2); else 1 - 2 / (exp(2|x|) + 1) */
    double ax = fabs(x);
    double z = x * x;
    double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
               - 1.61468768441708447952e3;
    double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
               + 4.84406305325125486048e3;
    double small = x + x * z * p / q;
    double large = 1.0 - 2.0 / (fr_exp(2.0 * ax) + 1.0);
    large = copysign(large, x);
    return ax < 0.625 ? small : large;
}

/* fr_act_f32's float64 counterpart (one activation after the other) */
FR_INLINE void fr_act_f64(const int K, const unsigned tanh_mask, double *FR_RESTRICT v)
{
    FR_UNROLL8 for (int k = 0; k < K; k++)
        v[k] = (tanh_mask >> k & 1) ? fr_tanh(v[k]) : fr_sigmoid(v[k]);
}

/* ---------------------------------------------------------------- the fused passes
 * FR_DEFINE_PASSES(suffix, real, ACT) defines, for one floating type, the passes below (one
 * FR_PASS_* macro each; the passes work on the hidden units j0 <= j < j1 of every row, so that
 * threads can share a step; ACT is fr_act_f32 or fr_act_f64):
 *
 * fr_lstm_fwd:  gates (B, 4H) hold x_t W_ih^T + h_{t-1} W_hh^T; adds `bias` (4H), applies the
 *     activations in place (i, f, o sigmoid, g tanh), c_t = f c_{t-1} + i g written to `c`,
 *     h = o tanh(c_t) written to `h` (row stride ldh; the projection input when proj_size > 0).
 * fr_gru_fwd (reset_after):  gates (B, 3H) hold x_t W_ih^T; hg (B, 3H) holds h_{t-1} W_hh^T.
 *     r, z = sigmoid(G + bias_x + hg), hn = hg_n + b_hn, n = tanh(G_n + bias_x_n + r hn),
 *     h_t = n + z (h_{t-1} - n).  r, z, n stored in `gates`, hn in `hn`.
 * fr_gru_rz (original form, pass 1): gates r, z already hold x W^T + h W_h^T; adds bias_x and
 *     applies sigmoid in place, writes rh = r h_{t-1}.
 * fr_gru_n (original form, pass 2): gates n holds x W_in^T + rh W_hn^T; n = tanh(. + bias_x_n),
 *     h_t = n + z (h_{t-1} - n).
 *
 * Backward passes (one step, in place, hidden units j0 <= j < j1; "d" = gradient of the loss,
 * "pre" = pre-activation).  fr_add_rows: dst (B, n)[:, j0:j1] += src (row stride lds).
 * fr_lstm_bwd:  gates in: i, f, g, o; out: d pre-activations.  dh (B, H) is dL/d(o tanh c_t);
 *     dc in: dL/dc_t from step t+1, out: dL/dc_{t-1}.  r out: o tanh(c_t) (projection input).
 * fr_gru_bwd (reset_after):  gates in: r, z, n; out: d pre [r | z | n] of the input part.
 *     hn in: W_hn h_{t-1} + b_hn; out: its gradient.  dh in: dL/dh_t; out: the direct part
 *     z dh of dL/dh_{t-1}.  dgh out: d pre of the hidden part [r | z | hn] (B, 3H).
 * fr_gru_bwd1 / fr_gru_bwd2 (original form): pass 1 turns z, n into their d pre and dh into
 *     z dh; then the caller computes drh = dn_pre W_hn; pass 2 turns r into its d pre, adds
 *     r drh to dh and writes rh = r h_{t-1} (for the W_hn gradient).
 *
 * Rows in pairs.  The passes with activations run two rows side by side (fr_pair_at), so that
 * one unit's activations of both are computed together (fr_act_f32: twice the independent
 * chains); an odd last row runs as its two halves of units side by side (so does batch 1),
 * and an odd last unit of it as a pair of itself (both lanes write the same values).  Each
 * loop over a pair's units reads all it needs of an iteration before it writes: the two lanes
 * may be the same unit, and FR_IVDEP tells the compiler that iterations do not depend on each
 * other (two rows' pointers it cannot tell apart).
 */
typedef struct {
    ptrdiff_t n;            /* units in each lane */
    ptrdiff_t row[2], j[2]; /* lane q: row row[q], units j[q] .. j[q] + n */
} fr_pair;

/* How many pairs B rows of the units [j0, j0 + w) make (fr_pair_at gives each). */
FR_INLINE ptrdiff_t fr_npairs(ptrdiff_t B, ptrdiff_t w)
{
    return B / 2 + (B & 1) * ((w >= 2) + (w & 1));
}

FR_INLINE fr_pair fr_pair_at(ptrdiff_t k, ptrdiff_t B, ptrdiff_t j0, ptrdiff_t j1)
{
    ptrdiff_t m = (j1 - j0) / 2;
    fr_pair p;
    if (k < B / 2) {                    /* rows 2k and 2k + 1 */
        p.n = j1 - j0;
        p.row[0] = 2 * k, p.row[1] = 2 * k + 1, p.j[0] = p.j[1] = j0;
    } else if (k == B / 2 && m > 0) {   /* the odd last row's two halves */
        p.n = m;
        p.row[0] = p.row[1] = B - 1, p.j[0] = j0, p.j[1] = j0 + m;
    } else {                            /* its odd last unit, twice */
        p.n = 1;
        p.row[0] = p.row[1] = B - 1, p.j[0] = p.j[1] = j1 - 1;
    }
    return p;
}

/* for each lane q of a pair; the pointer of lane q into a (rows, ld) buffer at (row, unit) */
#define FR_LANES(q) FR_UNROLL8 for (int q = 0; q < 2; q++)
#define FR_AT(p, q, buf, ld) ((buf) + (p).row[q] * (ld) + (p).j[q])

/* Prefetch, for writing, the units of pair k (if there is one) of h (row stride ldh): the rows
 * of h_t are memory the call has not touched yet (a new row of the output at every step), and a
 * store that misses waits for its line; a pass prefetches the next pair's while it computes
 * this one.  It matters when threads claim chunks of a step's units: a chunk's rows of h are a
 * line or two, too short for the hardware prefetcher (a pass over all units, 1 thread, was
 * already as fast as in a loop of its own).  Measured in the 2-thread step, LSTM B16 H256,
 * chunks of 32 units, rdtsc around the passes: fr_lstm_fwd per step and thread 18.7-25.6 ->
 * 12.7-15.7 kcycles on AVX-512, 21.4-33.3 -> 14.6-18.9 on AVX2 (of ~125-150 per step). */
FR_INLINE void fr_prefetch_h(ptrdiff_t k, ptrdiff_t B, ptrdiff_t j0, ptrdiff_t j1, size_t size,
                             const void *h, ptrdiff_t ldh)
{
    if (k >= fr_npairs(B, j1 - j0))
        return;
    fr_pair p = fr_pair_at(k, B, j0, j1);
    FR_LANES(q) {   /* the cache lines of [a, end), as addresses (no pointer leaves h) */
        size_t a = (size_t)((const char *)h + (p.row[q] * ldh + p.j[q]) * (ptrdiff_t)size);
        size_t end = a + (size_t)p.n * size;
        for (a &= ~(size_t)63; a < end; a += 64)
            __builtin_prefetch((const void *)a, 1, 3);
    }
}
#define FR_PASS_LSTM_FWD(SFX, real, ACT)                                                           \
FR_MULTI_ISA(fr_lstm_fwd_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates, ptrdiff_t ldg, \
    const real *FR_RESTRICT bias, const real *FR_RESTRICT c_prev, real *FR_RESTRICT c,             \
    real *FR_RESTRICT h, ptrdiff_t ldh),                                                           \
    (B, H, j0, j1, gates, ldg, bias, c_prev, c, h, ldh),                                           \
{                                                                                                  \
    fr_prefetch_h(0, B, j0, j1, sizeof(real), h, ldh);                                             \
    for (ptrdiff_t k = 0; k < fr_npairs(B, j1 - j0); k++) {                                        \
        fr_pair p = fr_pair_at(k, B, j0, j1);                                                      \
        fr_prefetch_h(k + 1, B, j0, j1, sizeof(real), h, ldh);                                     \
        real *g[2], *cq[2], *hq[2];                                                                \
        const real *bq[2], *cp[2];                                                                 \
        FR_LANES(q) {                                                                              \
            g[q] = FR_AT(p, q, gates, ldg), bq[q] = FR_AT(p, q, bias, 0);                          \
            cp[q] = FR_AT(p, q, c_prev, H), cq[q] = FR_AT(p, q, c, H);                             \
            hq[q] = FR_AT(p, q, h, ldh);                                                           \
        }                                                                                          \
        /* two loops: the four gate activations are independent of each other, tanh(c_t)           \
         * depends on all of them; one fused loop was bound by that chain's latency */             \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real v[8];                      /* i, f, g, o of lane 0, then of lane 1 */             \
            FR_LANES(q) FR_UNROLL8 for (int e = 0; e < 4; e++)                                     \
                v[4 * q + e] = g[q][e * H + j] + bq[q][e * H + j];                                 \
            ACT(8, 0x44u, v);                                                                      \
            FR_LANES(q) FR_UNROLL8 for (int e = 0; e < 4; e++)                                     \
                g[q][e * H + j] = v[4 * q + e];                                                    \
        }                                                                                          \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real cn[2], tc[2];                                                                     \
            FR_LANES(q) tc[q] = cn[q] = g[q][H + j] * cp[q][j] + g[q][j] * g[q][2 * H + j];        \
            ACT(2, 0x3u, tc);                                                                      \
            FR_LANES(q) tc[q] = g[q][3 * H + j] * tc[q];                                           \
            FR_LANES(q) cq[q][j] = cn[q], hq[q][j] = tc[q];                                        \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_FWD(SFX, real, ACT)                                                            \
FR_MULTI_ISA(fr_gru_fwd_##SFX,                                                                     \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT bias_x, const real *FR_RESTRICT hg, const real *FR_RESTRICT b_hn,      \
    const real *FR_RESTRICT h_prev, ptrdiff_t ldhp, real *FR_RESTRICT h, ptrdiff_t ldh,            \
    real *FR_RESTRICT hn),                                                                         \
    (B, H, j0, j1, gates, bias_x, hg, b_hn, h_prev, ldhp, h, ldh, hn),                             \
{                                                                                                  \
    fr_prefetch_h(0, B, j0, j1, sizeof(real), h, ldh);                                             \
    for (ptrdiff_t k = 0; k < fr_npairs(B, j1 - j0); k++) {                                        \
        fr_pair p = fr_pair_at(k, B, j0, j1);                                                      \
        fr_prefetch_h(k + 1, B, j0, j1, sizeof(real), h, ldh);                                     \
        real *g[2], *hq[2], *hnq[2];                                                               \
        const real *bx[2], *hgq[2], *bn[2], *hp[2];                                                \
        FR_LANES(q) {                                                                              \
            g[q] = FR_AT(p, q, gates, 3 * H), hgq[q] = FR_AT(p, q, hg, 3 * H);                     \
            bx[q] = FR_AT(p, q, bias_x, 0), bn[q] = FR_AT(p, q, b_hn, 0);                          \
            hp[q] = FR_AT(p, q, h_prev, ldhp), hq[q] = FR_AT(p, q, h, ldh);                        \
            hnq[q] = FR_AT(p, q, hn, H);                                                           \
        }                                                                                          \
        /* two loops, as in fr_lstm_fwd: r, z first, then n (which depends on r) */                \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real v[4], hv[2];               /* r, z of lane 0, then of lane 1 */                   \
            FR_LANES(q) FR_UNROLL8 for (int e = 0; e < 2; e++)                                     \
                v[2 * q + e] = g[q][e * H + j] + bx[q][e * H + j] + hgq[q][e * H + j];             \
            FR_LANES(q) hv[q] = hgq[q][2 * H + j] + bn[q][j];                                      \
            ACT(4, 0x0u, v);                                                                       \
            FR_LANES(q) g[q][j] = v[2 * q], g[q][H + j] = v[2 * q + 1], hnq[q][j] = hv[q];         \
        }                                                                                          \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real n[2], hv[2];                                                                      \
            FR_LANES(q) n[q] = g[q][2 * H + j] + bx[q][2 * H + j] + g[q][j] * hnq[q][j];           \
            ACT(2, 0x3u, n);                                                                       \
            FR_LANES(q) hv[q] = n[q] + g[q][H + j] * (hp[q][j] - n[q]);                            \
            FR_LANES(q) g[q][2 * H + j] = n[q], hq[q][j] = hv[q];                                  \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_RZ(SFX, real, ACT)                                                             \
FR_MULTI_ISA(fr_gru_rz_##SFX,                                                                      \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT bias_x, const real *FR_RESTRICT h_prev, ptrdiff_t ldhp,                \
    real *FR_RESTRICT rh),                                                                         \
    (B, H, j0, j1, gates, bias_x, h_prev, ldhp, rh),                                               \
{                                                                                                  \
    for (ptrdiff_t k = 0; k < fr_npairs(B, j1 - j0); k++) {                                        \
        fr_pair p = fr_pair_at(k, B, j0, j1);                                                      \
        real *g[2], *rq[2];                                                                        \
        const real *bx[2], *hp[2];                                                                 \
        FR_LANES(q) {                                                                              \
            g[q] = FR_AT(p, q, gates, 3 * H), bx[q] = FR_AT(p, q, bias_x, 0);                      \
            hp[q] = FR_AT(p, q, h_prev, ldhp), rq[q] = FR_AT(p, q, rh, H);                         \
        }                                                                                          \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real v[4], rv[2];               /* r, z of lane 0, then of lane 1 */                   \
            FR_LANES(q) FR_UNROLL8 for (int e = 0; e < 2; e++)                                     \
                v[2 * q + e] = g[q][e * H + j] + bx[q][e * H + j];                                 \
            ACT(4, 0x0u, v);                                                                       \
            FR_LANES(q) rv[q] = v[2 * q] * hp[q][j];                                               \
            FR_LANES(q) g[q][j] = v[2 * q], g[q][H + j] = v[2 * q + 1], rq[q][j] = rv[q];          \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_N(SFX, real, ACT)                                                              \
FR_MULTI_ISA(fr_gru_n_##SFX,                                                                       \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT bias_x, const real *FR_RESTRICT h_prev, ptrdiff_t ldhp,                \
    real *FR_RESTRICT h, ptrdiff_t ldh),                                                           \
    (B, H, j0, j1, gates, bias_x, h_prev, ldhp, h, ldh),                                           \
{                                                                                                  \
    fr_prefetch_h(0, B, j0, j1, sizeof(real), h, ldh);                                             \
    for (ptrdiff_t k = 0; k < fr_npairs(B, j1 - j0); k++) {                                        \
        fr_pair p = fr_pair_at(k, B, j0, j1);                                                      \
        fr_prefetch_h(k + 1, B, j0, j1, sizeof(real), h, ldh);                                     \
        real *g[2], *hq[2];                                                                        \
        const real *bx[2], *hp[2];                                                                 \
        FR_LANES(q) {                                                                              \
            g[q] = FR_AT(p, q, gates, 3 * H), bx[q] = FR_AT(p, q, bias_x, 0);                      \
            hp[q] = FR_AT(p, q, h_prev, ldhp), hq[q] = FR_AT(p, q, h, ldh);                        \
        }                                                                                          \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real n[2], hv[2];                                                                      \
            FR_LANES(q) n[q] = g[q][2 * H + j] + bx[q][2 * H + j];                                 \
            ACT(2, 0x3u, n);                                                                       \
            FR_LANES(q) hv[q] = n[q] + g[q][H + j] * (hp[q][j] - n[q]);                            \
            FR_LANES(q) g[q][2 * H + j] = n[q], hq[q][j] = hv[q];                                  \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_LSTM_BWD(SFX, real, ACT)                                                           \
FR_MULTI_ISA(fr_lstm_bwd_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT c, const real *FR_RESTRICT c_prev, const real *FR_RESTRICT dh,         \
    real *FR_RESTRICT dc, real *FR_RESTRICT r),                                                    \
    (B, H, j0, j1, gates, c, c_prev, dh, dc, r),                                                   \
{                                                                                                  \
    for (ptrdiff_t k = 0; k < fr_npairs(B, j1 - j0); k++) {                                        \
        fr_pair p = fr_pair_at(k, B, j0, j1);                                                      \
        real *g[2], *dcq[2], *rq[2];                                                               \
        const real *cq[2], *cp[2], *dhq[2];                                                        \
        FR_LANES(q) {                                                                              \
            g[q] = FR_AT(p, q, gates, 4 * H), cq[q] = FR_AT(p, q, c, H);                           \
            cp[q] = FR_AT(p, q, c_prev, H), dhq[q] = FR_AT(p, q, dh, H);                           \
            dcq[q] = FR_AT(p, q, dc, H), rq[q] = FR_AT(p, q, r, H);                                \
        }                                                                                          \
        FR_IVDEP for (ptrdiff_t j = 0; j < p.n; j++) {                                             \
            real i[2], f[2], gv[2], o[2], tc[2], dcv[2], di[2], df[2], dg[2], dov[2], dcp[2];      \
            FR_LANES(q) {                                                                          \
                i[q] = g[q][j], f[q] = g[q][H + j], gv[q] = g[q][2 * H + j];                       \
                o[q] = g[q][3 * H + j], tc[q] = cq[q][j];                                          \
            }                                                                                      \
            ACT(2, 0x3u, tc);                                                                      \
            FR_LANES(q) {                                                                          \
                dcv[q] = dcq[q][j] + dhq[q][j] * o[q] * (1 - tc[q] * tc[q]);                       \
                di[q] = dcv[q] * gv[q] * i[q] * (1 - i[q]);                                        \
                df[q] = dcv[q] * cp[q][j] * f[q] * (1 - f[q]);                                     \
                dg[q] = dcv[q] * i[q] * (1 - gv[q] * gv[q]);                                       \
                dov[q] = dhq[q][j] * tc[q] * o[q] * (1 - o[q]);                                    \
                dcp[q] = dcv[q] * f[q];                                                            \
            }                                                                                      \
            FR_LANES(q) {                                                                          \
                g[q][j] = di[q], g[q][H + j] = df[q], g[q][2 * H + j] = dg[q];                     \
                g[q][3 * H + j] = dov[q], dcq[q][j] = dcp[q], rq[q][j] = o[q] * tc[q];             \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_BWD(SFX, real, ACT)                                                            \
FR_MULTI_ISA(fr_gru_bwd_##SFX,                                                                     \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    real *FR_RESTRICT hn, const real *FR_RESTRICT h_prev, ptrdiff_t ldhp, real *FR_RESTRICT dh,    \
    real *FR_RESTRICT dgh),                                                                        \
    (B, H, j0, j1, gates, hn, h_prev, ldhp, dh, dgh),                                              \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gr = gates + b * 3 * H;                                                  \
        real *FR_RESTRICT hnb = hn + b * H;                                                        \
        const real *FR_RESTRICT hp = h_prev + b * ldhp;                                            \
        real *FR_RESTRICT dhb = dh + b * H;                                                        \
        real *FR_RESTRICT dg = dgh + b * 3 * H;                                                    \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real r = gr[j], z = gr[H + j], n = gr[2 * H + j], d = dhb[j];                          \
            real dn = d * (1 - z) * (1 - n * n);                                                   \
            real dz = d * (hp[j] - n) * z * (1 - z);                                               \
            real dr = dn * hnb[j] * r * (1 - r);                                                   \
            real dhn = dn * r;                                                                     \
            gr[j] = dr; gr[H + j] = dz; gr[2 * H + j] = dn;                                        \
            dg[j] = dr; dg[H + j] = dz; dg[2 * H + j] = dhn;                                       \
            hnb[j] = dhn;                                                                          \
            dhb[j] = d * z;                                                                        \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_BWD1(SFX, real, ACT)                                                           \
FR_MULTI_ISA(fr_gru_bwd1_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT h_prev, ptrdiff_t ldhp, real *FR_RESTRICT dh),                         \
    (B, H, j0, j1, gates, h_prev, ldhp, dh),                                                       \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gr = gates + b * 3 * H;                                                  \
        const real *FR_RESTRICT hp = h_prev + b * ldhp;                                            \
        real *FR_RESTRICT dhb = dh + b * H;                                                        \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real z = gr[H + j], n = gr[2 * H + j], d = dhb[j];                                     \
            gr[H + j] = d * (hp[j] - n) * z * (1 - z);                                             \
            gr[2 * H + j] = d * (1 - z) * (1 - n * n);                                             \
            dhb[j] = d * z;                                                                        \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_BWD2(SFX, real, ACT)                                                           \
FR_MULTI_ISA(fr_gru_bwd2_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT h_prev, ptrdiff_t ldhp, const real *FR_RESTRICT drh,                   \
    real *FR_RESTRICT dh, real *FR_RESTRICT rh),                                                   \
    (B, H, j0, j1, gates, h_prev, ldhp, drh, dh, rh),                                              \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gr = gates + b * 3 * H;                                                  \
        const real *FR_RESTRICT hp = h_prev + b * ldhp;                                            \
        const real *FR_RESTRICT drb = drh + b * H;                                                 \
        real *FR_RESTRICT dhb = dh + b * H;                                                        \
        real *FR_RESTRICT rhb = rh + b * H;                                                        \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real r = gr[j];                                                                        \
            gr[j] = drb[j] * hp[j] * r * (1 - r);                                                  \
            dhb[j] += drb[j] * r;                                                                  \
            rhb[j] = r * hp[j];                                                                    \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_ACTIVATIONS(SFX, real, ACT)                                                        \
FR_MULTI_ISA(fr_activations_##SFX,                                                                 \
    (ptrdiff_t n, const real *FR_RESTRICT x, real *FR_RESTRICT sig, real *FR_RESTRICT th),         \
    (n, x, sig, th),                                                                               \
{                                                                                                  \
    for (ptrdiff_t j = 0; j < n; j++) {                                                            \
        real v[2] = {x[j], x[j]};                                                                  \
        ACT(2, 0x2u, v);                                                                           \
        sig[j] = v[0], th[j] = v[1];                                                               \
    }                                                                                              \
})

#define FR_PASS_ADD_ROWS(SFX, real, ACT)                                                           \
FR_MULTI_ISA(fr_add_rows_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t n, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT dst,                  \
    const real *FR_RESTRICT src, ptrdiff_t lds),                                                   \
    (B, n, j0, j1, dst, src, lds),                                                                 \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++)                                                              \
        for (ptrdiff_t j = j0; j < j1; j++)                                                        \
            dst[b * n + j] += src[b * lds + j];                                                    \
})

#define FR_DEFINE_PASSES(SFX, real, ACT)                                                           \
    FR_PASS_LSTM_FWD(SFX, real, ACT)                                                               \
    FR_PASS_GRU_FWD(SFX, real, ACT)                                                                \
    FR_PASS_GRU_RZ(SFX, real, ACT)                                                                 \
    FR_PASS_GRU_N(SFX, real, ACT)                                                                  \
    FR_PASS_LSTM_BWD(SFX, real, ACT)                                                               \
    FR_PASS_GRU_BWD(SFX, real, ACT)                                                                \
    FR_PASS_GRU_BWD1(SFX, real, ACT)                                                               \
    FR_PASS_GRU_BWD2(SFX, real, ACT)                                                               \
    FR_PASS_ACTIVATIONS(SFX, real, ACT)                                                            \
    FR_PASS_ADD_ROWS(SFX, real, ACT)


FR_DEFINE_PASSES(f32, float, fr_act_f32)
FR_DEFINE_PASSES(f64, double, fr_act_f64)

#endif /* FUSEDRNN_RNN_MATH_H */
