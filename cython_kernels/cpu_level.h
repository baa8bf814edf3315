/* The widest instruction-set level the kernels may run on this CPU: 2 AVX-512F, 1 AVX2 + FMA,
   0 the baseline (SSE2 on x86-64; NEON, through the same 128-bit vectors, on ARM).

   Read from CPUID and XGETBV rather than __builtin_cpu_supports: the level also needs the
   OS to save the wide registers (a kernel or hypervisor may turn AVX-512 state off), and
   __builtin_cpu_supports depends on the compiler's runtime library (one clang toolchain's
   answers nothing at all, which would leave every kernel at the baseline). */
#ifndef WALLE_CPU_LEVEL_H
#define WALLE_CPU_LEVEL_H

/* The wider levels exist on x86-64 (GCC and clang): their functions are compiled for their
   level (WALLE_LEVEL_TARGET), and a dispatch tests WALLE_LEVEL(level). Elsewhere (ARM, where
   NEON runs the baseline's 128-bit vectors) WALLE_LEVEL is the constant 0, so the compiler
   drops the wider branches and never compiles the functions only they call: the x86 levels'
   tiles would be dead code there, about half of what ops_conv compiles for aarch64. */
#if defined(__x86_64__) && defined(__GNUC__)
#define WALLE_X86 1
#define WALLE_LEVEL_TARGET(T) __attribute__((target(T)))
#define WALLE_LEVEL(level) (level)
#else
#define WALLE_LEVEL_TARGET(T) __attribute__((unused))
#define WALLE_LEVEL(level) 0
#endif

#ifdef WALLE_X86
#include <cpuid.h>

static int walle_cpu_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x6) != 0x6) return 0; /* the OS saves XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    /* ... and, for AVX-512, the opmask registers and all 32 ZMM registers */
    if (avx512f && avx2 && fma && (lo & 0xe0) == 0xe0) return 2;
    return avx2 && fma ? 1 : 0;
}
#else
static int walle_cpu_level(void) { return 0; }
#endif

#endif
