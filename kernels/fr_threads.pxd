# The OpenMP threads of the time loops (kernels/fr_threads.h).
cdef extern from "fr_threads.h" nogil:
    int fr_omp_max_threads()
    int fr_thread_num()
    int fr_num_threads()
    void fr_barrier()
    Py_ssize_t fr_fetch_inc(Py_ssize_t *p)
