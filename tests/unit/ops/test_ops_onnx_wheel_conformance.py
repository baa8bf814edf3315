"""Every other model test the onnx wheel ships (``onnx/backend/test/data/{pytorch-converted,
pytorch-operator,simple}``: PyTorch modules and small graphs, each stored with its inputs and
the outputs PyTorch computed) as an oracle walle did not write.

Each model either runs and matches those outputs on every backend (numpy, cython, OpenCL, and
the default placement: max |walle - expected| <= 1e-4 * max(1, max |expected|), NaN where they
have NaN, the same shapes) or is refused when the Model is built, with a ModelError that names
the node and its op. None may run to a wrong result, or fail only when it runs. The models
that run today must keep running (``RUNS``); one that is refused today may start to run, but
only if it then matches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests._backends import backend_or_skip
from tests.unit.ops._onnx_oracle import assert_matches, names_what_it_refuses
from walle.errors import ModelError
from walle.ops import Model

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
KINDS = ("pytorch-converted", "pytorch-operator", "simple")
CASES = sorted(
    f"{kind}/{path.parent.name}" for kind in KINDS for path in (DATA / kind).glob("*/model.onnx")
)
# The ones walle runs (114 of 140 with onnx 1.23: Embedding by int64 ids, Conv1d, Conv2d and
# Conv3d in their forms, 1-D, 2-D and 3-D pooling, pads, Softmax/Softmin/LogSoftmax, GLU,
# LeakyReLU, PReLU, ELU, SELU, Softplus, PixelShuffle, Linear, reductions, Clip, Pow, Sqrt,
# Sign, Shrink, InstanceNorm, ConvTranspose, repeat (Tile), opset 6's BatchNorm/Gemm/Add forms...).
RUNS = {
    *(
        f"pytorch-converted/test_{name}"
        for name in (
            "AvgPool1d", "AvgPool1d_stride", "AvgPool2d", "AvgPool2d_stride", "ConstantPad2d",
            "Conv1d", "Conv1d_dilated", "Conv1d_groups", "Conv1d_pad1", "Conv1d_pad1size1",
            "Conv1d_pad2", "Conv1d_pad2size1", "Conv1d_stride", "MaxPool1d", "MaxPool1d_stride",
            "MaxPool1d_stride_padding_dilation",
            "ELU", "LogSoftmax", "PReLU_1d", "PReLU_1d_multiparam", "PReLU_2d",
            "PReLU_2d_multiparam", "PReLU_3d", "PReLU_3d_multiparam", "SELU", "Softplus",
            "log_softmax_dim3", "log_softmax_lastdim",
            "Conv2d", "Conv2d_depthwise", "Conv2d_depthwise_padded", "Conv2d_depthwise_strided",
            "Conv2d_depthwise_with_multiplier", "Conv2d_dilated", "Conv2d_groups",
            "Conv2d_groups_thnn", "Conv2d_no_bias", "Conv2d_padding", "Conv2d_strided", "GLU",
            "GLU_dim", "LeakyReLU", "LeakyReLU_with_negval", "Linear_no_bias", "MaxPool2d",
            "MaxPool2d_stride_padding_dilation", "PixelShuffle", "PoissonNLLLLoss_no_reduce",
            "ReLU", "ReflectionPad2d", "ReplicationPad2d", "Sigmoid", "Softmax", "Softmin",
            "Tanh", "ZeroPad2d", "softmax_functional_dim3", "softmax_lastdim",
            "BatchNorm1d_3d_input_eval", "BatchNorm2d_eval", "BatchNorm2d_momentum_eval",
            "BatchNorm3d_eval", "BatchNorm3d_momentum_eval", "Linear", "Softsign",
            "ConvTranspose2d", "ConvTranspose2d_no_bias", "AvgPool3d", "AvgPool3d_stride",
            "AvgPool3d_stride1_pad0_gpu_input", "Conv3d", "Conv3d_dilated",
            "Conv3d_dilated_strided", "Conv3d_groups", "Conv3d_no_bias", "Conv3d_stride",
            "Conv3d_stride_padding", "MaxPool3d", "MaxPool3d_stride", "MaxPool3d_stride_padding",
            "Embedding", "Embedding_sparse",
        )
    ),
    *(
        f"pytorch-operator/test_operator_{name}"
        for name in (
            "addmm", "basic", "chunk", "clip", "concat2", "conv", "convtranspose", "exp",
            "flatten", "index", "repeat", "repeat_dim_overflow",
            "max", "maxpool", "min", "mm", "pad", "params", "permute2", "pow", "reduced_mean",
            "reduced_mean_keepdim", "reduced_sum", "reduced_sum_keepdim", "selu", "sqrt",
            "symbolic_override", "symbolic_override_nested", "view",
        )
    ),
    "simple/test_single_relu_model",
    "simple/test_sign_model",
    "simple/test_shrink",
}  # fmt: skip
BACKENDS = (None, "numpy", "cython", "opencl")


def _tensors(folder: Path, prefix: str) -> list[np.ndarray]:
    files = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[-1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in files]


def test_the_wheel_holds_the_models_this_test_expects() -> None:
    assert len(CASES) >= 100
    assert set(CASES) >= RUNS


@pytest.mark.parametrize("case", CASES)
def test_onnx_wheel_model_matches_its_outputs_or_is_refused_by_name(case: str) -> None:
    folder = DATA / case
    proto = onnx.load(str(folder / "model.onnx"))
    sets = sorted(folder.glob("test_data_set_*"))
    assert sets, f"{case}: no test data"
    for backend in BACKENDS:
        if backend is not None:
            backend_or_skip(backend)
        try:
            model = Model(folder / "model.onnx", backend=backend, use_cache=False, trials=False)
        except ModelError as exc:
            assert case not in RUNS, f"{case} is refused now: {exc}"
            assert names_what_it_refuses(str(exc), proto), f"{case}: names nothing: {exc}"
            return
        for data in sets:
            outputs = model.run(*_tensors(data, "input"))
            wants = _tensors(data, "output")
            assert len(outputs) == len(wants), case
            for i, (got, want) in enumerate(zip(outputs, wants, strict=True)):
                assert_matches(got, want, f"{case} {data.name} output {i} on {backend}")
