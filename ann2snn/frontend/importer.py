"""ONNX -> IR importer.

Walks every node once, in topological order. Each node goes to its registered converter; a converter
either folds constants (Shape/Gather/Concat chains, Constant, Cast...) and returns a ``Constant``, or
adds IR nodes and returns a ``Tensor``. Problems are collected, never skipped: after the walk, one
``UnsupportedModelError`` lists every unsupported node with its op type, name and reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.frontend import registry
from ann2snn.frontend.safety import LoadLimits, load_model_proto, tensor_to_array
from ann2snn.ir import Graph, TensorSpec
from ann2snn.ir.nodes import Node, Shape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tensor:
    """A value computed from the graph input at run time (an IR tensor); ``shape`` excludes the batch."""

    name: str
    shape: Shape


@dataclass(frozen=True, eq=False)
class Constant:
    """A value known at import time (initializer, Constant node, folded shape arithmetic)."""

    value: np.ndarray


Value = Tensor | Constant


class NodeUnsupported(Exception):
    """Raised by a converter: this node (with these attributes/inputs) cannot be imported."""


@dataclass
class ImportContext:
    """What converters see: the opset, the batch size the model declares, and a way to add IR nodes."""

    opset: int
    declared_batch: int | None
    node: onnx.NodeProto | None = None
    nodes: list[Node] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    _used_names: set[str] = field(default_factory=set)

    @property
    def node_name(self) -> str:
        n = self.node
        return n.name or (n.output[0] if n.output else n.op_type)

    def fresh_name(self, suffix: str = "") -> str:
        """A unique IR name based on the current node's first output."""
        base = self.node.output[0] + (f"/{suffix}" if suffix else "")
        name, k = base, 1
        while name in self._used_names:
            name, k = f"{base}_{k}", k + 1
        self._used_names.add(name)
        return name

    def add(self, ir_node: Node) -> Tensor:
        """Append an IR node (its name must come from ``fresh_name``) and return its output tensor."""
        shape = tuple(ir_node.output_shape([self.shapes[i] for i in ir_node.inputs]))
        self.nodes.append(ir_node)
        self.shapes[ir_node.name] = shape
        return Tensor(ir_node.name, shape)

    def emit(self, cls: type[Node], inputs: list[Tensor], suffix: str = "", **params: Any) -> Tensor:
        """Shorthand: build ``cls`` on ``inputs`` with a fresh name and add it."""
        return self.add(cls(self.fresh_name(suffix), tuple(t.name for t in inputs), **params))

    def unsupported(self, reason: str) -> NodeUnsupported:
        return NodeUnsupported(reason)


def _attributes(node: onnx.NodeProto, load_tensor) -> dict[str, Any]:
    attrs = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, onnx.TensorProto):
            v = load_tensor(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        attrs[a.name] = v
    return attrs


def _sort_onnx_nodes(graph: onnx.GraphProto, known: set[str]) -> list[onnx.NodeProto]:
    """Topological order of ONNX nodes (keras2onnx stores them reversed); cycles raise."""
    producer = {}
    for idx, n in enumerate(graph.node):
        for o in n.output:
            if o:
                if o in producer or o in known:
                    raise InvalidModelError(f"tensor '{o}' is produced twice (node '{n.name or n.op_type}')")
                producer[o] = idx
    state = [0] * len(graph.node)  # 0 new, 1 visiting, 2 done
    order: list[onnx.NodeProto] = []
    for root in range(len(graph.node)):
        if state[root]:
            continue
        stack = [(root, iter(graph.node[root].input))]
        state[root] = 1
        while stack:
            idx, it = stack[-1]
            for i in it:
                j = producer.get(i)
                if j is None:
                    continue
                if state[j] == 1:
                    raise InvalidModelError(f"the ONNX graph has a cycle through node '{graph.node[j].name}'")
                if state[j] == 0:
                    state[j] = 1
                    stack.append((j, iter(graph.node[j].input)))
                    break
            else:
                state[idx] = 2
                order.append(graph.node[idx])
                stack.pop()
    return order


def _opset(model: onnx.ModelProto, path: str) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise InvalidModelError(f"{path}: the model declares no opset for the default ONNX domain")


def _input_spec(vi: onnx.ValueInfoProto, path: str) -> tuple[TensorSpec, int | None]:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
        raise InvalidModelError(f"{path}: graph input '{vi.name}' has no tensor shape")
    dims = []
    for d in t.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
    if len(dims) < 2:
        raise InvalidModelError(f"{path}: graph input '{vi.name}' must have a batch and a sample shape, got {dims}")
    if any(d is None for d in dims[1:]):
        raise InvalidModelError(f"{path}: graph input '{vi.name}' has an unknown non-batch dimension: {dims}")
    return TensorSpec(vi.name, tuple(int(d) for d in dims[1:])), dims[0]


def load_onnx(model: str | Path | onnx.ModelProto, *, limits: LoadLimits | None = None) -> Graph:
    """Import an ONNX model (path or ModelProto) into a validated IR ``Graph``.

    Raises ``InvalidModelError`` for malformed or unsafe files and ``UnsupportedModelError`` listing
    every node that cannot be imported.
    """
    limits = limits or LoadLimits()
    proto, path, base_dir = load_model_proto(model, limits)
    opset = _opset(proto, path)
    if not registry.MIN_OPSET <= opset <= registry.MAX_OPSET:
        raise UnsupportedModelError(
            [("<model>", path, f"opset {opset} is outside the supported range "
              f"{registry.MIN_OPSET}..{registry.MAX_OPSET}")]
        )
    g = proto.graph

    def load_tensor(tp: onnx.TensorProto) -> np.ndarray:
        return tensor_to_array(tp, base_dir, limits, path)

    values: dict[str, Value] = {}
    for init in g.initializer:
        values[init.name] = Constant(load_tensor(init))
    inputs: list[TensorSpec] = []
    batches = set()
    for vi in g.input:
        if vi.name in values:  # old IR versions list initializers as inputs too: they are constants
            continue
        spec, batch = _input_spec(vi, path)
        inputs.append(spec)
        batches.add(batch)
        values[vi.name] = Tensor(vi.name, spec.shape)
    if not inputs:
        raise InvalidModelError(f"{path}: the graph has no non-constant input")
    declared_batch = batches.pop() if len(batches) == 1 else None

    ctx = ImportContext(opset=opset, declared_batch=declared_batch)
    ctx.shapes.update({t.name: t.shape for t in inputs})
    ctx._used_names.update(t.name for t in inputs)
    problems: list[tuple[str, str, str]] = []
    poisoned: set[str] = set()  # outputs of nodes that failed: their users are checked, not converted

    for node in _sort_onnx_nodes(g, set(values)):
        name = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in ("", "ai.onnx"):
            problems.append((node.op_type, name, f"op from domain '{node.domain}' is not supported"))
            poisoned.update(node.output)
            continue
        conv = registry.lookup(node.op_type, opset)
        if conv is None:
            known = registry.lookup(node.op_type, registry.MAX_OPSET)
            reason = (
                f"{node.op_type} is supported only from opset {known.since}, model has {opset}"
                if known else f"op {node.op_type} has no spiking equivalent and is not supported"
            )
            problems.append((node.op_type, name, reason))
            poisoned.update(node.output)
            continue
        if any(i in poisoned for i in node.input):
            poisoned.update(node.output)
            continue
        missing = [i for i in node.input if i and i not in values]
        if missing:
            raise InvalidModelError(f"{path}: node '{name}' reads undefined tensor(s) {missing}")
        ctx.node = node
        args = [values[i] if i else None for i in node.input]
        try:
            kwargs = _attributes(node, load_tensor)
            result = conv.func(ctx, node, *args, **kwargs)
        except NodeUnsupported as e:
            problems.append((node.op_type, name, str(e)))
            poisoned.update(node.output)
            continue
        except TypeError as e:
            # a converter signature mismatch means unexpected inputs or attributes in the model
            problems.append((node.op_type, name, f"unexpected inputs or attributes ({e})"))
            poisoned.update(node.output)
            continue
        except InvalidModelError as e:
            raise InvalidModelError(f"{path}: node '{name}' ({node.op_type}): {e}") from None
        results = result if isinstance(result, tuple) else (result,)
        for out_name, val in zip(node.output, results):
            if out_name:
                values[out_name] = val

    outputs = []
    for vo in g.output:
        if vo.name in poisoned:
            continue
        v = values.get(vo.name)
        if v is None:
            raise InvalidModelError(f"{path}: graph output '{vo.name}' is not produced by any node")
        if isinstance(v, Constant):
            problems.append(("<output>", vo.name, "graph output is a constant; nothing to convert"))
            continue
        outputs.append(v.name)
    if problems:
        raise UnsupportedModelError(problems, context=path)

    graph = Graph.from_unordered(
        inputs, ctx.nodes, outputs,
        name=Path(path).stem if path else (g.name or "model"),
        metadata={
            "source": path, "opset": opset, "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "declared_batch": declared_batch,
            "onnx_outputs": {vo.name: values[vo.name].name for vo in g.output},
        },
    )
    graph.validate()
    log.info("imported %s: %d IR nodes from %d ONNX nodes (opset %d)", path, len(graph.nodes), len(g.node), opset)
    return graph
