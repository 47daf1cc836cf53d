"""Relu, and Clip with min 0 (ReLU6 / clipped ReLU)."""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.registry import register
from ann2snn.ir import ReLU


@register("Relu", since=1, ir="ReLU", note="becomes an IF neuron")
def relu(ctx, node, x):
    if not isinstance(x, Tensor):
        return Constant(np.maximum(x.value, 0))
    return ctx.emit(ReLU, [x])


def _clip_to_relu(ctx, x, lo, hi):
    if isinstance(x, Constant):
        return Constant(np.clip(x.value, -np.inf if lo is None else lo, np.inf if hi is None else hi))
    if lo is None or abs(lo) > 0:
        raise ctx.unsupported(f"Clip with min {lo} is not a ReLU; only min 0 (ReLU6, clipped ReLU) converts")
    if hi is not None and not hi > 0:
        raise ctx.unsupported(f"Clip with max {hi} <= 0 outputs a constant")
    return ctx.emit(ReLU, [x], ceiling=None if hi is None or not np.isfinite(hi) else float(hi))


@register("Clip", since=1, ir="ReLU(ceiling)", note="min must be 0 (ReLU6, clipped ReLU)")
def clip(ctx, node, x, *, min=float("-inf"), max=float("inf")):  # noqa: A002 - ONNX attribute names
    return _clip_to_relu(ctx, x, min, max)


@register("Clip", since=11, ir="ReLU(ceiling)", note="min must be 0 (ReLU6, clipped ReLU)")
def clip_11(ctx, node, x, min=None, max=None):  # noqa: A002
    def scalar(v, default):
        if v is None:
            return default
        if not isinstance(v, Constant):
            raise ctx.unsupported("min/max must be constants")
        return float(np.asarray(v.value).reshape(-1)[0])

    return _clip_to_relu(ctx, x, scalar(min, None), scalar(max, None))
