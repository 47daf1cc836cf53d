"""BatchNormalization -> ScaleShift: after a conv, on 2-D and 3-D tensors, opsets 7/9/14/15; rejections."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.ops.normalization import bn_scale_shift
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model

RNG = np.random.default_rng(3)


def bn_params(c):
    return {"scale": RNG.uniform(0.5, 2, c).astype(np.float32), "bias": RNG.standard_normal(c).astype(np.float32),
            "mean": RNG.standard_normal(c).astype(np.float32), "var": RNG.uniform(0.1, 3, c).astype(np.float32)}


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (3, 4), (3, 4, 7)], ids=["NCHW", "NC", "NCL"])
def test_batchnorm_matches_onnxruntime(shape, opset):
    m = one_node_model("BatchNormalization", [("x", shape)], initializers=bn_params(shape[1]), opset=opset,
                       epsilon=1e-3)
    g = assert_matches_onnxruntime(m, RNG.standard_normal(shape).astype(np.float32))
    assert [type(n).__name__ for n in g.nodes] == ["ScaleShift"]


def test_conv_then_batchnorm():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"])]
    m = make_model(nodes, [("x", (2, 3, 6, 6))], ["y"], {"w": w} | bn_params(4), opset=11)
    g = assert_matches_onnxruntime(m, RNG.standard_normal((2, 3, 6, 6)).astype(np.float32))
    assert [type(n).__name__ for n in g.nodes] == ["Conv2d", "ScaleShift"]


def test_batchnorm1d_between_unsqueeze_and_squeeze():
    nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2]),
             helper.make_node("BatchNormalization", ["u", "scale", "bias", "mean", "var"], ["b"]),
             helper.make_node("Squeeze", ["b"], ["y"], axes=[2])]
    m = make_model(nodes, [("x", (5, 6))], ["y"], bn_params(6), opset=9)
    g = assert_matches_onnxruntime(m, RNG.standard_normal((5, 6)).astype(np.float32))
    assert [type(n).__name__ for n in g.nodes] == ["Reshape", "ScaleShift", "Flatten"]


def test_bn_kernel():
    s, t = bn_scale_shift([2.0], [1.0], [3.0], [3.0], 1.0)
    np.testing.assert_allclose(s * 5.0 + t, (5.0 - 3.0) / 2.0 * 2.0 + 1.0)


def test_spatial_0_rejected_on_opset_7():
    m = one_node_model("BatchNormalization", [("x", (2, 4))], initializers=bn_params(4), opset=7, spatial=0,
                       name="bn_sp")
    with pytest.raises(UnsupportedModelError, match="bn_sp.*spatial=0"):
        load_onnx(m)


def test_training_mode_rejected():
    m = one_node_model("BatchNormalization", [("x", (2, 4))], initializers=bn_params(4), opset=14, training_mode=1,
                       name="bn_train")
    with pytest.raises(UnsupportedModelError, match="bn_train.*training_mode=1"):
        load_onnx(m)


def test_used_training_outputs_rejected():
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "rm", "rv"],
                              name="bn_out", training_mode=1),
             helper.make_node("Add", ["y", "rm"], ["z"])]
    m = make_model(nodes, [("x", (2, 4))], ["z"], bn_params(4), opset=15)
    with pytest.raises(UnsupportedModelError, match="bn_out"):
        load_onnx(m)


def test_statistics_from_activation_rejected():
    m = one_node_model("BatchNormalization", [("x", (2, 4))], initializers=bn_params(4),
                       node_inputs=["x", "scale", "bias", "x", "var"], name="bn_dyn")
    with pytest.raises(UnsupportedModelError, match="bn_dyn.*constants"):
        load_onnx(m)
