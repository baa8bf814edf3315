/* ONNX's HardSwish, x * clip(x * (1/6) + 1/2, 0, 1), as the conv kernels' stores and the
   GEMM epilogue apply it (the kernels' ``relu`` WALLE_HARD_SWISH; Paddle's form below): the builder's constants
   (1/6 as a float32), NaN staying NaN, -inf giving NaN (as onnxruntime). The multiply and add
   may be one FMA here (GCC contracts across statements), where walle's HardSwish pass
   (ops_math's ChainKernel) rounds twice: the clipped factor within an ulp of the pass's, so
   a step's bits depend on whether its plan fused the activation, as they depend on its
   conv algorithm. */
#ifndef WALLE_HARD_SWISH_H
#define WALLE_HARD_SWISH_H

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

/* One vector's HardSwish (VT a GCC vector of floats, IT of ints as wide), as
   walle_hard_swish_s. */
#define WALLE_HARD_SWISH_V(VT, IT, r) \
    do { \
        VT s_ = (r) * WALLE_SIXTH + 0.5f; \
        s_ = (VT)((IT)s_ & ~(IT)(s_ <= 0.0f)); \
        IT high_ = (IT)(s_ >= 1.0f); \
        s_ = (VT)(((IT)s_ & ~high_) | ((IT)((VT){0} + 1.0f) & high_)); \
        (r) = (r) * s_; \
    } while (0)
/* ... as walle_hard_swish6_s. */
#define WALLE_HARD_SWISH6_V(VT, IT, r) \
    do { \
        VT s_ = (r) + 3.0f; \
        s_ = (VT)((IT)s_ & ~(IT)(s_ <= 0.0f)); \
        IT high_ = (IT)(s_ >= 6.0f); \
        s_ = (VT)(((IT)s_ & ~high_) | ((IT)((VT){0} + 6.0f) & high_)); \
        (r) = (r) * s_ / 6.0f; \
    } while (0)
#define WALLE_HARD_SWISH_ANY_V(VT, IT, r, cap) \
    do { \
        if ((cap) == WALLE_HARD_SWISH) WALLE_HARD_SWISH_V(VT, IT, r); \
        else WALLE_HARD_SWISH6_V(VT, IT, r); \
    } while (0)

#endif
