"""Ops that exporters emit for weights and shape arithmetic, folded at import when every input is constant:
ConstantOfShape, Expand, Tile, Range, Where, Equal.

Caffe2-era exports (the ONNX model zoo's ResNet-50, DenseNet-121, ShuffleNet...) store weights as
``ConstantOfShape(shape)``; PyTorch exports build reshape targets with ``Equal``/``Where`` and repeat shapes with
``Expand``/``Tile``. Every folded result is bounded by the walk's ``LoadLimits`` before numpy allocates it, so a
ten-byte file cannot expand into terabytes. On activations these ops have no spiking meaning, except an
``Expand`` or ``Tile`` that leaves the activation's shape unchanged (an identity).
"""

from __future__ import annotations

import math

import numpy as np

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.ops._common import check_fold_size, constant_ints, full_rank, mask_like
from ann2snn.frontend.registry import register


def _constant_input(ctx, v, what: str) -> np.ndarray:
    if not isinstance(v, Constant):
        raise ctx.unsupported(f"the {what} is computed at run time; only constant {what}s are folded")
    if v.batch_mask is not None and np.any(v.batch_mask):
        raise ctx.unsupported(f"the {what} depends on the batch size (it is built from Shape of an activation)")
    return np.asarray(v.value)


def _shape_arg(ctx, v, what: str = "shape") -> list[int]:
    dims = constant_ints(ctx, v, what)
    if any(d < 0 for d in dims):
        raise ctx.unsupported(f"the {what} {dims} has a negative dimension")
    return dims


@register("ConstantOfShape", since=9, ir="constant", note="folded (Caffe2-era weights); bounded by the load limits")
def constant_of_shape(ctx, node, shape, *, value=None):
    dims = _shape_arg(ctx, shape)
    _constant_input(ctx, shape, "shape")
    fill = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value).reshape(-1)
    if fill.size != 1:
        raise ctx.unsupported(f"the value attribute must hold one element, it holds {fill.size}")
    check_fold_size(ctx, dims, fill)
    return Constant(np.full(dims, fill[0], dtype=fill.dtype))


def _expanded_shape(ctx, have: tuple[int, ...], dims: list[int]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(tuple(have), tuple(dims)))
    except ValueError:
        raise ctx.unsupported(f"shape {tuple(have)} does not broadcast to {dims}") from None


@register("Expand", since=8, ir="folded | constant", note="constants folded; on an activation only when the "
          "shape stays the same")
def expand(ctx, node, x, shape):
    dims = constant_ints(ctx, shape, "shape")
    if isinstance(x, Tensor):
        full = (1,) + tuple(x.shape)  # the batch broadcasts against any 1 in the target
        out = _expanded_shape(ctx, full, dims)
        if len(out) != full_rank(x) or tuple(out[1:]) != tuple(x.shape):
            raise ctx.unsupported(f"Expand would repeat the activation (batch, {', '.join(map(str, x.shape))}) "
                                  f"to {list(out)}: copies of activations are not supported")
        return x
    _constant_input(ctx, shape, "shape")
    value = np.asarray(x.value)
    out = _expanded_shape(ctx, value.shape, dims)
    check_fold_size(ctx, out, value)
    mask = np.broadcast_to(mask_like(x), out) if x.batch_mask is not None else None
    return Constant(np.array(np.broadcast_to(value, out)), None if mask is None else np.array(mask))


@register("Tile", since=6, ir="folded | constant", note="constants folded; on an activation only all-1 repeats")
def tile(ctx, node, x, repeats):
    reps = constant_ints(ctx, repeats, "repeats")
    if any(r < 0 for r in reps):
        raise ctx.unsupported(f"repeats {reps} has a negative entry")
    if isinstance(x, Tensor):
        if len(reps) != full_rank(x):
            raise ctx.unsupported(f"repeats {reps} must have one entry per axis of the rank-{full_rank(x)} input")
        if any(r != 1 for r in reps):
            raise ctx.unsupported(f"Tile by {reps} would repeat an activation: copies of activations are not "
                                  "supported")
        return x
    value = np.asarray(x.value)
    if len(reps) != value.ndim:
        raise ctx.unsupported(f"repeats {reps} must have one entry per axis of the rank-{value.ndim} constant")
    check_fold_size(ctx, tuple(d * r for d, r in zip(value.shape, reps)), value)
    mask = np.tile(mask_like(x), reps) if x.batch_mask is not None else None
    return Constant(np.tile(value, reps), mask)


@register("Range", since=11, ir="constant", note="folded (constant start/limit/delta)")
def range_(ctx, node, start, limit, delta):
    a, b, d = (_constant_input(ctx, v, w).reshape(-1) for v, w in
               ((start, "start"), (limit, "limit"), (delta, "delta")))
    if not a.size == b.size == d.size == 1:
        raise ctx.unsupported("start, limit and delta must be scalars")
    if d[0] == 0:
        raise ctx.unsupported("delta is 0")
    dtype = np.result_type(a, b, d)
    # ONNX: number of elements = max(ceil((limit - start) / delta), 0)
    n = max(int(math.ceil((float(b[0]) - float(a[0])) / float(d[0]))), 0)
    check_fold_size(ctx, (n,), itemsize=dtype.itemsize)
    return Constant((a[0] + d[0] * np.arange(n)).astype(dtype))


@register("Where", since=9, ir="constant", note="folded (constant condition and operands)")
def where(ctx, node, condition, x, y):
    c = _constant_input(ctx, condition, "condition").astype(bool)
    if not isinstance(x, Constant) or not isinstance(y, Constant):
        raise ctx.unsupported("Where selecting between activations is not supported; only constants are folded")
    xv, yv = np.asarray(x.value), np.asarray(y.value)
    out = np.broadcast_shapes(c.shape, xv.shape, yv.shape)
    check_fold_size(ctx, out, xv, yv)
    mask = None
    if x.batch_mask is not None or y.batch_mask is not None:  # the batch entry survives where it is selected
        mask = np.where(c, mask_like(x), mask_like(y))
    return Constant(np.where(c, xv, yv), mask)


@register("Equal", since=7, ir="constant", note="folded (constants only)")
def equal(ctx, node, a, b):
    if not isinstance(a, Constant) or not isinstance(b, Constant):
        raise ctx.unsupported("Equal on activations is not supported; only constants are folded")
    av, bv = np.asarray(a.value), np.asarray(b.value)
    check_fold_size(ctx, np.broadcast_shapes(av.shape, bv.shape), itemsize=1)
    return Constant(np.equal(av, bv))
