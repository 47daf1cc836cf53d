"""Converters of ONNX ops, one module per op family; importing this package registers them all."""

from ann2snn.frontend.ops import (  # noqa: F401
    activation, conv, elementwise, fold, gemm, misc, normalization, pool, shape, softmax,
)
