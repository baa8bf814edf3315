"""OpenCL C source of the ``opencl`` backend: the atomic set plus three fused kernels.

One program holds every kernel; it is built once per context (PoCL also caches the binary
on disk). Index arithmetic is 32-bit (the backend refuses tensors of 2**31 elements or more).
Shapes and strides that vary per launch travel in a small ``spec`` buffer of ints, so no
kernel is specialised (and rebuilt) per shape.

- ``u_<kind>``: y = f(x), one work-item per element;
- ``b_<kind>``: y = a op b; ``b_<kind>_flat`` when both sides are contiguous and the same size,
  else a 2-D range (innermost dim, the rest) with up to 6 collapsed dims and per-input element
  strides (0 where broadcast) in ``spec`` = [rank, sizes[6], a strides[6], b strides[6]]
  (dims 1..rank used, innermost last);
- ``r_<kind>``: reduce over the middle axis of [outer, r, inner];
- ``matmul`` (algorithm ``tiled``): 16x16 tiles staged through local memory (GPUs), batched
  on dim 2, with a bias (per column or per row) and activation epilogue; ``matmul_rows4``
  (algorithm ``rows4``): 4 rows x 1 column per work-item in registers (CPU platforms);
- ``raster``: one region, padded to rank 6; spec = [src_off, dst_off, sizes[6], src
  strides[6], dst strides[6]];
- ``gather``: y[o, t, :] = x[o, idx[t], :] over [outer, rows, inner] for constant indices
  (checked when the graph was built; a negative one counts from the end), a 2-D range
  (inner, outer * count);
- ``softmax_rows`` / ``layernorm_rows``: one work-item per row.
"""

from __future__ import annotations

TILE = 16
UNARY_EXPR = {
    "identity": "v",
    "neg": "-v",
    "abs": "fabs(v)",
    "exp": "exp(v)",
    "log": "log(v)",
    "sqrt": "sqrt(v)",
    "reciprocal": "1.0f / v",
    "relu": "(v <= 0.0f ? 0.0f : v)",
    "sigmoid": "1.0f / (1.0f + exp(-v))",
    "tanh": "walle_tanh(v)",
    "erf": "erf(v)",
    "gelu": "v * 0.5f * (1.0f + erf(v * 0.70710678f))",
    "floor": "floor(v)",
    "ceil": "ceil(v)",
    "round": "rint(v)",
    "sin": "sin(v)",
    "cos": "cos(v)",
    "tan": "tan(v)",
    "asin": "asin(v)",
    "acos": "acos(v)",
    "atan": "atan(v)",
    "sinh": "sinh(v)",
    "cosh": "cosh(v)",
    "asinh": "asinh(v)",
    "acosh": "acosh(v)",
    "atanh": "atanh(v)",
}
BINARY_EXPR = {
    "add": "p + q",
    "sub": "p - q",
    "mul": "p * q",
    "div": "p / q",
    "max": "((p > q || isnan(p)) ? p : q)",  # fmax/fmin drop NaN; numpy keeps it
    "min": "((p < q || isnan(p)) ? p : q)",
    "pow": "pow(p, q)",
    "eq": "(p == q ? 1.0f : 0.0f)",
    "gt": "(p > q ? 1.0f : 0.0f)",
    "ge": "(p >= q ? 1.0f : 0.0f)",
    "lt": "(p < q ? 1.0f : 0.0f)",
    "le": "(p <= q ? 1.0f : 0.0f)",
    "mask": "(p != 0.0f ? q : 0.0f)",
    "fmod": "fmod(p, q)",
    "fmax": "fmax(p, q)",
    "fmin": "fmin(p, q)",
}
REDUCE_STEP = {
    "sum": ("0.0f", "acc += v"),
    "mean": ("0.0f", "acc += v"),
    "max": ("-INFINITY", "acc = (v > acc || isnan(v)) ? v : acc"),
    "min": ("INFINITY", "acc = (v < acc || isnan(v)) ? v : acc"),
    "fmax": ("-INFINITY", "acc = v > acc ? v : acc"),  # NaN compares false: left out
    "fmin": ("INFINITY", "acc = v < acc ? v : acc"),
}
ACTS = {"none": 0, "relu": 1, "sigmoid": 2, "tanh": 3}

_COMMON = """
/* PoCL's tanh stops at +-0.99999994 for large |v|; float32 tanh is exactly +-1 there (and
   then gelu(-inf) is NaN and gelu(-1e30) is -0, as in numpy and onnxruntime). */
inline float walle_tanh(float v) { return fabs(v) > 9.0f ? copysign(1.0f, v) : tanh(v); }
inline float walle_act(float v, int act) {
    if (act == 1) return v <= 0.0f ? 0.0f : v;  /* keeps NaN, unlike fmax */
    if (act == 2) return 1.0f / (1.0f + exp(-v));
    if (act == 3) return walle_tanh(v);
    return v;
}
"""

_UNARY = """
__kernel void u_{kind}(__global const float* x, __global float* y, const int n) {{
    int i = get_global_id(0);
    if (i < n) {{ float v = x[i]; y[i] = {expr}; }}
}}
"""

_BINARY = """
__kernel void b_{kind}_flat(__global const float* a, __global const float* b,
                            __global float* y, const int n) {{
    int i = get_global_id(0);
    if (i < n) {{ float p = a[i], q = b[i]; y[i] = {expr}; }}
}}
__kernel void b_{kind}(__global const float* a, __global const float* b, __global float* y,
                       __constant int* s) {{
    int rank = s[0];
    int inner = get_global_id(0), outer = get_global_id(1);
    if (inner >= s[rank]) return;
    int oa = inner * s[6 + rank], ob = inner * s[12 + rank], rest = outer;
    for (int d = rank - 1; d >= 1; d--) {{
        int q = rest % s[d];
        rest /= s[d];
        oa += q * s[6 + d];
        ob += q * s[12 + d];
    }}
    float p = a[oa], q = b[ob];
    y[outer * s[rank] + inner] = {expr};
}}
"""

_REDUCE = """
__kernel void r_{kind}(__global const float* x, __global float* y, const int outer,
                       const int r, const int inner) {{
    int j = get_global_id(0), o = get_global_id(1);
    if (j >= inner || o >= outer) return;
    __global const float* xo = x + o * r * inner + j;
    float acc = {init};
    for (int i = 0; i < r; i++) {{ float v = xo[i * inner]; {step}; }}
    y[o * inner + j] = {finish};
}}
"""

# The index of the max or min (walle.ops.reference.arg_reduce): a value wins when it
# compares greater (less) than the best so far, from the first; NaN never wins.
ARG_WINS = {
    "argmax": "v > acc",
    "argmin": "v < acc",
    "argmax_last": "v >= acc",
    "argmin_last": "v <= acc",
}
_ARG = """
__kernel void r_{kind}(__global const float* x, __global float* y, const int outer,
                       const int r, const int inner) {{
    int j = get_global_id(0), o = get_global_id(1);
    if (j >= inner || o >= outer) return;
    __global const float* xo = x + o * r * inner + j;
    float acc = xo[0];
    int k = 0;
    for (int i = 1; i < r; i++) {{
        float v = xo[i * inner];
        if ({wins}) {{ acc = v; k = i; }}
    }}
    y[o * inner + j] = (float)k;
}}
"""

_REST = """
#define TS {tile}
/* c[batch, m, n] = a @ b (+ bias) (act); a_step / b_step = 0 share an operand. */
__kernel void matmul(__global const float* a, __global const float* b, __global float* c,
                     __global const float* bias, const int m, const int n, const int k,
                     const int a_step, const int b_step, const int bias_mode,
                     const int act) {{
    __local float at[TS][TS];
    __local float bt[TS][TS];
    int col = get_global_id(0), row = get_global_id(1), bat = get_global_id(2);
    int lc = get_local_id(0), lr = get_local_id(1);
    a += bat * a_step;
    b += bat * b_step;
    c += bat * m * n;
    float acc = 0.0f;
    for (int t = 0; t < k; t += TS) {{
        at[lr][lc] = (row < m && t + lc < k) ? a[row * k + t + lc] : 0.0f;
        bt[lr][lc] = (t + lr < k && col < n) ? b[(t + lr) * n + col] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int p = 0; p < TS; p++) acc += at[lr][p] * bt[p][lc];
        barrier(CLK_LOCAL_MEM_FENCE);
    }}
    if (row < m && col < n) {{
        if (bias_mode == 1) acc += bias[col];
        else if (bias_mode == 2) acc += bias[row];
        c[row * n + col] = walle_act(acc, act);
    }}
}}

/* Same contract, no local memory: each work-item keeps 4 rows of one column in registers
   (what CPU platforms such as PoCL vectorise well across work-items). */
__kernel void matmul_rows4(__global const float* a, __global const float* b, __global float* c,
                           __global const float* bias, const int m, const int n, const int k,
                           const int a_step, const int b_step, const int bias_mode,
                           const int act) {{
    int col = get_global_id(0), row = get_global_id(1) * 4, bat = get_global_id(2);
    if (col >= n || row >= m) return;
    a += bat * a_step;
    b += bat * b_step;
    c += bat * m * n;
    int r1 = min(row + 1, m - 1), r2 = min(row + 2, m - 1), r3 = min(row + 3, m - 1);
    float acc[4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    for (int p = 0; p < k; p++) {{
        float bv = b[p * n + col];
        acc[0] += a[row * k + p] * bv;
        acc[1] += a[r1 * k + p] * bv;
        acc[2] += a[r2 * k + p] * bv;
        acc[3] += a[r3 * k + p] * bv;
    }}
    for (int i = 0; i < 4 && row + i < m; i++) {{
        float v = acc[i];
        if (bias_mode == 1) v += bias[col];
        else if (bias_mode == 2) v += bias[row + i];
        c[(row + i) * n + col] = walle_act(v, act);
    }}
}}

__kernel void raster(__global const float* src, __global float* dst, __constant int* s) {{
    int inner = get_global_id(0), outer = get_global_id(1);
    if (inner >= s[7]) return;
    int so = s[0] + inner * s[13], dof = s[1] + inner * s[19], rest = outer;
    for (int d = 4; d >= 0; d--) {{
        int q = rest % s[2 + d];
        rest /= s[2 + d];
        so += q * s[8 + d];
        dof += q * s[14 + d];
    }}
    dst[dof] = src[so];
}}

__kernel void gather(__global const float* x, __global const float* idx, __global float* y,
                     const int rows, const int count, const int inner) {{
    int i = get_global_id(0), ot = get_global_id(1);
    if (i >= inner) return;
    int o = ot / count, t = ot - o * count;
    int row = (int)idx[t];
    if (row < 0) row += rows;
    y[ot * inner + i] = x[(o * rows + row) * inner + i];
}}

__kernel void softmax_rows(__global const float* x, __global float* y, const int rows,
                           const int cols) {{
    int i = get_global_id(0);
    if (i >= rows) return;
    __global const float* xr = x + i * cols;
    __global float* yr = y + i * cols;
    float mx = -INFINITY, sum = 0.0f;
    for (int j = 0; j < cols; j++) mx = fmax(mx, xr[j]);
    for (int j = 0; j < cols; j++) {{ float e = exp(xr[j] - mx); yr[j] = e; sum += e; }}
    float inv = 1.0f / sum;
    for (int j = 0; j < cols; j++) yr[j] *= inv;
}}

__kernel void layernorm_rows(__global const float* x, __global float* y,
                             __global const float* g, __global const float* b,
                             const int rows, const int cols, const float eps,
                             const int has_g, const int has_b) {{
    int i = get_global_id(0);
    if (i >= rows) return;
    __global const float* xr = x + i * cols;
    __global float* yr = y + i * cols;
    float s = 0.0f, v = 0.0f;
    for (int j = 0; j < cols; j++) s += xr[j];
    float mean = s / (float)cols;
    for (int j = 0; j < cols; j++) {{ float d = xr[j] - mean; v += d * d; }}
    float rstd = 1.0f / sqrt(v / (float)cols + eps);
    for (int j = 0; j < cols; j++) {{
        float o = (xr[j] - mean) * rstd;
        if (has_g) o *= g[j];
        if (has_b) o += b[j];
        yr[j] = o;
    }}
}}
"""


def program_source() -> str:
    """The whole OpenCL C program of the backend."""
    parts = [_COMMON]
    parts += [_UNARY.format(kind=k, expr=e) for k, e in UNARY_EXPR.items()]
    parts += [_BINARY.format(kind=k, expr=e) for k, e in BINARY_EXPR.items()]
    for kind, (init, step) in REDUCE_STEP.items():
        finish = "acc / (float)r" if kind == "mean" else "acc"
        parts.append(_REDUCE.format(kind=kind, init=init, step=step, finish=finish))
    parts += [_ARG.format(kind=k, wins=w) for k, w in ARG_WINS.items()]
    parts.append(_REST.format(tile=TILE))
    return "\n".join(parts)
