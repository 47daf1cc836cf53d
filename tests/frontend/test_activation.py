"""Relu, and Clip with min 0 (attributes before opset 11, inputs after); rejections."""

from __future__ import annotations

import numpy as np
import pytest

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, one_node_model

RNG = np.random.default_rng(4)
X = RNG.standard_normal((3, 4, 5)).astype(np.float32) * 5


@pytest.mark.parametrize("opset", [7, 13, 14, 21])
def test_relu(opset):
    g = assert_matches_onnxruntime(one_node_model("Relu", [("x", X.shape)], opset=opset), X)
    assert [type(n).__name__ for n in g.nodes] == ["ReLU"]


@pytest.mark.parametrize("attrs", [{"min": 0.0, "max": 6.0}, {"min": 0.0}], ids=["relu6", "min_only"])
def test_clip_attributes(attrs):
    g = assert_matches_onnxruntime(one_node_model("Clip", [("x", X.shape)], opset=7, **attrs), X)
    assert g.nodes[0].ceiling == attrs.get("max")


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("inits", [{"lo": np.float32(0), "hi": np.float32(6)}, {"lo": np.float32(0)}],
                         ids=["relu6", "min_only"])
def test_clip_inputs(opset, inits):
    m = one_node_model("Clip", [("x", X.shape)], initializers={k: np.array(v) for k, v in inits.items()}, opset=opset)
    assert_matches_onnxruntime(m, X)


def test_clip_with_negative_min_rejected():
    m = one_node_model("Clip", [("x", X.shape)], opset=7, min=-1.0, max=1.0, name="hardtanh")
    with pytest.raises(UnsupportedModelError, match="hardtanh.*only min 0"):
        load_onnx(m)


def test_clip_without_min_rejected():
    m = one_node_model("Clip", [("x", X.shape)], opset=13, name="clip_nomin")
    with pytest.raises(UnsupportedModelError, match="clip_nomin"):
        load_onnx(m)


def test_relu_and_clip_on_constants_fold():
    from onnx import helper

    from ann2snn.frontend.testing import make_model

    nodes = [helper.make_node("Clip", ["c"], ["cc"], min=0.0, max=1.0), helper.make_node("Relu", ["cc"], ["cr"]),
             helper.make_node("Add", ["x", "cr"], ["y"])]
    m = make_model(nodes, [("x", X.shape)], ["y"], {"c": RNG.standard_normal((4, 5)).astype(np.float32)}, opset=10)
    g = assert_matches_onnxruntime(m, X)
    assert [type(n).__name__ for n in g.nodes] == ["ScaleShift"]
