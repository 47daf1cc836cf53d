"""``evaluate``: ANN (onnxruntime) vs converted SNN accuracy at several T, with per-layer statistics.

The evaluation data is read batch by batch (:class:`~ann2snn.data.DataStream`); under ``torchrun`` the batches
are shared out over the ranks and their results gathered (:mod:`ann2snn.distributed`), and with a checkpoint
folder every few batches are stored so that a killed run resumes (:mod:`ann2snn.checkpoint`). Each batch is
simulated alone and the per-layer sums are added in batch order, so one process, N processes and a resumed
run give the same report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from tqdm.auto import tqdm

from ann2snn import distributed
from ann2snn.checkpoint import BatchRecord, EvaluationCheckpoint, array_digest
from ann2snn.config import ConversionConfig
from ann2snn.data.sources import ArraySource, DataStream
from ann2snn.errors import DataError, DistributedRunError, InvalidModelError
from ann2snn.fileio import json_keys
from ann2snn.ir.graph import Graph
from ann2snn.network import SpikingNetwork
from ann2snn.sim.heap import release_freed_memory
from ann2snn.sim.simulate import check_device, layer_statistics, resolve_synaptic_dtype

log = logging.getLogger(__name__)

DEFAULT_TIMESTEPS = (8, 16, 32, 64, 128, 256)
T_STAR_TOLERANCE = 0.005  # T* = smallest T whose accuracy is within 0.5 point of the ANN
DEFAULT_CHECKPOINT_EVERY = 10  # batches between two checkpoint files


@dataclass
class EvaluationReport:
    """Accuracy of the ANN and of the SNN at every T, agreement between them, T*, per-layer stats.

    ``predictions`` (per T) and ``ann_predictions`` are in the order of the evaluated images (``data``
    says which); ``thresholds`` are every spiking layer's per-channel thresholds; ``run`` says how the run
    was spread and resumed (like ``seconds``, it is the only part that differs between equal runs).
    """

    model: str
    samples: int
    timesteps: list[int]
    ann_accuracy: float
    ann_source: str
    snn_accuracy: dict[int, float]  # keyed by T (by "T" in to_dict(), JSON's form)
    agreement: dict[int, float]
    t_star: int | None
    layers: dict[str, dict]
    config: dict
    conversion: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    simulation: dict = field(default_factory=dict)  # device, synaptic dtype, batch size, time chunk
    data: dict = field(default_factory=dict)  # source, classes, selection, preprocessing
    thresholds: dict[str, list[float]] = field(default_factory=dict)
    ann_predictions: list[int] = field(default_factory=list)
    predictions: dict[int, list[int]] = field(default_factory=dict)
    run: dict = field(default_factory=dict)  # ranks, resumed batches, checkpoint folder

    def to_dict(self) -> dict:
        """The JSON document: the same fields, every T key as a string."""
        return json_keys(dataclasses.asdict(self))

    def table(self) -> str:
        """Plain-text accuracy table (what ``ann2snn evaluate`` prints)."""
        lines = [f"model {self.model}: {self.samples} samples; ANN accuracy {100 * self.ann_accuracy:.2f}% "
                 f"({self.ann_source})", f"{'T':>6}  {'SNN acc %':>9}  {'delta pt':>8}  {'agree %':>7}"]
        for t in self.timesteps:
            acc = self.snn_accuracy[t]
            lines.append(f"{t:>6}  {100 * acc:9.2f}  {100 * (acc - self.ann_accuracy):+8.2f}  "
                         f"{100 * self.agreement[t]:7.2f}")
        lines.append(f"T* (within 0.5 pt of the ANN): {self.t_star if self.t_star is not None else 'not reached'}")
        return "\n".join(lines)


class OnnxRuntimeModel:
    """An onnxruntime session of an ONNX model, run batch by batch (honours a batch size fixed in the model)."""

    def __init__(self, model, threads: int | None = None):
        import onnxruntime as ort

        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise InvalidModelError(f"onnxruntime cannot load the model: {e}") from None
        self.input = self.session.get_inputs()[0]
        shape0 = self.input.shape[0]
        self.fixed_batch = shape0 if isinstance(shape0, int) and shape0 > 0 else None

    def __call__(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """First output of the model on ``x``."""
        fixed = self.fixed_batch
        step = fixed or batch_size
        outs = []
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            n = len(chunk)
            if fixed and n < fixed:  # pad the last chunk to the model's fixed batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
            outs.append(self.session.run(None, {self.input.name: chunk.astype(np.float32)})[0][:n])
        return np.concatenate(outs)


def onnxruntime_outputs(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """First output of the ONNX model by onnxruntime; honours a batch size fixed in the model."""
    return OnnxRuntimeModel(model)(x, batch_size)


def accuracy_of(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.reshape(len(outputs), -1).argmax(axis=1) == labels).mean())


def t_star(ann_accuracy: float, snn_accuracy: dict[int, float], timesteps) -> int | None:
    for t in sorted(timesteps):
        if snn_accuracy[t] >= ann_accuracy - T_STAR_TOLERANCE:
            return int(t)
    return None


def evaluate(model, data, calibration=None, timesteps=DEFAULT_TIMESTEPS, *,
             config: ConversionConfig | None = None, snn: SpikingNetwork | None = None, device: str = "cpu",
             batch_size: int = 100, time_chunk: int = 4, synaptic_dtype: str | None = None,
             progress: bool = False, checkpoint=None, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
             workers: int | None = None) -> EvaluationReport:
    """Convert ``model`` (unless ``snn`` is given) and measure ANN vs SNN accuracy on ``data``.

    data: ``(x, y)`` with x (N, *input shape) preprocessed floats and y (N,) integer labels, or a labeled
        :class:`~ann2snn.data.DataStream` (image folders, CIFAR archives...; read batch by batch, in
        ``workers`` decoding processes).
    synaptic_dtype: ``auto`` (None), ``float32``, ``bfloat16`` or ``int8``; see ``ann2snn.sim.simulate.simulate``.
    checkpoint: a folder for partial results: every ``checkpoint_every`` batches are stored there, and a
        run started again with the same arguments resumes where the last one stopped (a folder written by
        another run is refused, see :mod:`ann2snn.checkpoint`).
    Under ``torchrun`` (after ``ann2snn.distributed.init_from_env``) every rank calls this with the same
    arguments: calibration and batches are shared out, and every rank returns the same report.
    The ANN accuracy comes from onnxruntime when ``model`` is an ONNX file or proto, from the IR
    reference otherwise.
    """
    from ann2snn.convert.pipeline import convert
    from ann2snn.convert.session import as_graph

    group = distributed.current()
    stream = _as_stream(data)
    timesteps = sorted({int(t) for t in timesteps})
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise DataError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    check_device(device)
    dtype = resolve_synaptic_dtype(synaptic_dtype, device)
    t0 = time.perf_counter()
    ckpt = None
    if checkpoint is not None:
        ckpt = EvaluationCheckpoint(checkpoint, _fingerprint(model, stream, calibration, config, snn, timesteps,
                                                             batch_size, time_chunk, dtype, device))
        ckpt.open()
        group.barrier()
        if snn is None:
            snn = ckpt.load_network()
    if snn is None:
        snn = convert(model, calibration, config, progress=progress)
        if ckpt is not None and group.is_main:
            ckpt.save_network(snn)
    t_convert = time.perf_counter() - t0
    expected = tuple(snn.ann.inputs[0].shape)
    if isinstance(model, (str, os.PathLike, onnx.ModelProto)):
        ann, source = OnnxRuntimeModel(model, threads=torch.get_num_threads()), "onnxruntime"
    else:
        graph = as_graph(model) if isinstance(model, Graph) else snn.ann
        ann, source = graph.run, "ann2snn IR reference"

    t1 = time.perf_counter()
    batches = stream.batches(batch_size)
    stored = ckpt.load_records() if ckpt is not None else {}
    # every rank must agree on what is left, whether the checkpoint folder is shared or each node's own
    held = group.all_gather_object(sorted(stored))
    done = set().union(*map(set, held))
    todo = [b for b in range(len(batches)) if b not in done]
    mine = todo[group.rank::group.world_size]
    layers = snn.spiking_layers
    fresh: dict[int, BatchRecord] = {}
    pending: list[BatchRecord] = []
    bar = tqdm(total=sum(len(batches[b]) for b in mine) * timesteps[-1], disable=not progress, unit="img-step",
               desc="evaluate", leave=False)
    for b, x, y in stream.iter_batches(mine, batch_size, workers=workers):
        if tuple(x.shape[1:]) != expected:
            raise DataError(f"{stream.source.path}: data has sample shape {tuple(x.shape[1:])} (after "
                            f"preprocessing), the model expects {expected}")
        _check_batch(x, y, stream.source.path)
        ann_out = ann(x)
        res = snn.simulate(x, timesteps, batch_size=len(x), time_chunk=time_chunk, device=device,
                           layer_stats=True, synaptic_dtype=dtype)
        rec = BatchRecord(b, y.astype(np.int64), ann_out.reshape(len(x), -1).argmax(1).astype(np.int64),
                          np.stack([res.predictions(t) for t in timesteps]).astype(np.int64),
                          np.stack([res.layer_sums[name] for name in layers]) if layers else
                          np.zeros((0, len(timesteps), 0)))
        fresh[b] = rec
        pending.append(rec)
        if ckpt is not None and len(pending) >= checkpoint_every:
            ckpt.save_records(pending)
            pending = []
        bar.update(len(x) * timesteps[-1])
        release_freed_memory()
    bar.close()
    if ckpt is not None:
        ckpt.save_records(pending)
    # a stored batch is sent by the lowest rank that holds it, so no batch travels twice
    owner = {}
    for r, ids in enumerate(held):
        for b in ids:
            owner.setdefault(b, r)
    send = {b: rec for b, rec in stored.items() if owner.get(b) == group.rank} | fresh
    records: dict[int, BatchRecord] = {}
    for part in group.all_gather_object(send):
        records.update(part)
    missing = [b for b in range(len(batches)) if b not in records]
    if missing:
        raise DistributedRunError(f"evaluation batches {missing[:10]} were not computed by any rank")
    t_sim = time.perf_counter() - t1
    report = _report(model, snn, stream, timesteps, [records[b] for b in range(len(batches))], source)
    report.seconds = {"convert": t_convert, "simulate": t_sim}
    report.simulation = {"device": str(device), "synaptic_dtype": dtype, "batch_size": int(batch_size),
                         "time_chunk": int(time_chunk)}
    report.run = {"ranks": group.world_size, "resumed_batches": len(done), "batches": len(batches),
                  "checkpoint": None if ckpt is None else str(ckpt.dir)}
    return report


def _report(model, snn: SpikingNetwork, stream: DataStream, timesteps: list[int], records: list[BatchRecord],
            source: str) -> EvaluationReport:
    """The report from every batch's record, in batch order (sums added in that order: deterministic)."""
    y = np.concatenate([r.labels for r in records])
    ann_pred = np.concatenate([r.ann_predictions for r in records])
    snn_pred = np.concatenate([r.snn_predictions for r in records], axis=1)
    layers = snn.spiking_layers
    sums = np.zeros_like(records[0].layer_sums)
    for r in records:
        sums = sums + r.layer_sums
    ann_acc = float((ann_pred == y).mean())
    snn_acc = {t: float((snn_pred[i] == y).mean()) for i, t in enumerate(timesteps)}
    agree = {t: float((snn_pred[i] == ann_pred).mean()) for i, t in enumerate(timesteps)}
    macs = snn.ann.macs()
    stats = layer_statistics(snn, {name: sums[i] for i, name in enumerate(layers)}, len(y), timesteps)
    per_layer = {name: dict(s, threshold_mean=float(np.mean(snn.scales[name])), ann_macs=int(macs.get(name, 0)))
                 for name, s in stats.items()}
    name = str(getattr(model, "name", None) or model) if not isinstance(model, (str, os.PathLike)) else str(model)
    return EvaluationReport(
        model=name, samples=int(len(y)), timesteps=timesteps, ann_accuracy=ann_acc, ann_source=source,
        snn_accuracy=snn_acc, agreement=agree, t_star=t_star(ann_acc, snn_acc, timesteps), layers=per_layer,
        config=snn.config.to_dict(),
        conversion=snn.record.to_dict() | {"ann_macs_total": int(sum(macs.values()))},
        data=stream.describe(),
        thresholds={k: np.asarray(v, np.float64).reshape(-1).tolist() for k, v in snn.scales.items()},
        ann_predictions=ann_pred.tolist(),
        predictions={t: snn_pred[i].tolist() for i, t in enumerate(timesteps)},
    )


def _model_digest(model) -> str:
    if isinstance(model, (str, os.PathLike)):
        h = hashlib.sha256()
        with open(model, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if isinstance(model, onnx.ModelProto):
        return hashlib.sha256(model.SerializeToString()).hexdigest()
    return network_digest(model)


def network_digest(obj) -> str:
    """sha256 of every array and attribute of an IR graph or a SpikingNetwork (node by node)."""
    graphs = [obj.graph, obj.ann] if isinstance(obj, SpikingNetwork) else [obj]
    h = hashlib.sha256()
    for g in graphs:
        for n in g.nodes:
            for f in dataclasses.fields(n):
                v = getattr(n, f.name)
                h.update(f"{type(n).__name__}.{f.name}=".encode())
                h.update(array_digest(v).encode() if isinstance(v, np.ndarray) else repr(v).encode())
    if isinstance(obj, SpikingNetwork):
        for k in sorted(obj.scales):
            h.update(k.encode() + array_digest(obj.scales[k]).encode())
    return h.hexdigest()


def _fingerprint(model, stream: DataStream, calibration, config, snn, timesteps, batch_size, time_chunk, dtype,
                 device) -> dict:
    """What must be equal for a checkpoint to be resumed (see :class:`EvaluationCheckpoint`)."""
    fp = {"model": _model_digest(model), "data": stream.fingerprint(), "images": int(len(stream)),
          "timesteps": list(timesteps), "batch_size": int(batch_size), "time_chunk": int(time_chunk),
          "synaptic_dtype": dtype, "device": torch.device(device).type}
    if snn is not None:
        fp["network"] = network_digest(snn)
    else:
        fp["config"] = (config or ConversionConfig()).to_dict()
        fp["calibration"] = array_digest(np.asarray(calibration)) if calibration is not None else None
    return fp


def _as_stream(data) -> DataStream:
    if isinstance(data, DataStream):
        if not data.has_labels:
            raise DataError(f"{data.source.path}: evaluation data needs labels (a folder of class folders, a CIFAR "
                            "archive, or an .npz/IDX file with labels)")
        return data
    x, y = _check_data(data)
    return DataStream(ArraySource(x, y, path="<evaluation arrays>", preprocessed=True))


def _check_batch(x: np.ndarray, y, where: str) -> None:
    if y is None:
        raise DataError(f"{where}: evaluation data needs labels")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: evaluation images contain NaN or Inf")


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
