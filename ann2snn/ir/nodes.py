"""Typed IR nodes: one frozen dataclass per op.

Conventions (the whole code base relies on them):
- every node produces exactly one tensor, named after the node; ``inputs`` names the tensors it reads
  (graph inputs or other nodes);
- shapes never include the batch dimension: a conv activation is (C, H, W), a dense one is (N,);
- arrays are NCHW; conv weight is (C_out, C_in/groups, kH, kW); dense weight is (out, in);
- 2-D pads are (top, left, bottom, right); kernel, stride and dilation are (H, W).

Shape inference lives on the node (``output_shape``) so a new op is one class; the torch kernels that
execute nodes live in ``ann2snn.ir.reference``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ann2snn.errors import InvalidModelError

Shape = tuple[int, ...]
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


def _fail(node: "Node", reason: str) -> InvalidModelError:
    return InvalidModelError(f"{type(node).__name__} node '{node.name}': {reason}")


def _need_rank(node: "Node", shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise _fail(node, f"expects a rank-{rank} input (without batch), got shape {shape}")


def _pool_out(node: "Node", size: int, k: int, s: int, p0: int, p1: int, d: int, ceil_mode: bool) -> int:
    span = d * (k - 1) + 1
    padded = size + p0 + p1
    if padded < span:
        raise _fail(node, f"window {span} is larger than the padded input {padded}")
    steps = (padded - span) / s
    out = (math.ceil(steps) if ceil_mode else math.floor(steps)) + 1
    # ceil mode: the last window must start inside the input or the left padding (ONNX/torch rule)
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1
    return out


@dataclass(frozen=True, eq=False)
class Node:
    """Base of every IR op. ``name`` is also the name of the tensor the node produces."""

    name: str
    inputs: tuple[str, ...]

    # how many inputs the op takes (None: any number >= 1)
    arity: ClassVar[int | None] = 1
    # True for ops that only move or reshape data (no arithmetic): conversion passes spikes through them
    is_layout: ClassVar[bool] = False

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        raise NotImplementedError

    def parameters(self) -> dict[str, np.ndarray]:
        """Trainable arrays (for parameter counts and serialization)."""
        return {}

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates per sample, the ANN cost figure that SOPs are compared with."""
        return 0

    def describe(self) -> str:
        """Short attribute summary for tables (``ann2snn inspect``)."""
        return ""


# ----------------------------------------------------------------------------------------------
# weighted (synaptic) layers


def conv_input_channels(c_out: int, channels_per_group: int, groups: int) -> np.ndarray:
    """(C_out, C_in/groups) indices: the input channel that ``weight[o, j]`` of a grouped conv reads,
    ``group(o) * C_in/groups + j`` with ``group(o) = o // (C_out/groups)``."""
    group_of_out = np.arange(c_out) // (c_out // groups)
    return group_of_out[:, None] * channels_per_group + np.arange(channels_per_group)[None, :]


@dataclass(frozen=True, eq=False)
class Conv2d(Node):
    weight: np.ndarray = field(default=None)  # (C_out, C_in/groups, kH, kW)
    bias: np.ndarray | None = None  # (C_out,)
    stride: Pair = (1, 1)
    padding: Pads = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        _need_rank(self, shape, 3)
        c, h, w = shape
        co, ci_g, kh, kw = self.weight.shape
        if ci_g * self.groups != c:
            raise _fail(self, f"weight expects {ci_g * self.groups} input channels, input has {c}")
        if co % self.groups:
            raise _fail(self, f"{co} output channels are not divisible by groups={self.groups}")
        t, l, b, r = self.padding
        oh = _pool_out(self, h, kh, self.stride[0], t, b, self.dilation[0], False)
        ow = _pool_out(self, w, kw, self.stride[1], l, r, self.dilation[1], False)
        return (co, oh, ow)

    def parameters(self):
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})

    def macs(self, in_shapes, out_shape):
        return int(np.prod(out_shape)) * int(np.prod(self.weight.shape[1:]))

    def describe(self):
        co, ci, kh, kw = self.weight.shape
        extra = f" s{self.stride[0]}x{self.stride[1]}" if self.stride != (1, 1) else ""
        extra += f" g{self.groups}" if self.groups != 1 else ""
        extra += f" pad{list(self.padding)}" if any(self.padding) else ""
        return f"{ci * self.groups}->{co} {kh}x{kw}{extra}"


@dataclass(frozen=True, eq=False)
class Dense(Node):
    weight: np.ndarray = field(default=None)  # (out, in)
    bias: np.ndarray | None = None  # (out,)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        _need_rank(self, shape, 1)
        if shape[0] != self.weight.shape[1]:
            raise _fail(self, f"weight expects {self.weight.shape[1]} inputs, input has {shape[0]}")
        return (self.weight.shape[0],)

    def parameters(self):
        return {"weight": self.weight} | ({"bias": self.bias} if self.bias is not None else {})

    def macs(self, in_shapes, out_shape):
        return int(self.weight.size)

    def describe(self):
        return f"{self.weight.shape[1]}->{self.weight.shape[0]}"


# ----------------------------------------------------------------------------------------------
# elementwise and activation


@dataclass(frozen=True, eq=False)
class ScaleShift(Node):
    """y = x * scale + shift, arrays broadcast against the sample shape (BatchNorm, constant Add/Mul...)."""

    scale: np.ndarray = field(default=None)
    shift: np.ndarray = field(default=None)

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        try:
            out = np.broadcast_shapes(shape, self.scale.shape, self.shift.shape)
        except ValueError:
            raise _fail(self, f"constants {self.scale.shape}/{self.shift.shape} do not broadcast to {shape}")
        if tuple(out) != tuple(shape):
            raise _fail(self, f"constants would change the shape {shape} into {tuple(out)}")
        return tuple(shape)

    def parameters(self):
        return {"scale": self.scale, "shift": self.shift}

    def macs(self, in_shapes, out_shape):
        return int(np.prod(out_shape))


@dataclass(frozen=True, eq=False)
class ReLU(Node):
    """max(x, 0), or min(max(x, 0), ceiling) for ReLU6 / clipped ReLU."""

    ceiling: float | None = None

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])

    def describe(self):
        return f"clip 0..{self.ceiling:g}" if self.ceiling is not None else ""


@dataclass(frozen=True, eq=False)
class Add(Node):
    """Sum of tensors of one shape (residual connections)."""

    arity: ClassVar[int | None] = None

    def output_shape(self, in_shapes):
        if len(in_shapes) < 2:
            raise _fail(self, "needs at least two inputs")
        if any(tuple(s) != tuple(in_shapes[0]) for s in in_shapes):
            raise _fail(self, f"input shapes differ: {in_shapes}")
        return tuple(in_shapes[0])

    def macs(self, in_shapes, out_shape):
        return int(np.prod(out_shape)) * (len(in_shapes) - 1)


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Concatenation along ``axis`` (a sample axis: 0 is channels)."""

    axis: int = 0
    arity: ClassVar[int | None] = None

    def output_shape(self, in_shapes):
        rank = len(in_shapes[0])
        if not 0 <= self.axis < rank:
            raise _fail(self, f"axis {self.axis} is out of range for rank {rank}")
        for s in in_shapes:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, in_shapes[0])) if i != self.axis):
                raise _fail(self, f"input shapes do not agree outside axis {self.axis}: {in_shapes}")
        out = list(in_shapes[0])
        out[self.axis] = sum(s[self.axis] for s in in_shapes)
        return tuple(out)

    def describe(self):
        return f"axis {self.axis}"


@dataclass(frozen=True, eq=False)
class Softmax(Node):
    """Softmax (or log-softmax) over a sample axis; only valid at the network output."""

    axis: int = 0
    log: bool = False

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])

    def describe(self):
        return ("log-softmax" if self.log else "softmax") + f" axis {self.axis}"


# ----------------------------------------------------------------------------------------------
# pooling


@dataclass(frozen=True, eq=False)
class MaxPool2d(Node):
    kernel: Pair = (2, 2)
    stride: Pair = (2, 2)
    padding: Pads = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        _need_rank(self, shape, 3)
        c, h, w = shape
        t, l, b, r = self.padding
        oh = _pool_out(self, h, self.kernel[0], self.stride[0], t, b, self.dilation[0], self.ceil_mode)
        ow = _pool_out(self, w, self.kernel[1], self.stride[1], l, r, self.dilation[1], self.ceil_mode)
        return (c, oh, ow)

    def macs(self, in_shapes, out_shape):
        return int(np.prod(out_shape)) * self.kernel[0] * self.kernel[1]

    def describe(self):
        return f"{self.kernel[0]}x{self.kernel[1]} s{self.stride[0]}x{self.stride[1]}" + (
            f" pad{list(self.padding)}" if any(self.padding) else ""
        ) + (" ceil" if self.ceil_mode else "")


@dataclass(frozen=True, eq=False)
class AvgPool2d(Node):
    kernel: Pair = (2, 2)
    stride: Pair = (2, 2)
    padding: Pads = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = False

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        _need_rank(self, shape, 3)
        c, h, w = shape
        t, l, b, r = self.padding
        oh = _pool_out(self, h, self.kernel[0], self.stride[0], t, b, 1, self.ceil_mode)
        ow = _pool_out(self, w, self.kernel[1], self.stride[1], l, r, 1, self.ceil_mode)
        return (c, oh, ow)

    def macs(self, in_shapes, out_shape):
        return int(np.prod(out_shape)) * self.kernel[0] * self.kernel[1]

    def describe(self):
        return f"{self.kernel[0]}x{self.kernel[1]} s{self.stride[0]}x{self.stride[1]}" + (
            f" pad{list(self.padding)}" if any(self.padding) else ""
        )


@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Node):
    """Mean over H and W; output (C, 1, 1) as ONNX GlobalAveragePool."""

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        _need_rank(self, shape, 3)
        return (shape[0], 1, 1)

    def macs(self, in_shapes, out_shape):
        return int(np.prod(in_shapes[0]))


@dataclass(frozen=True, eq=False)
class GlobalMaxPool(Node):
    """Max over H and W; output (C, 1, 1)."""

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        _need_rank(self, shape, 3)
        return (shape[0], 1, 1)

    def macs(self, in_shapes, out_shape):
        return int(np.prod(in_shapes[0]))


# ----------------------------------------------------------------------------------------------
# layout (no arithmetic)


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """Flatten every sample to (N,) in C-order (ONNX Flatten with axis=1)."""

    is_layout: ClassVar[bool] = True

    def output_shape(self, in_shapes):
        return (int(np.prod(in_shapes[0])),)


@dataclass(frozen=True, eq=False)
class Reshape(Node):
    """Reshape every sample to ``shape`` (fully resolved, no -1, without batch)."""

    shape: Shape = ()
    is_layout: ClassVar[bool] = True

    def output_shape(self, in_shapes):
        if int(np.prod(in_shapes[0])) != int(np.prod(self.shape)) or any(d <= 0 for d in self.shape):
            raise _fail(self, f"cannot reshape {in_shapes[0]} into {self.shape}")
        return tuple(self.shape)

    def describe(self):
        return f"to {list(self.shape)}"


@dataclass(frozen=True, eq=False)
class Transpose(Node):
    """Permute the sample axes (the batch axis never moves)."""

    perm: Shape = ()
    is_layout: ClassVar[bool] = True

    def output_shape(self, in_shapes):
        (shape,) = in_shapes
        if sorted(self.perm) != list(range(len(shape))):
            raise _fail(self, f"perm {self.perm} is not a permutation of the {len(shape)} sample axes")
        return tuple(shape[p] for p in self.perm)

    def describe(self):
        return f"perm {list(self.perm)}"


ANN_OPS: tuple[type[Node], ...] = (
    Conv2d, Dense, ScaleShift, ReLU, Add, Concat, Softmax, MaxPool2d, AvgPool2d,
    GlobalAvgPool, GlobalMaxPool, Flatten, Reshape, Transpose,
)
