"""NIR export of a converted ``SpikingNetwork`` (Neuromorphic Intermediate Representation, nir >= 1.0.6).

Public functions: :func:`to_nir` (build a type-checked ``nir.NIRGraph``), :func:`export_nir` (write it
atomically to an HDF5 ``.nir`` file and verify it reads back with type checking), :func:`check_nir` (the
list of constraint violations, empty when the network can be exported), :func:`check_nir_config` (the same
for a ConversionConfig, before calibration) and :func:`nir_summary` (one row per node, for the CLI).
Running the files in snnTorch, Norse and Sinabs: ``ann2snn.backends.nir_consumers``.

Two forms (``semantics``):

- ``"nir"`` (default): the primitives alone, read by the NIR specification, do what ann2snn simulates, in
  the node types snnTorch, Norse and Sinabs all implement (``Input``, ``Conv2d``, ``Affine``, ``IF``,
  ``Flatten``, ``Output``). NIR's IF resets to ``v_reset = 0``, fires on ``v > v_threshold`` and starts at
  0, so the network must be converted that way (:data:`NIR_CONVERSION`: ``reset="zero"``, ``v_init=0``;
  bias correction then lowers per-channel thresholds instead of charging initial potentials, and the time
  dilation ``threshold_scale`` is chosen on held-out calibration data). Each threshold is folded into the
  current that feeds it (``v > theta`` with input I is ``v > 1`` with input I / theta), so every
  ``v_threshold`` is 1 (snnTorch refuses thresholds that differ within a layer). No node carries metadata
  and no IF carries NIR's default ``v_reset``, so nir 1.0.4 (pinned by Sinabs) reads the files.
- ``"annotated"``: any conversion (reset by subtraction, theta/2 and bias-correction initial potentials);
  exact for a consumer that reads the metadata (graph: ``reset``, ``fire_condition``, ``dt``; each IF:
  ``v_init`` of the full shape, ``scale`` = lambda per channel, ``reset``, ``fire_condition``). NIR asks
  backends not to rely on metadata: read literally, a ResNet file of this form loses most of its accuracy.

Mapping (IR -> NIR; every node keeps its IR name, made HDF5- and torch-safe, see ``_NameSpace``):

=============================== ===============================================================================
graph input (C, H, W)           ``Input`` with the per-sample shape (no batch axis)
Conv2d                          ``Conv2d(input_shape=(H, W), weight, stride, padding=(ph, pw), dilation,
                                groups=1, bias)``; bias zeros when the IR has none. ``groups > 1`` is written
                                as the equivalent block-diagonal dense conv: nir 1.0.x types a Conv2d input
                                as ``weight.shape[1]`` channels, so a grouped conv fails ``nir.read``'s type
                                check. Asymmetric pads have no NIR form -> violation.
Dense                           ``Affine(weight, bias)``; without a bias ``Linear(weight)`` (annotated) or an
                                ``Affine`` with zero bias (nir: Sinabs and snnTorch map only Affine)
IF                              ``IF(r=1, v_threshold, v_reset=0)``, arrays of the full (C, H, W) shape
AvgPool2d                       nir: the equivalent ``Conv2d`` (weight 1/(kH*kW) from each channel to itself;
                                Norse and Sinabs have no AvgPool2d); ``count_include_pad=False`` with pads ->
                                violation. annotated: ``AvgPool2d(kernel, stride, padding)`` (pads count), with
                                ``count_include_pad=False`` followed by ``Scale(kH*kW / count)`` (exact).
                                Asymmetric pads, or ceil_mode changing the output size -> violation.
GlobalAvgPool                   the same, with kernel = stride = (H, W)
Flatten / Reshape to (N,)       ``Flatten(input_type=(C, H, W))``, start_dim 0 (annotated) or -3 (nir: the same
                                dims, and Norse and snnTorch hand start_dim to torch.nn.Flatten as it is);
                                nothing when the input is already 1-D
ScaleShift                      without a shift: ``Scale`` (annotated) or a diagonal ``Affine`` / 1x1
                                ``Conv2d`` (nir; a scale that varies inside a channel -> violation); with a
                                shift: ``Affine(diag(scale), shift)`` on a 1-D tensor, a 1x1 ``Conv2d`` with
                                diag(scale) weights and bias = shift when both are per channel; else violation
Add                             no node: NIR sums every edge that arrives at a node (nirtorch adds them), so
                                each input of the Add gets an edge to every reader of the Add. An input that
                                would arrive twice goes through a scale by k (NIR forbids duplicate edges).
identity Reshape / Transpose    no node (edges pass through)
graph output                    [output unit, when not 1: folded into the last Affine (nir) or a ``Scale``]
                                -> ``I(r=1)`` -> ``Output`` (``readout="integrator"``, annotated default) or
                                -> ``Output`` (``readout="current"``, nir default: no consumer implements I)
=============================== ===============================================================================

Not expressible (all reported together in one ``BackendConstraintError(backend="nir")``):
MaxPool2d / CumulativeMaxPool2d / GlobalMaxPool / CumulativeGlobalMaxPool (NIR has no max; the cumulative
max is stateful), Concat (no NIR node), Transpose other than the identity, Reshape other than a flatten,
signed IF neurons (NIR's IF cannot emit -1), asymmetric pads, ceil_mode pools whose size differs from
floor mode, spatially varying ScaleShift shifts, any op that is not a spiking-graph op, and in the nir form
IF neurons that reset by subtraction or start at a non-zero potential.

Time. NIR is continuous time; the files record ``dt = 1``: per step ``v += r * I`` with no synaptic delay,
which is what every consumer's discrete IF does (Norse's IAF ignores its ``dt``). In the annotated form we do
not nudge ``v_threshold`` to ``nextafter(1, 0)`` to make NIR's strict ``>`` coincide with ann2snn's ``>=``:
that only holds in float32, and consumers that quantize thresholds would inherit the epsilon.

Readout. ann2snn's readout integrates the output tensor: prediction = argmax of the accumulated output,
estimate = accumulated output / T x output unit. With ``readout="integrator"`` an ``I`` node (dv/dt = r I,
r = 1) accumulates the output current, so the ``Output`` at step T *is* the accumulated readout. A leaky
``LI`` would forget early steps and is not what the simulator does. ``readout="current"`` ends with the
per-step output current; the consumer sums it over time. The graph metadata also records the input
encoding and, when given, the preprocessing (``preprocessing``: JSON of ``Preprocessing.to_dict()``).
"""

from __future__ import annotations

import json
import keyword
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np

from ann2snn.errors import BackendConstraintError
from ann2snn.fileio import atomic_path
from ann2snn.ir import nodes as ir
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d

log = logging.getLogger(__name__)

BACKEND = "nir"
READOUTS = ("integrator", "current")
# "nir": the primitives alone mean what ann2snn simulates, in the node types every consumer implements;
# "annotated": any conversion, exact only for a consumer that reads the metadata (reset, v_init, ...)
SEMANTICS = ("nir", "annotated")
DEFAULT_READOUT = {"nir": "current", "annotated": "integrator"}
# the ConversionConfig fields a network exported with semantics="nir" needs: NIR's IF resets to zero and
# starts at 0 (bias correction then lowers the thresholds of a reset-to-zero network instead of charging
# initial potentials, so "auto" and True stay exportable); the time dilation that best offsets the residue
# a reset to zero loses differs by model, so it is chosen on held-out calibration data
NIR_REQUIRED = {"reset": "zero", "v_init": 0.0}
NIR_CONVERSION = {**NIR_REQUIRED, "threshold_scale": "auto"}
FIRE_CONDITION = "v >= v_threshold"

_WAY_OUT_MAX = ("convert a model that pools with AvgPool (e.g. the vgg_avgpool zoo model), or keep the network "
                "in ann2snn's own format (SpikingNetwork.save / simulate)")
_WAY_OUT_RECONVERT = ("convert for NIR: --reset zero --v-init 0 (what `ann2snn convert --target nir` does; "
                      "ann2snn.backends.nir.NIR_CONVERSION in Python), or export with --nir-semantics annotated "
                      "for a consumer that reads the metadata")
_WAY_OUT_NATIVE = "keep the network in ann2snn's own format (SpikingNetwork.save / simulate)"

Violation = tuple[str, str, str]


# ---------------------------------------------------------------------------------------------- API


def to_nir(net, *, semantics: str = "nir", readout: str | None = None,
           preprocessing: dict | None = None) -> nir.NIRGraph:
    """The converted network as a type-checked ``nir.NIRGraph`` (see the module docstring for the mapping).

    ``net``: a ``SpikingNetwork``. ``semantics``: ``"nir"`` (default; the network must be converted with
    ``reset="zero"``, ``v_init=0`` and no initial charge, see :data:`NIR_CONVERSION`) or ``"annotated"``.
    ``readout``: ``"integrator"`` (an ``I`` node accumulates the output, so the graph's output is the
    readout itself) or ``"current"`` (the per-step output current; the default for ``semantics="nir"``,
    as no consumer implements ``I``). ``preprocessing``: how raw inputs become the network's input (e.g.
    ``Preprocessing.to_dict()``), recorded in the graph metadata.
    Raises ``BackendConstraintError`` listing every node NIR cannot express, before building anything.
    """
    graph, violations = _Exporter(net, semantics, readout, preprocessing).run()
    if violations:
        raise BackendConstraintError(violations, backend=BACKEND)
    return graph


def check_nir(net, *, semantics: str = "nir", readout: str | None = None) -> list[Violation]:
    """Every (layer, problem, way out) that stops ``net`` from being exported to NIR; empty when it can be."""
    return _Exporter(net, semantics, readout).run()[1]


def check_nir_config(config, *, semantics: str = "nir") -> list[Violation]:
    """The (setting, problem, way out) of ``config`` (a ConversionConfig) that would make its networks
    unexportable with ``semantics``: checked before any calibration."""
    if semantics != "nir":
        return []
    out = []
    for key, wanted in NIR_REQUIRED.items():
        if getattr(config, key) != wanted:
            out.append((f"config.{key}", f"{key}={getattr(config, key)!r}: semantics='nir' needs {key}={wanted!r} "
                        "(NIR's IF resets to zero and starts at 0)", _WAY_OUT_RECONVERT))
    if config.signed:
        out.append(("config.signed", "signed IF neurons emit -1 spikes, which NIR's IF cannot",
                    "convert without --signed"))
    return out


def export_nir(net, path: str | os.PathLike, *, overwrite: bool = False, semantics: str = "nir",
               readout: str | None = None, preprocessing: dict | None = None) -> Path:
    """Write ``net`` as a NIR HDF5 file and return its path.

    The graph is built and validated first (``BackendConstraintError`` before anything is written), then
    written to a temporary file in the target directory, read back with ``nir.read`` (type checking on),
    and moved into place with ``os.replace``: readers never see a partial file and a failure leaves an old
    file untouched. An existing ``path`` raises ``FileExistsError`` unless ``overwrite=True``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True / --force to replace it)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name such as model.nir")
    graph = to_nir(net, semantics=semantics, readout=readout, preprocessing=preprocessing)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
        if semantics == "nir":
            _drop_default_v_reset(tmp)
        nir.read(tmp, type_check=True)  # the file must be readable by every nir-based importer
    log.info("wrote NIR graph with %d nodes and %d edges to %s", len(graph.nodes), len(graph.edges), path)
    return path


def nir_summary(graph: nir.NIRGraph) -> list[tuple[str, str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]]]:
    """One row per node in data-flow order: (name, NIR type, (input shape, output shape))."""
    return [(name, type(node).__name__, (_type_shape(node.input_type), _type_shape(node.output_type)))
            for name, node in ((k, graph.nodes[k]) for k in _flow_order(graph))]


# ---------------------------------------------------------------------------------------------- internals


def _drop_default_v_reset(path) -> None:
    """Remove IF ``v_reset`` datasets that hold NIR's default (0): nir <= 1.0.4, which ``pip install
    sinabs`` brings, has no ``v_reset`` field and refuses files that carry one; newer nir reads 0 back."""
    import h5py

    with h5py.File(path, "r+") as f:
        nodes = f["node"]["nodes"]
        for name in list(nodes):
            group = nodes[name]
            if "v_reset" in group and not np.any(group["v_reset"][()]):
                del group["v_reset"]


def _type_shape(types) -> tuple[int, ...] | None:
    if not isinstance(types, dict) or not types:
        return None
    v = next(iter(types.values()))
    return None if v is None else tuple(int(d) for d in np.asarray(v).reshape(-1))


def _flow_order(graph: nir.NIRGraph) -> list[str]:
    """Node names sorted topologically along the edges (Kahn, stable in insertion order)."""
    return _order_of(graph.nodes, graph.edges)


def _order_of(nodes, edges) -> list[str]:
    names = list(nodes)
    indeg = {n: 0 for n in names}
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        if a in succ and b in indeg:
            succ[a].append(b)
            indeg[b] += 1
    ready = [n for n in names if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order + [n for n in names if n not in order]  # nodes on cycles (never produced here) last


class _NameSpace:
    """Unique node names that survive HDF5 (no '/'), nirtorch (no '.') and Python identifiers."""

    def __init__(self):
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        base = re.sub(r"\W", "_", wanted) or "node"
        if base[0].isdigit() or keyword.iskeyword(base):
            base = f"n_{base}"
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _pair(v) -> np.ndarray:
    return np.asarray([int(v[0]), int(v[1])], dtype=np.int64)


def _meta_value(v):
    """Metadata values nir.write can store (no None, no lists of strings)."""
    if v is None:
        return "none"
    if isinstance(v, (bool, int, float, str, np.ndarray, np.generic)):
        return v
    if isinstance(v, dict):
        return {str(k): _meta_value(x) for k, x in v.items()}
    return str(v)


@dataclass
class _Exporter:
    net: object
    semantics: str
    readout: str | None = None
    preprocessing: dict | None = None
    names: _NameSpace = field(default_factory=_NameSpace)
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    # IR tensor -> NIR nodes whose outputs sum to it (several after an Add, none is impossible)
    sources: dict[str, list[str]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    out_shape: dict[str, tuple[int, ...]] = field(default_factory=dict)  # NIR node -> per-sample output shape

    def run(self) -> tuple[nir.NIRGraph | None, list[Violation]]:
        if self.semantics not in SEMANTICS:
            raise ValueError(f"semantics={self.semantics!r} (allowed: {', '.join(SEMANTICS)})")
        self.readout = self.readout or DEFAULT_READOUT[self.semantics]
        if self.readout not in READOUTS:
            raise ValueError(f"readout={self.readout!r} (allowed: {', '.join(READOUTS)})")
        self.portable = self.semantics == "nir"
        g = self.net.graph
        self.shapes = g.shapes
        ir_names = {n.name: self.names.take(n.name) for n in g.nodes}
        for spec in g.inputs:
            name = self.names.take(spec.name)
            self.nodes[name] = nir.Input(input_type=np.asarray(spec.shape, dtype=np.int64),
                                         metadata=self._meta({"ir_name": spec.name}))
            self.out_shape[name] = tuple(spec.shape)
            self.sources[spec.name] = [name]
        self.ir_names = ir_names
        for n in g.nodes:
            self._node(n)
        if self.violations:
            return None, list(self.violations)
        for out in g.outputs:
            self._readout(out, multiple=len(g.outputs) > 1)
        if self.portable:
            self._fold_thresholds()
        # nodes in data-flow order for readers of the graph object (a file read back lists them by name)
        ordered = {k: self.nodes[k] for k in _order_of(self.nodes, self.edges)}
        graph = nir.NIRGraph(nodes=ordered, edges=self.edges, metadata=self._graph_metadata(),
                             type_check=True)
        return graph, []

    # ------------------------------------------------------------------ helpers

    def _meta(self, meta: dict) -> dict:
        """Node metadata, kept only in the annotated form: the nir form's primitives say everything, and
        nir <= 1.0.4 (what ``pip install sinabs`` brings) refuses metadata on most node types."""
        return {} if self.portable else meta

    def _scale_node(self, scale: np.ndarray, shape) -> nir.NIRNode | None:
        """An elementwise scale of a ``shape`` tensor: ``Scale`` in the annotated form; in the nir form a
        diagonal ``Affine`` (1-D) or 1x1 ``Conv2d`` (per channel), which every consumer implements, and
        None when the scale varies inside a channel."""
        scale = np.broadcast_to(np.asarray(scale, np.float32), shape)
        if not self.portable:
            return nir.Scale(scale=_f32(scale))
        if len(shape) == 1:
            return nir.Affine(weight=_f32(np.diag(scale)), bias=np.zeros(shape[0], np.float32))
        if len(shape) == 3 and _per_channel(scale):
            c = shape[0]
            return nir.Conv2d(input_shape=_pair(shape[1:]), weight=_f32(np.diag(scale[:, 0, 0]).reshape(c, c, 1, 1)),
                              stride=_pair((1, 1)), padding=_pair((0, 0)), dilation=_pair((1, 1)), groups=1,
                              bias=np.zeros(c, np.float32))
        return None

    def _pool_as_conv(self, channels: int, hw_in, kernel, stride, padding) -> nir.Conv2d:
        """Average pooling as the equivalent Conv2d (weight 1/(kH*kW) from each channel to itself): NIR's
        AvgPool2d is not implemented by Norse or Sinabs, Conv2d is by every consumer."""
        kh, kw = int(kernel[0]), int(kernel[1])
        weight = np.zeros((channels, channels, kh, kw), np.float32)
        weight[np.arange(channels), np.arange(channels)] = 1.0 / (kh * kw)
        return nir.Conv2d(input_shape=_pair(hw_in), weight=weight, stride=_pair(stride), padding=_pair(padding),
                          dilation=_pair((1, 1)), groups=1, bias=np.zeros(channels, np.float32))

    def _violation(self, n: ir.Node, problem: str, way_out: str) -> None:
        self.violations.append((n.name, f"{type(n).__name__}: {problem}", way_out))

    def _add(self, name: str, node: nir.NIRNode, inputs: list[str], shape) -> None:
        self.nodes[name] = node
        self.out_shape[name] = tuple(shape)
        self._connect(inputs, name)

    def _connect(self, srcs: list[str], dst: str) -> None:
        """Edges from every source into ``dst``; a source that would arrive k > 1 times goes through Scale(k)."""
        for src, k in Counter(srcs).items():
            if k > 1:
                mult = self.names.take(f"{src}_times{k}")
                shape = self.out_shape[src]
                node = self._scale_node(np.full(shape, float(k), np.float32), shape)
                if node is None:  # a fan-in scale is uniform, so only a rank the nir form lacks gets here
                    raise ValueError(f"no nir-form scale for a {shape} tensor")
                node.metadata = self._meta({"note": f"fan-in of one source {k} times"})
                self.nodes[mult] = node
                self.out_shape[mult] = shape
                self.edges.append((src, mult))
                src = mult
            self.edges.append((src, dst))

    def _inputs_of(self, n: ir.Node) -> list[str]:
        return [s for i in n.inputs for s in self.sources.get(i, ())]  # none after a violation

    def _single(self, n: ir.Node, node: nir.NIRNode, extra_meta: dict | None = None) -> None:
        """Emit ``node`` for IR node ``n`` (named after it) reading n's inputs."""
        name = self.ir_names[n.name]
        node.metadata = self._meta({"ir_name": n.name, **(extra_meta or {})})
        self._add(name, node, self._inputs_of(n), self.shapes[n.name])
        self.sources[n.name] = [name]

    # ------------------------------------------------------------------ one IR node

    def _node(self, n: ir.Node) -> None:
        shape_in = self.shapes[n.inputs[0]] if n.inputs else ()
        shape_out = self.shapes[n.name]
        if isinstance(n, IF):
            self._if(n, shape_out)
        elif isinstance(n, ir.Conv2d):
            self._conv(n, shape_in)
        elif isinstance(n, ir.Dense):
            if n.bias is None and self.portable:  # Sinabs and snnTorch map Affine only
                self._single(n, nir.Affine(weight=_f32(n.weight), bias=np.zeros(n.weight.shape[0], np.float32)))
            elif n.bias is None:
                self._single(n, nir.Linear(weight=_f32(n.weight)))
            else:
                self._single(n, nir.Affine(weight=_f32(n.weight), bias=_f32(n.bias)))
        elif isinstance(n, (CumulativeMaxPool2d, CumulativeGlobalMaxPool, ir.MaxPool2d, ir.GlobalMaxPool)):
            self._violation(n, "NIR has no max-pooling node (and the rate-exact cumulative max is stateful)",
                            _WAY_OUT_MAX)
        elif isinstance(n, ir.AvgPool2d):
            self._avgpool(n, shape_in, shape_out)
        elif isinstance(n, ir.GlobalAvgPool):
            hw = _pair(shape_in[1:])
            if self.portable:
                self._single(n, self._pool_as_conv(shape_in[0], hw, hw, hw, (0, 0)))
            else:
                self._single(n, nir.AvgPool2d(kernel_size=hw, stride=hw.copy(), padding=_pair((0, 0))))
        elif isinstance(n, ir.ScaleShift):
            self._scale_shift(n, shape_out)
        elif isinstance(n, ir.Add):
            self.sources[n.name] = self._inputs_of(n)  # NIR sums the edges arriving at each reader
        elif isinstance(n, ir.Concat):
            self._violation(n, "NIR has no concatenation node",
                            "use a model without channel concatenation (Inception/DenseNet-style blocks), or "
                            + _WAY_OUT_NATIVE)
        elif isinstance(n, (ir.Flatten, ir.Reshape)):
            self._reshape(n, shape_in, shape_out)
        elif isinstance(n, ir.Transpose):
            if tuple(n.perm) == tuple(range(len(n.perm))) or shape_in == shape_out and _moves_unit_axes(n, shape_in):
                self.sources[n.name] = self._inputs_of(n)
            else:
                self._violation(n, f"NIR has no transpose (perm {list(n.perm)})",
                                "export the model in NCHW layout so that no transpose remains, or "
                                + _WAY_OUT_NATIVE)
        else:
            self._violation(n, "not an op of a converted spiking graph", _WAY_OUT_NATIVE)

    def _if(self, n: IF, shape) -> None:
        if n.signed:
            self._violation(n, "signed IF neurons emit -1 spikes, which NIR's IF cannot",
                            "convert with ConversionConfig(signed=False)")
            return
        v0 = _per_channel_full(n.v_init, shape)
        theta = _per_channel_full(n.threshold, shape)
        if self.portable:
            problems = []
            if n.reset != "zero":
                problems.append("resets by subtraction (NIR's IF resets to v_reset = 0)")
            if np.any(v0):
                problems.append(f"starts at a non-zero potential (v_init {_span(v0)}; NIR's IF starts at 0)")
            if problems:
                self._violation(n, " and ".join(problems), _WAY_OUT_RECONVERT)
                return
            # the primitives say it all: v += I; spike when v > v_threshold; v = v_reset = 0
            self._single(n, nir.IF(r=np.ones(shape, np.float32), v_threshold=theta,
                                   v_reset=np.zeros(shape, np.float32)))
            return
        fire = FIRE_CONDITION if n.reset == "subtract" else "v > v_threshold"
        meta = {"reset": n.reset, "fire_condition": fire, "v_init": v0, "scale": _f32(n.scale).reshape(-1)}
        self._single(n, nir.IF(r=np.ones(shape, np.float32), v_threshold=theta,
                               v_reset=np.zeros(shape, np.float32)), meta)

    def _conv(self, n: ir.Conv2d, shape_in) -> None:
        t, l, b, r = n.padding
        if t != b or l != r:
            self._violation(n, f"asymmetric padding {list(n.padding)} (top, left, bottom, right); NIR pads "
                               "both sides equally", "re-export the model with symmetric padding (PyTorch "
                               "style, not TF 'SAME' with an even kernel or stride 2), or " + _WAY_OUT_NATIVE)
            return
        weight = _f32(n.weight)
        meta = {}
        if n.groups != 1:
            weight = _ungroup(weight, n.groups)
            meta["groups_expanded_from"] = int(n.groups)
        bias = _f32(n.bias) if n.bias is not None else np.zeros(weight.shape[0], np.float32)
        self._single(n, nir.Conv2d(input_shape=_pair(shape_in[1:]), weight=weight, stride=_pair(n.stride),
                                   padding=_pair((t, l)), dilation=_pair(n.dilation), groups=1, bias=bias), meta)

    def _avgpool(self, n: ir.AvgPool2d, shape_in, shape_out) -> None:
        t, l, b, r = n.padding
        if t != b or l != r:
            self._violation(n, f"asymmetric padding {list(n.padding)}; NIR pads both sides equally",
                            "re-export the model with symmetric pooling pads, or " + _WAY_OUT_NATIVE)
            return
        c, h, w = shape_in
        floor = tuple((size + 2 * p - k) // s + 1 for size, p, k, s in zip((h, w), (t, l), n.kernel, n.stride))
        if floor != tuple(shape_out[1:]):
            self._violation(n, f"ceil_mode gives a {shape_out[1]}x{shape_out[2]} output; NIR pools in floor mode "
                               f"({floor[0]}x{floor[1]})", "re-export the model with ceil_mode=False, or "
                               + _WAY_OUT_NATIVE)
            return
        if self.portable and (t or l) and not n.count_include_pad:
            self._violation(n, "count_include_pad=False with pads divides each position by its own count, "
                               "which no Conv2d does", "re-export the model with count_include_pad=True or "
                               "without pooling pads, or export with semantics='annotated'")
            return
        if self.portable:
            self._single(n, self._pool_as_conv(c, (h, w), n.kernel, n.stride, (t, l)))
            return
        pool = nir.AvgPool2d(kernel_size=_pair(n.kernel), stride=_pair(n.stride), padding=_pair((t, l)))
        if not (t or l) or n.count_include_pad:
            self._single(n, pool)
            return
        # NIR's AvgPool divides by kH*kW (pads count); rescale each position to divide by its real cells
        name = self.ir_names[n.name]
        pool.metadata = {"ir_name": n.name, "note": "followed by a Scale: count_include_pad=False"}
        self._add(name, pool, self._inputs_of(n), shape_out)
        ones = np.pad(np.ones((h, w), np.float32), ((t, t), (l, l)))
        win = np.lib.stride_tricks.sliding_window_view(ones, tuple(n.kernel))[::n.stride[0], ::n.stride[1]]
        count = win.sum(axis=(-2, -1))[: shape_out[1], : shape_out[2]]
        scale = np.broadcast_to((n.kernel[0] * n.kernel[1]) / count, shape_out)
        fix = self.names.take(f"{n.name}_count")
        self._add(fix, nir.Scale(scale=_f32(scale), metadata={"ir_name": n.name,
                                                               "note": "kH*kW / cells inside the input"}), [name],
                  shape_out)
        self.sources[n.name] = [fix]

    def _scale_shift(self, n: ir.ScaleShift, shape) -> None:
        scale = np.broadcast_to(np.asarray(n.scale, np.float32), shape)
        shift = np.broadcast_to(np.asarray(n.shift, np.float32), shape)
        plain = None if np.any(shift) else self._scale_node(scale, shape)
        if plain is not None:
            self._single(n, plain)
        elif not np.any(shift) and len(shape) != 1:
            self._violation(n, f"a scale that varies inside a channel of a {shape} tensor has no form in the "
                               "node types NIR consumers implement", "export with semantics='annotated'")
        elif len(shape) == 1:
            self._single(n, nir.Affine(weight=_f32(np.diag(scale)), bias=_f32(shift)),
                         {"note": "ScaleShift as a diagonal Affine"})
        elif len(shape) == 3 and _per_channel(scale) and _per_channel(shift):
            c = shape[0]
            weight = np.diag(scale[:, 0, 0]).reshape(c, c, 1, 1)
            self._single(n, nir.Conv2d(input_shape=_pair(shape[1:]), weight=_f32(weight), stride=_pair((1, 1)),
                                       padding=_pair((0, 0)), dilation=_pair((1, 1)), groups=1,
                                       bias=_f32(shift[:, 0, 0])), {"note": "ScaleShift as a diagonal 1x1 conv"})
        else:
            self._violation(n, f"a shift with a scale or shift that varies inside a channel of a {shape} tensor "
                               "has no NIR form",
                            "fold the constant into the neighbouring conv before converting, or " + _WAY_OUT_NATIVE)

    def _reshape(self, n: ir.Node, shape_in, shape_out) -> None:
        if tuple(shape_in) == tuple(shape_out):
            self.sources[n.name] = self._inputs_of(n)
        elif len(shape_out) == 1:
            # start_dim counted from the end: NIR's dims exclude the batch axis, but Norse and snnTorch hand
            # start_dim to torch.nn.Flatten as it is (0 would flatten the batch too); -len means the same to all
            self._single(n, nir.Flatten(input_type=np.asarray(shape_in, np.int64),
                                        start_dim=-len(shape_in) if self.portable else 0, end_dim=-1))
        else:
            self._violation(n, f"reshape {shape_in} -> {shape_out} is not a flatten; NIR has only Flatten",
                            "reshape only to (N,) (flatten) in the model, or " + _WAY_OUT_NATIVE)

    # ------------------------------------------------------------------ readout and metadata

    def _readout(self, out: str, multiple: bool) -> None:
        shape = tuple(self.shapes[out])
        srcs = self.sources[out]
        suffix = f"_{out}" if multiple else ""
        unit = np.broadcast_to(np.asarray(self.net.output_units.get(out, 1.0), np.float32), shape)
        if not np.all(unit == 1.0) and not self._fold_unit(srcs, unit):
            name = self.names.take(f"readout_unit{suffix}")
            node = self._scale_node(unit, shape)
            if node is None:
                raise ValueError(f"output {out!r}: an output unit that varies inside a channel has no nir form")
            node.metadata = self._meta({"note": "ANN value of one output unit"})
            self._add(name, node, srcs, shape)
            srcs = [name]
        if self.readout == "integrator":
            name = self.names.take(f"readout{suffix}")
            self._add(name, nir.I(r=np.ones(shape, np.float32), metadata=self._meta({
                "note": "accumulates the output; prediction = argmax at the last step, estimate = value / T"})),
                srcs, shape)
            srcs = [name]
        name = self.names.take(f"output{suffix}")
        output = nir.Output(output_type=np.asarray(shape, np.int64), metadata=self._meta({"ir_name": out}))
        self._add(name, output, srcs, shape)

    def _fold_thresholds(self) -> None:
        """Give every IF threshold 1 by dividing its input current by its threshold (v > theta_c with input I
        is v > 1 with input I / theta_c): snnTorch's importer refuses thresholds that differ between
        neurons. A Conv2d or Affine that feeds only this IF is rescaled in place; any other input edge gets
        a diagonal node."""
        for name, node in list(self.nodes.items()):
            if not isinstance(node, nir.IF) or np.all(node.v_threshold == 1):
                continue
            theta = node.v_threshold
            per_unit = theta[:, 0, 0] if theta.ndim == 3 else theta.reshape(-1)
            for src in [a for a, b in self.edges if b == name]:
                pre = self.nodes[src]
                alone = [b for a, b in self.edges if a == src] == [name]
                if alone and isinstance(pre, (nir.Conv2d, nir.Affine)):
                    w = pre.weight / per_unit.reshape((-1,) + (1,) * (pre.weight.ndim - 1))
                    b = pre.bias / per_unit
                    self.nodes[src] = (nir.Affine(weight=_f32(w), bias=_f32(b)) if isinstance(pre, nir.Affine) else
                                       nir.Conv2d(input_shape=pre.input_shape, weight=_f32(w), stride=pre.stride,
                                                  padding=pre.padding, dilation=pre.dilation, groups=pre.groups,
                                                  bias=_f32(b)))
                    continue
                div = self.names.take(f"{name}_threshold")
                self.nodes[div] = self._scale_node(1.0 / theta, theta.shape)
                self.out_shape[div] = theta.shape
                self.edges[self.edges.index((src, name))] = (src, div)
                self.edges.append((div, name))
            self.nodes[name] = nir.IF(r=node.r, v_threshold=np.ones_like(theta), v_reset=node.v_reset)

    def _fold_unit(self, srcs: list[str], unit: np.ndarray) -> bool:
        """In the nir form, fold the output unit into the Affine that computes the output, if one alone does
        (the readout's value is then the ANN's); True when folded."""
        if not self.portable or len(srcs) != 1 or unit.ndim != 1:
            return False
        node = self.nodes[srcs[0]]
        if not isinstance(node, nir.Affine) or any(a == srcs[0] for a, _ in self.edges):
            return False
        self.nodes[srcs[0]] = nir.Affine(weight=_f32(node.weight * unit[:, None]), bias=_f32(node.bias * unit),
                                         metadata=node.metadata)
        return True

    def _graph_metadata(self) -> dict:
        net = self.net
        cfg = net.config
        sm = net.output_softmax
        from ann2snn import __version__

        neurons = [n for n in net.graph.nodes if isinstance(n, IF)]
        v0 = np.concatenate([np.asarray(n.v_init, np.float32).reshape(-1) for n in neurons]) if neurons else np.zeros(1)
        reset = neurons[0].reset if neurons else "subtract"
        if self.portable:
            model = ("NIR's IF read literally, in normalized units: per step v += r*I (r=1, dt=1, no synaptic "
                     "delay); spike 1 when v > v_threshold; then v = v_reset = 0; every v starts at 0")
        elif reset == "zero":
            model = ("IF in normalized units: per step v += r*I (r=1, dt=1, no synaptic delay); spike 1 when "
                     "v > v_threshold; then v = 0 (reset to zero); v starts at the IF node's metadata v_init")
        else:
            model = ("IF in normalized units: per step v += r*I (r=1, dt=1, no synaptic delay); spike 1 when "
                     "v >= v_threshold (=1); then v -= v_threshold (reset by subtraction); v starts at the IF "
                     "node's metadata v_init")
        meta = {
            "producer": "ann2snn", "producer_version": __version__, "name": net.graph.name,
            "semantics": self.semantics, "neuron_model": model,
            "reset": reset, "fire_condition": FIRE_CONDITION if reset == "subtract" else "v > v_threshold",
            "dt": 1.0,
            # the potentials every IF really starts at (bias correction charges them per neuron)
            "v_init": float(v0[0]) if np.all(v0 == v0[0]) else "per_neuron",
            "v_init_range": np.asarray([v0.min(), v0.max()], np.float32),
            "input_encoding": cfg.input_encoding, "input_unit": float(net.input_unit),
            "input_note": ("present the same input x at every step (constant current)" if cfg.input_encoding ==
                           "analog" else "feed Poisson spikes: P(spike)=|x|/input_unit per step, value sign(x)"),
            "preprocessing": ("none recorded: apply the model's own preprocessing" if self.preprocessing is None
                              else json.dumps(self.preprocessing, sort_keys=True)),
            "readout": self.readout,
            "prediction": "argmax of the output accumulated over T steps" + (
                " (the I node accumulates it)" if self.readout == "integrator" else " (sum the output over time)"),
            "output_softmax": "none" if sm is None else ("log_softmax" if sm.log else "softmax"),
        }
        if not self.portable:
            meta["v_init_note"] = "IF nodes start at their metadata v_init (threshold units), not at 0"
        return _meta_value(meta)


def _ungroup(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_out, C_in/g, kH, kW) grouped weights -> the equivalent dense (C_out, C_in, kH, kW), zeros elsewhere."""
    co, cig = weight.shape[:2]
    full = np.zeros((co, cig * groups) + weight.shape[2:], np.float32)
    full[np.arange(co)[:, None], ir.conv_input_channels(co, cig, groups)] = weight
    return full


def _span(a: np.ndarray) -> str:
    lo, hi = float(a.min()), float(a.max())
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f} to {hi:.2f}"


def _per_channel_full(values, shape) -> np.ndarray:
    """A per-channel (or scalar) neuron parameter broadcast to the layer's full per-sample ``shape``."""
    a = np.asarray(values, np.float32)
    a = a.reshape((-1,) + (1,) * (len(shape) - 1)) if a.size > 1 else a.reshape(())
    return _f32(np.broadcast_to(a, shape))


def _per_channel(a: np.ndarray) -> bool:
    """True if a (C, H, W) array is constant over H and W."""
    flat = a.reshape(a.shape[0], -1)
    return bool(np.all(flat == flat[:, :1]))


def _moves_unit_axes(n: ir.Transpose, shape_in) -> bool:
    """A transpose that only moves size-1 axes keeps the memory order (a reshape in disguise)."""
    moved = [p for p in n.perm if shape_in[p] != 1]
    return moved == sorted(moved)
