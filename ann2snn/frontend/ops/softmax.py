"""Softmax / LogSoftmax: only at the network output (the importer rejects one that feeds another layer).

Opset < 13 coerces the input to 2-D at ``axis`` (the softmax runs over all axes from ``axis`` on);
opset >= 13 runs over the single ``axis``. Either way the batch axis must not take part. When only one of
the coerced axes is larger than 1 (SqueezeNet's (N, 1000, 1, 1) output) the IR softmax runs over that axis;
otherwise the importer emits Reshape -> Softmax -> Reshape.
"""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.ops._common import full_rank, need_tensor, normalize_axis
from ann2snn.frontend.registry import register
from ann2snn.ir import Flatten, Reshape, Softmax


def _softmax_coerced(ctx, x, axis: int, log: bool):
    x = need_tensor(ctx, x)
    a = normalize_axis(ctx, axis, full_rank(x))
    if a == 0:
        raise ctx.unsupported("axis=0 (after coercion to 2-D) normalizes across the batch")
    lead, tail = x.shape[: a - 1], x.shape[a - 1:]
    big = [i for i, d in enumerate(tail) if d > 1]
    if len(big) <= 1:  # one axis (or none) carries the softmax: no reshape needed
        s_axis = (a - 1) + (big[0] if big else len(tail) - 1)
        return ctx.emit(Softmax, [x], axis=s_axis, log=log)
    flat_shape = tuple(lead) + (int(np.prod(tail)),)
    if len(flat_shape) == 1:
        y = ctx.emit(Flatten, [x], "flat")
    else:
        y = ctx.emit(Reshape, [x], "flat", shape=flat_shape)
    y = ctx.emit(Softmax, [y], "softmax", axis=len(flat_shape) - 1, log=log)
    return ctx.emit(Reshape, [y], shape=tuple(x.shape))


def _softmax_axis(ctx, x, axis: int, log: bool):
    x = need_tensor(ctx, x)
    a = normalize_axis(ctx, axis, full_rank(x))
    if a == 0:
        raise ctx.unsupported("axis=0 normalizes across the batch")
    return ctx.emit(Softmax, [x], axis=a - 1, log=log)


_NOTE = "only at the network output; opset<13 coerce-to-2-D and >=13 single-axis semantics"


@register("Softmax", since=1, ir="Softmax", note=_NOTE)
def softmax(ctx, node, x, *, axis=1):
    return _softmax_coerced(ctx, x, axis, log=False)


@register("Softmax", since=13, ir="Softmax", note=_NOTE)
def softmax_13(ctx, node, x, *, axis=-1):
    return _softmax_axis(ctx, x, axis, log=False)


@register("LogSoftmax", since=1, ir="Softmax(log)", note=_NOTE)
def log_softmax(ctx, node, x, *, axis=1):
    return _softmax_coerced(ctx, x, axis, log=True)


@register("LogSoftmax", since=13, ir="Softmax(log)", note=_NOTE)
def log_softmax_13(ctx, node, x, *, axis=-1):
    return _softmax_axis(ctx, x, axis, log=True)
