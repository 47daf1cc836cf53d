"""Conv: bias, groups (depthwise), dilations, strides, explicit/asymmetric pads, auto_pad; against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, one_node_model

RNG = np.random.default_rng(0)


def conv_model(c_in=4, c_out=6, k=(3, 3), hw=(9, 8), groups=1, bias=True, opset=13, **attrs):
    w = RNG.standard_normal((c_out, c_in // groups) + k).astype(np.float32)
    inits = {"w": w} | ({"b": RNG.standard_normal(c_out).astype(np.float32)} if bias else {})
    return one_node_model("Conv", [("x", (2, c_in) + hw)], initializers=inits, opset=opset, group=groups,
                          kernel_shape=list(k), **attrs)


CASES = {
    "plain": {},
    "no_bias": {"bias": False},
    "pads_sym": {"pads": [1, 1, 1, 1]},
    "pads_asym": {"pads": [0, 1, 2, 1]},
    "strides": {"strides": [2, 1], "pads": [1, 0, 1, 0]},
    "dilations": {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
    "groups2": {"groups": 2},
    "depthwise": {"groups": 4, "c_out": 8},
    "same_upper": {"auto_pad": "SAME_UPPER", "strides": [2, 2], "k": (4, 4)},
    "same_lower": {"auto_pad": "SAME_LOWER", "strides": [2, 2], "k": (4, 4)},
    "same_upper_odd": {"auto_pad": "SAME_UPPER", "strides": [2, 3]},  # (onnxruntime has no dilated SAME)
    "valid": {"auto_pad": "VALID", "strides": [2, 2]},
    "1x1": {"k": (1, 1)},
    "opset7": {"opset": 7, "pads": [1, 1, 1, 1]},
    "opset11": {"opset": 11, "auto_pad": "SAME_LOWER", "k": (2, 2)},
    "opset21": {"opset": 21, "groups": 2, "dilations": [1, 2]},
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_conv_matches_onnxruntime(case):
    kw = CASES[case]
    model = conv_model(**kw)
    x = RNG.standard_normal((2, kw.get("c_in", 4), 9, 8)).astype(np.float32)
    g = assert_matches_onnxruntime(model, x)
    assert [type(n).__name__ for n in g.nodes] == ["Conv2d"]


def test_same_upper_and_lower_pads_differ():
    up = load_onnx(conv_model(auto_pad="SAME_UPPER", strides=[2, 2], k=(4, 4))).nodes[0].padding
    lo = load_onnx(conv_model(auto_pad="SAME_LOWER", strides=[2, 2], k=(4, 4))).nodes[0].padding
    assert up != lo and sum(up) == sum(lo)


def test_conv_1d_rejected_naming_the_node():
    w = RNG.standard_normal((2, 3, 3)).astype(np.float32)
    m = one_node_model("Conv", [("x", (1, 3, 10))], initializers={"w": w}, name="conv1d")
    with pytest.raises(UnsupportedModelError, match="conv1d.*only 2-D") as e:
        load_onnx(m)
    assert e.value.problems[0][:2] == ("Conv", "conv1d")


def test_conv_weight_from_activation_rejected():
    m = one_node_model("Conv", [("x", (1, 3, 5, 5)), ("w", (2, 3, 3, 3))], name="dynconv")
    with pytest.raises(UnsupportedModelError, match="dynconv.*constants"):
        load_onnx(m)
