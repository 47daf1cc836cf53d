"""``evaluate``: ANN (onnxruntime) vs converted SNN accuracy at several T, with per-layer statistics."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import onnx

from ann2snn.config import ConversionConfig
from ann2snn.errors import DataError, InvalidModelError
from ann2snn.ir.graph import Graph
from ann2snn.network import SpikingNetwork

log = logging.getLogger(__name__)

DEFAULT_TIMESTEPS = (8, 16, 32, 64, 128, 256)
T_STAR_TOLERANCE = 0.005  # T* = smallest T whose accuracy is within 0.5 point of the ANN


@dataclass
class EvaluationReport:
    """Accuracy of the ANN and of the SNN at every T, agreement between them, T*, per-layer stats."""

    model: str
    samples: int
    timesteps: list[int]
    ann_accuracy: float
    ann_source: str
    snn_accuracy: dict[str, float]
    agreement: dict[str, float]
    t_star: int | None
    layers: dict[str, dict]
    config: dict
    conversion: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    simulation: dict = field(default_factory=dict)  # device, synaptic dtype, batch size, time chunk

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """Plain-text accuracy table (what ``ann2snn evaluate`` prints)."""
        lines = [f"model {self.model}: {self.samples} samples; ANN accuracy {100 * self.ann_accuracy:.2f}% "
                 f"({self.ann_source})", f"{'T':>6}  {'SNN acc %':>9}  {'delta pt':>8}  {'agree %':>7}"]
        for t in self.timesteps:
            acc = self.snn_accuracy[str(t)]
            lines.append(f"{t:>6}  {100 * acc:9.2f}  {100 * (acc - self.ann_accuracy):+8.2f}  "
                         f"{100 * self.agreement[str(t)]:7.2f}")
        lines.append(f"T* (within 0.5 pt of the ANN): {self.t_star if self.t_star is not None else 'not reached'}")
        return "\n".join(lines)


def onnxruntime_outputs(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """First output of the ONNX model by onnxruntime; honours a batch size fixed in the model."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise InvalidModelError(f"onnxruntime cannot load the model: {e}") from None
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    step = fixed or batch_size
    outs = []
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        n = len(chunk)
        if fixed and n < fixed:  # pad the last chunk to the model's fixed batch
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
        outs.append(sess.run(None, {inp.name: chunk.astype(np.float32)})[0][:n])
    return np.concatenate(outs)


def accuracy_of(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.reshape(len(outputs), -1).argmax(axis=1) == labels).mean())


def t_star(ann_accuracy: float, snn_accuracy: dict[str, float], timesteps) -> int | None:
    for t in sorted(timesteps):
        if snn_accuracy[str(t)] >= ann_accuracy - T_STAR_TOLERANCE:
            return int(t)
    return None


def evaluate(model, data, calibration=None, timesteps=DEFAULT_TIMESTEPS, *,
             config: ConversionConfig | None = None, snn: SpikingNetwork | None = None, device: str = "cpu",
             batch_size: int = 100, time_chunk: int = 4, synaptic_dtype: str | None = None,
             progress: bool = False) -> EvaluationReport:
    """Convert ``model`` (unless ``snn`` is given) and measure ANN vs SNN accuracy on ``data``.

    data: (x, y) with x (N, *input shape) float, y (N,) integer labels.
    synaptic_dtype: ``auto`` (None), ``float32`` or ``bfloat16``; see ``ann2snn.sim.simulate.simulate``.
    The ANN accuracy comes from onnxruntime when ``model`` is an ONNX file or proto, from the IR
    reference otherwise.
    """
    from ann2snn.convert.pipeline import convert

    x, y = _check_data(data)
    timesteps = sorted({int(t) for t in timesteps})
    t0 = time.perf_counter()
    if snn is None:
        snn = convert(model, calibration, config, progress=progress)
    t_convert = time.perf_counter() - t0
    if len(y) and x.shape[1:] != tuple(snn.ann.inputs[0].shape):
        raise DataError(f"data has sample shape {x.shape[1:]}, the model expects {tuple(snn.ann.inputs[0].shape)}")
    if isinstance(model, (str, os.PathLike, onnx.ModelProto)):
        ann_out, source = onnxruntime_outputs(model, x), "onnxruntime"
    else:
        graph = model if isinstance(model, Graph) else snn.ann
        ann_out, source = graph.run(x), "ann2snn IR reference"
    ann_acc = accuracy_of(ann_out, y)
    ann_pred = ann_out.reshape(len(ann_out), -1).argmax(1)
    t1 = time.perf_counter()
    res = snn.simulate(x, timesteps, batch_size=batch_size, time_chunk=time_chunk, device=device,
                       layer_stats=True, progress=progress, synaptic_dtype=synaptic_dtype)
    t_sim = time.perf_counter() - t1
    snn_acc = {str(t): float((res.predictions(t) == y).mean()) for t in timesteps}
    agree = {str(t): float((res.predictions(t) == ann_pred).mean()) for t in timesteps}
    macs = snn.ann.macs()
    layers = {}
    for name, stats in (res.layers or {}).items():
        layers[name] = dict(stats, threshold_mean=float(np.mean(snn.scales[name])),
                            ann_macs=int(macs.get(name, 0)))
    report = EvaluationReport(
        model=str(getattr(model, "name", None) or model) if not isinstance(model, (str, os.PathLike)) else str(model),
        samples=int(len(y)), timesteps=timesteps, ann_accuracy=ann_acc, ann_source=source,
        snn_accuracy=snn_acc, agreement=agree, t_star=t_star(ann_acc, snn_acc, timesteps), layers=layers,
        config=snn.config.to_dict(),
        conversion={k: v for k, v in snn.info.items()} | {"ann_macs_total": int(sum(macs.values()))},
        seconds={"convert": t_convert, "simulate": t_sim},
        simulation={"device": str(device), "synaptic_dtype": res.synaptic_dtype, "batch_size": int(batch_size),
                    "time_chunk": int(time_chunk)},
    )
    return report


def _check_data(data) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError("data must be a pair (x, y) of images and integer labels")
    try:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise DataError(f"evaluation data must be arrays: {e}") from None
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(f"evaluation data must be arrays with a sample axis, got shapes {x.shape} and {y.shape}")
    if len(x) == 0:
        raise DataError("evaluation data has no samples")
    if len(x) != len(y):
        raise DataError(f"evaluation data has {len(x)} images but {len(y)} labels")
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"labels must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}")
    if x.dtype.kind != "f":
        raise DataError(f"images must be preprocessed floats, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise DataError("evaluation images contain NaN or Inf")
    return x.astype(np.float32, copy=False), y.astype(np.int64)
