/* The OpenMP threads of the kernels' time loops (no-ops in a build without OpenMP).
 *
 * A time loop runs in one parallel region; every thread runs the same sequence of phases (the
 * input projection, then per step: the recurrent product, the gate pass, ...), each on its own
 * chunk, and fr_barrier() ends a phase.  The barrier is an orphaned `omp barrier`: it binds to
 * the enclosing parallel region, so the phase functions need not be in the same function as it.
 */
#ifndef FUSEDRNN_FR_THREADS_H
#define FUSEDRNN_FR_THREADS_H

#include <stddef.h>
#if defined(_MSC_VER)
#include <intrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
static inline int fr_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int fr_thread_num(void) { return omp_get_thread_num(); }
static inline int fr_num_threads(void) { return omp_get_num_threads(); }
static inline void fr_barrier(void)
{
#pragma omp barrier
}
#else
static inline int fr_omp_max_threads(void) { return 1; }
static inline int fr_thread_num(void) { return 0; }
static inline int fr_num_threads(void) { return 1; }
static inline void fr_barrier(void) {}
#endif

/* *p += 1, returning the old value, atomically (the threads' claims of a step's chunks: every
 * thread of the team may add to any counter; relaxed order: the barriers order the data) */
static inline ptrdiff_t fr_fetch_inc(ptrdiff_t *p)
{
#if defined(_MSC_VER) && defined(_WIN64)
    return (ptrdiff_t)_InterlockedExchangeAdd64((volatile __int64 *)p, 1);
#elif defined(_MSC_VER)
    return (ptrdiff_t)_InterlockedExchangeAdd((volatile long *)p, 1);
#else
    return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
#endif
}

#endif /* FUSEDRNN_FR_THREADS_H */
