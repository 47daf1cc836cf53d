"""Identity, Dropout (inference), Constant (all value kinds), Cast, float16 initializers."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model

RNG = np.random.default_rng(8)
X = RNG.standard_normal((2, 3, 4)).astype(np.float32)


def test_identity():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])]
    g = assert_matches_onnxruntime(make_model(nodes, [("x", X.shape)], ["y"]), X)
    assert [type(n).__name__ for n in g.nodes] == ["ReLU"]
    assert g.metadata["onnx_outputs"] == {"y": "r"}


@pytest.mark.parametrize("opset, mask", [(7, False), (7, True), (10, True), (12, True), (13, False)])
def test_dropout_is_identity(opset, mask):
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"] if mask else ["d"], ratio=0.5) if opset < 12
             else helper.make_node("Dropout", ["x", "ratio"] if not mask else ["x"], ["d", "mask"] if mask else ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    inits = {"ratio": np.array(0.3, np.float32)} if opset >= 12 and not mask else {}
    g = assert_matches_onnxruntime(make_model(nodes, [("x", X.shape)], ["y"], inits, opset=opset), X)
    assert [type(n).__name__ for n in g.nodes] == ["ReLU"]


def test_dropout_training_mode_false_is_identity():
    nodes = [helper.make_node("Dropout", ["x", "ratio", "train"], ["y"])]
    inits = {"ratio": np.array(0.5, np.float32), "train": np.array(False)}
    assert_matches_onnxruntime(make_model(nodes, [("x", X.shape)], ["y"], inits, opset=13), X)


def test_dropout_used_mask_rejected():
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop", ratio=0.5),
             helper.make_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["d", "mf"], ["y"])]
    with pytest.raises(UnsupportedModelError, match="drop.*mask output"):
        load_onnx(make_model(nodes, [("x", X.shape)], ["y"], opset=10))


def test_dropout_training_mode_true_rejected():
    nodes = [helper.make_node("Dropout", ["x", "ratio", "train"], ["y"], name="drop_t")]
    inits = {"ratio": np.array(0.5, np.float32), "train": np.array(True)}
    with pytest.raises(UnsupportedModelError, match="drop_t.*training_mode=true"):
        load_onnx(make_model(nodes, [("x", X.shape)], ["y"], inits, opset=13))


@pytest.mark.parametrize("attr, value", [
    ("value", helper.make_tensor("v", TensorProto.FLOAT, [3, 1], [1.0, -2.0, 0.5])),
    ("value_float", 1.5),
    ("value_floats", [1.0, 2.0, 3.0, 4.0]),
    ("value_int", 2),
    ("value_ints", [1, 2, 3, 4]),
])
def test_constant_kinds(attr, value):
    opset = 13 if attr == "value" else 12
    nodes = [helper.make_node("Constant", [], ["c"], **{attr: value})]
    if attr.startswith("value_int"):
        nodes.append(helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Add", ["x", "cf"], ["y"]))
    else:
        nodes.append(helper.make_node("Mul", ["x", "c"], ["y"]))
    g = assert_matches_onnxruntime(make_model(nodes, [("x", X.shape)], ["y"], opset=opset), X)
    assert [type(n).__name__ for n in g.nodes] == ["ScaleShift"]


def test_sparse_constant_rejected():
    sparse = helper.make_sparse_tensor(helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
                                       helper.make_tensor("i", TensorProto.INT64, [1], [0]), [4])
    nodes = [helper.make_node("Constant", [], ["c"], name="sp", sparse_value=sparse),
             helper.make_node("Add", ["x", "c"], ["y"])]
    with pytest.raises(UnsupportedModelError, match="sp.*sparse"):
        load_onnx(make_model(nodes, [("x", (2, 4))], ["y"], opset=13))


@pytest.mark.parametrize("to, rtol", [(TensorProto.FLOAT, 1e-6), (TensorProto.DOUBLE, 1e-6),
                                      (TensorProto.FLOAT16, 1e-3)])
def test_cast_activation_to_float_types_is_identity(to, rtol):
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=to), helper.make_node("Relu", ["c"], ["y"])]
    g = assert_matches_onnxruntime(make_model(nodes, [("x", X.shape)], ["y"], opset=13, output_type=to), X,
                                   rtol=rtol, atol=rtol)
    assert [type(n).__name__ for n in g.nodes] == ["ReLU"]


def test_cast_activation_to_int_rejected():
    m = one_node_model("Cast", [("x", X.shape)], to=TensorProto.INT32, name="toint")
    with pytest.raises(UnsupportedModelError, match="toint.*INT32"):
        load_onnx(m)


def test_cast_constants():
    # float -> int64 truncates, int -> float converts; the result is a reshape target
    nodes = [helper.make_node("Cast", ["t"], ["ti"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "ti"], ["y"])]
    m = make_model(nodes, [("x", X.shape)], ["y"], {"t": np.array([0.0, 12.7], np.float32)}, opset=13)
    g = assert_matches_onnxruntime(m, X)
    assert g.nodes[0].name and [type(n).__name__ for n in g.nodes] == ["Flatten"]


def test_float16_initializers_and_input():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float16)
    b = RNG.standard_normal(4).astype(np.float16)
    m = one_node_model("Conv", [("x", (2, 3, 6, 6))], initializers={"w": w, "b": b}, pads=[1, 1, 1, 1])
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    g = assert_matches_onnxruntime(m, RNG.standard_normal((2, 3, 6, 6)).astype(np.float32), rtol=5e-3)
    assert g.nodes[0].weight.dtype == np.float32
    np.testing.assert_array_equal(g.nodes[0].weight, w.astype(np.float32))
