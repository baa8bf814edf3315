/* ONNX's HardSwish, x * clip(x * (1/6) + 1/2, 0, 1), as the conv kernels' stores and the
   GEMM epilogue apply it (the kernels' ``relu`` WALLE_HARD_SWISH; Paddle's form below): the builder's constants
   (1/6 as a float32), NaN staying NaN, -inf giving NaN (as onnxruntime). The multiply and add
   may be one FMA here (GCC contracts across statements), where walle's HardSwish pass
   (ops_math's ChainKernel) rounds twice: the clipped factor within an ulp of the pass's, so
   a step's bits depend on whether its plan fused the activation, as they depend on its
   conv algorithm. */
#ifndef WALLE_HARD_SWISH_H
#define WALLE_HARD_SWISH_H

#include <stddef.h>
#include <string.h>

#define WALLE_HARD_SWISH (-1.0f)
/* The cap for HardSwish as Paddle's exports write it, x * relu6(x + 3) / 6 (Add, Clip, Mul,
   Div): no multiply-add to fuse, so the bits of its parts. */
#define WALLE_HARD_SWISH6 (-2.0f)
#define WALLE_SIXTH 0.16666667f
/* Each clip a select whose test is false for NaN (so NaN stays), as the ReLU macros': a form
   GCC vectorises in the kernels' scalar loops at every level (with ``||`` tests it left the
   AVX-512 depthwise kernel's loops as scalar compares, 10x slower). */
static inline __attribute__((always_inline)) float walle_hard_swish_s(float r) {
    float s = r * WALLE_SIXTH + 0.5f;
    s = s <= 0.0f ? 0.0f : s;
    s = s >= 1.0f ? 1.0f : s;
    return r * s;
}

static inline __attribute__((always_inline)) float walle_hard_swish6_s(float r) {
    float s = r + 3.0f;
    s = s <= 0.0f ? 0.0f : s;
    s = s >= 6.0f ? 6.0f : s;
    return r * s / 6.0f;
}
/* Either HardSwish by its cap (WALLE_HARD_SWISH or WALLE_HARD_SWISH6). */
#define WALLE_HARD_SWISH_ANY_S(r, cap) \
    ((cap) == WALLE_HARD_SWISH ? walle_hard_swish_s(r) : walle_hard_swish6_s(r))

/* s = max(LO, s) then min(HI, s) for a GCC vector of floats VT: on x86-64, for vectors of
   8 and 16 floats, one vmaxps and one vminps, where the selects below take a compare and a
   masked move each (GCC does not turn them into max and min: they differ for NaN and -0).
   Here they cannot: s is NaN only where r is (r * s is NaN then whatever the clip made of
   s), and never -0 (an exact zero of the clip's sum rounds to +0). In asm, because the
   intrinsics cannot be inlined into the level-less tiles that expand this. AVX-512, one
   core, depthwise convs with HardSwish: 32 x 112 x 112 3x3/2 71 -> 65 us, 64 x 56 x 56
   3x3 75 -> 67-72. Narrower vectors (the SSE level, which must not meet VEX code) keep
   the selects. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
typedef float walle_hs_v16 __attribute__((vector_size(64)));
typedef float walle_hs_v8 __attribute__((vector_size(32)));
/* The clip on a copy of s as a vector of 16 or 8 floats (MT), so that the dead branches'
   asm operands have their registers' sizes. GCC only: clang checks an asm operand against
   its function's level even in a dead branch (a baseline function's 16-float operand), so
   it keeps the selects. */
#define WALLE_HS_ASM(MT, s, LO, HI)                                                         \
    do {                                                                                    \
        MT t_, lo_ = (MT){0} + (LO), hi_ = (MT){0} + (HI);                                  \
        size_t n_ = sizeof(MT) < sizeof(s) ? sizeof(MT) : sizeof(s);                        \
        memcpy(&t_, &(s), n_);                                                              \
        __asm__("vmaxps %1, %2, %0" : "=v"(t_) : "v"(t_), "v"(lo_));                        \
        __asm__("vminps %1, %2, %0" : "=v"(t_) : "v"(t_), "v"(hi_));                        \
        memcpy(&(s), &t_, n_);                                                              \
    } while (0)
#define WALLE_HS_CLIP(VT, IT, s, LO, HI)                                                    \
    do {                                                                                    \
        if (sizeof(VT) == 64) WALLE_HS_ASM(walle_hs_v16, s, LO, HI);                        \
        else if (sizeof(VT) == 32) WALLE_HS_ASM(walle_hs_v8, s, LO, HI);                    \
        else WALLE_HS_SELECT(VT, IT, s, LO, HI);                                            \
    } while (0)
#else
#define WALLE_HS_CLIP(VT, IT, s, LO, HI) WALLE_HS_SELECT(VT, IT, s, LO, HI)
#endif
/* The same clip as selects whose tests are false for NaN. */
#define WALLE_HS_SELECT(VT, IT, s, LO, HI)                                                  \
    do {                                                                                    \
        s = (VT)((IT)s & ~(IT)(s <= (LO)));                                                 \
        IT high_ = (IT)(s >= (HI));                                                         \
        s = (VT)(((IT)s & ~high_) | ((IT)((VT){0} + (HI)) & high_));                        \
    } while (0)

/* One vector's HardSwish (VT a GCC vector of floats, IT of ints as wide), as
   walle_hard_swish_s. */
#define WALLE_HARD_SWISH_V(VT, IT, r) \
    do { \
        VT s_ = (r) * WALLE_SIXTH + 0.5f; \
        WALLE_HS_CLIP(VT, IT, s_, 0.0f, 1.0f); \
        (r) = (r) * s_; \
    } while (0)
/* ... as walle_hard_swish6_s. */
#define WALLE_HARD_SWISH6_V(VT, IT, r) \
    do { \
        VT s_ = (r) + 3.0f; \
        WALLE_HS_CLIP(VT, IT, s_, 0.0f, 6.0f); \
        (r) = (r) * s_ / 6.0f; \
    } while (0)
#define WALLE_HARD_SWISH_ANY_V(VT, IT, r, cap) \
    do { \
        if ((cap) == WALLE_HARD_SWISH) WALLE_HARD_SWISH_V(VT, IT, r); \
        else WALLE_HARD_SWISH6_V(VT, IT, r); \
    } while (0)

#endif
