"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool; against onnxruntime, and rejections."""

from __future__ import annotations

import numpy as np
import pytest

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import assert_matches_onnxruntime, one_node_model

RNG = np.random.default_rng(5)
SHAPE = (2, 3, 11, 10)
X = RNG.standard_normal(SHAPE).astype(np.float32)

MAX_CASES = {
    "k2s2": {"kernel_shape": [2, 2], "strides": [2, 2]},
    "k3s2_asym_pads": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]},
    "chainer_cover_all": {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1], "storage_order": 0},
    "k3s1_pads": {"kernel_shape": [3, 3], "pads": [1, 2, 1, 0]},
    "ceil": {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    "ceil_pads": {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [1, 0, 1, 1], "ceil_mode": 1},
    "dilations": {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [1, 2]},
    "same_upper": {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    "same_lower": {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    "valid": {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
    "rect": {"kernel_shape": [1, 3], "strides": [1, 2]},
}


@pytest.mark.parametrize("opset", [10, 12])
@pytest.mark.parametrize("case", MAX_CASES, ids=list(MAX_CASES))
def test_maxpool(case, opset):
    g = assert_matches_onnxruntime(one_node_model("MaxPool", [("x", SHAPE)], opset=opset, **MAX_CASES[case]), X)
    assert [type(n).__name__ for n in g.nodes] == ["MaxPool2d"]


@pytest.mark.parametrize("case", MAX_CASES, ids=list(MAX_CASES))
def test_maxpool_kernels_agree_across_memory_layouts(case):
    """The strided-view max (NCHW, few channels) and torch's channels-last kernel (many channels) give the
    same values bit for bit, on either side of the channel count that picks between them."""
    import torch

    from ann2snn.ir.reference import _CHANNELS_LAST_POOL_MIN, forward

    for channels in (3, _CHANNELS_LAST_POOL_MIN + 8):
        shape = (2, channels) + SHAPE[2:]
        x = torch.from_numpy(RNG.standard_normal(shape).astype(np.float32))
        g = assert_matches_onnxruntime(one_node_model("MaxPool", [("x", shape)], opset=12, **MAX_CASES[case]),
                                       x.numpy())
        node = g.nodes[0]
        nchw = forward(node, x)
        channels_last = forward(node, x.contiguous(memory_format=torch.channels_last))
        assert torch.equal(nchw, channels_last)


@pytest.mark.parametrize("opset", [7, 8])
def test_maxpool_old_opsets(opset):
    assert_matches_onnxruntime(one_node_model("MaxPool", [("x", SHAPE)], opset=opset, kernel_shape=[3, 3],
                                              strides=[2, 2], pads=[1, 1, 0, 0]), X)


AVG_CASES = {
    "k2s2": {"kernel_shape": [2, 2], "strides": [2, 2]},
    "pads_exclude": {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0},
    "pads_include": {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    "asym_include": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 0], "count_include_pad": 1},
    "ceil_exclude": {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    "ceil_include": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
                     "count_include_pad": 1},
    "same_upper": {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    "same_lower_include": {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER",
                           "count_include_pad": 1},
}


@pytest.mark.parametrize("opset", [11, 19])
@pytest.mark.parametrize("case", AVG_CASES, ids=list(AVG_CASES))
def test_average_pool(case, opset):
    g = assert_matches_onnxruntime(one_node_model("AveragePool", [("x", SHAPE)], opset=opset, **AVG_CASES[case]), X)
    assert [type(n).__name__ for n in g.nodes] == ["AvgPool2d"]


def test_average_pool_opset7():
    assert_matches_onnxruntime(one_node_model("AveragePool", [("x", SHAPE)], opset=7, kernel_shape=[2, 2],
                                              pads=[1, 1, 1, 1], count_include_pad=1), X)


@pytest.mark.parametrize("op, ir", [("GlobalAveragePool", "GlobalAvgPool"), ("GlobalMaxPool", "GlobalMaxPool")])
@pytest.mark.parametrize("opset", [7, 13])
def test_global_pools(op, ir, opset):
    g = assert_matches_onnxruntime(one_node_model(op, [("x", SHAPE)], opset=opset), X)
    assert [type(n).__name__ for n in g.nodes] == [ir]


def test_maxpool_indices_output_rejected():
    m = one_node_model("MaxPool", [("x", SHAPE)], kernel_shape=[2, 2], n_outputs=2, name="mp_idx")
    with pytest.raises(UnsupportedModelError, match="mp_idx.*Indices"):
        load_onnx(m)


def test_maxpool_storage_order_rejected():
    m = one_node_model("MaxPool", [("x", SHAPE)], kernel_shape=[2, 2], storage_order=1, name="mp_so")
    with pytest.raises(UnsupportedModelError, match="mp_so.*storage_order=1"):
        load_onnx(m)


def test_pool_1d_rejected():
    m = one_node_model("MaxPool", [("x", (2, 3, 10))], kernel_shape=[2], name="mp1d")
    with pytest.raises(UnsupportedModelError, match="mp1d.*only 2-D"):
        load_onnx(m)


def test_average_pool_dilations_rejected():
    m = one_node_model("AveragePool", [("x", SHAPE)], opset=19, kernel_shape=[2, 2], dilations=[2, 2], name="ap_d")
    with pytest.raises(UnsupportedModelError, match="ap_d.*dilations"):
        load_onnx(m)


def test_global_pool_on_2d_rejected():
    m = one_node_model("GlobalAveragePool", [("x", (2, 3, 10))], name="gap1d")
    with pytest.raises(UnsupportedModelError, match="gap1d.*only 2-D"):
        load_onnx(m)
