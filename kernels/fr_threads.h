/* The OpenMP threads of the kernels' time loops (no-ops in a build without OpenMP).
 *
 * A time loop runs in one parallel region; every thread runs the same sequence of phases (the
 * input projection, then per step: the recurrent product, the gate pass, ...), each on its own
 * chunk, and fr_barrier() ends a phase.  The barrier is an orphaned `omp barrier`: it binds to
 * the enclosing parallel region, so the phase functions need not be in the same function as it.
 */
#ifndef FUSEDRNN_FR_THREADS_H
#define FUSEDRNN_FR_THREADS_H

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

#endif /* FUSEDRNN_FR_THREADS_H */
