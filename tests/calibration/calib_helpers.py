"""Small real IR graphs and data shared by the calibration tests.

A plain module with a unique name, not a conftest.py: tests elsewhere import ``conftest`` by name, and
no test-package ``__init__`` either, whose name would shadow the top-level ``calibration`` folder.
"""

from __future__ import annotations

import numpy as np

from ann2snn.ir import Conv2d, Dense, Flatten, Graph, ReLU, TensorSpec


def make_conv_net(seed: int = 0, dead_channel: bool = False) -> Graph:
    """x (3, 8, 8) -> Conv2d 3x3 pad 1 (4 ch) -> ReLU -> Flatten -> Dense 256->5."""
    rng = np.random.default_rng(seed)
    bias = rng.normal(size=4).astype(np.float32)
    if dead_channel:
        bias[0] = -1e3  # channel 0 of the ReLU never activates
    nodes = [
        Conv2d("conv", ("x",), weight=rng.normal(size=(4, 3, 3, 3)).astype(np.float32), bias=bias,
               padding=(1, 1, 1, 1)),
        ReLU("relu", ("conv",)),
        Flatten("flat", ("relu",)),
        Dense("fc", ("flat",), weight=(0.1 * rng.normal(size=(5, 256))).astype(np.float32),
              bias=rng.normal(size=5).astype(np.float32)),
    ]
    return Graph.from_unordered([TensorSpec("x", (3, 8, 8))], nodes, ["fc"], name="convnet").validate()


def make_relu_net(*shape: int) -> Graph:
    """x (shape) -> ReLU: the output is exactly max(x, 0), so the data sets the distribution, and the
    forward pass is bitwise independent of the batch size (unlike a conv, whose float sums may not be)."""
    return Graph.from_unordered(
        [TensorSpec("x", tuple(shape))], [ReLU("relu", ("x",))], ["relu"], name="relunet"
    ).validate()


def per_channel(a: np.ndarray) -> np.ndarray:
    """Batched activations (N, C, ...) -> (C, N * rest): the calibration channel convention."""
    a = np.asarray(a)
    return np.moveaxis(a.reshape(a.shape[0], a.shape[1], -1), 1, 0).reshape(a.shape[1], -1)


def conv_input() -> np.ndarray:
    """(96, 3, 8, 8) float32 normal data for ``make_conv_net``."""
    return np.random.default_rng(1).normal(size=(96, 3, 8, 8)).astype(np.float32)


def heavy_tail() -> np.ndarray:
    """(N, 3) heavy-tailed activations: |Student t, df=3| (polynomial tail), scaled differently per channel."""
    rng = np.random.default_rng(2)
    return (np.abs(rng.standard_t(3.0, size=(20000, 3))) * np.array([1.0, 3.0, 0.5])).astype(np.float32)
