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
 * Cost of fr_lstm_fwd (Zen 4, B = 16, H = 128, 5 activations per unit): float32 1.9 ns per
 * hidden unit on AVX-512, 2.6 on AVX2, 7.5 scalar; float64 5.2-5.7 / 7.7 / 21.5 (with literal
 * clamp bounds, see fr_expf_lo: float32 2.1 / 3.3 / 10.3, float64 6.0 / 9.0 / 26.8).
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

/* The bounds of the activations' clamps, as values the compiler cannot see (never written;
 * weak: a definition elsewhere could replace them, so gcc does not fold them, nor does it when
 * they are not const; hidden: no other library can).  With literal bounds gcc carries each
 * activation through both out-of-range branches, folds those to constants and vectorises every
 * clamp as 4 compares, 3 mask operations and 2 blends; with these a clamp is one vmaxps /
 * vminps, with the same results to the bit.  Measured, fr_lstm_fwd float32 B16 H256 on Zen 4
 * (ns per hidden unit): AVX2 3.29 -> 2.63, AVX-512 2.15 -> 1.89, scalar 9.9 -> 8.2. */
FR_OPAQUE float fr_expf_lo = -87.3f, fr_expf_hi = 88.3f, fr_tanhf_lim = 10.0f;
FR_OPAQUE double fr_exp_lo = -708.0, fr_exp_hi = 709.0;


/* ---------------------------------------------------------------- activations, float32
 * exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2/2.  fr_expf_parts gives 2^n and
 * em1 = exp(r) - 1 = r + r^2 P(r) (Cephes' degree-5 P), from which both exp = 2^n em1 + 2^n and
 * expm1 = 2^n em1 + (2^n - 1) are one FMA (no cancellation: 2^n - 1 >= 2^n / 2 when n >= 1).
 * The argument is clamped to [-87.3, 88.3], so no overflow for any input; NaN propagates
 * (its integer n is garbage, the shift is done unsigned so that it is defined). */
FR_INLINE float fr_expf_parts(float x, float *scale)
{
    x = x < fr_expf_lo ? fr_expf_lo : x;
    x = x > fr_expf_hi ? fr_expf_hi : x;
    /* round x log2(e) to the nearest integer n with the 1.5 * 2^23 trick (branch-free) */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float nf = t - 12582912.0f;
    unsigned int n;
    memcpy(&n, &t, sizeof n);
    unsigned int bits = (n - 0x4B400000u + 127u) << 23;   /* 2^n; n + 127 in [1, 254] */
    memcpy(scale, &bits, sizeof bits);
    float r = x - nf * 0.693359375f;
    r = r + nf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * (r * r) + r;
}

FR_INLINE float fr_expf(float x)
{
    float scale, em1 = fr_expf_parts(x, &scale);
    return em1 * scale + scale;
}

FR_INLINE float fr_sigmoidf(float x) { return 1.0f / (1.0f + fr_expf(-x)); }

/* tanh |x| = e / (e + 2) with e = expm1(2 |x|): one exp, one division, no cancellation, no
 * separate small-|x| branch.  2 |x| is clamped to 20 (tanh(10) rounds to 1). */
FR_INLINE float fr_tanhf(float x)
{
    float ax = fabsf(x);
    float y = 2.0f * (ax > fr_tanhf_lim ? fr_tanhf_lim : ax);
    float scale, em1 = fr_expf_parts(y, &scale);
    float e = em1 * scale + (scale - 1.0f);
    return copysignf(e / (e + 2.0f), x);
}

/* ---------------------------------------------------------------- activations, float64
 * The same split as float32: fr_exp_parts gives 2^n and em1 = exp(r) - 1 = 2 r P / (Q - r P)
 * (Cephes' rational approximation), x clamped to [-708, 709]. */
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

/* ---------------------------------------------------------------- the fused passes
 * FR_DEFINE_PASSES(suffix, real, SIGMOID, TANH) defines, for one floating type, the passes below
 * (one FR_PASS_* macro each; the forward passes work on the hidden units j0 <= j < j1 of every
 * row, so that threads can share a step):
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
 */
#define FR_PASS_LSTM_FWD(SFX, real, SIGMOID, TANH)                                                 \
FR_MULTI_ISA(fr_lstm_fwd_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates, ptrdiff_t ldg, \
    const real *FR_RESTRICT bias, const real *FR_RESTRICT c_prev, real *FR_RESTRICT c,             \
    real *FR_RESTRICT h, ptrdiff_t ldh),                                                           \
    (B, H, j0, j1, gates, ldg, bias, c_prev, c, h, ldh),                                           \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gi = gates + b * ldg;                                                    \
        const real *FR_RESTRICT cp = c_prev + b * H;                                               \
        real *FR_RESTRICT cb = c + b * H;                                                          \
        real *FR_RESTRICT hb = h + b * ldh;                                                        \
        /* two loops: the four gate activations are independent of each other, tanh(c_t)      \
         * depends on all of them; one fused loop was bound by that chain's latency */            \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            gi[j] = SIGMOID(gi[j] + bias[j]);                                                      \
            gi[H + j] = SIGMOID(gi[H + j] + bias[H + j]);                                          \
            gi[2 * H + j] = TANH(gi[2 * H + j] + bias[2 * H + j]);                                 \
            gi[3 * H + j] = SIGMOID(gi[3 * H + j] + bias[3 * H + j]);                              \
        }                                                                                          \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real cn = gi[H + j] * cp[j] + gi[j] * gi[2 * H + j];                                   \
            cb[j] = cn;                                                                            \
            hb[j] = gi[3 * H + j] * TANH(cn);                                                      \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_FWD(SFX, real, SIGMOID, TANH)                                                  \
FR_MULTI_ISA(fr_gru_fwd_##SFX,                                                                     \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT bias_x, const real *FR_RESTRICT hg, const real *FR_RESTRICT b_hn,      \
    const real *FR_RESTRICT h_prev, ptrdiff_t ldhp, real *FR_RESTRICT h, ptrdiff_t ldh,            \
    real *FR_RESTRICT hn),                                                                         \
    (B, H, j0, j1, gates, bias_x, hg, b_hn, h_prev, ldhp, h, ldh, hn),                             \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gr = gates + b * 3 * H;                                                  \
        const real *FR_RESTRICT hgb = hg + b * 3 * H;                                              \
        const real *FR_RESTRICT hp = h_prev + b * ldhp;                                            \
        real *FR_RESTRICT hb = h + b * ldh;                                                        \
        real *FR_RESTRICT hnb = hn + b * H;                                                        \
        /* two loops, as in fr_lstm_fwd: r, z first, then n (which depends on r) */             \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            gr[j] = SIGMOID(gr[j] + bias_x[j] + hgb[j]);                                           \
            gr[H + j] = SIGMOID(gr[H + j] + bias_x[H + j] + hgb[H + j]);                           \
            hnb[j] = hgb[2 * H + j] + b_hn[j];                                                     \
        }                                                                                          \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real n = TANH(gr[2 * H + j] + bias_x[2 * H + j] + gr[j] * hnb[j]);                     \
            gr[2 * H + j] = n;                                                                     \
            hb[j] = n + gr[H + j] * (hp[j] - n);                                                   \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_RZ(SFX, real, SIGMOID, TANH)                                                   \
FR_MULTI_ISA(fr_gru_rz_##SFX,                                                                      \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT bias_x, const real *FR_RESTRICT h_prev, ptrdiff_t ldhp,                \
    real *FR_RESTRICT rh),                                                                         \
    (B, H, j0, j1, gates, bias_x, h_prev, ldhp, rh),                                               \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gr = gates + b * 3 * H;                                                  \
        const real *FR_RESTRICT hp = h_prev + b * ldhp;                                            \
        real *FR_RESTRICT rhb = rh + b * H;                                                        \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real r = SIGMOID(gr[j] + bias_x[j]);                                                   \
            gr[j] = r;                                                                             \
            gr[H + j] = SIGMOID(gr[H + j] + bias_x[H + j]);                                        \
            rhb[j] = r * hp[j];                                                                    \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_N(SFX, real, SIGMOID, TANH)                                                    \
FR_MULTI_ISA(fr_gru_n_##SFX,                                                                       \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT bias_x, const real *FR_RESTRICT h_prev, ptrdiff_t ldhp,                \
    real *FR_RESTRICT h, ptrdiff_t ldh),                                                           \
    (B, H, j0, j1, gates, bias_x, h_prev, ldhp, h, ldh),                                           \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gr = gates + b * 3 * H;                                                  \
        const real *FR_RESTRICT hp = h_prev + b * ldhp;                                            \
        real *FR_RESTRICT hb = h + b * ldh;                                                        \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real z = gr[H + j];                                                                    \
            real n = TANH(gr[2 * H + j] + bias_x[2 * H + j]);                                      \
            gr[2 * H + j] = n;                                                                     \
            hb[j] = n + z * (hp[j] - n);                                                           \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_LSTM_BWD(SFX, real, SIGMOID, TANH)                                                 \
FR_MULTI_ISA(fr_lstm_bwd_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT gates,                \
    const real *FR_RESTRICT c, const real *FR_RESTRICT c_prev, const real *FR_RESTRICT dh,         \
    real *FR_RESTRICT dc, real *FR_RESTRICT r),                                                    \
    (B, H, j0, j1, gates, c, c_prev, dh, dc, r),                                                   \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++) {                                                            \
        real *FR_RESTRICT gi = gates + b * 4 * H;                                                  \
        const real *FR_RESTRICT cb = c + b * H;                                                    \
        const real *FR_RESTRICT cp = c_prev + b * H;                                               \
        const real *FR_RESTRICT dhb = dh + b * H;                                                  \
        real *FR_RESTRICT dcb = dc + b * H;                                                        \
        real *FR_RESTRICT rb = r + b * H;                                                          \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                      \
            real i = gi[j], f = gi[H + j], g = gi[2 * H + j], o = gi[3 * H + j];                   \
            real tc = TANH(cb[j]);                                                                 \
            real dcv = dcb[j] + dhb[j] * o * (1 - tc * tc);                                        \
            real d_o = dhb[j] * tc;                                                                \
            gi[j] = dcv * g * i * (1 - i);                                                         \
            gi[H + j] = dcv * cp[j] * f * (1 - f);                                                 \
            gi[2 * H + j] = dcv * i * (1 - g * g);                                                 \
            gi[3 * H + j] = d_o * o * (1 - o);                                                     \
            dcb[j] = dcv * f;                                                                      \
            rb[j] = o * tc;                                                                        \
        }                                                                                          \
    }                                                                                              \
})

#define FR_PASS_GRU_BWD(SFX, real, SIGMOID, TANH)                                                  \
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

#define FR_PASS_GRU_BWD1(SFX, real, SIGMOID, TANH)                                                 \
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

#define FR_PASS_GRU_BWD2(SFX, real, SIGMOID, TANH)                                                 \
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

#define FR_PASS_ACTIVATIONS(SFX, real, SIGMOID, TANH)                                              \
FR_MULTI_ISA(fr_activations_##SFX,                                                                 \
    (ptrdiff_t n, const real *FR_RESTRICT x, real *FR_RESTRICT sig, real *FR_RESTRICT th),         \
    (n, x, sig, th),                                                                               \
{                                                                                                  \
    for (ptrdiff_t j = 0; j < n; j++) {                                                            \
        sig[j] = SIGMOID(x[j]);                                                                    \
        th[j] = TANH(x[j]);                                                                        \
    }                                                                                              \
})

#define FR_PASS_ADD_ROWS(SFX, real, SIGMOID, TANH)                                                 \
FR_MULTI_ISA(fr_add_rows_##SFX,                                                                    \
    (ptrdiff_t B, ptrdiff_t n, ptrdiff_t j0, ptrdiff_t j1, real *FR_RESTRICT dst,                  \
    const real *FR_RESTRICT src, ptrdiff_t lds),                                                   \
    (B, n, j0, j1, dst, src, lds),                                                                 \
{                                                                                                  \
    for (ptrdiff_t b = 0; b < B; b++)                                                              \
        for (ptrdiff_t j = j0; j < j1; j++)                                                        \
            dst[b * n + j] += src[b * lds + j];                                                    \
})

#define FR_DEFINE_PASSES(SFX, real, SIGMOID, TANH)                                                 \
    FR_PASS_LSTM_FWD(SFX, real, SIGMOID, TANH)                                                     \
    FR_PASS_GRU_FWD(SFX, real, SIGMOID, TANH)                                                      \
    FR_PASS_GRU_RZ(SFX, real, SIGMOID, TANH)                                                       \
    FR_PASS_GRU_N(SFX, real, SIGMOID, TANH)                                                        \
    FR_PASS_LSTM_BWD(SFX, real, SIGMOID, TANH)                                                     \
    FR_PASS_GRU_BWD(SFX, real, SIGMOID, TANH)                                                      \
    FR_PASS_GRU_BWD1(SFX, real, SIGMOID, TANH)                                                     \
    FR_PASS_GRU_BWD2(SFX, real, SIGMOID, TANH)                                                     \
    FR_PASS_ACTIVATIONS(SFX, real, SIGMOID, TANH)                                                  \
    FR_PASS_ADD_ROWS(SFX, real, SIGMOID, TANH)


FR_DEFINE_PASSES(f32, float, fr_sigmoidf, fr_tanhf)
FR_DEFINE_PASSES(f64, double, fr_sigmoid, fr_tanh)

#endif /* FUSEDRNN_RNN_MATH_H */
