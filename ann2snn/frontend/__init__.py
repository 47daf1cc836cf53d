"""ONNX frontend: ``load_onnx`` reads a model into the IR; ``inspect_onnx`` reports, per node, what it becomes.

Converters live in ``ops/``, one file per op family, registered in ``registry``.
"""

from ann2snn.frontend import ops  # noqa: F401  (importing the converters registers them)
from ann2snn.frontend.importer import ImportReport, NodeRow, inspect_onnx, load_onnx
from ann2snn.frontend.safety import LoadLimits

__all__ = ["ImportReport", "LoadLimits", "NodeRow", "inspect_onnx", "load_onnx"]
