"""Converters of ONNX ops, one module per op family; importing this package registers them all."""

from ann2snn.frontend.ops import activation, conv  # noqa: F401
