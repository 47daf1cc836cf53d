"""Layout ops and shape arithmetic: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat, Shape, Gather, Slice.

On run-time tensors they become IR layout nodes (``Flatten``, ``Reshape``, ``Transpose``, ``Concat``), and the
batch axis must stay first and untouched. On constants they are folded at import, which resolves the shape
computations that exporters emit for a dynamic flatten (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``).
``Shape`` of a tensor gives ``[declared batch or 1, *sample shape]`` and marks its first entry as the batch
(``Constant.batch_mask``), so a ``Reshape`` target built from it keeps the batch axis.
"""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.ops._common import (
    check_fold_size, constant_ints, full_rank, mask_like, normalize_axis, with_mask,
)
from ann2snn.frontend.registry import register
from ann2snn.ir import Concat, Flatten, Reshape, Transpose


def _to_sample_shape(ctx, x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Reshape every sample of ``x`` (identity when the shape is unchanged)."""
    shape = tuple(int(d) for d in shape)
    if shape == tuple(x.shape):
        return x
    if len(shape) == 1:
        return ctx.emit(Flatten, [x])
    return ctx.emit(Reshape, [x], shape=shape)


# --------------------------------------------------------------------------------------------- Shape


def _shape_value(ctx, x, start=0, end=None) -> Constant:
    if isinstance(x, Tensor):
        value = np.array((ctx.batch,) + tuple(x.shape), dtype=np.int64)
        mask = np.zeros(value.shape, dtype=bool)
        mask[0] = True
    else:
        value = np.array(np.shape(x.value), dtype=np.int64)
        mask = None
    sl = slice(int(start), None if end is None else int(end))
    return with_mask(value[sl], None if mask is None else mask[sl])


@register("Shape", since=1, ir="constant", note="folded: [declared batch or 1, *sample shape]")
def shape(ctx, node, x):
    return _shape_value(ctx, x)


@register("Shape", since=15, ir="constant", note="folded: [declared batch or 1, *sample shape]; start/end")
def shape_15(ctx, node, x, *, start=0, end=None):
    return _shape_value(ctx, x, start, end)


# --------------------------------------------------------------------------------------------- Gather


@register("Gather", since=1, ir="constant", note="constants only (shape arithmetic): folded")
def gather(ctx, node, data, indices, *, axis=0):
    if not isinstance(data, Constant) or not isinstance(indices, Constant):
        raise ctx.unsupported("Gather on a run-time tensor (indexing activations) is not supported; "
                              "only constant shape arithmetic is folded")
    value = np.asarray(data.value)
    a = normalize_axis(ctx, axis, max(value.ndim, 1))
    idx = np.asarray(indices.value).astype(np.int64)
    n = value.shape[a]
    if np.any((idx < -n) | (idx >= n)):
        raise ctx.unsupported(f"indices {idx.tolist()} are out of range for axis size {n}")
    check_fold_size(ctx, value.shape[:a] + idx.shape + value.shape[a + 1:], value)
    return with_mask(np.take(value, idx, axis=a), np.take(mask_like(data), idx, axis=a))


# --------------------------------------------------------------------------------------------- Unsqueeze / Squeeze


def _unsqueeze(ctx, x, axes: list[int] | None):
    if axes is None:
        raise ctx.unsupported("axes are required")
    if isinstance(x, Constant):
        v = np.asarray(x.value)
        out_rank = v.ndim + len(axes)
        ax = sorted(normalize_axis(ctx, a, out_rank, "axis") for a in axes)
        if len(set(ax)) != len(ax):
            raise ctx.unsupported(f"axes {axes} repeat an axis")
        v2, m2 = v, mask_like(x)
        for a in ax:
            v2, m2 = np.expand_dims(v2, a), np.expand_dims(m2, a)
        return with_mask(v2, m2)
    out_rank = full_rank(x) + len(axes)
    ax = sorted(normalize_axis(ctx, a, out_rank, "axis") for a in axes)
    if len(set(ax)) != len(ax):
        raise ctx.unsupported(f"axes {axes} repeat an axis")
    if ax[0] == 0:
        raise ctx.unsupported("unsqueezing axis 0 would put a new axis before the batch axis")
    full = ["N"] + list(x.shape)
    for a in ax:
        full.insert(a, 1)
    return _to_sample_shape(ctx, x, tuple(full[1:]))


def _squeeze(ctx, x, axes: list[int] | None):
    if isinstance(x, Constant):
        v = np.asarray(x.value)
        if axes is None:
            ax = tuple(i for i, d in enumerate(v.shape) if d == 1)
        else:
            ax = tuple(normalize_axis(ctx, a, v.ndim) for a in axes)
            if any(v.shape[a] != 1 for a in ax):
                raise ctx.unsupported(f"axes {axes} of shape {v.shape} are not all of size 1")
        return with_mask(np.squeeze(v, axis=ax), np.squeeze(mask_like(x), axis=ax))
    rank = full_rank(x)
    if axes is None:
        if ctx.declared_batch == 1:
            raise ctx.unsupported("Squeeze without axes would also remove the batch axis (the model declares "
                                  "batch 1); give the axes explicitly")
        ax = [i + 1 for i, d in enumerate(x.shape) if d == 1]
    else:
        ax = [normalize_axis(ctx, a, rank) for a in axes]
        if 0 in ax:
            raise ctx.unsupported("squeezing axis 0 would remove the batch axis")
        bad = [a for a in ax if x.shape[a - 1] != 1]
        if bad:
            raise ctx.unsupported(f"axes {bad} of the activation (batch, {', '.join(map(str, x.shape))}) "
                                  "are not of size 1")
    keep = tuple(d for i, d in enumerate(x.shape) if i + 1 not in ax)
    return _to_sample_shape(ctx, x, keep)


@register("Unsqueeze", since=1, ir="Reshape | constant", note="axes attribute; not on the batch axis")
def unsqueeze(ctx, node, x, *, axes=None):
    return _unsqueeze(ctx, x, None if axes is None else list(axes))


@register("Unsqueeze", since=13, ir="Reshape | constant",
          note="axes attribute (<13) or constant input (>=13); not on the batch axis")
def unsqueeze_13(ctx, node, x, axes=None):
    return _unsqueeze(ctx, x, constant_ints(ctx, axes, "axes"))


@register("Squeeze", since=1, ir="Reshape | constant", note="axes attribute; not on the batch axis")
def squeeze(ctx, node, x, *, axes=None):
    return _squeeze(ctx, x, None if axes is None else list(axes))


@register("Squeeze", since=13, ir="Reshape | constant",
          note="axes attribute (<13) or constant input (>=13); not on the batch axis")
def squeeze_13(ctx, node, x, axes=None):
    return _squeeze(ctx, x, constant_ints(ctx, axes, "axes"))


# --------------------------------------------------------------------------------------------- Reshape / Flatten


def _onnx_reshape_target(ctx, in_shape: tuple, target: list[int], allowzero: int) -> list[int]:
    """ONNX rules on a concrete shape: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(in_shape):
                raise ctx.unsupported(f"target {target}: a 0 at position {i} has no input dim to copy")
            out.append(int(in_shape[i]))
        else:
            out.append(int(t))
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ctx.unsupported(f"target shape {target} is invalid (at most one -1, no other negatives)")
    total = int(np.prod(in_shape, dtype=np.int64))
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise ctx.unsupported(f"cannot reshape {tuple(in_shape)} into {target}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise ctx.unsupported(f"cannot reshape {tuple(in_shape)} into {target}")
    return out


def _reshape(ctx, data, shape, allowzero: int = 0):
    if not isinstance(shape, Constant):
        raise ctx.unsupported("the target shape is computed from run-time values; only shapes that fold to "
                              "constants (Constant, Shape/Gather/Unsqueeze/Concat/Slice chains) are supported")
    target = [int(t) for t in np.asarray(shape.value).reshape(-1)]
    if isinstance(data, Constant):
        v = np.asarray(data.value)
        out = _onnx_reshape_target(ctx, v.shape, target, allowzero)
        return with_mask(v.reshape(out), mask_like(data).reshape(out))
    x = data
    if not target:
        raise ctx.unsupported("reshaping to a scalar would remove the batch axis")
    if allowzero and 0 in target:
        raise ctx.unsupported("allowzero=1 with a 0 in the target shape gives an empty tensor")
    sample_size = int(np.prod(x.shape, dtype=np.int64))
    first = target[0]
    mask = np.asarray(shape.batch_mask).reshape(-1) if shape.batch_mask is not None else None
    rest = target[1:]
    # 0 in the rest copies the input dim at the same position (position i of the ONNX tensor is sample axis i-1)
    if not allowzero:
        for i, t in enumerate(rest):
            if t == 0:
                if i >= len(x.shape):
                    raise ctx.unsupported(f"target {target}: a 0 at position {i + 1} has no input dim to copy")
                rest[i] = x.shape[i]
    fixed = [d for d in rest if d != -1]
    rest_size = int(np.prod(fixed, dtype=np.int64))
    if first == -1:
        batch_first = -1 not in rest and rest_size == sample_size
    else:
        batch_first = (first == 0 and not allowzero) or (mask is not None and bool(mask[0])) or (
            ctx.declared_batch is not None and first == ctx.declared_batch)
    if not batch_first:
        why = (f"the model's batch is {ctx.declared_batch}" if ctx.declared_batch is not None
               else "the model's batch is dynamic")
        raise ctx.unsupported(
            f"target shape {target} mixes the batch axis with sample axes: its first entry must be the batch "
            f"(0, -1 with the rest giving the {sample_size} values of a sample, or the batch size; {why})")
    if rest.count(-1) > 1 or any(d < -1 for d in rest):
        raise ctx.unsupported(f"target shape {target} is invalid (at most one -1, no other negatives)")
    if -1 in rest:
        if rest_size == 0 or sample_size % rest_size:
            raise ctx.unsupported(f"cannot reshape a sample of shape {x.shape} into {target}")
        rest[rest.index(-1)] = sample_size // rest_size
    if int(np.prod(rest, dtype=np.int64)) != sample_size:
        raise ctx.unsupported(f"target shape {target} does not keep the {sample_size} values of a sample "
                              f"{x.shape}: it mixes the batch axis with sample axes")
    return _to_sample_shape(ctx, x, tuple(rest))


@register("Reshape", since=5, ir="Flatten | Reshape | constant",
          note="constant or folded target; first entry is the batch (0, -1 or the declared batch)")
def reshape(ctx, node, data, shape):
    return _reshape(ctx, data, shape)


@register("Reshape", since=14, ir="Flatten | Reshape | constant",
          note="constant or folded target; first entry is the batch (0, -1 or the declared batch); allowzero")
def reshape_14(ctx, node, data, shape, *, allowzero=0):
    return _reshape(ctx, data, shape, allowzero)


@register("Flatten", since=1, ir="Flatten | constant", note="axis 1 (other axes only when equivalent)")
def flatten(ctx, node, x, *, axis=1):
    if isinstance(x, Constant):
        v = np.asarray(x.value)
        a = int(axis) + v.ndim if axis < 0 else int(axis)
        if not 0 <= a <= v.ndim:
            raise ctx.unsupported(f"axis {axis} is out of range for a rank-{v.ndim} constant")
        out = (int(np.prod(v.shape[:a], dtype=np.int64)), int(np.prod(v.shape[a:], dtype=np.int64)))
        return Constant(v.reshape(out))
    rank = full_rank(x)
    a = int(axis) + rank if axis < 0 else int(axis)
    if not 0 <= a <= rank:
        raise ctx.unsupported(f"axis {axis} is out of range for a rank-{rank} tensor")
    if a == 0:
        raise ctx.unsupported("axis=0 flattens the batch axis into the features")
    if int(np.prod(x.shape[: a - 1], dtype=np.int64)) != 1:
        raise ctx.unsupported(f"axis={axis} merges sample axes {x.shape[: a - 1]} into the batch axis "
                              "(only axis=1, or an equivalent one, is supported)")
    return _to_sample_shape(ctx, x, (int(np.prod(x.shape, dtype=np.int64)),))


# --------------------------------------------------------------------------------------------- Transpose


@register("Transpose", since=1, ir="Transpose | constant", note="the batch axis must stay first (NHWC inputs)")
def transpose(ctx, node, x, *, perm=None):
    if isinstance(x, Constant):
        v = np.asarray(x.value)
        p = list(reversed(range(v.ndim))) if perm is None else [int(i) for i in perm]
        if sorted(p) != list(range(v.ndim)):
            raise ctx.unsupported(f"perm {p} is not a permutation of {v.ndim} axes")
        return with_mask(np.transpose(v, p), np.transpose(mask_like(x), p))
    rank = full_rank(x)
    p = list(reversed(range(rank))) if perm is None else [int(i) for i in perm]
    if sorted(p) != list(range(rank)):
        raise ctx.unsupported(f"perm {p} is not a permutation of the {rank} axes")
    if p[0] != 0:
        raise ctx.unsupported(f"perm {p} moves the batch axis (it must stay at position 0)")
    sample_perm = tuple(i - 1 for i in p[1:])
    if sample_perm == tuple(range(len(sample_perm))):
        return x
    return ctx.emit(Transpose, [x], perm=sample_perm)


# --------------------------------------------------------------------------------------------- Concat


@register("Concat", since=4, ir="Concat | constant", note="activations along a non-batch axis; constants folded")
def concat(ctx, node, *xs, axis=None):
    if axis is None:
        raise ctx.unsupported("the axis attribute is required")
    xs = [x for x in xs if x is not None]
    if not xs:
        raise ctx.unsupported("no inputs")
    if all(isinstance(x, Constant) for x in xs):
        vals = [np.asarray(x.value) for x in xs]
        a = normalize_axis(ctx, axis, vals[0].ndim)
        check_fold_size(ctx, vals[0].shape[:a] + (sum(v.shape[a] for v in vals),) + vals[0].shape[a + 1:], *vals)
        return with_mask(np.concatenate(vals, axis=a), np.concatenate([mask_like(x) for x in xs], axis=a))
    if not all(isinstance(x, Tensor) for x in xs):
        raise ctx.unsupported("concatenating constants with activations is not supported")
    a = normalize_axis(ctx, axis, full_rank(xs[0]))
    if a == 0:
        raise ctx.unsupported("concatenation along the batch axis is not supported")
    if len(xs) == 1:
        return xs[0]
    return ctx.emit(Concat, xs, axis=a - 1)


# --------------------------------------------------------------------------------------------- Slice


def _slice_constant(ctx, x, starts, ends, axes, steps):
    if not isinstance(x, Constant):
        raise ctx.unsupported("Slice of a run-time tensor is not supported (only constant shape arithmetic "
                              "is folded)")
    v = np.asarray(x.value)
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.unsupported("starts, ends, axes and steps differ in length")
    index = [slice(None)] * v.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ctx.unsupported("a step of 0 is invalid")
        index[normalize_axis(ctx, a, v.ndim)] = slice(int(s), int(e), int(st))
    index = tuple(index)
    return with_mask(v[index], mask_like(x)[index])


@register("Slice", since=1, ir="constant", note="constants only (shape arithmetic): folded")
def slice_(ctx, node, x, *, starts=None, ends=None, axes=None):
    if starts is None or ends is None:
        raise ctx.unsupported("starts and ends are required")
    return _slice_constant(ctx, x, list(starts), list(ends), None if axes is None else list(axes), None)


@register("Slice", since=10, ir="constant", note="constants only (shape arithmetic): folded")
def slice_10(ctx, node, x, starts, ends, axes=None, steps=None):
    return _slice_constant(ctx, x, constant_ints(ctx, starts, "starts"), constant_ints(ctx, ends, "ends"),
                           constant_ints(ctx, axes, "axes"), constant_ints(ctx, steps, "steps"))
