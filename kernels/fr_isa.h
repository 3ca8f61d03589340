/* TEMPORARY stub until the ISA switch lands (simd branch). */
#ifndef FUSEDRNN_FR_ISA_H
#define FUSEDRNN_FR_ISA_H
#include "packed_gemm.h"
static int fr_isa(void) { return fr_packed_isa(); }
static int fr_set_isa(int isa) { return fr_packed_force_isa(isa); }
static const char *fr_isa_name(int isa)
{
    return isa == 3 ? "avx512" : isa == 2 ? "avx2" : "scalar";
}
#endif
