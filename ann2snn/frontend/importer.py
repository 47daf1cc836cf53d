"""ONNX -> IR importer.

Walks every node once, in topological order. Each node goes to its registered converter; a converter
either folds constants (Shape/Gather/Concat chains, Constant, Cast...) and returns a ``Constant``, or
adds IR nodes and returns a ``Tensor``. Problems are collected, never skipped: after the walk, one
``UnsupportedModelError`` lists every unsupported node with its op type, name and reason.

The same walk serves two entry points:

- ``load_onnx(model)`` returns the validated IR ``Graph`` or raises;
- ``inspect_onnx(model)`` never raises for unsupported ops: it returns an ``ImportReport`` with one row
  per ONNX node (IR ops, output shape, parameters, MACs, status), the problems, and the graph when the
  model is convertible (``ann2snn inspect`` prints it).

Malformed or unsafe files raise ``InvalidModelError`` from both.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.frontend import registry
from ann2snn.frontend.safety import LoadLimits, checked_size, load_model_proto, tensor_to_array
from ann2snn.frontend.values import Constant, Tensor, Value
from ann2snn.ir import Graph, TensorSpec
from ann2snn.ir.nodes import Node, Shape

log = logging.getLogger(__name__)

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}




class NodeUnsupported(Exception):
    """Raised by a converter: this node (with these attributes/inputs) cannot be imported."""


@dataclass
class ImportContext:
    """What converters see: the opset, the batch size the model declares, and a way to add IR nodes."""

    opset: int
    declared_batch: int | None
    # the caller's load limits: folded constants are bounded by the same per-tensor limit as the file's
    limits: LoadLimits = field(default_factory=LoadLimits)
    node: onnx.NodeProto | None = None
    nodes: list[Node] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    # tensor names read by some ONNX node or listed as graph outputs (to reject used Dropout masks...)
    used: set[str] = field(default_factory=set)
    graph_outputs: set[str] = field(default_factory=set)
    # IR node name -> (ONNX op type, ONNX node name) that produced it
    origin: dict[str, tuple[str, str]] = field(default_factory=dict)
    _used_names: set[str] = field(default_factory=set)

    @property
    def node_name(self) -> str:
        return node_display_name(self.node)

    @property
    def batch(self) -> int:
        """The batch size shape arithmetic sees (``Shape`` of a tensor): the declared one, else 1."""
        return self.declared_batch or 1

    def is_used(self, tensor_name: str) -> bool:
        return bool(tensor_name) and (tensor_name in self.used or tensor_name in self.graph_outputs)

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
        if self.node is not None:
            self.origin[ir_node.name] = (self.node.op_type, self.node_name)
        return Tensor(ir_node.name, shape)

    def emit(self, cls: type[Node], inputs: list[Tensor], suffix: str = "", **params: Any) -> Tensor:
        """Shorthand: build ``cls`` on ``inputs`` with a fresh name and add it."""
        return self.add(cls(self.fresh_name(suffix), tuple(t.name for t in inputs), **params))

    def unsupported(self, reason: str) -> NodeUnsupported:
        return NodeUnsupported(reason)


def node_display_name(node: onnx.NodeProto) -> str:
    """The node's name, else its first output, else its op type (PyTorch 1.3 leaves names empty)."""
    return node.name or (node.output[0] if node.output and node.output[0] else node.op_type)


# ---------------------------------------------------------------------------------------------------
# the report


@dataclass
class NodeRow:
    """One ONNX node as the importer saw it."""

    index: int  # position in the (topologically sorted) walk
    op_type: str
    name: str
    domain: str = ""
    ir_ops: tuple[str, ...] = ()  # IR node types it became
    kind: str = "ir"  # "ir" | "constant" | "folded" | "unsupported" | "unchecked"
    output_shape: tuple | None = None  # first output, batch first ("N" when dynamic)
    params: int = 0
    macs: int = 0
    reason: str = ""

    @property
    def status(self) -> str:
        return {"unsupported": "UNSUPPORTED", "unchecked": "not checked"}.get(self.kind, "ok")

    @property
    def ir_label(self) -> str:
        if self.kind == "ir":
            return ", ".join(self.ir_ops)
        if self.kind in ("constant", "folded"):
            return self.kind
        return "-"

    def to_dict(self) -> dict:
        return {
            "index": self.index, "op_type": self.op_type, "name": self.name, "domain": self.domain,
            "ir": self.ir_label, "ir_ops": list(self.ir_ops), "kind": self.kind,
            "output_shape": list(self.output_shape) if self.output_shape is not None else None,
            "params": self.params, "macs": self.macs, "status": self.status, "reason": self.reason,
        }


@dataclass
class ImportReport:
    """Result of one importer walk: per-node rows, every problem, and the graph if convertible."""

    path: str
    opset: int
    producer: str
    rows: list[NodeRow]
    problems: list[tuple[str, str, str]]
    graph: Graph | None
    inputs: list[tuple[str, tuple]]  # (name, shape with batch)
    outputs: list[tuple[str, tuple | None]]

    @property
    def convertible(self) -> bool:
        return not self.problems and self.graph is not None

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def error(self) -> UnsupportedModelError:
        return UnsupportedModelError(self.problems, context=self.path)

    def to_dict(self) -> dict:
        return {
            "model": self.path, "opset": self.opset, "producer": self.producer,
            "inputs": [{"name": n, "shape": list(s)} for n, s in self.inputs],
            "outputs": [{"name": n, "shape": list(s) if s is not None else None} for n, s in self.outputs],
            "nodes": [r.to_dict() for r in self.rows],
            "totals": {
                "onnx_nodes": len(self.rows),
                "ir_nodes": len(self.graph.nodes) if self.graph is not None else None,
                "params": self.total_params, "macs": self.total_macs,
            },
            "convertible": self.convertible,
            "problems": [{"op_type": o, "node": n, "reason": r} for o, n, r in self.problems],
        }


# ---------------------------------------------------------------------------------------------------
# helpers


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


def _attribute_type_problem(node: onnx.NodeProto, opset: int) -> str | None:
    """An attribute whose type differs from the ONNX spec's (``pads`` as one int, ``axis`` as a string...)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:  # noqa: BLE001 - unknown op, domain or opset: the registry reports those
        return None
    for a in node.attribute:
        spec = schema.attributes.get(a.name)
        if spec is not None and a.type != onnx.AttributeProto.UNDEFINED and a.type != spec.type:
            name = onnx.AttributeProto.AttributeType.Name
            return f"attribute '{a.name}' has type {name(a.type)}, the ONNX spec requires {name(spec.type)}"
    return None


def _sort_onnx_nodes(graph: onnx.GraphProto, known: set[str]) -> list[onnx.NodeProto]:
    """Topological order of ONNX nodes (keras2onnx stores them reversed); cycles raise."""
    producer = {}
    for idx, n in enumerate(graph.node):
        for o in n.output:
            if o:
                if o in producer or o in known:
                    raise InvalidModelError(f"tensor '{o}' is produced twice (node '{node_display_name(n)}')")
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
                    raise InvalidModelError(
                        f"the ONNX graph has a cycle through node '{node_display_name(graph.node[j])}'")
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


def _shape_of(v: Any, batch: int | None) -> tuple | None:
    if isinstance(v, Tensor):
        return (batch if batch else "N",) + tuple(v.shape)
    if isinstance(v, Constant):
        return tuple(int(d) for d in np.shape(v.value))
    return None


_SIGNATURES: dict[Any, inspect.Signature] = {}


def _bind_error(func, args, kwargs) -> str | None:
    sig = _SIGNATURES.get(func)
    if sig is None:
        sig = _SIGNATURES[func] = inspect.signature(func)
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        return str(e)
    return None


def _check_softmax_at_output(ctx: ImportContext, outputs: list[str]) -> list[tuple[str, str, str]]:
    """Softmax/LogSoftmax may only produce a graph output (possibly through layout ops such as Reshape)."""
    from ann2snn.ir import Softmax

    users: dict[str, list[Node]] = {}
    for n in ctx.nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    problems = []
    for n in ctx.nodes:
        if not isinstance(n, Softmax):
            continue
        frontier, bad = [n.name], None
        while frontier and bad is None:
            t = frontier.pop()
            for u in users.get(t, []):
                if u.is_layout:
                    frontier.append(u.name)
                else:
                    bad = u
                    break
        if bad is not None:
            op, onnx_name = ctx.origin.get(n.name, ("Softmax", n.name))
            by = ctx.origin.get(bad.name, (type(bad).__name__, bad.name))
            problems.append((op, onnx_name, f"{op} is only supported at the network output (read-out), "
                             f"but its output feeds {by[0]} node '{by[1]}'"))
    return problems


def _live_nodes(nodes: list[Node], outputs: list[str]) -> list[Node]:
    by_name = {n.name: n for n in nodes}
    live: set[str] = set()
    stack = [o for o in outputs if o in by_name]
    while stack:
        t = stack.pop()
        if t in live:
            continue
        live.add(t)
        stack.extend(i for i in by_name[t].inputs if i in by_name)
    dead = [n.name for n in nodes if n.name not in live]
    if dead:
        log.info("dropping %d IR node(s) that no graph output depends on: %s", len(dead), dead[:10])
    return [n for n in nodes if n.name in live]


# ---------------------------------------------------------------------------------------------------
# the walk


def _walk(model, limits: LoadLimits | None) -> ImportReport:
    limits = limits or LoadLimits()
    proto, path, base_dir = load_model_proto(model, limits)
    opset = _opset(proto, path)
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
    g = proto.graph
    if not registry.MIN_OPSET <= opset <= registry.MAX_OPSET:
        problem = ("<model>", path, f"opset {opset} is outside the supported range "
                   f"{registry.MIN_OPSET}..{registry.MAX_OPSET}")
        return ImportReport(path, opset, producer, [], [problem], None, [], [])

    budget = {"bytes": 0}

    def load_tensor(tp: onnx.TensorProto) -> np.ndarray:
        budget["bytes"] += checked_size(tp, limits, path)
        if budget["bytes"] > limits.max_total_bytes:
            raise InvalidModelError(
                f"{path}: the model's tensors declare more than the {limits.max_total_bytes}-byte total limit")
        return tensor_to_array(tp, base_dir, limits, path)

    values: dict[str, Value] = {}
    for init in g.initializer:
        values[init.name] = Constant(load_tensor(init))
    inputs: list[TensorSpec] = []
    problems: list[tuple[str, str, str]] = []
    batches = set()
    for vi in g.input:
        if vi.name in values:  # old IR versions list initializers as inputs too: they are constants
            continue
        spec, batch = _input_spec(vi, path)
        if vi.type.tensor_type.elem_type not in _FLOAT_TYPES:
            problems.append(("<input>", vi.name, "graph input is not a floating-point tensor "
                             f"(type {onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)})"))
        inputs.append(spec)
        batches.add(batch)
        values[vi.name] = Tensor(vi.name, spec.shape)
    if not inputs:
        raise InvalidModelError(f"{path}: the graph has no non-constant input")
    declared_batch = batches.pop() if len(batches) == 1 else None

    ctx = ImportContext(opset=opset, declared_batch=declared_batch, limits=limits)
    ctx.shapes.update({t.name: t.shape for t in inputs})
    ctx._used_names.update(t.name for t in inputs)
    ctx.used.update(i for n in g.node for i in n.input if i)
    ctx.graph_outputs.update(vo.name for vo in g.output)
    rows: list[NodeRow] = []
    row_of: dict[str, NodeRow] = {}
    poisoned: set[str] = set()  # outputs of nodes that failed: their users are checked, not converted

    def fail(row: NodeRow, node: onnx.NodeProto, reason: str, args: list) -> None:
        row.kind, row.reason = "unsupported", reason
        problems.append((node.op_type, row.name, reason))
        x = args[0] if args else None
        if registry.is_elementwise_unconvertible(node.op_type, node.domain) and isinstance(x, Tensor):
            # shape-preserving op: stand in a placeholder tensor so that the nodes after it are checked too
            for o in node.output[:1]:
                if o:
                    values[o] = Tensor(o, x.shape)
                    ctx.shapes[o] = x.shape
            poisoned.update(node.output[1:])
            row.output_shape = _shape_of(x, declared_batch)
        else:
            poisoned.update(node.output)

    try:
        order = _sort_onnx_nodes(g, set(values))
    except InvalidModelError as e:  # cycles, tensors produced twice: name the file too
        raise InvalidModelError(f"{path}: {e}") from None
    for idx, node in enumerate(order):
        name = node_display_name(node)
        row = NodeRow(idx, node.op_type, name, node.domain)
        rows.append(row)
        row_of.setdefault(name, row)
        missing = [i for i in node.input if i and i not in values and i not in poisoned]
        if missing:
            raise InvalidModelError(f"{path}: node '{name}' reads undefined tensor(s) {missing}")
        args = [values.get(i) if i else None for i in node.input]
        conv = registry.lookup(node.op_type, opset) if node.domain in ("", "ai.onnx") else None
        if conv is None:
            fail(row, node, registry.unsupported_reason(node.op_type, node.domain, opset), args)
            continue
        if any(i in poisoned for i in node.input):
            row.kind, row.reason = "unchecked", "an input comes from an unsupported node"
            poisoned.update(node.output)
            continue
        ctx.node = node
        n_before = len(ctx.nodes)
        bad_type = _attribute_type_problem(node, opset)
        if bad_type:
            raise InvalidModelError(f"{path}: node '{name}' ({node.op_type}): {bad_type}")
        kwargs = _attributes(node, load_tensor)
        bind_error = _bind_error(conv.func, [ctx, node, *args], kwargs)
        if bind_error:
            fail(row, node, f"unexpected inputs or attributes ({bind_error})", args)
            continue
        try:
            result = conv.func(ctx, node, *args, **kwargs)
        except NodeUnsupported as e:
            del ctx.nodes[n_before:]
            fail(row, node, str(e), args)
            continue
        except InvalidModelError as e:
            raise InvalidModelError(f"{path}: node '{name}' ({node.op_type}): {e}") from None
        except (ValueError, IndexError, ZeroDivisionError) as e:
            # numpy refusing the node's constants (shapes that do not concatenate, bad indices...): the model
            # is inconsistent; say which node, without a traceback
            raise InvalidModelError(f"{path}: node '{name}' ({node.op_type}): inconsistent inputs: {e}") from None
        results = result if isinstance(result, tuple) else (result,)
        for out_name, val in zip(node.output, results):
            if out_name:
                values[out_name] = val
        for out_name in node.output[len(results):]:
            if out_name and ctx.is_used(out_name):  # a converter must not leave a used output undefined
                fail(row, node, f"output '{out_name}' is not supported", args)
                break
        else:
            added = ctx.nodes[n_before:]
            first = results[0] if results else None
            row.output_shape = _shape_of(first, declared_batch)
            if added:
                row.kind, row.ir_ops = "ir", tuple(type(n).__name__ for n in added)
                for n in added:
                    in_shapes = [ctx.shapes[i] for i in n.inputs]
                    row.params += sum(int(a.size) for a in n.parameters().values() if a is not None)
                    row.macs += int(n.macs(in_shapes, ctx.shapes[n.name]))
            else:
                row.kind = "constant" if isinstance(first, Constant) else "folded"

    outputs: list[str] = []
    out_report: list[tuple[str, tuple | None]] = []
    for vo in g.output:
        v = values.get(vo.name)
        out_report.append((vo.name, _shape_of(v, declared_batch)))
        if vo.name in poisoned:
            continue
        if v is None:
            raise InvalidModelError(f"{path}: graph output '{vo.name}' is not produced by any node")
        if isinstance(v, Constant):
            problems.append(("<output>", vo.name, "graph output is a constant; nothing to convert"))
            continue
        if v.name not in outputs:
            outputs.append(v.name)
    for p in _check_softmax_at_output(ctx, outputs):
        problems.append(p)
        r = row_of.get(p[1])
        if r is not None:
            r.kind, r.reason = "unsupported", p[2]

    graph = None
    if not problems:
        graph = Graph.from_unordered(
            inputs, _live_nodes(ctx.nodes, outputs), outputs,
            name=Path(path).stem if path else (g.name or "model"),
            metadata={
                "source": path, "opset": opset, "producer": producer,
                "declared_batch": declared_batch,
                "onnx_outputs": {vo.name: values[vo.name].name for vo in g.output},
                "origin": {k: list(v) for k, v in ctx.origin.items()},
            },
        )
        try:
            graph.validate()
        except InvalidModelError as e:  # name the file too (NaN weights, absurd activation sizes...)
            raise InvalidModelError(f"{path}: {e}") from None
        log.info("imported %s: %d IR nodes from %d ONNX nodes (opset %d)", path, len(graph.nodes), len(g.node),
                 opset)
    return ImportReport(
        path=path, opset=opset, producer=producer, rows=rows, problems=problems, graph=graph,
        inputs=[(t.name, (declared_batch or "N",) + tuple(t.shape)) for t in inputs], outputs=out_report,
    )


def inspect_onnx(model: str | Path | onnx.ModelProto, *, limits: LoadLimits | None = None) -> ImportReport:
    """Walk an ONNX model and report, per node, what it becomes; never raises for unsupported ops.

    Raises ``InvalidModelError`` for malformed or unsafe files (as ``load_onnx`` does).
    """
    return _walk(model, limits)


def load_onnx(model: str | Path | onnx.ModelProto, *, limits: LoadLimits | None = None) -> Graph:
    """Import an ONNX model (path or ModelProto) into a validated IR ``Graph``.

    Raises ``InvalidModelError`` for malformed or unsafe files and ``UnsupportedModelError`` listing
    every node that cannot be imported.
    """
    report = _walk(model, limits)
    if not report.convertible:
        raise report.error()
    return report.graph
