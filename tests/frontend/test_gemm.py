"""Gemm (alpha, beta, transA, transB, C shapes) and MatMul (+ Add bias) -> Dense; against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model
from ann2snn.passes import fold_bias_add, simplify

RNG = np.random.default_rng(1)
K, N = 7, 5


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CASES = {
    "transB": ({"transB": 1}, (N, K), (N,)),
    "plain": ({}, (K, N), (N,)),
    "alpha_beta": ({"alpha": 0.5, "beta": 2.0, "transB": 1}, (N, K), (N,)),
    "C_row": ({}, (K, N), (1, N)),
    "C_scalar": ({"beta": 3.0}, (K, N), (1,)),
    "no_C": ({}, (K, N), None),
    "transA_0_explicit": ({"transA": 0, "transB": 0}, (K, N), (N,)),
    "beta_0": ({"beta": 0.0}, (K, N), (N,)),
}


@pytest.mark.parametrize("case, opset", [(c, o) for c in CASES for o in (7, 11, 13) if CASES[c][2] or o >= 11])
def test_gemm_matches_onnxruntime(case, opset):
    attrs, b_shape, c_shape = CASES[case]  # (C is optional only from opset 11)
    inits = {"b": f32(*b_shape)} | ({"c": f32(*c_shape)} if c_shape else {})
    m = one_node_model("Gemm", [("a", (3, K))], initializers=inits, opset=opset, **attrs)
    g = assert_matches_onnxruntime(m, f32(3, K))
    assert [type(n).__name__ for n in g.nodes] == ["Dense"]


def test_gemm_transA_noop_on_1x1():
    m = one_node_model("Gemm", [("a", (1, 1))], initializers={"b": f32(1, N), "c": f32(N)}, transA=1)
    assert_matches_onnxruntime(m, f32(1, 1))


def test_gemm_transA_rejected():
    m = one_node_model("Gemm", [("a", (K, 3))], initializers={"b": f32(3, N)}, transA=1, name="fc_ta")
    with pytest.raises(UnsupportedModelError, match="fc_ta.*transA=1 contracts over the batch"):
        load_onnx(m)


def test_gemm_two_activations_rejected():
    m = one_node_model("Gemm", [("a", (3, K)), ("b", (K, N))], name="outer")
    with pytest.raises(UnsupportedModelError, match="outer.*B must be a constant"):
        load_onnx(m)


def test_gemm_per_sample_bias_rejected():
    m = one_node_model("Gemm", [("a", (3, K))], initializers={"b": f32(K, N), "c": f32(3, N)}, name="g")
    with pytest.raises(UnsupportedModelError, match="'g'.*differs between samples"):
        load_onnx(m)


def test_matmul_then_add_is_dense_with_bias_after_fold_bias_add():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["y"], name="bias")]
    m = make_model(nodes, [("x", (4, K))], ["y"], {"w": f32(K, N), "b": f32(N)}, opset=10)
    g = assert_matches_onnxruntime(m, f32(4, K))
    assert [type(n).__name__ for n in g.nodes] == ["Dense", "ScaleShift"]
    folded = fold_bias_add(g)
    assert [type(n).__name__ for n in folded.nodes] == ["Dense"]
    assert folded.outputs == ("y",) and folded.nodes[0].bias is not None
    x = f32(6, K)
    np.testing.assert_allclose(folded.run(x), g.run(x), rtol=1e-5, atol=1e-5)
    assert len(simplify(g).nodes) == 1


@pytest.mark.parametrize("opset", [9, 13])
def test_matmul_matches_onnxruntime(opset):
    m = one_node_model("MatMul", [("x", (2, K))], initializers={"w": f32(K, N)}, opset=opset)
    assert_matches_onnxruntime(m, f32(2, K))


def test_matmul_on_3d_activation_rejected():
    m = one_node_model("MatMul", [("x", (2, 3, K))], initializers={"w": f32(K, N)}, name="mm3")
    with pytest.raises(UnsupportedModelError, match="mm3.*must be 2-D"):
        load_onnx(m)


def test_matmul_of_two_activations_rejected():
    m = one_node_model("MatMul", [("x", (2, K)), ("z", (K, N))], name="mm2")
    with pytest.raises(UnsupportedModelError, match="mm2.*two activations"):
        load_onnx(m)
