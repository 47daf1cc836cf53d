"""Conv (2-D, any groups/dilation, explicit or auto pads)."""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.registry import register
from ann2snn.ir import Conv2d


def same_pads(size: tuple[int, int], kernel, stride, dilation, upper: bool) -> tuple[int, int, int, int]:
    """Pads for auto_pad SAME_UPPER/SAME_LOWER: output = ceil(in / stride); the odd cell goes last (upper)."""
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        out = -(-n // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
        small, big = total // 2, total - total // 2
        begin.append(small if upper else big)
        end.append(big if upper else small)
    return (begin[0], begin[1], end[0], end[1])


def resolve_pads(ctx, auto_pad: str, pads, size, kernel, stride, dilation) -> tuple[int, int, int, int]:
    """ONNX pads [x1_begin, x2_begin, x1_end, x2_end] or auto_pad -> IR (top, left, bottom, right)."""
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(size, kernel, stride, dilation, upper=auto_pad == "SAME_UPPER")
    if auto_pad not in ("NOTSET", "VALID", ""):
        raise ctx.unsupported(f"auto_pad={auto_pad!r} is not a valid value")
    if auto_pad == "VALID" or pads is None:
        return (0, 0, 0, 0)
    if len(pads) != 4:
        raise ctx.unsupported(f"pads {list(pads)} are not 2-D pads")
    if any(p < 0 for p in pads):
        raise ctx.unsupported(f"negative pads {list(pads)} are not supported")
    return (int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3]))


@register("Conv", since=1, ir="Conv2d", note="2-D; groups (depthwise), dilations, explicit/asymmetric pads, auto_pad")
def conv(ctx, node, x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    if not isinstance(x, Tensor):
        raise ctx.unsupported("a Conv on a constant input is not supported")
    if not isinstance(w, Constant) or (b is not None and not isinstance(b, Constant)):
        raise ctx.unsupported("weights and bias must be constants (initializers)")
    weight = w.value.astype(np.float32)
    if weight.ndim != 4 or len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D convolution is supported (weight rank {weight.ndim})")
    if kernel_shape is not None and tuple(kernel_shape) != weight.shape[2:]:
        raise ctx.unsupported(f"kernel_shape {list(kernel_shape)} disagrees with the weight {weight.shape}")
    stride = tuple(int(s) for s in (strides or (1, 1)))
    dilation = tuple(int(d) for d in (dilations or (1, 1)))
    if len(stride) != 2 or len(dilation) != 2 or min(stride + dilation) < 1:
        raise ctx.unsupported(f"strides {list(stride)} and dilations {list(dilation)} must be two positive ints")
    padding = resolve_pads(ctx, auto_pad, pads, x.shape[1:], weight.shape[2:], stride, dilation)
    bias = None if b is None else b.value.astype(np.float32).reshape(-1)
    return ctx.emit(Conv2d, [x], weight=weight, bias=bias, stride=stride, padding=padding,
                    dilation=dilation, groups=int(group))
