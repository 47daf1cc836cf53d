"""The IR graph: named inputs, nodes in topological order, named outputs."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict, deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

import numpy as np

from ann2snn.errors import InvalidModelError
from ann2snn.ir.nodes import Node, Shape

# Per-sample values of one tensor (1 GiB of float32): a larger activation comes from absurd input sizes, pads or
# strides and would exhaust memory in calibration or simulation; refused by ``Graph.validate``.
MAX_ACTIVATION_ELEMENTS = 2**28


@dataclass(frozen=True)
class TensorSpec:
    """A graph input: its name and its per-sample shape (no batch dimension)."""

    name: str
    shape: Shape


@dataclass(frozen=True, eq=False)
class Graph:
    """An immutable dataflow graph of IR nodes.

    ``nodes`` are kept in topological order; build a modified graph with ``with_nodes`` (passes are pure).
    """

    inputs: tuple[TensorSpec, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    name: str = "graph"
    metadata: Mapping[str, object] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def from_unordered(inputs, nodes: Iterable[Node], outputs, **kw) -> "Graph":
        """Build a graph from nodes in any order (sorted topologically; cycles raise)."""
        return Graph(tuple(inputs), topological_sort(tuple(inputs), list(nodes)), tuple(outputs), **kw)

    def with_nodes(self, nodes: Iterable[Node], outputs: Iterable[str] | None = None) -> "Graph":
        """A new graph with other nodes (re-sorted topologically), the same inputs and metadata."""
        outs = tuple(outputs) if outputs is not None else self.outputs
        return dataclasses.replace(self, nodes=topological_sort(self.inputs, list(nodes)), outputs=outs)

    def prefix(self, tensor: str, stop=None) -> "Graph":
        """The part of the graph that ``tensor`` depends on, with ``tensor`` as its only output.

        ``stop``: a predicate on nodes; a node it holds for is kept but what it depends on is not (its
        inputs are then missing from the result: whoever runs it supplies that node's values).
        """
        needed, stack = set(), [tensor]
        while stack:
            t = stack.pop()
            if t in needed or t not in self.node_by_name:
                continue
            needed.add(t)
            if stop is None or not stop(self.node(t)):
                stack.extend(self.node(t).inputs)
        return dataclasses.replace(self, nodes=tuple(n for n in self.nodes if n.name in needed), outputs=(tensor,))

    # ------------------------------------------------------------------ queries

    @cached_property
    def node_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        try:
            return self.node_by_name[name]
        except KeyError:
            raise InvalidModelError(f"graph '{self.name}' has no node '{name}'") from None

    @cached_property
    def consumers(self) -> dict[str, list[Node]]:
        """Tensor name -> nodes that read it (graph outputs are not counted)."""
        users: dict[str, list[Node]] = defaultdict(list)
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n)
        return dict(users)

    def users(self, tensor: str) -> list[Node]:
        return self.consumers.get(tensor, [])

    @cached_property
    def shapes(self) -> dict[str, Shape]:
        """Per-sample shape of every tensor; raises InvalidModelError on any inconsistency."""
        shapes: dict[str, Shape] = {t.name: tuple(int(d) for d in t.shape) for t in self.inputs}
        for n in self.nodes:
            missing = [i for i in n.inputs if i not in shapes]
            if missing:
                raise InvalidModelError(f"node '{n.name}' reads undefined tensor(s) {missing}")
            try:
                shapes[n.name] = tuple(int(d) for d in n.output_shape([shapes[i] for i in n.inputs]))
            except (TypeError, ValueError, ZeroDivisionError, IndexError, AttributeError, OverflowError) as e:
                # attributes or parameters of the wrong type or rank (a corrupted saved network)
                raise InvalidModelError(f"{type(n).__name__} node '{n.name}': malformed attributes or parameters "
                                        f"({type(e).__name__}: {e})") from None
        return shapes

    def validate(self) -> "Graph":
        """Check names, wiring, arity, shapes and parameters; raise InvalidModelError naming the culprit."""
        if not self.inputs:
            raise InvalidModelError(f"graph '{self.name}' has no inputs")
        seen: set[str] = set()
        for t in self.inputs:
            if t.name in seen:
                raise InvalidModelError(f"graph input '{t.name}' is declared twice")
            if any(int(d) <= 0 for d in t.shape):
                raise InvalidModelError(f"graph input '{t.name}' has a non-positive dimension: {t.shape}")
            seen.add(t.name)
        for n in self.nodes:
            if n.name in seen:
                raise InvalidModelError(f"tensor name '{n.name}' is produced twice")
            if n.arity is not None and len(n.inputs) != n.arity:
                raise InvalidModelError(
                    f"{type(n).__name__} node '{n.name}' takes {n.arity} input(s), got {len(n.inputs)}"
                )
            for i in n.inputs:
                if i not in seen:
                    raise InvalidModelError(f"node '{n.name}' reads '{i}', which is not produced before it")
            for pname, arr in n.parameters().items():
                if arr is not None and np.asarray(arr).dtype.kind not in "fiu":
                    raise InvalidModelError(f"node '{n.name}': parameter '{pname}' is not a real numeric array "
                                            f"(dtype {np.asarray(arr).dtype})")
                if arr is not None and not np.all(np.isfinite(arr)):
                    raise InvalidModelError(f"node '{n.name}': parameter '{pname}' contains NaN or Inf")
            seen.add(n.name)
        if not self.outputs:
            raise InvalidModelError(f"graph '{self.name}' has no outputs")
        if len(set(self.outputs)) != len(self.outputs):
            raise InvalidModelError(f"graph '{self.name}' lists an output twice: {list(self.outputs)}")
        for o in self.outputs:
            if o not in seen:
                raise InvalidModelError(f"graph output '{o}' is not produced by any node")
        for name, shape in self.shapes.items():  # shape inference raises on mismatch
            if math.prod(shape) > MAX_ACTIVATION_ELEMENTS:
                raise InvalidModelError(f"tensor '{name}' has {math.prod(shape)} values per sample {shape}, over the "
                                        f"{MAX_ACTIVATION_ELEMENTS} limit (absurd input size, pads or strides?)")
        return self

    def parameter_count(self) -> int:
        return sum(int(a.size) for n in self.nodes for a in n.parameters().values() if a is not None)

    def macs(self) -> dict[str, int]:
        s = self.shapes
        return {n.name: n.macs([s[i] for i in n.inputs], s[n.name]) for n in self.nodes}

    # ------------------------------------------------------------------ execution

    def run(self, x, *, batch_size: int = 256, device: str = "cpu", outputs=None) -> np.ndarray:
        """Float reference forward pass (torch); reproduces onnxruntime on imported models.

        ``x``: array of shape (batch, *input shape), or a dict input name -> array for several inputs.
        Returns the first output (or a dict name -> array when ``outputs`` lists several tensors).
        """
        from ann2snn.ir.reference import run_graph

        return run_graph(self, x, batch_size=batch_size, device=device, outputs=outputs)


def topological_sort(inputs: tuple[TensorSpec, ...], nodes: list[Node]) -> tuple[Node, ...]:
    """Kahn's algorithm, stable with respect to the given order (exporters sometimes store nodes reversed)."""
    producers: dict[str, int] = {}
    for idx, n in enumerate(nodes):
        if n.name in producers:
            raise InvalidModelError(f"tensor name '{n.name}' is produced twice")
        producers[n.name] = idx
    available = {t.name for t in inputs}
    indeg = [0] * len(nodes)
    users: dict[int, list[int]] = defaultdict(list)
    for idx, n in enumerate(nodes):
        for i in n.inputs:
            if i in producers:
                indeg[idx] += 1
                users[producers[i]].append(idx)
            elif i not in available:
                raise InvalidModelError(f"node '{n.name}' reads '{i}', which no node or graph input produces")
    ready = deque(i for i, d in enumerate(indeg) if d == 0)
    order: list[Node] = []
    while ready:
        idx = ready.popleft()
        order.append(nodes[idx])
        for u in users[idx]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        stuck = [nodes[i].name for i, d in enumerate(indeg) if d > 0]
        raise InvalidModelError(f"the graph has a cycle through node(s) {stuck[:10]}")
    return tuple(order)
