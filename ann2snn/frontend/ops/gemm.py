"""Gemm and MatMul with a constant weight -> Dense.

A MatMul's following ``Add`` of a constant (Keras, TF exports) becomes a ``ScaleShift`` with scale 1;
the pass ``ann2snn.passes.fold_bias_add`` folds it into the Dense bias (the importer stays 1:1 with the
ONNX nodes, so ``ann2snn inspect`` shows what the file holds).
"""

from __future__ import annotations

import numpy as np

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.ops._common import check_fold_size, float32
from ann2snn.frontend.registry import register
from ann2snn.ir import Dense


def _bias_vector(ctx, c: np.ndarray, n_out: int, what: str) -> np.ndarray:
    c = np.asarray(c, dtype=np.float32)
    while c.ndim > 1 and c.shape[0] == 1:
        c = c[0]
    if c.ndim > 1:
        raise ctx.unsupported(f"{what} of shape {c.shape} differs between samples of the batch")
    try:
        return np.broadcast_to(c, (n_out,)).astype(np.float32)
    except ValueError:
        raise ctx.unsupported(f"{what} of shape {c.shape} does not broadcast to {n_out} outputs") from None


@register("Gemm", since=1, ir="Dense",
          note="B constant; alpha, beta, transB; transA only when it is a no-op; C broadcast per output")
def gemm(ctx, node, a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):  # noqa: N803
    if isinstance(a, Constant) and isinstance(b, Constant) and (c is None or isinstance(c, Constant)):
        av = np.asarray(a.value, np.float32).T if transA else np.asarray(a.value, np.float32)
        bv = np.asarray(b.value, np.float32).T if transB else np.asarray(b.value, np.float32)
        check_fold_size(ctx, av.shape[:1] + bv.shape[-1:], av)
        y = alpha * (av @ bv)
        if c is not None:
            y = y + beta * np.asarray(c.value, np.float32)
        return Constant(y.astype(np.float32))
    if not isinstance(a, Tensor):
        raise ctx.unsupported("only A may be the run-time tensor (A is a constant here)")
    if not isinstance(b, Constant):
        raise ctx.unsupported("B must be a constant weight: a product of two activations has no spiking equivalent")
    if c is not None and not isinstance(c, Constant):
        raise ctx.unsupported("C must be a constant bias")
    if len(a.shape) != 1:
        raise ctx.unsupported(f"A must be 2-D (batch, features), got sample shape {a.shape}")
    if transA:
        # A^T is A only for a (1, 1) matrix; otherwise the contraction would run over the batch
        if not (ctx.declared_batch == 1 and a.shape == (1,)):
            raise ctx.unsupported("transA=1 contracts over the batch axis (only a (1, 1) A makes it a no-op)")
    w = np.asarray(b.value, np.float32)
    if w.ndim != 2:
        raise ctx.unsupported(f"B must be a matrix, got shape {w.shape}")
    weight = w if transB else w.T  # IR Dense weight is (out, in)
    if weight.shape[1] != a.shape[0]:
        raise ctx.unsupported(f"B of shape {w.shape} (transB={transB}) does not match {a.shape[0]} input features")
    weight = float32(weight * np.float32(alpha)) if alpha != 1.0 else float32(weight)
    bias = None
    if c is not None and beta != 0.0:
        bias = _bias_vector(ctx, c.value, weight.shape[0], "C") * np.float32(beta)
    return ctx.emit(Dense, [a], weight=weight, bias=bias)


@register("MatMul", since=1, ir="Dense",
          note="tensor x constant 2-D weight; a following constant Add becomes the bias (pass fold_bias_add)")
def matmul(ctx, node, a, b):
    if isinstance(a, Constant) and isinstance(b, Constant):
        sa, sb = np.shape(a.value), np.shape(b.value)
        out = np.broadcast_shapes(sa[:-2], sb[:-2]) + sa[-2:-1] + (sb[-1:] if len(sb) > 1 else ())
        check_fold_size(ctx, out, a.value, b.value)
        return Constant(np.matmul(a.value, b.value))
    if not isinstance(a, Tensor) or not isinstance(b, Constant):
        raise ctx.unsupported("only activation x constant weight converts: a product of two activations, or a "
                              "constant on the left, has no spiking equivalent")
    w = np.asarray(b.value, np.float32)
    if w.ndim != 2:
        raise ctx.unsupported(f"the weight must be 2-D, got shape {w.shape}")
    if len(a.shape) != 1:
        raise ctx.unsupported(f"the activation must be 2-D (batch, features), got sample shape {a.shape}")
    if w.shape[0] != a.shape[0]:
        raise ctx.unsupported(f"weight {w.shape} does not match {a.shape[0]} input features")
    return ctx.emit(Dense, [a], weight=float32(w.T), bias=None)
