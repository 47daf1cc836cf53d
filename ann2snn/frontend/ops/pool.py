"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (2-D)."""

from __future__ import annotations

from ann2snn.frontend.ops._common import need_tensor
from ann2snn.frontend.ops.conv import resolve_pads
from ann2snn.frontend.registry import register
from ann2snn.ir import AvgPool2d, GlobalAvgPool, GlobalMaxPool, MaxPool2d


def _window(ctx, x, auto_pad, kernel_shape, pads, strides, dilations):
    if kernel_shape is None:
        raise ctx.unsupported("kernel_shape is required")
    if len(kernel_shape) != 2 or len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D pooling is supported (kernel_shape {list(kernel_shape)}, "
                              f"input sample shape {x.shape})")
    kernel = tuple(int(k) for k in kernel_shape)
    stride = tuple(int(s) for s in (strides or (1, 1)))
    dilation = tuple(int(d) for d in (dilations or (1, 1)))
    if len(stride) != 2 or len(dilation) != 2 or min(kernel + stride + dilation) < 1:
        raise ctx.unsupported(f"kernel {list(kernel)}, strides {list(stride)} and dilations {list(dilation)} "
                              "must be two positive ints each")
    padding = resolve_pads(ctx, auto_pad, pads, x.shape[1:], kernel, stride, dilation)
    t, l, b, r = padding
    if max(t, b) >= kernel[0] or max(l, r) >= kernel[1]:
        raise ctx.unsupported(f"pads {list(padding)} must be smaller than the kernel {list(kernel)}")
    # with auto_pad SAME the pads already give ceil(size / stride) windows; ceil_mode changes nothing
    return kernel, stride, padding, dilation


@register("MaxPool", since=1, ir="MaxPool2d",
          note="2-D; asymmetric pads, auto_pad, strides, dilations, ceil_mode; storage_order 0, no Indices output")
def max_pool(ctx, node, x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
             storage_order=0, strides=None):
    x = need_tensor(ctx, x)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the second output (Indices) is not supported")
    if storage_order != 0:
        raise ctx.unsupported(f"storage_order={storage_order} is not supported (only 0, row major)")
    kernel, stride, padding, dilation = _window(ctx, x, auto_pad, kernel_shape, pads, strides, dilations)
    ceil = bool(ceil_mode) and auto_pad in ("NOTSET", "")
    return ctx.emit(MaxPool2d, [x], kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                    ceil_mode=ceil)


@register("AveragePool", since=7, ir="AvgPool2d", note="2-D; pads, auto_pad, count_include_pad, ceil_mode; "
          "dilations 1 only")
def average_pool(ctx, node, x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape=None, pads=None, strides=None):
    x = need_tensor(ctx, x)
    kernel, stride, padding, dilation = _window(ctx, x, auto_pad, kernel_shape, pads, strides, dilations)
    if dilation != (1, 1):
        raise ctx.unsupported(f"dilations {list(dilation)} are not supported for AveragePool")
    ceil = bool(ceil_mode) and auto_pad in ("NOTSET", "")
    return ctx.emit(AvgPool2d, [x], kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil,
                    count_include_pad=bool(count_include_pad))


@register("GlobalAveragePool", since=1, ir="GlobalAvgPool", note="2-D (N, C, H, W) input")
def global_average_pool(ctx, node, x):
    x = need_tensor(ctx, x)
    if len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D inputs (N, C, H, W) are supported, got sample shape {x.shape}")
    return ctx.emit(GlobalAvgPool, [x])


@register("GlobalMaxPool", since=1, ir="GlobalMaxPool", note="2-D (N, C, H, W) input")
def global_max_pool(ctx, node, x):
    x = need_tensor(ctx, x)
    if len(x.shape) != 3:
        raise ctx.unsupported(f"only 2-D inputs (N, C, H, W) are supported, got sample shape {x.shape}")
    return ctx.emit(GlobalMaxPool, [x])
