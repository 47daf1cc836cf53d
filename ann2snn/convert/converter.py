"""ANN IR + thresholds -> spiking IR (weight-scaling form).

Every tensor of the converted graph carries a *unit*: an array broadcastable to its shape such that
``ANN value ~= unit * SNN value`` (SNN value = spike rate, or current per step). The graph input has
unit 1 (analog current). A ReLU becomes an IF neuron whose unit is its calibrated threshold lambda.
A linear op (Conv2d, Dense, ScaleShift) multiplies its weights by the unit of its input and divides them
(and its bias) by the lambda of the spiking point it feeds, so every IF has threshold 1:

    W'[o, i] = W[o, i] * unit_in[i] / lambda_out[o],   b'[o] = b[o] / lambda_out[o]

A linear op that feeds another linear op or the readout keeps ANN units (divisor 1). Units flow through
pooling and layout ops unchanged (reshaped with them), Concat concatenates them (per-input scaling),
and an Add rescales each input that is not already in the units of the Add's spiking point (the skip
branch of a residual block gets weight unit_skip / lambda_out).

MaxPool after a ReLU becomes, by default, a cumulative max on the input current before the IF
(ReLU and max commute when the window shares one threshold), see ``ConversionConfig.maxpool``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ann2snn.config import ConversionConfig
from ann2snn.errors import DataError, UnsupportedModelError
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d
from ann2snn.network import ConversionRecord, SpikingNetwork

log = logging.getLogger(__name__)

LINEAR_OPS = (ir.Conv2d, ir.Dense, ir.ScaleShift)
POOL_OPS = (ir.AvgPool2d, ir.GlobalAvgPool, ir.MaxPool2d, ir.GlobalMaxPool)


@dataclass(frozen=True)
class ConversionPlan:
    """Which ANN tensors become spiking, decided before calibration so calibration knows what to measure.

    ``spiking``: ANN tensor names whose values IF neurons represent (post-ReLU, or post-pool when a
    MaxPool is moved before the neuron), each with its channel count.
    ``relu_target``: ReLU node name -> the spiking tensor it becomes.
    ``fused_pools``: MaxPool node names that run on the current before the IF.
    """

    ann: Graph
    spiking: dict[str, int]
    relu_target: dict[str, str]
    fused_pools: frozenset[str]
    output_softmax: dict[str, ir.Softmax] = field(default_factory=dict)


def strip_output_softmax(graph: Graph) -> tuple[Graph, dict[str, ir.Softmax]]:
    """Remove Softmax/LogSoftmax at graph outputs (the readout applies them); reject them elsewhere."""
    problems = []
    softmax: dict[str, ir.Softmax] = {}
    outputs = list(graph.outputs)
    drop = set()
    for n in graph.nodes:
        if not isinstance(n, ir.Softmax):
            continue
        if n.name in graph.outputs and not graph.users(n.name):
            src = n.inputs[0]
            outputs[outputs.index(n.name)] = src
            softmax[src] = n
            drop.add(n.name)
        else:
            problems.append(("Softmax", n.name, "softmax inside the network has no spiking equivalent"))
    if problems:
        raise UnsupportedModelError(problems, context=graph.name)
    if not drop:
        return graph, softmax
    return graph.with_nodes([n for n in graph.nodes if n.name not in drop], outputs), softmax


def plan_conversion(graph: Graph, config: ConversionConfig) -> ConversionPlan:
    """Find the spiking points; report every node that has no spiking counterpart, all at once."""
    graph, softmax = strip_output_softmax(graph)
    problems = []
    for n in graph.nodes:
        if not isinstance(n, (*LINEAR_OPS, *POOL_OPS, ir.ReLU, ir.Add, ir.Concat, ir.Flatten, ir.Reshape,
                              ir.Transpose)):
            problems.append((type(n).__name__, n.name, "no spiking counterpart"))
    if problems:
        raise UnsupportedModelError(problems, context=graph.name)
    shapes = graph.shapes
    relu_target: dict[str, str] = {}
    fused: set[str] = set()
    for n in graph.nodes:
        if not isinstance(n, ir.ReLU):
            continue
        users = graph.users(n.name)
        target = n.name
        if (config.maxpool == "pre_neuron" and len(users) == 1 and n.name not in graph.outputs
                and isinstance(users[0], (ir.MaxPool2d, ir.GlobalMaxPool))):
            target = users[0].name
            fused.add(target)
        relu_target[n.name] = target
    spiking = {t: _channels(shapes[t]) for t in relu_target.values()}
    return ConversionPlan(graph, spiking, relu_target, frozenset(fused), softmax)


def _channels(shape) -> int:
    return int(shape[0]) if len(shape) else 1


def _expand(unit: np.ndarray, shape) -> np.ndarray:
    """Broadcast a unit array to the full per-sample shape (for layout ops)."""
    u = np.asarray(unit, np.float32)
    if u.ndim > len(shape):
        u = u.reshape(u.shape[-len(shape):]) if len(shape) else u.reshape(())
    return np.broadcast_to(u, shape).astype(np.float32)


def _per_channel(unit: np.ndarray, shape, node_name: str, what: str) -> np.ndarray:
    """Unit as a (C,) vector; fails when it varies inside a channel (e.g. after an exotic transpose)."""
    full = _expand(unit, shape)
    if len(shape) == 1:
        return full.reshape(-1)
    flat = full.reshape(shape[0], -1)
    if not np.allclose(flat, flat[:, :1], rtol=1e-6, atol=0):
        raise UnsupportedModelError(
            [(what, node_name, "input units vary within a channel (layout op before a channel op)")]
        )
    return flat[:, 0].copy()


def _unit_array(vec: np.ndarray, shape) -> np.ndarray:
    """A (C,) vector as an array broadcastable to a (C, H, W) or (N,) shape."""
    return vec.reshape((-1,) + (1,) * (len(shape) - 1)).astype(np.float32)


@dataclass
class _Builder:
    plan: ConversionPlan
    scales: dict[str, np.ndarray]
    config: ConversionConfig
    v_init: dict[str, np.ndarray]
    units: dict[str, np.ndarray] = field(default_factory=dict)
    nodes: list[ir.Node] = field(default_factory=list)

    @property
    def ann(self) -> Graph:
        return self.plan.ann

    def lam(self, spiking_tensor: str) -> np.ndarray:
        """Per-channel lambda of a spiking tensor (a scalar threshold is broadcast to all channels)."""
        c = self.plan.spiking[spiking_tensor]
        s = np.asarray(self.scales[spiking_tensor], np.float32).reshape(-1)
        if s.size not in (1, c) or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise DataError(f"threshold of '{spiking_tensor}' must be 1 or {c} finite positive value(s), "
                            f"got {s.size} value(s), min {s.min() if s.size else 'n/a'}")
        return np.broadcast_to(s, (c,)).astype(np.float32) if s.size == 1 else s

    def divisor(self, tensor: str) -> np.ndarray | None:
        """Lambda of the spiking point that ``tensor`` (a linear op's output) feeds, or None (ANN units)."""
        if tensor in self.ann.outputs:
            return None
        users = self.ann.users(tensor)
        if len(users) != 1:
            return None
        u = users[0]
        if isinstance(u, ir.ReLU):
            return self.lam(self.plan.relu_target[u.name])
        if isinstance(u, (ir.Add, ir.MaxPool2d, ir.GlobalMaxPool)):
            return self.divisor(u.name)
        return None

    def emit(self, node: ir.Node, unit: np.ndarray) -> None:
        self.nodes.append(node)
        self.units[node.name] = np.asarray(unit, np.float32)


def convert_graph(plan: ConversionPlan, scales: dict[str, np.ndarray], config: ConversionConfig,
                  v_init: dict[str, np.ndarray] | None = None, input_unit: float = 1.0
                  ) -> tuple[Graph, dict[str, np.ndarray]]:
    """Build the spiking graph. Returns (graph, units of its outputs).

    ``input_unit``: ANN value of one input spike (1 for the analog current; max |x| for Poisson input).
    """
    ann = plan.ann
    shapes = ann.shapes
    missing = [t for t in plan.spiking if t not in scales]
    if missing:
        raise UnsupportedModelError([("scales", t, "no threshold for this spiking tensor") for t in missing])
    b = _Builder(plan, scales, config, v_init or {})
    for spec in ann.inputs:
        b.units[spec.name] = np.full((1,) * len(spec.shape), input_unit, np.float32)
    for n in ann.nodes:
        in_units = [b.units[i] for i in n.inputs]
        shape_in = [shapes[i] for i in n.inputs]
        if isinstance(n, LINEAR_OPS):
            _convert_linear(b, n, in_units[0], shape_in[0], shapes[n.name])
        elif isinstance(n, ir.ReLU):
            target = plan.relu_target[n.name]
            lam = b.lam(target)
            if target != n.name:
                # pre-neuron max-pool: the ReLU's IF moves after the pool (built when the pool is reached)
                b.units[n.name] = in_units[0]
                continue
            b.emit(_make_if(b, n.name, n.inputs, lam, shapes[n.name]), _unit_array(lam, shapes[n.name]))
        elif isinstance(n, (ir.MaxPool2d, ir.GlobalMaxPool)):
            _convert_maxpool(b, n, in_units[0], shapes)
        elif isinstance(n, (ir.AvgPool2d, ir.GlobalAvgPool)):
            vec = _per_channel(in_units[0], shape_in[0], n.name, type(n).__name__)
            b.emit(n, _unit_array(vec, shapes[n.name]))
        elif isinstance(n, ir.Add):
            _convert_add(b, n, in_units, shapes[n.name])
        elif isinstance(n, ir.Concat):
            full = [_expand(u, s) for u, s in zip(in_units, shape_in)]
            b.emit(n, np.concatenate(full, axis=n.axis))
        elif isinstance(n, (ir.Flatten, ir.Reshape)):
            b.emit(n, _expand(in_units[0], shape_in[0]).reshape(shapes[n.name]))
        elif isinstance(n, ir.Transpose):
            b.emit(n, np.transpose(_expand(in_units[0], shape_in[0]), n.perm))
        else:  # plan_conversion rejects everything else first
            raise UnsupportedModelError([(type(n).__name__, n.name, "no spiking counterpart")])
    out_units = {o: _expand(b.units[o], shapes[o]) for o in ann.outputs}
    g = Graph.from_unordered(ann.inputs, b.nodes, ann.outputs, name=ann.name,
                             metadata=dict(ann.metadata, converted=True))
    g.validate()
    return g, out_units


def build_network(plan: ConversionPlan, scales, config: ConversionConfig, v_init: float,
                  input_unit: float = 1.0, record: ConversionRecord | None = None) -> SpikingNetwork:
    """The SpikingNetwork of ``plan`` with thresholds ``scales`` and initial potential ``v_init``
    (no bias correction: ``ConversionSession.build`` adds it)."""
    cfg = config.replace(v_init=v_init)
    graph, out_units = convert_graph(plan, scales, cfg, input_unit=input_unit)
    return SpikingNetwork(graph=graph, ann=plan.ann, output_units=out_units,
                          scales={k: np.asarray(v, np.float32) for k, v in scales.items()}, config=cfg,
                          output_softmax=next(iter(plan.output_softmax.values()), None), input_unit=input_unit,
                          record=(record or ConversionRecord()).replace(v_init=float(v_init)))


def structural_network(graph: Graph, config: ConversionConfig) -> SpikingNetwork:
    """The network ``config`` would convert ``graph`` (a simplified IR graph) into, with every threshold 1
    and v_init 0 where it is ``auto``: the structure a backend's constraint checks read, built in
    milliseconds so an unsupported target is refused before any calibration."""
    plan = plan_conversion(graph, config)
    ones = {name: np.ones(c, np.float32) for name, c in plan.spiking.items()}
    return build_network(plan, ones, config, 0.0 if config.v_init == "auto" else float(config.v_init))


def _make_if(b: _Builder, name: str, inputs, lam: np.ndarray, shape) -> IF:
    v0 = b.v_init.get(name)
    if v0 is None:
        v0 = np.full((1,), float(b.config.v_init if b.config.v_init != "auto" else 0.0), np.float32)
    return IF(name, tuple(inputs), scale=lam.astype(np.float32), v_init=np.asarray(v0, np.float32),
              signed=b.config.signed, reset=b.config.reset)


def _convert_linear(b: _Builder, n: ir.Node, unit_in: np.ndarray, shape_in, shape_out) -> None:
    d = b.divisor(n.name)
    d_vec = np.ones(_channels(shape_out), np.float32) if d is None else d
    if isinstance(n, ir.Conv2d):
        u = _per_channel(unit_in, shape_in, n.name, "Conv2d")
        u_in = u[ir.conv_input_channels(*n.weight.shape[:2], n.groups)]  # (C_out, C_in/groups)
        w = n.weight * u_in[:, :, None, None] / d_vec[:, None, None, None]
        bias = None if n.bias is None else n.bias / d_vec
        new = ir.Conv2d(n.name, n.inputs, weight=w.astype(np.float32),
                        bias=None if bias is None else bias.astype(np.float32), stride=n.stride,
                        padding=n.padding, dilation=n.dilation, groups=n.groups)
    elif isinstance(n, ir.Dense):
        u = _expand(unit_in, shape_in).reshape(-1)
        w = n.weight * u[None, :] / d_vec[:, None]
        bias = None if n.bias is None else n.bias / d_vec
        new = ir.Dense(n.name, n.inputs, weight=w.astype(np.float32),
                       bias=None if bias is None else bias.astype(np.float32))
    else:  # ScaleShift: y = x*s + t, x = unit_in * x_snn, y = d * y_snn
        dd = _unit_array(d_vec, shape_out)
        new = ir.ScaleShift(n.name, n.inputs, scale=(n.scale * unit_in / dd).astype(np.float32),
                            shift=np.broadcast_to(n.shift / dd, np.broadcast_shapes(n.shift.shape, dd.shape))
                            .astype(np.float32))
    b.emit(new, _unit_array(d_vec, shape_out))


def _convert_maxpool(b: _Builder, n: ir.Node, unit_in: np.ndarray, shapes) -> None:
    shape_in = shapes[n.inputs[0]]
    vec = _per_channel(unit_in, shape_in, n.name, type(n).__name__)
    cumulative_cls = CumulativeMaxPool2d if isinstance(n, ir.MaxPool2d) else CumulativeGlobalMaxPool
    params = {k: getattr(n, k) for k in ("kernel", "stride", "padding", "dilation", "ceil_mode")
              if hasattr(n, k)}
    if n.name in b.plan.fused_pools:
        # max over the cumulative input current, then the IF of the ReLU that preceded the pool
        relu = b.ann.node(n.inputs[0])
        pool_name = f"{n.name}/current_max"
        b.emit(cumulative_cls(pool_name, relu.inputs, **params), _unit_array(vec, shapes[n.name]))
        lam = b.lam(n.name)
        b.emit(_make_if(b, n.name, (pool_name,), lam, shapes[n.name]), _unit_array(lam, shapes[n.name]))
        return
    from_spikes = _fed_by_neuron(b.ann, n.inputs[0])
    if from_spikes and b.config.maxpool == "spike":
        b.emit(n, _unit_array(vec, shapes[n.name]))
    else:
        # on spikes: exact max of cumulative counts; on currents: cumulative max before the next IF
        b.emit(cumulative_cls(n.name, n.inputs, **params), _unit_array(vec, shapes[n.name]))


def _fed_by_neuron(ann: Graph, tensor: str) -> bool:
    """True if ``tensor`` carries spikes (a ReLU output, possibly through layout/pool/concat ops)."""
    if tensor not in ann.node_by_name:
        return False
    n = ann.node(tensor)
    if isinstance(n, ir.ReLU):
        return True
    if isinstance(n, (ir.Flatten, ir.Reshape, ir.Transpose, ir.MaxPool2d, ir.GlobalMaxPool, ir.Concat)):
        return all(_fed_by_neuron(ann, i) for i in n.inputs)
    return False


def _convert_add(b: _Builder, n: ir.Add, in_units, shape_out) -> None:
    d = b.divisor(n.name)
    d_vec = np.ones(_channels(shape_out), np.float32) if d is None else d
    target = _unit_array(d_vec, shape_out)
    inputs = []
    for idx, (name, unit) in enumerate(zip(n.inputs, in_units)):
        ratio = _expand(unit, shape_out) / _expand(target, shape_out)
        if np.allclose(ratio, 1.0, rtol=1e-6, atol=0):
            inputs.append(name)
            continue
        # the skip branch: bring its spikes into the units of the Add's spiking point
        scaled = f"{n.name}/input{idx}_scale"
        scale = _per_channel(ratio, shape_out, n.name, "Add")
        b.emit(ir.ScaleShift(scaled, (name,), scale=_unit_array(scale, shape_out),
                             shift=np.zeros((1,) * len(shape_out), np.float32)), target)
        inputs.append(scaled)
    b.emit(ir.Add(n.name, tuple(inputs)), target)
