"""ONNX frontend: ``load_onnx`` reads a model into the IR; converters live in ``ops/``, one file per family."""

from ann2snn.frontend.importer import load_onnx
from ann2snn.frontend.safety import LoadLimits

__all__ = ["LoadLimits", "load_onnx"]
