/* Lane-wise max of float vectors as x86's maxps computes it: a > b ? a : b, so b wherever
   either lane is NaN (and b on ties: +0 and -0 give b). One instruction where the compiler
   has the x86 intrinsics, each inlined into a function compiled for its level (the caller's
   target must include the one named here); elsewhere a compare and a select, which on x86
   would take two operations and a mask register where the one maxps is enough. Shared by
   ops_math.pyx (softmax's row maxima) and pool_rows.h (max pools). */
#ifndef WALLE_VEC_MAX_H
#define WALLE_VEC_MAX_H

#include "cpu_level.h"

typedef float walle_xv16 __attribute__((vector_size(64)));
typedef int walle_xi16 __attribute__((vector_size(64)));
typedef float walle_xv8 __attribute__((vector_size(32)));
typedef int walle_xi8 __attribute__((vector_size(32)));
typedef float walle_xv4 __attribute__((vector_size(16)));
typedef int walle_xi4 __attribute__((vector_size(16)));

#define WALLE_VMAX_INLINE static inline __attribute__((always_inline))

#ifdef WALLE_X86 /* as the levels' target attributes */
#include <immintrin.h>
__attribute__((target("avx512f,avx2,fma"))) WALLE_VMAX_INLINE walle_xv16
walle_vmax16(walle_xv16 a, walle_xv16 b) {
    return (walle_xv16)_mm512_max_ps((__m512)a, (__m512)b);
}
__attribute__((target("avx2,fma"))) WALLE_VMAX_INLINE walle_xv8
walle_vmax8(walle_xv8 a, walle_xv8 b) {
    return (walle_xv8)_mm256_max_ps((__m256)a, (__m256)b);
}
WALLE_VMAX_INLINE walle_xv4 walle_vmax4(walle_xv4 a, walle_xv4 b) {
    return (walle_xv4)_mm_max_ps((__m128)a, (__m128)b);
}
#else
#define WALLE_VMAX_SELECT(NAME, VT, IT)                                                        \
    WALLE_VMAX_INLINE VT NAME(VT a, VT b) {                                                    \
        IT m = (IT)(a > b);                                                                    \
        return (VT)(((IT)a & m) | ((IT)b & ~m));                                               \
    }
WALLE_VMAX_SELECT(walle_vmax16, walle_xv16, walle_xi16)
WALLE_VMAX_SELECT(walle_vmax8, walle_xv8, walle_xi8)
WALLE_VMAX_SELECT(walle_vmax4, walle_xv4, walle_xi4)
#endif

#endif
