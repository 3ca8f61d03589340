/* The one ISA switch of every SIMD path (packed_gemm.h, rnn_math.h).
 *
 * Each SIMD function exists in up to three copies compiled for different instruction sets
 * (FR_TARGET_AVX512, FR_TARGET_AVX2 function attributes, and the baseline; no -march flag is
 * needed) and calls the copy fr_isa() names:
 *
 *     FR_ISA_AVX512  needs avx512f, avx512vl, avx512bw, avx512dq (and avx2, fma)
 *     FR_ISA_AVX2    needs avx2 and fma
 *     FR_ISA_SCALAR  plain C, vectorised by the compiler for the baseline ISA
 *
 * The choice is made once, at first use: the best ISA the CPU has (__builtin_cpu_supports), or
 * the one named by the environment variable FUSEDRNN_ISA = avx512 | avx2 | scalar | auto (any
 * other value means auto); an ISA the CPU lacks is clamped down to the best one it has.
 * fr_set_isa(isa) forces one (0: back to the CPU and FUSEDRNN_ISA) and returns the one now in use;
 * it is for tests and benchmarks and must not race with running kernels.  The state is one static
 * int per compiled module (atomic, relaxed: every thread computes the same value).
 * Non-x86-64 or non-GNU compilers, or -DFUSEDRNN_NO_DISPATCH: scalar only.
 */
#ifndef FUSEDRNN_FR_ISA_H
#define FUSEDRNN_FR_ISA_H

#include <stddef.h>
#include <stdlib.h>

#define FR_ISA_SCALAR 1
#define FR_ISA_AVX2 2
#define FR_ISA_AVX512 3

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FUSEDRNN_NO_DISPATCH)
#define FR_X86 1
#define FR_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define FR_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define FR_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FR_ISA_API static __attribute__((unused))
#define FR_ISA_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define FR_ISA_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define FR_ISA_API static
#define FR_ISA_LOAD(p) (*(p))
#define FR_ISA_STORE(p, v) (*(p) = (v))
#endif

static int fr_isa_state = 0; /* 0: not decided yet */

/* the best ISA of this CPU */
static int fr_isa_cpu(void)
{
#if FR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FR_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FR_ISA_AVX2;
#endif
    return FR_ISA_SCALAR;
}

/* FUSEDRNN_ISA as an ISA code, 0 when unset or auto */
static int fr_isa_env(void)
{
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    const char *s = getenv("FUSEDRNN_ISA");
    for (int isa = FR_ISA_SCALAR; s != NULL && isa <= FR_ISA_AVX512; isa++) {
        const char *a = s, *b = names[isa - 1];
        while (*b != '\0' && (*a | 0x20) == *b) /* ASCII case-insensitive */
            a++, b++;
        if (*a == '\0' && *b == '\0')
            return isa;
    }
    return 0;
}

FR_ISA_API const char *fr_isa_name(int isa)
{
    switch (isa) {
    case FR_ISA_SCALAR: return "scalar";
    case FR_ISA_AVX2: return "avx2";
    case FR_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

FR_ISA_API int fr_set_isa(int isa)
{
    int best = fr_isa_cpu();
    if (isa == 0)
        isa = fr_isa_env();
    if (isa < FR_ISA_SCALAR || isa > best) /* auto, unknown, or missing on this CPU */
        isa = best;
    FR_ISA_STORE(&fr_isa_state, isa);
    return isa;
}

FR_ISA_API int fr_isa(void)
{
    int isa = FR_ISA_LOAD(&fr_isa_state);
    return isa != 0 ? isa : fr_set_isa(0);
}

/* FR_MULTI_ISA(NAME, (params), (args), { body }) defines `void NAME(params)`, which runs `body`
 * compiled for the ISA fr_isa() names (one copy per ISA: NAME##_avx512, _avx2, _scalar).
 * For loops the compiler vectorises: each copy gets the full vector width of its ISA. */
#if FR_X86
#define FR_MULTI_ISA(NAME, PARAMS, ARGS, ...)                                                     \
    FR_TARGET_AVX512 static void NAME##_avx512 PARAMS __VA_ARGS__                                  \
    FR_TARGET_AVX2 static void NAME##_avx2 PARAMS __VA_ARGS__                                      \
    static void NAME##_scalar PARAMS __VA_ARGS__                                                   \
    FR_ISA_API void NAME PARAMS                                                                    \
    {                                                                                              \
        switch (fr_isa()) {                                                                        \
        case FR_ISA_AVX512: NAME##_avx512 ARGS; break;                                             \
        case FR_ISA_AVX2: NAME##_avx2 ARGS; break;                                                 \
        default: NAME##_scalar ARGS; break;                                                        \
        }                                                                                          \
    }
#else
#define FR_MULTI_ISA(NAME, PARAMS, ARGS, ...) FR_ISA_API void NAME PARAMS __VA_ARGS__
#endif

/* The bench's plain streaming read (fusedrnn.bench.timing.measure_read_bandwidth): *out = the
 * OR of the n words at p, read `passes` times over; 64 accumulators, so that the compiler keeps
 * several vectors of loads in flight on every ISA. */
FR_MULTI_ISA(fr_read_or, (const unsigned int *p, ptrdiff_t n, ptrdiff_t passes,
                          unsigned int *out), (p, n, passes, out),
{
    unsigned int a[64] = {0}, acc = 0;
    for (ptrdiff_t r = 0; r < passes; r++)
        for (ptrdiff_t i = 0; i + 64 <= n; i += 64)
            for (int j = 0; j < 64; j++)
                a[j] |= p[i + j];
    for (ptrdiff_t i = n / 64 * 64; i < n; i++)
        acc |= p[i];
    for (int j = 0; j < 64; j++)
        acc |= a[j];
    *out = acc;
})

#endif /* FUSEDRNN_FR_ISA_H */
