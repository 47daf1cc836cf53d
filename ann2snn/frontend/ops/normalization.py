"""BatchNormalization (inference) -> ScaleShift over the channel axis (axis 1 of the ONNX tensor).

Works on conv activations (N, C, H, W) and on 2-D/3-D ones (N, C) / (N, C, L), such as PyTorch's
BatchNorm1d exported as Unsqueeze -> BatchNormalization -> Squeeze. The passes fold the ScaleShift into
the conv/dense before it, or, when a ReLU sits in between, into the dense/conv after it.
"""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.values import Constant
from ann2snn.frontend.registry import register
from ann2snn.ir import ScaleShift


def bn_scale_shift(gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta  ==  x * scale + shift (float64 maths, float32 out)."""
    g, b, m, v = (np.asarray(a, np.float64).reshape(-1) for a in (gamma, beta, mean, var))
    scale = g / np.sqrt(v + float(eps))
    return scale.astype(np.float32), (b - m * scale).astype(np.float32)


def _batchnorm(ctx, node, x, scale, b, mean, var, epsilon):
    params = (scale, b, mean, var)
    if not all(isinstance(p, Constant) for p in params):
        raise ctx.unsupported("scale, bias, mean and var must be constants (initializers)")
    for out in node.output[1:]:
        if ctx.is_used(out):
            raise ctx.unsupported(f"the training output '{out}' (running/saved statistics) is used")
    if isinstance(x, Constant):
        xv = np.asarray(x.value, np.float32)
        if xv.ndim < 2:
            raise ctx.unsupported(f"the input must have a channel axis, got shape {xv.shape}")
        s, t = bn_scale_shift(*(p.value for p in params), epsilon)
        shape = (-1,) + (1,) * (xv.ndim - 2)
        return Constant((xv * s.reshape(shape) + t.reshape(shape)).astype(np.float32))
    if len(x.shape) < 1:
        raise ctx.unsupported("the input must have a channel axis")
    c = x.shape[0]
    sizes = {p.value.size for p in params}
    if sizes != {c}:
        raise ctx.unsupported(f"statistics of sizes {sorted(sizes)} do not match {c} channels")
    s, t = bn_scale_shift(*(p.value for p in params), epsilon)
    shape = (c,) + (1,) * (len(x.shape) - 1)
    return ctx.emit(ScaleShift, [x], scale=s.reshape(shape), shift=t.reshape(shape))


@register("BatchNormalization", since=7, ir="ScaleShift", note="inference only (spatial=1)")
def batch_normalization(ctx, node, x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1):
    if spatial != 1:
        raise ctx.unsupported("spatial=0 (per-activation statistics) is not supported")
    return _batchnorm(ctx, node, x, scale, b, mean, var, epsilon)


@register("BatchNormalization", since=9, ir="ScaleShift", note="inference only")
def batch_normalization_9(ctx, node, x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9):
    return _batchnorm(ctx, node, x, scale, b, mean, var, epsilon)


@register("BatchNormalization", since=14, ir="ScaleShift",
          note="inference only (training_mode=0; spatial=0 of opset 7 rejected); channels at axis 1, any rank")
def batch_normalization_14(ctx, node, x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, training_mode=0):
    if training_mode:
        raise ctx.unsupported("training_mode=1 normalizes with batch statistics; export the model in eval mode")
    return _batchnorm(ctx, node, x, scale, b, mean, var, epsilon)
