/* How many threads a kernel may split its work over: OpenMP's count where the build has
   OpenMP, else 1 (the prange loops then run in order on the calling thread). Compilers
   without OpenMP (Apple's clang, unless libomp is installed) still build every kernel. */
#ifndef WALLE_MAX_THREADS_H
#define WALLE_MAX_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static inline int walle_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int walle_max_threads(void) { return 1; }
#endif

#endif
