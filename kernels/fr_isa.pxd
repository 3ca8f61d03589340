# The one ISA switch of every SIMD path (kernels/fr_isa.h).
cdef extern from "fr_isa.h" nogil:
    int FR_ISA_SCALAR
    int FR_ISA_AVX2
    int FR_ISA_AVX512
    int fr_isa()
    int fr_set_isa(int isa)
    const char *fr_isa_name(int isa)
    void fr_read_or(const unsigned int *p, Py_ssize_t n, Py_ssize_t passes, unsigned int *out)
