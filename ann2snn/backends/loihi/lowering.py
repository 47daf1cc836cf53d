"""Lowering a converted graph to a chain of netx layers to be (``Stage``), or every reason it cannot be.

The converted graph must be a chain ``input -> [Conv2d/Dense + IF | AvgPool2d/GlobalAvgPool | Flatten]* ->
linear tail``. Each weighted op with its IF becomes a netx ``conv``/``dense`` layer with a neuron; an average
pool becomes a depthwise ``conv`` (groups = C, constant kernel, stride = the pool stride) with its own
neuron; a Flatten becomes a netx ``flatten``; everything linear after the last IF (Flatten, Dense, ...) is
folded into ONE readout ``dense``. Everything else (max pooling, residual Add, Concat, a ScaleShift between
layers, Transpose, signed neurons, asymmetric padding, ...) is collected and reported together, each with a
way out.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph
from ann2snn.ir.reference import forward
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d

Violation = tuple[str, str, str]  # (node, problem, way out)

_NIR_WAY_OUT = "export to NIR instead (--target nir)"


@dataclass
class Stage:
    """One netx layer to be, with float (normalized) parameters.

    kind: ``conv`` (Conv2d + IF), ``pool`` (average pool as depthwise conv + IF), ``flatten``, ``dense``
    (Dense + IF) or ``readout`` (the folded linear tail, no neuron). ``name`` is the IR tensor whose value
    the layer's neurons represent (the IF name; the tail's output for the readout). ``nodes`` lists the IR
    nodes folded into it. ``unit``: ANN value of one spike per step (per channel) for spiking stages.
    """

    kind: str
    name: str
    nodes: tuple[str, ...]
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def spiking(self) -> bool:
        return self.kind in ("conv", "pool", "dense")


_MAX_WAY = "replace MaxPool by AvgPool and retrain (netx has no max pooling, and NIR has no max either)"
_OP_WAYS: dict[type, tuple[str, str]] = {
    ir.MaxPool2d: ("max pooling has no netx layer", _MAX_WAY),
    ir.GlobalMaxPool: ("global max pooling has no netx layer", _MAX_WAY),
    CumulativeMaxPool2d: ("the spiking (cumulative) max pool has no netx layer", _MAX_WAY),
    CumulativeGlobalMaxPool: ("the spiking (cumulative) global max pool has no netx layer", _MAX_WAY),
    ir.Add: ("residual Add: netx is a chain of layers and cannot express skip connections",
             f"{_NIR_WAY_OUT}, or use a model without residual connections"),
    ir.Concat: ("Concat: netx cannot express branches (its concat layer is not implemented)",
                f"{_NIR_WAY_OUT}, or use a model without branches"),
    ir.ScaleShift: ("ScaleShift (BatchNorm/affine) between layers has no netx layer",
                    f"fold it into the neighbouring Conv/Gemm before export (place BatchNorm right after a "
                    f"conv), or {_NIR_WAY_OUT}"),
    ir.Transpose: ("Transpose has no netx layer", f"remove the transpose from the model, or {_NIR_WAY_OUT}"),
    ir.Softmax: ("Softmax inside the network has no netx layer", "keep Softmax only at the output"),
}


def _fail(out: list[Violation], node: ir.Node, problem: str, way_out: str) -> None:
    out.append((node.name, f"{type(node).__name__}: {problem}", way_out))


def _pool_as_conv(node: ir.Node, in_shape, out_shape, out: list[Violation]) -> Stage | None:
    """An average pool as a depthwise conv with a constant kernel, or None (violation recorded)."""
    c, h, w = in_shape
    if isinstance(node, ir.GlobalAvgPool):
        kernel, stride, pads = (h, w), (h, w), (0, 0, 0, 0)
    else:
        kernel, stride, pads = tuple(node.kernel), tuple(node.stride), tuple(node.padding)
        t, l, b, r = pads
        if (t, l) != (b, r):
            _fail(out, node, f"asymmetric padding {list(pads)}: netx conv padding is symmetric",
                  "use symmetric pooling padding, or no padding")
            return None
        if any(pads) and not node.count_include_pad:
            _fail(out, node, "padding with count_include_pad=0 divides border windows by fewer cells, which a "
                  "constant depthwise kernel cannot express", "use pooling without padding")
            return None
        floor_hw = tuple((size + 2 * p - k) // s + 1 for size, p, k, s in zip((h, w), (t, l), kernel, stride))
        if tuple(out_shape[1:]) != floor_hw:
            _fail(out, node, "ceil_mode changes the output size; netx convolutions use floor",
                  "use ceil_mode=0 or an input size divisible by the stride")
            return None
        pads = (t, l, b, r)
    weight = np.full((c, 1) + tuple(kernel), 1.0 / (kernel[0] * kernel[1]))
    return Stage("pool", node.name, (node.name,), tuple(out_shape), weight=weight, stride=stride,
                 padding=(pads[0], pads[1]), groups=c)


def _linear_stage(kind: str, node: ir.Node, name: str, out_shape, out: list[Violation]) -> Stage | None:
    if isinstance(node, ir.Conv2d):
        t, l, b, r = node.padding
        if (t, l) != (b, r):
            _fail(out, node, f"asymmetric padding {list(node.padding)}: netx conv padding is symmetric (H, W)",
                  "use symmetric padding in the model")
            return None
        return Stage(kind, name, (node.name,), tuple(out_shape), weight=np.asarray(node.weight, np.float64),
                     bias=None if node.bias is None else np.asarray(node.bias, np.float64),
                     stride=tuple(node.stride), padding=(t, l), dilation=tuple(node.dilation), groups=node.groups)
    return Stage(kind, name, (node.name,), tuple(out_shape), weight=np.asarray(node.weight, np.float64),
                 bias=None if node.bias is None else np.asarray(node.bias, np.float64))


def _fold_tail(graph: Graph, tail: list[ir.Node], in_name: str, out: list[Violation]) -> Stage | None:
    """All linear ops after the last spiking stage as ONE dense (weight, bias), by probing with a basis."""
    shapes = graph.shapes
    in_shape = tuple(shapes[in_name])
    out_name = tail[-1].name
    names = tuple(n.name for n in tail)
    weighted = [n for n in tail if isinstance(n, (ir.Dense, ir.Conv2d))]
    if not weighted:
        _fail(out, tail[-1], "the network must end in a linear (Gemm/Conv) readout layer after the last ReLU",
              "end the model with a Linear/Gemm layer producing the logits")
        return None
    layout_only = all(isinstance(n, (ir.Flatten, ir.Reshape)) for n in tail if n is not weighted[0])
    if len(weighted) == 1 and isinstance(weighted[0], ir.Dense) and tail[-1] is weighted[0] and layout_only:
        d = weighted[0]
        bias = None if d.bias is None else np.asarray(d.bias, np.float64)
        return Stage("readout", out_name, names, tuple(shapes[out_name]), weight=np.asarray(d.weight, np.float64),
                     bias=bias)
    n_in = int(np.prod(in_shape))
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, n_in, dtype=torch.float64), torch.eye(n_in, dtype=torch.float64)])
        x = basis.reshape((n_in + 1,) + in_shape)
        for n in tail:
            x = forward(_as_float64(n), x)
        y = x.reshape(n_in + 1, -1).numpy()
    bias = y[0]
    weight = (y[1:] - bias[None, :]).T
    return Stage("readout", out_name, names, tuple(shapes[out_name]), weight=weight,
                 bias=bias if np.any(bias) else None)


def _as_float64(node: ir.Node) -> ir.Node:
    """The node with float64 arrays (the probe runs in float64)."""
    changes = {f.name: np.asarray(getattr(node, f.name), np.float64) for f in fields(node)
               if isinstance(getattr(node, f.name), np.ndarray)}
    return replace(node, **changes) if changes else node


# a spiking graph's IF neurons, or the exact ReLUs of the SDNN graph (export.sdnn_graph)
_NEURONS = (IF, ir.ReLU)


def lower_graph(graph: Graph) -> tuple[list[Stage], list[Violation]]:
    """The converted graph as netx stages, and every reason it cannot be one (all of them).

    Neurons are IF nodes (CUBA) or plain ReLU nodes (the SDNN graph in ANN units, see ``sdnn_graph``).
    """
    violations: list[Violation] = []
    shapes = graph.shapes
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        violations.append(("graph", f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs: netx "
                                    "networks have exactly one input and one output", _NIR_WAY_OUT))
    input_shape = tuple(graph.inputs[0].shape)
    if len(input_shape) not in (1, 3):
        violations.append(("input", f"input shape {input_shape}: netx inputs are (C, H, W) or (N,)",
                           "reshape the model input to (C, H, W)"))
    nodes = list(graph.nodes)
    users = graph.consumers
    # 1. op kinds, and branching (with one input per node and no fan-out, topological order is a chain)
    for n in nodes:
        name = n.name.removesuffix("/current_max")  # the converter's pre-neuron max pool keeps the ONNX name
        consumers = users.get(n.name, [])
        if isinstance(n, ir.ScaleShift) and consumers and all(isinstance(u, ir.Add) for u in consumers):
            continue  # inserted by the converter to rescale a residual branch: the Add is reported
        for kind, (problem, way) in _OP_WAYS.items():
            if type(n) is kind:
                if isinstance(n, ir.Transpose) and tuple(n.perm) == tuple(range(len(n.perm))):
                    break
                if isinstance(n, ir.ScaleShift) and n is nodes[-1]:
                    break  # a trailing ScaleShift is linear and folds into the readout
                violations.append((name, f"{type(n).__name__}: {problem}", way))
                break
        else:
            if isinstance(n, IF) and n.signed:
                _fail(violations, n, "signed IF neurons emit -1 spikes, which Loihi's CUBA neurons cannot",
                      "convert without --signed")
            elif isinstance(n, IF) and n.reset == "zero" and np.any(np.asarray(n.v_init) != 0):
                _fail(violations, n, "a neuron that resets to zero starts at v = 0 on Loihi (netx clears it "
                      "when the input arrives), not at its initial potential", "convert with --v-init 0")
            elif isinstance(n, ir.ReLU) and n.ceiling is not None:
                _fail(violations, n, f"clipped ReLU (ceiling {n.ceiling:g}): SDNN neurons compute an unbounded "
                      "ReLU", "use --loihi-neuron cuba, whose spike rate saturates, or retrain with plain ReLU")
            elif not isinstance(n, _NEURONS + (ir.Conv2d, ir.Dense, ir.AvgPool2d, ir.GlobalAvgPool, ir.Flatten,
                                               ir.Reshape, ir.Transpose, ir.ScaleShift)):
                _fail(violations, n, "no netx layer for this op", _NIR_WAY_OUT)
    for tensor, consumers in users.items():
        merged = any(isinstance(u, (ir.Add, ir.Concat)) or (
            isinstance(u, ir.ScaleShift) and any(isinstance(v, ir.Add) for v in users.get(u.name, [])))
            for u in consumers)
        if len(consumers) > 1 and not merged:  # a branch that no Add/Concat entry already explains
            violations.append((tensor, f"feeds {len(consumers)} layers: netx is a chain and cannot branch",
                               _NIR_WAY_OUT))
    if violations:
        return [], _dedupe(violations)
    # 2. grouping
    if_positions = [i for i, n in enumerate(nodes) if isinstance(n, _NEURONS)]
    if not if_positions:
        return [], [("graph", "no spiking neurons (IF) in the network", "convert a model with ReLU layers")]
    last_if = if_positions[-1]
    stages: list[Stage] = []
    pending: ir.Node | None = None
    for n in nodes[: last_if + 1]:
        if isinstance(n, (ir.Conv2d, ir.Dense)):
            if pending is not None:
                _fail(violations, n, f"follows '{pending.name}' with no neuron in between (two linear layers)",
                      "merge the two linear layers into one before export")
            pending = n
        elif isinstance(n, _NEURONS):
            if pending is None:
                _fail(violations, n, "the neuron does not follow a Conv/Gemm layer", _NIR_WAY_OUT)
                continue
            kind = "conv" if isinstance(pending, ir.Conv2d) else "dense"
            stage = _linear_stage(kind, pending, n.name, shapes[n.name], violations)
            if stage is not None:
                stage.nodes = (pending.name, n.name)
                if isinstance(n, IF) and n.reset == "zero":
                    _fold_threshold(stage, n.threshold)
                stages.append(stage)
            pending = None
        elif pending is not None:
            _fail(violations, n, f"sits between '{pending.name}' and its neuron: netx has no such layer",
                  _NIR_WAY_OUT)
        elif isinstance(n, (ir.AvgPool2d, ir.GlobalAvgPool)):
            stage = _pool_as_conv(n, shapes[n.inputs[0]], shapes[n.name], violations)
            if stage is not None:
                stages.append(stage)
        elif isinstance(n, (ir.Flatten, ir.Reshape)):
            _add_flatten(n, shapes, stages, violations)
        else:
            _fail(violations, n, "no netx layer for this op between neurons", _NIR_WAY_OUT)
    tail = nodes[last_if + 1:]
    while tail and isinstance(tail[0], (ir.AvgPool2d, ir.GlobalAvgPool)) and any(
            isinstance(t, (ir.Dense, ir.Conv2d)) for t in tail[1:]):
        stage = _pool_as_conv(tail[0], shapes[tail[0].inputs[0]], shapes[tail[0].name], violations)
        if stage is not None:
            stages.append(stage)
        tail = tail[1:]
    if not tail:
        violations.append((nodes[-1].name, "the network ends in a neuron: a readout Gemm/Linear layer is needed",
                           "end the model with a Linear/Gemm layer producing the logits"))
        return stages, _dedupe(violations)
    readout_in = tail[0].inputs[0]
    readout = _fold_tail(graph, tail, readout_in, violations)
    if readout is not None:
        if len(shapes[readout_in]) == 3:
            stages.append(Stage("flatten", f"{readout_in}/flatten", (), (int(np.prod(shapes[readout_in])),)))
        stages.append(readout)
    return stages, _dedupe(violations)


def _fold_threshold(stage: Stage, threshold) -> None:
    """A reset-to-zero IF with thresholds theta_c as one with threshold 1: v > theta_c with input I is
    v/theta_c > 1 with input I/theta_c (v starts at 0 and resets to 0, so the scaling is exact)."""
    theta = np.broadcast_to(np.asarray(threshold, np.float64).reshape(-1), (stage.weight.shape[0],))
    stage.weight = stage.weight / theta.reshape((-1,) + (1,) * (stage.weight.ndim - 1))
    if stage.bias is not None:
        stage.bias = stage.bias / theta


def _add_flatten(n: ir.Node, shapes, stages: list[Stage], out: list[Violation]) -> None:
    in_shape, out_shape = tuple(shapes[n.inputs[0]]), tuple(shapes[n.name])
    if in_shape == out_shape:
        return  # identity
    if len(out_shape) != 1:
        _fail(out, n, f"reshape {in_shape} -> {out_shape}: netx only flattens (C, H, W) to (N,)", _NIR_WAY_OUT)
        return
    if len(in_shape) == 3:
        stages.append(Stage("flatten", n.name, (n.name,), out_shape))


def _dedupe(violations: list[Violation]) -> list[Violation]:
    seen, out = set(), []
    for v in violations:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
