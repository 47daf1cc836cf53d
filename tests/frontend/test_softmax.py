"""Softmax / LogSoftmax: opset < 13 coerce-to-2-D and >= 13 single-axis semantics; only at the output."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import inspect_onnx, load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset, shape, axis, ir", [
    (11, (2, 10), None, ["Softmax"]),
    (11, (2, 10), -1, ["Softmax"]),
    (7, (2, 1000, 1, 1), None, ["Softmax"]),                    # SqueezeNet's output
    (11, (2, 3, 4), 1, ["Flatten", "Softmax", "Reshape"]),      # coerced over 12 values
    (11, (2, 3, 4, 5), 2, ["Reshape", "Softmax", "Reshape"]),   # per channel, over 20 values
    (11, (2, 3, 4), 2, ["Softmax"]),
    (13, (2, 10), None, ["Softmax"]),
    (13, (2, 3, 4), None, ["Softmax"]),                         # last axis
    (13, (2, 3, 4), 1, ["Softmax"]),
    (13, (2, 3, 4, 5), -3, ["Softmax"]),
    (13, (2, 10, 1, 1), 1, ["Softmax"]),
])
def test_softmax(op, opset, shape, axis, ir):
    attrs = {} if axis is None else {"axis": axis}
    m = one_node_model(op, [("x", shape)], opset=opset, **attrs)
    g = assert_matches_onnxruntime(m, RNG.standard_normal(shape).astype(np.float32) * 3)
    assert [type(n).__name__ for n in g.nodes] == ir
    assert all(n.log == (op == "LogSoftmax") for n in g.nodes if type(n).__name__ == "Softmax")


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_over_batch_rejected(opset):
    m = one_node_model("Softmax", [("x", (2, 10))], opset=opset, axis=0, name="sm0")
    with pytest.raises(UnsupportedModelError, match="sm0.*across the batch"):
        load_onnx(m)


def test_softmax_not_at_output_rejected_with_its_name():
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="inner_softmax", axis=1),
             helper.make_node("Gemm", ["s", "w"], ["y"], name="fc")]
    m = make_model(nodes, [("x", (2, 4))], ["y"], {"w": np.ones((4, 3), np.float32)}, opset=13)
    with pytest.raises(UnsupportedModelError, match="inner_softmax.*only supported at the network output") as e:
        load_onnx(m)
    assert e.value.problems == [("Softmax", "inner_softmax", e.value.problems[0][2])]
    assert "Gemm node 'fc'" in e.value.problems[0][2]
    row = [r for r in inspect_onnx(m).rows if r.name == "inner_softmax"][0]
    assert row.status == "UNSUPPORTED"


def test_softmax_followed_by_identity_and_reshape_is_at_output():
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=-1), helper.make_node("Identity", ["s"], ["i"]),
             helper.make_node("Reshape", ["i", "shape"], ["y"])]
    m = make_model(nodes, [("x", (2, 6))], ["y"], {"shape": np.array([0, 2, 3], np.int64)}, opset=10)
    assert_matches_onnxruntime(m, RNG.standard_normal((2, 6)).astype(np.float32))
