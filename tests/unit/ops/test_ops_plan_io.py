"""A one-kernel plan reads the caller's array in place and returns a fresh output each call.

Softmax, layer norm and transpose plans are one cython kernel from one input to one output:
the plan hands the caller's C-contiguous float32 array to the kernel (``run_io``) instead of
copying it into its input buffer, and returns the array the kernel wrote instead of a copy
of its output buffer. These tests pin what a caller may rely on: results equal the
reference, an earlier result is never overwritten by a later call, the input is not
modified, and any other input (strided, float64, a list) still works through the copy path.
Tolerance: 1e-5 absolute and relative (float32 kernels against the float32 reference).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._backends import backend_or_skip, run1_matches_reference
from walle.errors import ValidationError
from walle.ops import GraphBuilder, compile_graph, run_reference


def _plan(kind: str, shape: tuple[int, ...]):
    b = GraphBuilder()
    x = b.input("x", shape)
    if kind == "softmax":
        y = b.softmax(x)
    elif kind == "layernorm":
        y = b.layer_norm(x, b.const(np.linspace(0.5, 1.5, shape[-1], dtype=np.float32)), None)
    else:
        y = b.transpose(x, (0, 2, 1))
    graph = b.build([y])
    return graph, compile_graph(graph, pin="cython", use_cache=False, trials=False)


@pytest.mark.parametrize(
    ("kind", "shape"), [("softmax", (5, 33)), ("layernorm", (4, 70)), ("transpose", (3, 40, 9))]
)
def test_ops_one_kernel_plan_skips_copies_and_returns_fresh_arrays(kind, shape) -> None:
    backend_or_skip("cython")
    graph, plan = _plan(kind, shape)
    assert plan._direct is not None, "a one-kernel plan should run on the caller's arrays"
    rng = np.random.default_rng(1)
    x1, x2 = (rng.uniform(-5, 5, shape).astype(np.float32) for _ in range(2))
    keep = x1.copy()
    y1 = plan.run1(x1)
    y2 = plan(x2)[0]
    assert y1 is not y2 and not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(x1, keep)  # the input is read, not written
    for x, y in ((x1, y1), (x2, y2)):  # y1 was not overwritten by the second call
        np.testing.assert_allclose(y, run_reference(graph, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_ops_one_kernel_plan_other_inputs_take_the_copy_path() -> None:
    backend_or_skip("cython")
    graph, plan = _plan("softmax", (6, 20))
    base = np.random.default_rng(2).uniform(-3, 3, (6, 40)).astype(np.float32)
    want = run_reference(graph, {"x": np.ascontiguousarray(base[:, ::2])})[0]
    for x in (base[:, ::2], base[:, ::2].astype(np.float64), base[:, ::2].tolist()):
        np.testing.assert_allclose(plan(x)[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plan.run1(base[:, ::2]), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValidationError, match="must have shape"):
        plan.run1(base)


def test_ops_kernel_run_io_refuses_wrong_arrays() -> None:
    backend_or_skip("cython")
    _, plan = _plan("transpose", (2, 8, 4))
    good = np.zeros((2, 8, 4), np.float32)
    for x, y in (
        (np.zeros((2, 8, 5), np.float32), np.zeros((2, 4, 8), np.float32)),
        (good, np.zeros((2, 4, 8), np.float64)),
        (np.zeros((2, 8, 8), np.float32)[:, :, ::2], np.zeros((2, 4, 8), np.float32)),
    ):
        with pytest.raises(ValueError, match="run_io"):
            plan._direct(x, y)


def test_ops_multi_kernel_plan_keeps_its_buffers() -> None:
    """Several kernels (or several inputs) copy in (and out, unless the last kernel writes
    the result where it is returned): outputs stay fresh."""
    b = GraphBuilder()
    x = b.input("x", (3, 8))
    graph = b.build([b.relu(b.softmax(x))])
    plan = compile_graph(graph, use_cache=False)
    first = plan.run1(np.ones((3, 8), np.float32))
    plan.run1(np.zeros((3, 8), np.float32))
    np.testing.assert_allclose(first, np.full((3, 8), 1 / 8, np.float32), rtol=1e-6)


def _softmax_head() -> tuple[object, object]:
    """softmax(relu(x @ W)) on the cython backend: a plan whose last kernel (the softmax)
    alone writes the one output."""
    b = GraphBuilder()
    x = b.input("x", (6, 20))
    w = b.const(np.linspace(-1, 1, 20 * 12, dtype=np.float32).reshape(20, 12))
    graph = b.build([b.softmax(b.relu(b.matmul(x, w)))])
    return graph, compile_graph(graph, pin="cython", use_cache=False, trials=False)


def test_ops_plan_last_kernel_writes_the_returned_array() -> None:
    """The last kernel writes the array run1 and __call__ return (no copy of the output
    buffer; onnxruntime hands out its last kernel's memory the same way): every result
    equals the reference, a result or a view of it that a caller keeps is never written
    again, a dropped one is reused, the input is left as it was."""
    backend_or_skip("cython")
    graph, plan = _softmax_head()
    assert plan._writer is not None, "the softmax should write the caller's output"
    assert plan.call_count == len(plan._head) + 1
    rng = np.random.default_rng(7)
    xs = [rng.uniform(-2, 2, (6, 20)).astype(np.float32) for _ in range(5)]
    keep = [x.copy() for x in xs]
    want = [run_reference(graph, {"x": x})[0] for x in xs]
    held_view = plan.run1(xs[0])[2:4]
    held = plan(xs[1])[0]
    address = plan.run1(xs[2]).__array_interface__["data"][0]  # dropped at once
    last = plan.run1(xs[3])
    np.testing.assert_allclose(held_view, want[0][2:4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(held, want[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last, want[3], rtol=1e-5, atol=1e-6)
    assert last.__array_interface__["data"][0] == address
    assert not np.shares_memory(held, last) and not np.shares_memory(held_view, last)
    # the copy path (a float64 input) ends the same way
    np.testing.assert_allclose(plan(xs[4].astype(np.float64))[0], want[4], rtol=1e-5, atol=1e-6)
    for x, k in zip(xs, keep, strict=True):
        np.testing.assert_array_equal(x, k)


def test_ops_plan_run_into_writes_the_callers_rows() -> None:
    """run_into (a sub-batch's rows): the last kernel writes a C-contiguous destination
    itself; a strided one gets the result through the plan's buffer."""
    backend_or_skip("cython")
    graph, plan = _softmax_head()
    rng = np.random.default_rng(8)
    x1, x2 = (rng.uniform(-2, 2, (6, 20)).astype(np.float32) for _ in range(2))
    rows = np.full((2, 6, 12), np.nan, np.float32)
    strided = np.full((6, 24), np.nan, np.float32)[:, ::2]
    plan.run_into([x1], [rows[1]])
    plan.run_into([x2], [strided])
    np.testing.assert_allclose(rows[1], run_reference(graph, {"x": x1})[0], rtol=1e-5, atol=1e-6)
    assert np.isnan(rows[0]).all()
    np.testing.assert_allclose(strided, run_reference(graph, {"x": x2})[0], rtol=1e-5, atol=1e-6)


def test_ops_plan_ending_in_an_elementwise_chain_writes_the_returned_array() -> None:
    """A fused element-wise last step (a detector's sigmoid head: ops_math.ChainKernel)
    writes the returned array too, reading its operands where the plan keeps them; its
    ``run_io`` refuses arrays of the wrong count or size."""
    backend_or_skip("cython")
    from walle._kernels import ops_math

    b = GraphBuilder()
    x = b.input("x", (3, 40))
    scale = b.const(np.linspace(0.5, 2, 40, dtype=np.float32))
    y = b.unary("sigmoid", b.binary("mul", b.softmax(x), scale))
    graph = b.build([b.binary("add", y, b.const(np.float32(0.25)))])
    # the cost model's choice: timed trials may run the chain as its parts (a close call)
    plan = compile_graph(graph, pin="cython", use_cache=False, trials=False)
    last = getattr(plan.step_calls[-1][1], "__self__", None)
    assert isinstance(last, ops_math.ChainKernel), last
    assert plan._writer is not None
    rng = np.random.default_rng(10)
    xs = [rng.uniform(-3, 3, (3, 40)).astype(np.float32) for _ in range(3)]
    got = [plan.run1(xs[0]), plan(xs[1])[0], plan.run1(xs[2])]
    for xv, yv in zip(xs, got, strict=True):
        np.testing.assert_allclose(yv, run_reference(graph, {"x": xv})[0], rtol=1e-5, atol=1e-6)
    arrays = last.io_arrays()
    with pytest.raises(ValueError, match="run_io"):
        last.run_io(*arrays[:-1])
    with pytest.raises(ValueError, match="run_io"):
        last.run_io(*arrays[:-1], np.zeros(7, np.float32))


def test_ops_plan_whose_output_is_a_reshape_of_the_last_step_writes_the_returned_array() -> None:
    """The graph output a reshape of the last step's value (a CRNN's [T, 1, classes] scores
    behind its Gemm): the last kernel writes the returned array, in the output's shape."""
    backend_or_skip("cython")
    b = GraphBuilder()
    x = b.input("x", (6, 20))
    w = b.const(np.linspace(-1, 1, 20 * 12, dtype=np.float32).reshape(20, 12))
    graph = b.build([b.reshape(b.softmax(b.relu(b.matmul(x, w))), (6, 1, 12))])
    plan = compile_graph(graph, pin="cython", use_cache=False, trials=False)
    assert plan._writer is not None
    rng = np.random.default_rng(11)
    x1, x2 = (rng.uniform(-2, 2, (6, 20)).astype(np.float32) for _ in range(2))
    y1, y2 = plan.run1(x1), plan.run1(x2)
    assert y1.shape == (6, 1, 12) and not np.shares_memory(y1, y2)
    for xv, yv in ((x1, y1), (x2, y2)):
        np.testing.assert_allclose(yv, run_reference(graph, {"x": xv})[0], rtol=1e-5, atol=1e-6)


def test_ops_unary_and_binary_kernels_run_on_callers_arrays() -> None:
    """UnaryKernel and BinaryKernel (a broadcast row) on fresh arrays through ``run_io``
    give what ``run`` gives on their build-time buffers; wrong sizes are refused."""
    backend_or_skip("cython")
    from walle._kernels import ops_math

    rng = np.random.default_rng(12)
    x, fresh = rng.uniform(-3, 3, 50).astype(np.float32), rng.uniform(-3, 3, 50).astype(np.float32)
    y, out = np.empty(50, np.float32), np.full(50, np.nan, np.float32)
    unary = ops_math.UnaryKernel("sigmoid", x, y)
    unary.run_io(fresh, out)
    unary.run()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-fresh.astype(np.float64))), rtol=1e-6)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    a, row = rng.uniform(-2, 2, (4, 6)).astype(np.float32), rng.uniform(-2, 2, 6).astype(np.float32)
    c, got = np.empty((4, 6), np.float32), np.full((4, 6), np.nan, np.float32)
    binary = ops_math.BinaryKernel("mul", a, row, c, (4, 6), (6, 1), (0, 1))
    binary.run_io(2 * a, row, got)
    binary.run()
    np.testing.assert_allclose(got, 2 * a * row, rtol=1e-6)
    np.testing.assert_allclose(c, a * row, rtol=1e-6)
    with pytest.raises(ValueError, match="run_io"):
        unary.run_io(fresh, np.zeros(49, np.float32))
    with pytest.raises(ValueError, match="run_io"):
        binary.run_io(a, row, np.zeros((4, 6)))


def test_ops_plan_with_two_outputs_copies_both() -> None:
    """Two graph outputs: no output writer; both results fresh and right."""
    backend_or_skip("cython")
    b = GraphBuilder()
    x = b.input("x", (4, 10))
    s = b.softmax(x)
    graph = b.build([s, b.relu(b.transpose(s, (1, 0)))])
    plan = compile_graph(graph, pin="cython", use_cache=False)
    assert plan._writer is None
    xv = np.random.default_rng(9).uniform(-2, 2, (4, 10)).astype(np.float32)
    first = plan(xv)
    plan(2 * xv)
    for got, want in zip(first, run_reference(graph, {"x": xv}), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("swapped", [False, True])
def test_ops_one_matmul_plan_reads_both_inputs_in_place(backend, swapped) -> None:
    """A lone matmul of two graph inputs runs on the caller's arrays, in either order."""
    if backend == "cython":
        backend_or_skip("cython")
    b = GraphBuilder()
    x0, x1 = b.input("x0", (9, 40)), b.input("x1", (40, 9))
    graph = b.build([b.matmul(x1, x0) if swapped else b.matmul(x0, x1)])
    plan = compile_graph(graph, pin=backend, use_cache=False)
    assert plan._direct is not None  # each input goes to the operand that reads it
    rng = np.random.default_rng(3)
    feeds = {"x0": rng.uniform(-1, 1, (9, 40)), "x1": rng.uniform(-1, 1, (40, 9))}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    first = plan(*feeds.values())[0]
    second = plan(*(2 * v for v in feeds.values()))[0]
    want = run_reference(graph, feeds)[0]
    np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second, 4 * want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_ops_one_matmul_plan_behind_aliased_reshapes_reads_inputs_in_place(backend) -> None:
    """The matmul's operands are reshapes of the graph inputs (a flatten, a transpose of a
    [k, 1] column) that share the inputs' buffers: the kernel gets the caller's arrays
    viewed in its own shapes (it used to get them as they came, and refused them)."""
    if backend == "cython":
        backend_or_skip("cython")
    b = GraphBuilder()
    x0, x1 = b.input("x0", (3, 2, 2, 5)), b.input("x1", (20, 1))
    y = b.matmul(b.flatten(x0), b.transpose(b.reshape(x1, (1, 20)), (1, 0)))
    graph = b.build([y])
    plan = compile_graph(graph, pin=backend, use_cache=False)
    assert plan._direct is not None, "one matmul of two inputs runs on the caller's arrays"
    rng = np.random.default_rng(6)
    feeds = {k: rng.uniform(-1, 1, graph.shape(k)).astype(np.float32) for k in ("x0", "x1")}
    want = run_reference(graph, feeds)[0]
    np.testing.assert_allclose(plan(*feeds.values())[0], want, rtol=1e-5, atol=1e-5)
    as_f64 = [v.astype(np.float64) for v in feeds.values()]  # the copy path agrees
    np.testing.assert_allclose(plan(*as_f64)[0], want, rtol=1e-5, atol=1e-5)


def test_ops_gemm_kernel_wide_and_narrow_paths_agree() -> None:
    """The panel kernels (AVX-512 or AVX2, at the running level) and scalar tiles vs float64."""
    backend_or_skip("cython")
    from walle._kernels import ops_math

    rng = np.random.default_rng(4)
    for m, k, n in ((4, 3, 16), (13, 40, 47), (64, 64, 256), (9, 17, 33), (3, 5, 64)):
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        w = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        bias = rng.uniform(-1, 1, n).astype(np.float32)
        want = np.maximum(a.astype(np.float64) @ w + bias, 0)
        for wide in (True, False):
            out = np.full((m, n), np.nan, np.float32)
            ops_math.GemmKernel(a, w, out, bias, 1, "relu", False, wide).run()
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5, err_msg=f"wide={wide}")
            fresh = np.full((m, n), np.nan, np.float32)
            ops_math.GemmKernel(a, w, out, bias, 1, "relu", False, wide).run_io(2 * a, w, fresh)
            np.testing.assert_allclose(
                fresh, np.maximum(2 * a.astype(np.float64) @ w + bias, 0), rtol=1e-5, atol=1e-5
            )


def test_ops_one_kernel_plan_recycles_only_results_nobody_holds() -> None:
    """A result (or a view of it) that a caller keeps is never written again; a dropped one
    is reused for the next result instead of a new allocation."""
    backend_or_skip("cython")
    graph, plan = _plan("transpose", (2, 30, 5))
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-1, 1, (2, 30, 5)).astype(np.float32) for _ in range(4)]
    want = [run_reference(graph, {"x": x})[0] for x in xs]
    held_view = plan.run1(xs[0])[1]  # only a view is kept: it holds its base alive
    held = plan.run1(xs[1])
    address = plan.run1(xs[2]).__array_interface__["data"][0]  # dropped at once
    last = plan.run1(xs[3])
    np.testing.assert_array_equal(held_view, want[0][1])
    np.testing.assert_array_equal(held, want[1])
    np.testing.assert_array_equal(last, want[3])
    assert last.__array_interface__["data"][0] == address


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("weight_first", [False, True])
def test_ops_one_matmul_plan_with_constant_weights_reads_its_input_in_place(
    backend, weight_first
) -> None:
    """x @ W (and W @ x) with W a constant: the kernel reads the caller's x in place and its
    own W (it used to copy x into the plan's buffer: 4 us of a 15 us 33x1000x10 product)."""
    if backend == "cython":
        backend_or_skip("cython")
    rng = np.random.default_rng(8)
    w = rng.uniform(-1, 1, (30, 30) if weight_first else (40, 7)).astype(np.float32)
    b = GraphBuilder()
    x = b.input("x", (30, 40) if weight_first else (9, 40))
    graph = b.build([b.matmul(b.const(w), x) if weight_first else b.matmul(x, b.const(w))])
    plan = compile_graph(graph, pin=backend, use_cache=False)
    assert plan._direct is not None, "one matmul of one input and a constant runs in place"
    x1, x2 = (rng.uniform(-1, 1, graph.shape("x")).astype(np.float32) for _ in range(2))
    keep = x1.copy()
    y1, y2 = plan.run1(x1), plan(x2)[0]
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(x1, keep)
    for xi, yi in ((x1, y1), (x2, y2)):
        np.testing.assert_allclose(yi, run_reference(graph, {"x": xi})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_ops_one_matmul_plan_that_does_not_read_each_input_once_copies(backend) -> None:
    """x @ x reads one input twice, and a graph input the matmul never reads has no operand:
    both keep the copy path, and both still compute the right thing."""
    if backend == "cython":
        backend_or_skip("cython")
    rng = np.random.default_rng(9)
    b = GraphBuilder()
    x = b.input("x", (6, 6))
    square = b.build([b.matmul(x, x)])
    b = GraphBuilder()
    x = b.input("x", (6, 6))
    b.input("unused", (2,))
    ignores = b.build([b.matmul(x, b.const(np.eye(6, dtype=np.float32)))])
    for graph in (square, ignores):
        plan = compile_graph(graph, pin=backend, use_cache=False)
        assert plan._direct is None
        feeds = {n: rng.uniform(-1, 1, graph.shape(n)).astype(np.float32) for n in graph.inputs}
        want = run_reference(graph, feeds)[0]
        np.testing.assert_allclose(plan(*feeds.values())[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_ops_plan_step_calls_name_each_call_and_rerun_the_plan(backend) -> None:
    """``step_calls`` lists a run's calls in order with the step each runs: run one by one on
    the plan's buffers (as benchmarks/ops_steps.py times them) they give the plan's output."""
    backend_or_skip(backend)
    b = GraphBuilder()
    x = b.input("x", (6, 20))
    w = b.const(np.linspace(-1, 1, 20 * 12, dtype=np.float32).reshape(20, 12))
    y = b.softmax(b.relu(b.matmul(x, w)))
    graph = b.build([b.transpose(y, (1, 0))])
    plan = compile_graph(graph, pin=backend, use_cache=False)
    pairs = plan.step_calls
    assert len(pairs) == plan.call_count
    names = {step.name for step in plan.steps}
    assert all(name in names for name, _ in pairs), pairs
    xv = np.random.default_rng(2).uniform(-2, 2, (6, 20)).astype(np.float32)
    plan.buffers[graph.inputs[0]][...] = xv
    for _, call in pairs:
        call()
    want = run_reference(graph, {"x": xv})[0]
    np.testing.assert_allclose(plan.buffers[graph.outputs[0]], want, rtol=1e-5, atol=1e-5)


def test_ops_plan_first_call_reads_the_callers_input_in_place() -> None:
    """A network's first step reads the caller's image where it lies when it is the input's
    only reader and its kernel can (a padded conv: its pad prologue, the step's first call,
    or the kernel that reads the input unpadded, always; an unpadded conv: as the kernel the
    search picks allows, in one call: not im2col, whose raster is the first of the step's
    three, as a CPU where the search picks it showed): each run1 reads the array it is given
    (not the previous one), leaves it unchanged, and gives the reference's output. An input
    with a second reader (the sum) keeps the copy into the plan's buffer."""
    backend_or_skip("cython")
    from walle.ops.backends.base import DirectKernel

    rng = np.random.default_rng(4)
    weight = rng.uniform(-1, 1, (8, 3, 3, 3)).astype(np.float32)
    for pad, second_reader in ((1, False), (1, True), (0, False)):
        b = GraphBuilder()
        x = b.input("x", (1, 3, 21, 41))
        y = b.relu(b.conv2d(x, b.const(weight), None, strides=(2, 2), pads=(pad,) * 4))
        out = b.softmax(b.reshape(y, (1, -1)))
        if second_reader:
            out = b.binary("add", out, b.reduce("sum", x, (1, 2, 3), keepdims=False))
        graph = b.build([out])
        plan = compile_graph(graph, pin="cython", use_cache=False)
        first_step, first_call = plan.step_calls[0]
        first = getattr(first_call, "__self__", None)
        alone = sum(name == first_step for name, _ in plan.step_calls) == 1  # not im2col's
        (conv,) = [step for step in plan.steps if step.name == first_step]
        assert (conv.attr("prologue") == 1) == (pad == 1)  # the pad: the conv step's part
        can = isinstance(first, DirectKernel) and len(first.io_arrays()) == 2
        can = can and (alone or pad == 1)
        assert (plan._reader is not None) == (can and not second_reader), (pad, first)
        assert can or pad == 0  # the pad raster, or a kernel reading unpadded, in place
        run1_matches_reference(plan, graph, (1, 3, 21, 41))
