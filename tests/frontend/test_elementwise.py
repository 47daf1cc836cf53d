"""Add / Sub / Mul / Div: by constants -> ScaleShift, two activations -> Add, constants folded."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model

RNG = np.random.default_rng(2)
X_SHAPE = (2, 3, 4, 5)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CONSTANTS = {
    "per_channel": (3, 1, 1),
    "scalar": (),
    "full": (1, 3, 4, 5),
    "last_axis": (5,),
    "sample": (3, 4, 5),
}


@pytest.mark.parametrize("opset", [7, 14])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("const", CONSTANTS, ids=list(CONSTANTS))
def test_tensor_op_constant(op, const, opset):
    c = f32(*CONSTANTS[const])
    if op == "Div":
        c = np.where(np.abs(c) < 0.1, 0.5, c).astype(np.float32)
    m = one_node_model(op, [("x", X_SHAPE)], initializers={"c": c}, opset=opset)
    g = assert_matches_onnxruntime(m, f32(*X_SHAPE))
    assert [type(n).__name__ for n in g.nodes] == ["ScaleShift"]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
def test_constant_op_tensor(op):
    m = one_node_model(op, [("x", X_SHAPE)], initializers={"c": f32(3, 1, 1)}, node_inputs=["c", "x"])
    assert_matches_onnxruntime(m, f32(*X_SHAPE))


@pytest.mark.parametrize("op, kinds", [("Add", ["ReLU", "Add"]), ("Sub", ["ReLU", "ScaleShift", "Add"])])
def test_two_activations_residual(op, kinds):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node(op, ["r", "x"], ["y"], name="res")]
    m = make_model(nodes, [("x", X_SHAPE)], ["y"])
    g = assert_matches_onnxruntime(m, f32(*X_SHAPE))
    assert [type(n).__name__ for n in g.nodes] == kinds


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_constants_are_folded(op):
    # (c1 op c2) is a constant added to the activation: folded at import, one ScaleShift
    nodes = [helper.make_node(op, ["c1", "c2"], ["c"], name="fold"), helper.make_node("Add", ["x", "c"], ["y"])]
    m = make_model(nodes, [("x", X_SHAPE)], ["y"], {"c1": f32(3, 1, 1), "c2": np.full((3, 1, 1), 2, np.float32)})
    g = assert_matches_onnxruntime(m, f32(*X_SHAPE))
    assert [type(n).__name__ for n in g.nodes] == ["ScaleShift"]


def test_integer_constant_division_truncates_like_onnx():
    from ann2snn.frontend.ops.elementwise import _fold

    np.testing.assert_array_equal(_fold("Div", np.array([7, -7]), np.array([2, 2])), [3, -3])


@pytest.mark.parametrize("op", ["Mul", "Div"])
def test_product_of_activations_rejected(op):
    m = one_node_model(op, [("x", X_SHAPE)], node_inputs=["x", "x"], name="prod")
    with pytest.raises(UnsupportedModelError, match=f"prod.*{op} of two activations"):
        load_onnx(m)


def test_constant_divided_by_activation_rejected():
    m = one_node_model("Div", [("x", X_SHAPE)], initializers={"c": f32(1)}, node_inputs=["c", "x"], name="recip")
    with pytest.raises(UnsupportedModelError, match="recip.*reciprocal"):
        load_onnx(m)


def test_division_by_zero_constant_rejected():
    m = one_node_model("Div", [("x", X_SHAPE)], initializers={"c": np.zeros(1, np.float32)}, name="div0")
    with pytest.raises(UnsupportedModelError, match="div0.*contains 0"):
        load_onnx(m)


def test_constant_that_expands_the_activation_rejected():
    m = one_node_model("Add", [("x", (2, 1, 5))], initializers={"c": f32(4, 1)}, name="expand")
    with pytest.raises(UnsupportedModelError, match="expand.*would expand"):
        load_onnx(m)


def test_per_sample_constant_rejected():
    m = one_node_model("Add", [("x", (2, 5))], initializers={"c": f32(2, 5)}, name="persample")
    with pytest.raises(UnsupportedModelError, match="persample.*differs between samples"):
        load_onnx(m)


def test_activations_of_different_shapes_rejected():
    m = one_node_model("Add", [("x", X_SHAPE), ("z", (2, 3, 1, 1))], name="bcast")
    with pytest.raises(UnsupportedModelError, match="bcast.*broadcasting between activations"):
        load_onnx(m)
