"""Numeric kernels of the folding passes: plain functions on numpy arrays (tested on their own).

Conventions: conv weight (C_out, C_in/groups, kH, kW), dense weight (out, in); a missing bias is zeros.
All maths is done in float64 and returned as float32.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ann2snn.ir.nodes import conv_input_channels


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _bias(bias, n: int) -> np.ndarray:
    return np.zeros(n) if bias is None else _f64(bias).reshape(n)


def per_channel(arr: np.ndarray, shape: Sequence[int]) -> np.ndarray | None:
    """``arr`` broadcast to ``shape`` as one value per channel (axis 0), or None if it varies along other axes."""
    full = np.broadcast_to(np.asarray(arr), tuple(shape))
    if full.ndim == 0:
        return None
    if full.ndim == 1:
        return np.array(full)
    flat = full.reshape(full.shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        return None
    return np.array(flat[:, 0])


def fold_affine_after(weight, bias, scale, shift) -> tuple[np.ndarray, np.ndarray]:
    """Weights of ``scale * (layer(x)) + shift`` with per-output-channel ``scale``/``shift`` (shape (C_out,)).

    Works for dense (out, in) and conv (C_out, ...) weights alike: this is BatchNorm-after-conv folding.
    """
    w = _f64(weight)
    s, t = _f64(scale).reshape(-1), _f64(shift).reshape(-1)
    s = np.broadcast_to(s, (w.shape[0],))
    t = np.broadcast_to(t, (w.shape[0],))
    w2 = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    b2 = _bias(bias, w.shape[0]) * s + t
    return w2.astype(np.float32), b2.astype(np.float32)


def fold_affine_before_dense(weight, bias, scale, shift) -> tuple[np.ndarray, np.ndarray]:
    """Weights of ``dense(scale * x + shift)`` with ``scale``/``shift`` of the input size (exact)."""
    w = _f64(weight)
    n_in = w.shape[1]
    s = np.broadcast_to(_f64(scale).reshape(-1) if np.ndim(scale) else _f64(scale), (n_in,))
    t = np.broadcast_to(_f64(shift).reshape(-1) if np.ndim(shift) else _f64(shift), (n_in,))
    w2 = w * s[None, :]
    b2 = _bias(bias, w.shape[0]) + w @ t
    return w2.astype(np.float32), b2.astype(np.float32)


def fold_affine_before_conv(weight, bias, scale, shift, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Weights of ``conv(scale * x + shift)`` with per-input-channel ``scale``/``shift`` (shape (C_in,)).

    Exact only when the conv has no padding, or when ``shift`` is zero (padding inserts zeros after the
    shift); the pass checks that.
    """
    w = _f64(weight)
    c_out, cpg = w.shape[0], w.shape[1]
    c_in = cpg * groups
    s = np.broadcast_to(_f64(scale).reshape(-1), (c_in,))
    t = np.broadcast_to(_f64(shift).reshape(-1), (c_in,))
    in_idx = conv_input_channels(c_out, cpg, groups)  # (C_out, cpg)
    w2 = w * s[in_idx][:, :, None, None]
    b2 = _bias(bias, c_out) + np.einsum("ojhw,oj->o", w, t[in_idx])
    return w2.astype(np.float32), b2.astype(np.float32)


def compose_scale_shift(s1, t1, s2, t2) -> tuple[np.ndarray, np.ndarray]:
    """``s2 * (s1 * x + t1) + t2`` as one ``s * x + t`` (arrays broadcast together)."""
    s1, t1, s2, t2 = (_f64(a) for a in (s1, t1, s2, t2))
    return (s1 * s2).astype(np.float32), (s2 * t1 + t2).astype(np.float32)


def apply_layout(arr: np.ndarray, node) -> np.ndarray:
    """Move a per-element array (sample shape, no batch) through one IR layout node."""
    from ann2snn.ir import Flatten, Reshape, Transpose

    if isinstance(node, Flatten):
        return arr.reshape(-1)
    if isinstance(node, Reshape):
        return arr.reshape(node.shape)
    if isinstance(node, Transpose):
        return np.transpose(arr, node.perm)
    raise TypeError(f"{type(node).__name__} is not a layout node")


def dense_weight_through_layout(weight, index: np.ndarray) -> np.ndarray:
    """Dense weight reading the flattened source directly, given the chain's index map.

    ``index[j]`` is the flat position in the source tensor of the dense's input element ``j`` (a layout
    chain is a permutation of the source elements), so ``W'[:, index[j]] = W[:, j]``.
    """
    w = np.asarray(weight)
    out = np.empty_like(w)
    out[:, np.asarray(index).reshape(-1)] = w
    return out
