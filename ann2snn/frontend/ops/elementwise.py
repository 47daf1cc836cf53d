"""Add / Sub / Mul / Div, and the n-ary Sum.

- activation (op) constant -> ``ScaleShift`` (biases, input normalization inside the graph);
- activation + activation of one shape -> ``Add`` (residual); activation - activation -> ``ScaleShift(-1)`` + ``Add``;
- constant (op) constant -> folded (shape arithmetic).

``Sum`` (the residual add of Caffe2-exported ResNet-50 and ShuffleNet) of one input is an identity; of several
activations of one shape one n-ary ``Add``; its constant operands are summed at import and added as one
``ScaleShift`` shift after it.

The product or quotient of two activations has no spiking equivalent and is rejected.
"""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.ops._common import check_fold_size, full_rank
from ann2snn.frontend.registry import register
from ann2snn.ir import Add, ScaleShift


def _align(ctx, x: Tensor, c) -> np.ndarray:
    """The constant operand, as an array broadcasting against the sample shape of ``x`` (batch dropped)."""
    c = np.asarray(c, dtype=np.float32)
    rank = full_rank(x)
    if c.ndim > rank:
        raise ctx.unsupported(f"the constant of shape {c.shape} has more axes than the activation "
                              f"(batch, {', '.join(map(str, x.shape))})")
    if c.ndim == rank:
        if c.shape[0] != 1:
            raise ctx.unsupported(f"the constant of shape {c.shape} differs between samples of the batch")
        c = c[0]
    try:
        out = np.broadcast_shapes(tuple(x.shape), c.shape)
    except ValueError:
        raise ctx.unsupported(f"the constant of shape {c.shape} does not broadcast to {x.shape}") from None
    if tuple(out) != tuple(x.shape):
        raise ctx.unsupported(f"the constant of shape {c.shape} would expand the activation {x.shape} to {out}")
    return np.ascontiguousarray(c)


def _unit(c: np.ndarray, value: float) -> np.ndarray:
    return np.full((1,) * c.ndim, value, dtype=np.float32)


def _scale_shift(ctx, x: Tensor, scale: np.ndarray, shift: np.ndarray) -> Tensor:
    return ctx.emit(ScaleShift, [x], scale=np.ascontiguousarray(scale, dtype=np.float32),
                    shift=np.ascontiguousarray(shift, dtype=np.float32))


def _fold(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX integer Div truncates toward zero
        q = np.abs(a) // np.abs(b)
        return (q * np.sign(a) * np.sign(b)).astype(np.result_type(a, b))
    return a / b


def _two_tensors(ctx, op: str, a: Tensor, b: Tensor) -> Tensor:
    if op in ("Mul", "Div"):
        raise ctx.unsupported(f"{op} of two activations has no spiking equivalent (only {op} by a constant)")
    if tuple(a.shape) != tuple(b.shape):
        raise ctx.unsupported(f"{op} of activations of different shapes {a.shape} and {b.shape} "
                              "(broadcasting between activations) is not supported")
    if op == "Sub":
        b = ctx.emit(ScaleShift, [b], "neg", scale=np.full((1,), -1.0, np.float32),
                     shift=np.zeros((1,), np.float32))
    return ctx.emit(Add, [a, b])


def _binary(ctx, op: str, a, b):
    if isinstance(a, Constant) and isinstance(b, Constant):
        check_fold_size(ctx, np.broadcast_shapes(np.shape(a.value), np.shape(b.value)), a.value, b.value)
        return Constant(_fold(op, a.value, b.value))
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return _two_tensors(ctx, op, a, b)
    if isinstance(a, Tensor):
        c = _align(ctx, a, b.value)
        if op == "Add":
            return _scale_shift(ctx, a, _unit(c, 1.0), c)
        if op == "Sub":
            return _scale_shift(ctx, a, _unit(c, 1.0), -c)
        if op == "Mul":
            return _scale_shift(ctx, a, c, _unit(c, 0.0))
        if np.any(c == 0):
            raise ctx.unsupported("division by a constant that contains 0")
        return _scale_shift(ctx, a, (1.0 / c.astype(np.float64)).astype(np.float32), _unit(c, 0.0))
    # constant (op) activation
    c = _align(ctx, b, a.value)
    if op == "Add":
        return _scale_shift(ctx, b, _unit(c, 1.0), c)
    if op == "Sub":
        return _scale_shift(ctx, b, _unit(c, -1.0), c)
    if op == "Mul":
        return _scale_shift(ctx, b, c, _unit(c, 0.0))
    raise ctx.unsupported("dividing a constant by an activation (a reciprocal) has no spiking equivalent")


_NOTE = "by a constant -> ScaleShift; constants folded"


@register("Add", since=7, ir="ScaleShift | Add", note="by a constant -> ScaleShift; two activations -> Add (residual)")
def add(ctx, node, a, b):
    return _binary(ctx, "Add", a, b)


@register("Sub", since=7, ir="ScaleShift | Add", note="by a constant -> ScaleShift; a - b -> Add(a, -b)")
def sub(ctx, node, a, b):
    return _binary(ctx, "Sub", a, b)


@register("Mul", since=7, ir="ScaleShift", note=_NOTE + "; two activations rejected")
def mul(ctx, node, a, b):
    return _binary(ctx, "Mul", a, b)


@register("Div", since=7, ir="ScaleShift", note="activation / constant -> ScaleShift; constants folded")
def div(ctx, node, a, b):
    return _binary(ctx, "Div", a, b)


@register("Sum", since=6, ir="Add | ScaleShift | constant", note="n-ary; one input is an identity; activations of "
          "one shape -> Add, constant operands -> ScaleShift")
def sum_(ctx, node, *operands):
    if not operands or any(v is None for v in operands):
        raise ctx.unsupported("Sum needs at least one input, and none may be empty")
    tensors = [v for v in operands if isinstance(v, Tensor)]
    constants = [v for v in operands if isinstance(v, Constant)]
    total = None
    for c in constants:  # fold the constant operands into one (their batch masks cannot survive a sum)
        total = c if total is None else _binary(ctx, "Add", total, c)
    if not tensors:
        return total
    if any(tuple(t.shape) != tuple(tensors[0].shape) for t in tensors):
        raise ctx.unsupported("Sum of activations of different shapes "
                              f"{[tuple(t.shape) for t in tensors]} (broadcasting between activations) is not "
                              "supported")
    out = tensors[0] if len(tensors) == 1 else ctx.emit(Add, tensors)
    return out if total is None else _binary(ctx, "Add", out, total)
