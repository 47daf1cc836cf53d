"""Constant folding of weight and shape ops (ConstantOfShape, Expand, Tile, Range, Where, Equal) and the n-ary
Sum, each checked against onnxruntime; folded results stay under the caller's load limits."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.importer import Constant, ImportContext
from ann2snn.frontend.ops.fold import range_
from ann2snn.frontend.safety import LoadLimits
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model

RNG = np.random.default_rng(31)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)


def _model(nodes, inits, opset=13, x_shape=X.shape):
    return make_model(nodes, [("x", x_shape)], ["y"], inits, opset=opset)


def ir_ops(g):
    return [type(n).__name__ for n in g.nodes]


@pytest.mark.parametrize("opset", [9, 13, 21])
def test_constant_of_shape_weight_folds_into_conv(opset):
    """The Caffe2-era export: the conv weight is ConstantOfShape(shape) of one value."""
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])
    nodes = [helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=value),
             helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    g = assert_matches_onnxruntime(_model(nodes, {"w_shape": np.array([6, 3, 3, 3], np.int64)}, opset), X)
    assert ir_ops(g) == ["Conv2d", "ReLU"]
    assert np.all(g.nodes[0].weight == np.float32(0.25)) and g.nodes[0].weight.shape == (6, 3, 3, 3)


def test_constant_of_shape_default_value_is_float_zero():
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["z"]), helper.make_node("Add", ["x", "z"], ["y"])]
    assert_matches_onnxruntime(_model(nodes, {"s": np.array([1, 3, 1, 1], np.int64)}), X)


def test_constant_of_shape_bounded_by_the_callers_limits():
    """A 40-byte file asking for a 4 GB tensor is refused before numpy allocates it, under the limits given."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["z"]), helper.make_node("Add", ["x", "z"], ["y"])]
    model = _model(nodes, {"s": np.array([1, 3, 4, 5], np.int64)})  # a 32-byte shape, a 240-byte tensor
    load_onnx(model)  # fine under the defaults
    with pytest.raises(InvalidModelError, match=r"node 'z'.*\(240 bytes\), over the 40-byte tensor limit"):
        load_onnx(model, limits=LoadLimits(max_tensor_bytes=40))
    huge = _model(nodes, {"s": np.array([1 << 20, 1 << 10, 1], np.int64)})
    with pytest.raises(InvalidModelError, match="over the .*-byte tensor limit"):
        load_onnx(huge)


def test_constant_of_shape_negative_dimension_refused():
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["z"], name="cos"), helper.make_node("Add", ["x", "z"], ["y"])]
    with pytest.raises(UnsupportedModelError, match="cos.*negative dimension"):
        load_onnx(_model(nodes, {"s": np.array([3, -1, 1], np.int64)}))


def test_expand_and_tile_of_constants_fold():
    nodes = [helper.make_node("Expand", ["b", "shape"], ["be"]),
             helper.make_node("Tile", ["t", "reps"], ["tt"]),
             helper.make_node("Add", ["x", "be"], ["a"]),
             helper.make_node("Mul", ["a", "tt"], ["y"])]
    inits = {"b": RNG.standard_normal((3, 1, 1)).astype(np.float32), "shape": np.array([1, 3, 4, 1], np.int64),
             "t": RNG.standard_normal((1, 1, 5)).astype(np.float32), "reps": np.array([3, 4, 1], np.int64)}
    g = assert_matches_onnxruntime(_model(nodes, inits), X)
    assert ir_ops(g) == ["ScaleShift", "ScaleShift"]


def test_expand_to_the_same_shape_is_an_identity_on_activations():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Expand", ["r", "shape"], ["y"])]
    g = assert_matches_onnxruntime(_model(nodes, {"shape": np.array([1, 4, 1], np.int64)}), X)
    assert ir_ops(g) == ["ReLU"]


def test_tiling_an_activation_is_refused():
    nodes = [helper.make_node("Tile", ["x", "reps"], ["y"], name="rep")]
    with pytest.raises(UnsupportedModelError, match="rep.*would repeat an activation"):
        load_onnx(_model(nodes, {"reps": np.array([1, 2, 1, 1], np.int64)}))


def test_expand_repeating_channels_is_refused():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Expand", ["r", "shape"], ["y"], name="ex")]
    model = make_model(nodes, [("x", (2, 1, 4, 5))], ["y"], {"shape": np.array([1, 3, 4, 5], np.int64)})
    with pytest.raises(UnsupportedModelError, match="ex.*copies of activations"):
        load_onnx(model)


def test_range_where_equal_build_a_reshape_target():
    """PyTorch's dynamic reshape: Where(Equal(target, 0), Shape(x), target), with Range for the axes."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Range", ["r0", "r1", "r2"], ["axes"]),  # [0, 1]
             helper.make_node("Gather", ["s", "axes"], ["first"]),  # [N, 3]
             helper.make_node("Concat", ["first", "rest"], ["target"], axis=0),  # [N, 3, 0]
             helper.make_node("Equal", ["target", "zero"], ["is0"]),
             helper.make_node("Where", ["is0", "fill", "target"], ["t2"]),  # [N, 3, 20]
             helper.make_node("Reshape", ["x", "t2"], ["y"])]
    inits = {"r0": np.array(0, np.int64), "r1": np.array(2, np.int64), "r2": np.array(1, np.int64),
             "rest": np.array([0], np.int64), "zero": np.array([0], np.int64), "fill": np.array([0, 0, 20], np.int64)}
    g = assert_matches_onnxruntime(_model(nodes, inits, opset=13), X)
    assert ir_ops(g) == ["Reshape"] and g.nodes[0].shape == (3, 20)


@pytest.mark.parametrize("start, limit, delta", [(0, 5, 1), (10, 2, -3), (1.5, 3.0, 0.5), (3, 3, 1)])
def test_range_values(start, limit, delta):
    dtype = np.float32 if isinstance(start, float) else np.int64
    ctx = ImportContext(opset=13, declared_batch=None)
    out = range_(ctx, None, *(Constant(np.array(v, dtype)) for v in (start, limit, delta))).value
    np.testing.assert_array_equal(out, np.arange(start, limit, delta, dtype=dtype))


def test_where_on_activations_is_refused():
    nodes = [helper.make_node("Where", ["c", "x", "x"], ["y"], name="sel")]
    with pytest.raises(UnsupportedModelError, match="sel.*Where selecting between activations"):
        load_onnx(_model(nodes, {"c": np.array([True, False, True, True, False])}))


# --------------------------------------------------------------------------------------------- Sum


def test_sum_of_one_input_is_an_identity():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sum", ["r"], ["y"])]
    g = assert_matches_onnxruntime(_model(nodes, {}, opset=8), X)
    assert ir_ops(g) == ["ReLU"]


@pytest.mark.parametrize("opset", [7, 8, 13])
def test_sum_of_activations_is_one_add(opset):
    """The residual add of Caffe2-exported ResNet-50 and ShuffleNet."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["x", "k"], ["n"]),
             helper.make_node("Sum", ["x", "r", "n"], ["y"])]
    model = _model(nodes, {"k": np.array(-0.5, np.float32)}, opset=opset)
    g = assert_matches_onnxruntime(model, X)
    adds = [n for n in g.nodes if type(n).__name__ == "Add"]
    assert len(adds) == 1 and len(adds[0].inputs) == 3


def test_sum_with_constant_operands_adds_one_shift():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sum", ["c1", "x", "r", "c2"], ["y"])]
    inits = {"c1": RNG.standard_normal((3, 1, 1)).astype(np.float32),
             "c2": RNG.standard_normal((5,)).astype(np.float32)}
    g = assert_matches_onnxruntime(_model(nodes, inits), X)
    assert ir_ops(g) == ["ReLU", "Add", "ScaleShift"]


def test_sum_of_constants_folds():
    nodes = [helper.make_node("Sum", ["a", "b", "c"], ["s"]), helper.make_node("Add", ["x", "s"], ["y"])]
    inits = {k: RNG.standard_normal((3, 1, 1)).astype(np.float32) for k in "abc"}
    g = assert_matches_onnxruntime(_model(nodes, inits), X)
    assert ir_ops(g) == ["ScaleShift"]


def test_sum_broadcasting_between_activations_is_refused():
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Sum", ["x", "p"], ["y"], name="s")]
    with pytest.raises(UnsupportedModelError, match="s.*Sum of activations of different shapes"):
        load_onnx(_model(nodes, {}))
