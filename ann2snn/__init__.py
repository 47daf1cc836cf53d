"""ann2snn: convert trained ONNX CNNs into rate-coded spiking neural networks.

Public API::

    graph = ann2snn.load_onnx("model.onnx")          # typed IR; graph.run(x) reproduces onnxruntime
    snn = ann2snn.convert("model.onnx", calibration=x_calib, config=ann2snn.ConversionConfig())
    result = snn.simulate(x, timesteps=[8, 16, 32])  # outputs at every T from one run
    report = ann2snn.evaluate("model.onnx", data=(x, y), calibration=x_calib)
    snn.save("out/snn"); snn = ann2snn.load("out/snn")
    best = ann2snn.tune("model.onnx", x_calib, target_timesteps=32)   # or ConversionConfig(auto=True)
"""

from ann2snn.config import ConversionConfig
from ann2snn.convert.pipeline import convert
from ann2snn.errors import (
    Ann2SnnError, BackendConstraintError, DataError, InvalidModelError, UnsupportedModelError,
)
from ann2snn.evaluation import EvaluationReport, evaluate
from ann2snn.frontend import load_onnx
from ann2snn.network import ConversionRecord, SpikingNetwork, load
from ann2snn.convert.tuning import TuneResult, tune

__version__ = "0.1.0"

__all__ = [
    "Ann2SnnError", "BackendConstraintError", "ConversionConfig", "DataError", "EvaluationReport",
    "ConversionRecord", "InvalidModelError", "SpikingNetwork", "UnsupportedModelError", "convert", "evaluate", "load",
    "load_onnx", "tune", "TuneResult",
]
