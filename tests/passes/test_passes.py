"""Each pass on real models (outputs unchanged within float tolerance) and on small synthetic graphs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import run_onnxruntime
from ann2snn.ir import Conv2d, Dense, Graph, ReLU, ScaleShift, TensorSpec
from ann2snn.passes import (
    DEFAULT_PASSES, drop_identity_layout, fold_bias_add, fold_layout_into_dense, fold_scale_shift,
    fold_scale_shift_forward, merge_layout, merge_scale_shifts, remove_dead_nodes, simplify,
)

RNG = np.random.default_rng(11)
N = 16  # images per real-model check


def kinds(g):
    return Counter(type(n).__name__ for n in g.nodes)


def same_outputs(a: Graph, b: Graph, x, rtol=1e-5):
    ya, yb = a.run(x), b.run(x)
    assert ya.shape == yb.shape
    assert np.max(np.abs(ya - yb)) <= rtol * np.max(np.abs(ya)) + 1e-7


def real(external_data, name):
    return external_data.graph(name), external_data.case(name).x[:N]


# ------------------------------------------------------------------------------------------ real models


def test_fold_scale_shift_folds_every_batchnorm_of_resnet20(external_data):
    g, x = real(external_data, "cifar10_resnet20_bn_pytorch16")
    folded = fold_scale_shift(g)
    assert kinds(g)["ScaleShift"] == 21 and "ScaleShift" not in kinds(folded)
    assert len(folded.nodes) == len(g.nodes) - 21 and folded.outputs == g.outputs
    same_outputs(g, folded, x)
    assert len(g.nodes) == 73  # the input graph is untouched (passes are pure)


def test_fold_bias_add_on_keras_matmul_add(external_data):
    g, x = real(external_data, "mnist_cnn_keras2onnx")
    folded = fold_bias_add(g)
    assert kinds(g)["ScaleShift"] == 2 and "ScaleShift" not in kinds(folded)
    assert all(n.bias is not None for n in folded.nodes if isinstance(n, Dense))
    same_outputs(g, folded, x)


def test_fold_layout_into_dense_on_keras(external_data):
    g, x = real(external_data, "mnist_cnn_keras2onnx")
    folded = fold_layout_into_dense(g)
    assert kinds(g)["Transpose"] == 2 and kinds(folded)["Transpose"] == 1  # the NHWC input transpose stays
    assert type(folded.nodes[0]).__name__ == "Transpose"
    same_outputs(g, folded, x)


def test_bn_after_relu_folds_forward_then_layout_cleans_up(external_data):
    g, x = real(external_data, "mnist_lenet5_bn_pytorch13")
    g1 = fold_scale_shift_forward(g)
    assert kinds(g)["ScaleShift"] == 1 and "ScaleShift" not in kinds(g1)
    same_outputs(g, g1, x)
    g2 = merge_layout(g1)  # Reshape(120, 1) -> Flatten becomes one Flatten of a (120,) tensor
    assert kinds(g2)["Reshape"] == 0 and len(g2.nodes) == len(g1.nodes) - 1
    same_outputs(g, g2, x)
    g3 = drop_identity_layout(g2)
    assert kinds(g3)["Flatten"] == 1 and len(g3.nodes) == len(g2.nodes) - 1
    same_outputs(g, g3, x)


def test_remove_dead_nodes_on_real_model(external_data):
    g, x = real(external_data, "mnist_lenet_chainer")
    extra = ReLU("dangling", (g.nodes[3].name,))
    g_dead = g.with_nodes(list(g.nodes) + [extra])
    cleaned = remove_dead_nodes(g_dead)
    assert "dangling" not in cleaned.node_by_name and len(cleaned.nodes) == len(g.nodes)
    same_outputs(g, cleaned, x)
    assert remove_dead_nodes(g) is g  # nothing to do: the same graph comes back


def _with_input_normalization(path, mean, std):
    """The sclbl ResNet with (x - mean) / std moved into the graph, as Sub and Div nodes."""
    m = onnx.load(str(path))
    g = m.graph
    inp = g.input[0].name
    first = next(n for n in g.node if inp in n.input)
    first.input[list(first.input).index(inp)] = "normalized"
    g.initializer.extend([numpy_helper.from_array(mean.reshape(1, 3, 1, 1), "norm_mean"),
                          numpy_helper.from_array(std.reshape(1, 3, 1, 1), "norm_std")])
    g.node.insert(0, helper.make_node("Div", ["centered", "norm_std"], ["normalized"], name="div_std"))
    g.node.insert(0, helper.make_node("Sub", [inp, "norm_mean"], ["centered"], name="sub_mean"))
    return m


def test_input_normalization_merges_and_stays(external_data):
    name = "cifar10_resnet20_pytorch15_sclbl"
    case = external_data.case(name)
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
    std = np.array([0.2023, 0.1994, 0.2010], np.float32)
    model = _with_input_normalization(case.path, mean, std)
    raw = case.x[:N] * std[None, :, None, None] + mean[None, :, None, None]  # back to [0, 1] RGB
    g = load_onnx(model)
    assert [type(n).__name__ for n in g.nodes[:2]] == ["ScaleShift", "ScaleShift"]
    merged = merge_scale_shifts(g)
    assert kinds(merged)["ScaleShift"] == 1
    same_outputs(g, merged, raw)
    simple = simplify(g)
    assert kinds(simple)["ScaleShift"] == 1 and isinstance(simple.nodes[0], ScaleShift)
    assert simple.nodes[0].inputs == (g.inputs[0].name,)
    ref = run_onnxruntime(model, raw, fixed_batch=1)
    np.testing.assert_allclose(simple.run(raw), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_simplify_is_idempotent_and_pure(external_data):
    g, x = real(external_data, "cifar10_resnet20_bn_pytorch16")
    before = [n for n in g.nodes]
    s1 = simplify(g)
    s2 = simplify(s1)
    assert [n.name for n in s1.nodes] == [n.name for n in s2.nodes]
    assert all(a is b for a, b in zip(s1.nodes, s2.nodes))
    assert list(g.nodes) == before


def test_default_passes_is_an_explicit_tuple_of_functions():
    assert isinstance(DEFAULT_PASSES, tuple) and all(callable(p) for p in DEFAULT_PASSES)
    assert {p.__name__ for p in DEFAULT_PASSES} >= {"fold_bias_add", "fold_scale_shift", "fold_scale_shift_forward",
                                                    "merge_layout", "drop_identity_layout"}


# ------------------------------------------------------------------------------------------ synthetic graphs


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def graph(nodes, outputs, shape=(4, 6, 6)):
    return Graph.from_unordered((TensorSpec("x", shape),), nodes, outputs).validate()


X = RNG.standard_normal((3, 4, 6, 6)).astype(np.float32)


def test_backward_fold_skips_multi_user_conv():
    c = Conv2d("c", ("x",), weight=f32(5, 4, 3, 3), bias=f32(5))
    ss = ScaleShift("s", ("c",), scale=f32(5, 1, 1), shift=f32(5, 1, 1))
    r = ReLU("r", ("c",))
    g = graph([c, ss, r], ["s", "r"])
    assert fold_scale_shift(g) is g


def test_backward_fold_skips_spatially_varying_scale():
    c = Conv2d("c", ("x",), weight=f32(5, 4, 3, 3))
    g = graph([c, ScaleShift("s", ("c",), scale=f32(5, 4, 4), shift=f32(1))], ["s"])
    assert fold_scale_shift(g) is g


@pytest.mark.parametrize("padding, shift_zero, folds", [
    ((0, 0, 0, 0), False, True), ((1, 1, 1, 1), False, False), ((1, 1, 1, 1), True, True)])
def test_forward_fold_into_conv(padding, shift_zero, folds):
    shift = np.zeros((4, 1, 1), np.float32) if shift_zero else f32(4, 1, 1)
    nodes = [ReLU("r", ("x",)), ScaleShift("s", ("r",), scale=f32(4, 1, 1), shift=shift),
             Conv2d("c", ("s",), weight=f32(2, 2, 3, 3), bias=f32(2), padding=padding, groups=2)]
    g = graph(nodes, ["c"])
    out = fold_scale_shift_forward(g)
    assert (out is not g) == folds
    same_outputs(g, out, X)


def test_forward_fold_leaves_input_normalization():
    g = graph([ScaleShift("s", ("x",), scale=f32(4, 1, 1), shift=f32(4, 1, 1)),
               Conv2d("c", ("s",), weight=f32(2, 4, 3, 3))], ["c"])
    assert fold_scale_shift_forward(g) is g
    assert kinds(simplify(g))["ScaleShift"] == 1


def test_forward_fold_skips_when_scale_shift_has_two_users():
    nodes = [ReLU("r", ("x",)), ScaleShift("s", ("r",), scale=f32(4, 1, 1), shift=f32(4, 1, 1)),
             Conv2d("c", ("s",), weight=f32(2, 4, 3, 3)), ReLU("r2", ("s",))]
    g = graph(nodes, ["c", "r2"])
    assert fold_scale_shift_forward(g) is g
