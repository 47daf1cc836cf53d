"""Small helpers shared by the converters (argument checks, axis arithmetic, constants)."""

from __future__ import annotations

import math

import numpy as np

from ann2snn.errors import InvalidModelError
from ann2snn.frontend.values import Constant, Tensor


def full_rank(x: Tensor) -> int:
    """Rank of a run-time tensor as ONNX sees it (with the batch axis)."""
    return len(x.shape) + 1


def normalize_axis(ctx, axis: int, rank: int, what: str = "axis") -> int:
    a = int(axis)
    if not -rank <= a < rank:
        raise ctx.unsupported(f"{what} {axis} is out of range for a rank-{rank} tensor")
    return a + rank if a < 0 else a


def constant_ints(ctx, v, what: str) -> list[int] | None:
    """An optional constant integer list input (axes, shapes, starts...)."""
    if v is None:
        return None
    if not isinstance(v, Constant):
        raise ctx.unsupported(f"{what} must be a constant (it is computed at run time)")
    return [int(a) for a in np.asarray(v.value).reshape(-1)]


def constant_scalar(ctx, v, what: str):
    if v is None:
        return None
    if not isinstance(v, Constant):
        raise ctx.unsupported(f"{what} must be a constant")
    a = np.asarray(v.value)
    if a.size != 1:
        raise ctx.unsupported(f"{what} must be a scalar, got shape {a.shape}")
    return a.reshape(-1)[0]


def check_fold_size(ctx, shape, *arrays, itemsize: int | None = None) -> None:
    """Refuse, before numpy allocates it, a folded constant over the per-tensor limit of the walk's
    ``LoadLimits`` (a memory bomb such as Mul/Concat/Gather/MatMul/Expand/Tile of small constants that
    broadcast or repeat to terabytes)."""
    limit = ctx.limits.max_tensor_bytes
    if itemsize is None:
        itemsize = max((np.asarray(a).dtype.itemsize for a in arrays), default=8)
    nbytes = math.prod(int(d) for d in shape) * itemsize
    if nbytes > limit:
        raise InvalidModelError(f"folding constants would create a tensor of shape {tuple(shape)} ({nbytes} bytes), "
                                f"over the {limit}-byte tensor limit")


def need_tensor(ctx, x, what: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise ctx.unsupported(f"the {what} must be a run-time tensor")
    return x


def float32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def mask_like(c: Constant) -> np.ndarray:
    """The batch mask of ``c`` (all False when it has none)."""
    v = np.asarray(c.value)
    return c.batch_mask if c.batch_mask is not None else np.zeros(v.shape, dtype=bool)


def with_mask(value, mask) -> Constant:
    """A Constant whose batch mask is dropped when it marks nothing."""
    value = np.asarray(value)
    if mask is None or not np.any(mask):
        return Constant(value)
    return Constant(value, np.asarray(mask, dtype=bool).reshape(value.shape))
