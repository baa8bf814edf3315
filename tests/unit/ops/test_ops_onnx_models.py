"""The nine CNN architectures shipped in the onnx wheel (``onnx/backend/test/data/light``).

Each model is run twice, at batch 1 (the models declare it):

- as shipped (every weight 0.02, made by ConstantOfShape), on the input the onnx backend
  test feeds (``arange(n) / n``), against the reference output stored beside it;
- with the ConstantOfShape weights replaced by random ones (0.02 * U(0.5, 1.5), seeded), so
  that channels differ (except the few over 5 M elements, kept constant to keep the test
  fast: the first two FC layers of VGG-19, AlexNet and ZFNet), against onnxruntime, on
  every output and on the logits (the input of the final Softmax, added as an output
  without a declared shape).

VGG-19 is the slowest (~11 s on the 2-core test machine, at its declared batch of 1).

Tolerance: max |walle - expected| <= 1e-4 * max |expected| (float32 throughout).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tests.unit.ops._light_models import LIGHT, MODELS, light_input, randomised
from walle.ops import Model


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-4 * scale, f"max abs diff {diff:.3g} > 1e-4 * {scale:.3g}"


@pytest.mark.parametrize("name", MODELS)
def test_ops_light_model_matches_reference_and_onnxruntime(name: str, tmp_path) -> None:
    path = LIGHT / f"light_{name}.onnx"
    proto = onnx.load(str(path))
    x = light_input(proto)
    want = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    _assert_close(Model(path, use_cache=False, trials=False)(x), want)

    random_model = randomised(proto)
    random_path = tmp_path / f"{name}_random.onnx"
    onnx.save(random_model, str(random_path))
    sess = ort.InferenceSession(str(random_path), providers=["CPUExecutionProvider"])
    wants = sess.run(None, {sess.get_inputs()[0].name: x})
    gots = Model(random_path, use_cache=False, trials=False).run(x)
    assert len(gots) == len(wants)
    for got, expected in zip(gots, wants, strict=True):
        _assert_close(got, expected)
