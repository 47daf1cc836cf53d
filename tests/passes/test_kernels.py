"""The numeric folding kernels, checked against the computation they replace (torch/numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ann2snn.ir import Flatten, Reshape, Transpose
from ann2snn.passes.kernels import (
    apply_layout, compose_scale_shift, dense_weight_through_layout, fold_affine_after, fold_affine_before_conv,
    fold_affine_before_dense, per_channel,
)

RNG = np.random.default_rng(10)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def conv(x, w, b, groups=1, padding=0):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=padding,
                    groups=groups).numpy()


@pytest.mark.parametrize("bias", [True, False])
def test_fold_affine_after_conv(bias):
    x, w, b, s, t = f32(2, 4, 6, 6), f32(5, 4, 3, 3), f32(5), f32(5), f32(5)
    want = conv(x, w, b if bias else np.zeros(5, np.float32)) * s[:, None, None] + t[:, None, None]
    w2, b2 = fold_affine_after(w, b if bias else None, s, t)
    np.testing.assert_allclose(conv(x, w2, b2), want, rtol=1e-4, atol=1e-4)


def test_fold_affine_after_dense():
    x, w, b, s, t = f32(3, 7), f32(4, 7), f32(4), f32(4), f32(4)
    w2, b2 = fold_affine_after(w, b, s, t)
    np.testing.assert_allclose(x @ w2.T + b2, (x @ w.T + b) * s + t, rtol=1e-5, atol=1e-5)


def test_fold_affine_before_dense():
    x, w, b, s, t = f32(3, 7), f32(4, 7), f32(4), f32(7), f32(7)
    w2, b2 = fold_affine_before_dense(w, b, s, t)
    np.testing.assert_allclose(x @ w2.T + b2, (x * s + t) @ w.T + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups, c_out", [(1, 6), (2, 6), (4, 8)], ids=["dense", "grouped", "depthwise"])
def test_fold_affine_before_conv(groups, c_out):
    x, w, b, s, t = f32(2, 4, 7, 7), f32(c_out, 4 // groups, 3, 3), f32(c_out), f32(4), f32(4)
    want = conv(x * s[:, None, None] + t[:, None, None], w, b, groups)
    w2, b2 = fold_affine_before_conv(w, b, s, t, groups)
    np.testing.assert_allclose(conv(x, w2, b2, groups), want, rtol=1e-4, atol=1e-4)


def test_fold_before_conv_is_inexact_with_padding_and_shift():
    x, w, b, s, t = f32(1, 2, 5, 5), f32(3, 2, 3, 3), f32(3), f32(2), f32(2) + 1
    w2, b2 = fold_affine_before_conv(w, b, s, t)
    assert not np.allclose(conv(x, w2, b2, padding=1),
                           conv(x * s[:, None, None] + t[:, None, None], w, b, padding=1), atol=1e-3)
    w3, b3 = fold_affine_before_conv(w, b, s, np.zeros(2))  # zero shift: exact even with padding
    np.testing.assert_allclose(conv(x, w3, b3, padding=1), conv(x * s[:, None, None], w, b, padding=1),
                               rtol=1e-4, atol=1e-4)


def test_per_channel():
    np.testing.assert_array_equal(per_channel(np.array([1.0, 2.0]).reshape(2, 1, 1), (2, 3, 3)), [1, 2])
    np.testing.assert_array_equal(per_channel(np.array(3.0), (4,)), [3, 3, 3, 3])
    assert per_channel(f32(2, 3, 3), (2, 3, 3)) is None


def test_compose_scale_shift():
    x, s1, t1, s2, t2 = f32(5, 3, 1, 1), f32(3, 1, 1), f32(3, 1, 1), f32(1), f32(3, 1, 1)
    s, t = compose_scale_shift(s1, t1, s2, t2)
    np.testing.assert_allclose(x * s + t, (x * s1 + t1) * s2 + t2, rtol=1e-5, atol=1e-6)


def test_layout_and_dense_through_layout():
    # x (C, H, W) -> transpose to (H, W, C) -> flatten -> dense; equals dense' on flatten(x)
    x, w = f32(3, 2, 4), f32(5, 24)
    chain = [Transpose("t", ("x",), perm=(1, 2, 0)), Reshape("r", ("t",), shape=(8, 3)), Flatten("f", ("r",))]
    index = np.arange(24).reshape(3, 2, 4)
    moved = x
    for c in chain:
        index, moved = apply_layout(index, c), apply_layout(moved, c)
    w2 = dense_weight_through_layout(w, index)
    np.testing.assert_allclose(w2 @ x.reshape(-1), w @ moved, rtol=1e-5, atol=1e-5)
