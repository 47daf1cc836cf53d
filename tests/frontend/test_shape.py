"""Flatten, Reshape (constant and Shape/Gather/Unsqueeze/Concat/Slice-computed targets), Transpose,
Squeeze/Unsqueeze, Concat, and the constant folding of Shape/Gather/Slice; rejections."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model

RNG = np.random.default_rng(6)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def kinds(g):
    return [type(n).__name__ for n in g.nodes]


# ------------------------------------------------------------------------------------------- Flatten


@pytest.mark.parametrize("opset", [9, 11, 13])
def test_flatten_axis1(opset):
    g = assert_matches_onnxruntime(one_node_model("Flatten", [("x", (2, 3, 4, 5))], opset=opset, axis=1),
                                   f32(2, 3, 4, 5))
    assert kinds(g) == ["Flatten"]


@pytest.mark.parametrize("shape, axis", [((2, 1, 6), 2), ((2, 1, 1, 5), -1), ((2, 7), 1)])
def test_flatten_equivalent_axes(shape, axis):
    assert_matches_onnxruntime(one_node_model("Flatten", [("x", shape)], opset=13, axis=axis), f32(*shape))


@pytest.mark.parametrize("axis, match", [(0, "batch axis into the features"), (2, "merges sample axes")])
def test_flatten_other_axes_rejected(axis, match):
    m = one_node_model("Flatten", [("x", (2, 3, 4, 5))], axis=axis, name="flat")
    with pytest.raises(UnsupportedModelError, match=f"flat.*{match}"):
        load_onnx(m)


# ------------------------------------------------------------------------------------------- Reshape


@pytest.mark.parametrize("target, ir", [
    ((0, -1), ["Flatten"]),
    ((-1, 60), ["Flatten"]),
    ((2, -1), ["Flatten"]),          # the declared batch
    ((0, 4, 15), ["Reshape"]),
    ((-1, 3, 20), ["Reshape"]),
    ((0, 0, -1), ["Reshape"]),       # 0 copies the input dim
    ((0, 3, 4, 5), []),              # identity
])
@pytest.mark.parametrize("opset", [7, 14])
def test_reshape_constant_target(target, ir, opset):
    m = one_node_model("Reshape", [("x", (2, 3, 4, 5))], initializers={"s": i64(*target)}, opset=opset)
    g = assert_matches_onnxruntime(m, f32(2, 3, 4, 5))
    assert kinds(g) == ir


@pytest.mark.parametrize("target", [(-1, 6), (6, -1), (3, 4, 10), (-1, 3, -1)])
def test_reshape_mixing_batch_rejected(target):
    m = one_node_model("Reshape", [("x", (2, 3, 4))], initializers={"s": i64(*target)}, name="mix")
    with pytest.raises(UnsupportedModelError, match="mix.*mixes the batch axis"):
        load_onnx(m)


def test_reshape_positive_batch_with_dynamic_batch_rejected():
    m = one_node_model("Reshape", [("x", ("N", 3, 4))], initializers={"s": i64(1, 12)}, name="fixb")
    with pytest.raises(UnsupportedModelError, match="fixb.*batch is dynamic"):
        load_onnx(m)


def test_reshape_target_from_activation_rejected():
    m = one_node_model("Reshape", [("x", (2, 3, 4)), ("s", (1, 2))], name="dyn")
    with pytest.raises(UnsupportedModelError, match="dyn.*computed from run-time values"):
        load_onnx(m)


def test_reshape_allowzero_with_zero_rejected():
    m = one_node_model("Reshape", [("x", (2, 3, 4))], initializers={"s": i64(0, 12)}, opset=14, allowzero=1,
                       name="az")
    with pytest.raises(UnsupportedModelError, match="az.*allowzero"):
        load_onnx(m)


def _dynamic_flatten(opset, batch):
    """PyTorch's x.view(x.size(0), -1): Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape."""
    unsq = (helper.make_node("Unsqueeze", ["b"], ["bu"], axes=[0]) if opset < 13
            else helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]))
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT64, [], [0])),
             helper.make_node("Gather", ["s", "zero"], ["b"], axis=0), unsq,
             helper.make_node("Concat", ["bu", "minus1"], ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["y"])]
    inits = {"minus1": i64(-1)} | ({"ax": i64(0)} if opset >= 13 else {})
    return make_model(nodes, [("x", (batch, 3, 2, 2))], ["y"], inits, opset=opset)


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize("batch", [1, 4, "N"])
def test_reshape_target_from_shape_chain(opset, batch):
    m = _dynamic_flatten(opset, batch)
    g = assert_matches_onnxruntime(m, f32(4 if batch == "N" else batch, 3, 2, 2))
    assert kinds(g) == ["Flatten"]
    assert g.run(f32(7, 3, 2, 2)).shape == (7, 12)  # the batch stays free


@pytest.mark.parametrize("opset", [9, 13])
def test_reshape_target_from_shape_slice(opset):
    # t = concat(shape(x)[0:2], [-1]): keeps the batch and the channels, flattens H and W
    sl = (helper.make_node("Slice", ["s"], ["h"], starts=[0], ends=[2], axes=[0]) if opset < 10
          else helper.make_node("Slice", ["s", "st", "en", "ax"], ["h"]))
    nodes = [helper.make_node("Shape", ["x"], ["s"]), sl,
             helper.make_node("Concat", ["h", "minus1"], ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["y"])]
    inits = {"minus1": i64(-1), "st": i64(0), "en": i64(2), "ax": i64(0)} if opset >= 10 else {"minus1": i64(-1)}
    m = make_model(nodes, [("x", ("N", 3, 4, 5))], ["y"], inits, opset=opset)
    g = assert_matches_onnxruntime(m, f32(2, 3, 4, 5))
    assert g.nodes[0].shape == (3, 20)


def test_shape_opset15_start_end_and_slice_step():
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=1),            # [3, 4, 5]
             helper.make_node("Slice", ["s", "st", "en", "ax", "sp"], ["r"]),  # [5, 4, 3]
             helper.make_node("Concat", ["z", "r"], ["t"], axis=0),          # [0, 5, 4, 3]
             helper.make_node("Reshape", ["x", "t"], ["y"])]
    inits = {"st": i64(-1), "en": i64(-100), "ax": i64(0), "sp": i64(-1), "z": i64(0)}
    m = make_model(nodes, [("x", (2, 3, 4, 5))], ["y"], inits, opset=15)
    g = assert_matches_onnxruntime(m, f32(2, 3, 4, 5))
    assert g.nodes[0].shape == (5, 4, 3)


def test_gather_on_activation_rejected():
    m = one_node_model("Gather", [("x", (2, 5))], initializers={"i": i64(1)}, axis=1, name="gat")
    with pytest.raises(UnsupportedModelError, match="gat.*run-time tensor"):
        load_onnx(m)


def test_slice_on_activation_rejected():
    m = one_node_model("Slice", [("x", (2, 5))], initializers={"s": i64(0), "e": i64(2), "a": i64(1)}, name="sl")
    with pytest.raises(UnsupportedModelError, match="sl.*Slice of a run-time tensor"):
        load_onnx(m)


# ------------------------------------------------------------------------------------------- Transpose


@pytest.mark.parametrize("perm, ir", [([0, 3, 1, 2], ["Transpose"]), ([0, 2, 3, 1], ["Transpose"]),
                                      ([0, 1, 2, 3], [])])
def test_transpose(perm, ir):
    g = assert_matches_onnxruntime(one_node_model("Transpose", [("x", (2, 6, 5, 4))], perm=perm), f32(2, 6, 5, 4))
    assert kinds(g) == ir


def test_nhwc_input_as_keras_exports_it():
    w = f32(4, 1, 3, 3)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])]
    g = assert_matches_onnxruntime(make_model(nodes, [("x", ("N", 8, 8, 1))], ["y"], {"w": w}, opset=10),
                                   f32(3, 8, 8, 1))
    assert g.inputs[0].shape == (8, 8, 1)


@pytest.mark.parametrize("perm", [[1, 0, 2], None])
def test_transpose_moving_batch_rejected(perm):
    attrs = {"perm": perm} if perm else {}
    m = one_node_model("Transpose", [("x", (2, 3, 4))], name="tb", **attrs)
    with pytest.raises(UnsupportedModelError, match="tb.*moves the batch axis"):
        load_onnx(m)


# ------------------------------------------------------------------------------------------- Squeeze / Unsqueeze


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op, shape, axes", [
    ("Unsqueeze", (2, 3, 4), [1]), ("Unsqueeze", (2, 3, 4), [-1, 2]), ("Unsqueeze", (2, 6), [2, 3]),
    ("Squeeze", (2, 3, 1, 4, 1), [2]), ("Squeeze", (2, 3, 1, 4, 1), [-1, 2]), ("Squeeze", (2, 3, 1, 4, 1), None),
])
def test_squeeze_unsqueeze(op, shape, axes, opset):
    if axes is None:
        m = one_node_model(op, [("x", shape)], opset=opset)
    elif opset < 13:
        m = one_node_model(op, [("x", shape)], opset=opset, axes=axes)
    else:
        m = one_node_model(op, [("x", shape)], initializers={"axes": i64(*axes)}, opset=opset)
    g = assert_matches_onnxruntime(m, f32(*shape))
    assert set(kinds(g)) <= {"Reshape", "Flatten"}


@pytest.mark.parametrize("op, shape", [("Unsqueeze", (2, 3)), ("Squeeze", (1, 3))])
def test_squeeze_unsqueeze_batch_axis_rejected(op, shape):
    m = one_node_model(op, [("x", shape)], opset=11, axes=[0], name="sq0")
    with pytest.raises(UnsupportedModelError, match="sq0.*batch axis"):
        load_onnx(m)


def test_squeeze_without_axes_on_batch1_model_rejected():
    m = one_node_model("Squeeze", [("x", (1, 3, 1))], opset=13, name="sqall")
    with pytest.raises(UnsupportedModelError, match="sqall.*remove the batch axis"):
        load_onnx(m)


def test_squeeze_unsqueeze_on_constants_fold():
    nodes = [helper.make_node("Unsqueeze", ["c"], ["cu"], axes=[0, 2]),   # (1, 3, 1)
             helper.make_node("Squeeze", ["cu"], ["cs"], axes=[0]),          # (3, 1)
             helper.make_node("Unsqueeze", ["cs"], ["c3"], axes=[2]),        # (3, 1, 1)
             helper.make_node("Add", ["x", "c3"], ["y"])]
    g = assert_matches_onnxruntime(make_model(nodes, [("x", (2, 3, 4, 4))], ["y"], {"c": f32(3)}, opset=11),
                                   f32(2, 3, 4, 4))
    assert kinds(g) == ["ScaleShift"]


# ------------------------------------------------------------------------------------------- Concat


@pytest.mark.parametrize("axis", [1, -3, 2, 3])
def test_concat_activations(axis):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["x", "r", "x"], ["y"], axis=axis)]
    g = assert_matches_onnxruntime(make_model(nodes, [("x", (2, 3, 4, 5))], ["y"]), f32(2, 3, 4, 5))
    assert kinds(g) == ["ReLU", "Concat"]


def test_concat_batch_axis_rejected():
    m = one_node_model("Concat", [("x", (2, 3))], node_inputs=["x", "x"], axis=0, name="cat0")
    with pytest.raises(UnsupportedModelError, match="cat0.*batch axis"):
        load_onnx(m)


def test_concat_constant_with_activation_rejected():
    m = one_node_model("Concat", [("x", (2, 3))], initializers={"c": f32(2, 3)}, axis=1, name="catc")
    with pytest.raises(UnsupportedModelError, match="catc.*constants with activations"):
        load_onnx(m)
