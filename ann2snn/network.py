"""``SpikingNetwork``: a converted network, its simulation, and its pickle-free file format.

File format (a directory, version 1):
    network.json   {"format": "ann2snn-snn", "version": 1, "config": {...}, "graph": {...}, ...}
                   graph nodes are listed in topological order with their op type and attributes;
                   arrays are referenced by key into weights.npz
    weights.npz    every array (np.savez, loaded with allow_pickle=False)
Both the converted graph and the simplified source ANN are stored, so a loaded network can be
simulated and compared with its ANN without the original ONNX file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ann2snn.config import ConversionConfig
from ann2snn.errors import Ann2SnnError, InvalidModelError
from ann2snn.fileio import atomic_directory, json_default
from ann2snn.ir import nodes as ir
from ann2snn.ir import snn
from ann2snn.ir.graph import Graph, TensorSpec

FORMAT = "ann2snn-snn"
VERSION = 1
# weights.npz may declare at most this many bytes (checked before reading: a zip bomb or forged sizes)
MAX_WEIGHTS_BYTES = 8 * 1024**3

_NODE_TYPES: dict[str, type[ir.Node]] = {cls.__name__: cls for cls in (*ir.ANN_OPS, *snn.STATEFUL_OPS)}


@dataclass(frozen=True)
class ConversionRecord:
    """How a network was converted, beyond its config: what ``auto`` resolved to and what it measured.

    v_init: the initial potential the network was built with (None: not recorded, e.g. a file from
    elsewhere); per-neuron potentials set by bias correction live in the graph's IF nodes.
    bias_correction / bias_correction_samples: whether bias correction ran, and on how many images.
    auto_table: the scored (v_init, bias correction) candidates of the ``auto`` choice, on
    ``auto_holdout_samples`` held-out images at ``auto_timesteps``. tuning: ``TuneResult.to_dict()`` when
    ``ConversionConfig(auto=True)`` chose the config.
    """

    v_init: float | None = None
    bias_correction: bool = False
    bias_correction_samples: int | None = None
    auto_table: tuple[dict, ...] | None = None
    auto_holdout_samples: int | None = None
    auto_timesteps: tuple[int, ...] | None = None
    tuning: dict | None = None

    def replace(self, **changes) -> "ConversionRecord":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The recorded fields (those set), as JSON-ready values."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, doc: dict) -> "ConversionRecord":
        if not isinstance(doc, dict):
            raise TypeError(f"the conversion record must be a mapping, not {type(doc).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown conversion record fields {unknown}")
        v = dict(doc)
        if v.get("v_init") is not None:
            v["v_init"] = float(v["v_init"])
        v["bias_correction"] = bool(v.get("bias_correction", False))
        for k in ("auto_table", "auto_timesteps"):
            if v.get(k) is not None:
                v[k] = tuple(v[k])
        return cls(**v)


@dataclass(frozen=True, eq=False)
class SpikingNetwork:
    """A converted SNN: the spiking graph plus what is needed to read it out and compare it.

    graph: converted IR (IF neurons, normalized weights). ann: the simplified source ANN.
    output_units: ANN value of one unit of accumulated output per step, per output tensor.
    scales: calibrated thresholds (lambda) per spiking ANN tensor. output_softmax: the Softmax that
    ended the ANN (the readout applies it), or None. input_unit: value of one input spike (Poisson).
    record: how the conversion went (``ConversionRecord``).
    """

    graph: Graph
    ann: Graph
    output_units: dict[str, np.ndarray]
    scales: dict[str, np.ndarray]
    config: ConversionConfig
    output_softmax: ir.Softmax | None = None
    input_unit: float = 1.0
    record: ConversionRecord = field(default_factory=ConversionRecord)

    def static_tensors(self) -> set[str]:
        from ann2snn.sim.simulate import static_tensors

        return static_tensors(self.graph, dynamic_inputs=self.config.input_encoding == "poisson")

    def simulate(self, x, timesteps=(8, 16, 32, 64), **kw):
        """Simulate on ``x`` (batch, *input shape); returns a ``SimulationResult`` (see ann2snn.sim)."""
        from ann2snn.sim.simulate import simulate

        return simulate(self, x, timesteps, **kw)

    @property
    def spiking_layers(self) -> list[str]:
        return [n.name for n in self.graph.nodes if isinstance(n, snn.IF)]

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the network directory atomically (a temp dir renamed into place)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True / --force to replace it)")
        arrays: dict[str, np.ndarray] = {}
        doc = {
            "format": FORMAT, "version": VERSION, "config": self.config.to_dict(),
            "graph": _graph_to_json(self.graph, arrays, "snn"), "ann": _graph_to_json(self.ann, arrays, "ann"),
            "output_units": {k: _put(arrays, f"unit/{k}", v) for k, v in self.output_units.items()},
            "scales": {k: _put(arrays, f"scale/{k}", v) for k, v in self.scales.items()},
            "output_softmax": None if self.output_softmax is None else
            {"axis": self.output_softmax.axis, "log": self.output_softmax.log, "name": self.output_softmax.name},
            "input_unit": self.input_unit, "info": self.record.to_dict(),
        }
        with atomic_directory(path) as tmp:
            (tmp / "network.json").write_text(json.dumps(doc, indent=1, default=json_default))
            with open(tmp / "weights.npz", "wb") as f:
                np.savez(f, **arrays)
        return path


def load(path: str | os.PathLike) -> SpikingNetwork:
    """Load a network saved by ``SpikingNetwork.save``; malformed files raise InvalidModelError."""
    path = Path(path)
    meta, npz = path / "network.json", path / "weights.npz"
    if not meta.is_file() or not npz.is_file():
        raise InvalidModelError(f"{path}: not a saved ann2snn network (needs network.json and weights.npz)")
    try:
        doc = json.loads(meta.read_text())
        with zipfile.ZipFile(npz) as zf:  # sizes the archive declares, checked before numpy allocates anything
            declared = sum(info.file_size for info in zf.infolist())
        if declared > MAX_WEIGHTS_BYTES:
            raise InvalidModelError(
                f"{npz}: declares {declared} bytes of arrays, over the {MAX_WEIGHTS_BYTES}-byte limit")
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RecursionError, MemoryError) as e:
        raise InvalidModelError(f"{path}: cannot read the saved network: {type(e).__name__}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidModelError(f"{meta}: not an ann2snn network file")
    if doc.get("version") != VERSION:
        raise InvalidModelError(f"{meta}: format version {doc.get('version')} is not supported (expected {VERSION})")
    try:
        sm = doc["output_softmax"]
        net = SpikingNetwork(
            graph=_graph_from_json(doc["graph"], arrays), ann=_graph_from_json(doc["ann"], arrays),
            output_units={k: arrays[v] for k, v in doc["output_units"].items()},
            scales={k: arrays[v] for k, v in doc["scales"].items()},
            config=ConversionConfig.from_dict(doc["config"]),
            output_softmax=None if sm is None else ir.Softmax(sm["name"], (), axis=sm["axis"], log=sm["log"]),
            input_unit=float(doc["input_unit"]), record=ConversionRecord.from_dict(doc.get("info") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InvalidModelError(f"{meta}: malformed network file ({type(e).__name__}: {e})") from None
    try:
        net.graph.validate()
        net.ann.validate()
    except InvalidModelError as e:
        raise InvalidModelError(f"{meta}: {e}") from None
    _check_runs(net, meta)
    return net


def _check_runs(net: SpikingNetwork, meta: Path) -> None:
    """Simulate one blank sample for one step, with layer statistics and probes: arrays that do not fit their
    node (thresholds, initial potentials, output units of a corrupted file) fail here, as InvalidModelError."""
    if not (isinstance(net.input_unit, float) and np.isfinite(net.input_unit) and net.input_unit > 0):
        raise InvalidModelError(f"{meta}: input_unit must be a positive number, got {net.input_unit}")
    missing = [n for n in net.spiking_layers if n not in net.scales]
    if missing:
        raise InvalidModelError(f"{meta}: no threshold (scales) for spiking layer(s) {missing[:10]}")
    x = {t.name: np.zeros((1,) + tuple(t.shape), np.float32) for t in net.graph.inputs}
    try:
        net.simulate(x, [1], layer_stats=True, probe=net.spiking_layers)
    except Ann2SnnError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise InvalidModelError(f"{meta}: the stored arrays do not fit the network ({type(e).__name__}: {e})") from None


def _put(arrays: dict, key: str, value) -> str:
    arrays[key] = np.asarray(value)
    return key


def _graph_to_json(graph: Graph, arrays: dict, prefix: str) -> dict:
    nodes = []
    for n in graph.nodes:
        entry = {"op": type(n).__name__, "name": n.name, "inputs": list(n.inputs), "attrs": {}, "arrays": {}}
        for f in dataclasses.fields(n):
            if f.name in ("name", "inputs"):
                continue
            v = getattr(n, f.name)
            if isinstance(v, np.ndarray):
                entry["arrays"][f.name] = _put(arrays, f"{prefix}/{n.name}/{f.name}", v)
            elif v is None or isinstance(v, (bool, int, float, str)):
                entry["attrs"][f.name] = v
            else:
                entry["attrs"][f.name] = list(v)
        nodes.append(entry)
    return {"name": graph.name, "inputs": [{"name": t.name, "shape": list(t.shape)} for t in graph.inputs],
            "outputs": list(graph.outputs), "nodes": nodes}


def _graph_from_json(doc: dict, arrays: dict) -> Graph:
    nodes = []
    for e in doc["nodes"]:
        cls = _NODE_TYPES.get(e["op"])
        if cls is None:
            raise ValueError(f"unknown op {e['op']!r} in node {e.get('name')!r}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in e["attrs"].items()}
        kw.update({k: arrays[v] for k, v in e["arrays"].items()})
        nodes.append(cls(e["name"], tuple(e["inputs"]), **kw))
    inputs = [TensorSpec(t["name"], tuple(int(d) for d in t["shape"])) for t in doc["inputs"]]
    return Graph(tuple(inputs), tuple(nodes), tuple(doc["outputs"]), name=doc["name"])
