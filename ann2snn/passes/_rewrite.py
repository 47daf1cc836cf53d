"""Small graph-rewrite helpers shared by the passes (all pure: they build new graphs)."""

from __future__ import annotations

import dataclasses
from typing import Iterable

from ann2snn.ir import Graph
from ann2snn.ir.nodes import Node


def single_user(graph: Graph, tensor: str) -> Node | None:
    """The only node reading ``tensor``, if exactly one does and the tensor is not a graph output."""
    users = graph.users(tensor)
    if len(users) != 1 or tensor in graph.outputs:
        return None
    return users[0]


def is_graph_input(graph: Graph, tensor: str) -> bool:
    return any(t.name == tensor for t in graph.inputs)


def rebuild(graph: Graph, nodes: Iterable[Node], rename: dict[str, str] | None = None,
            origin: dict[str, str] | None = None) -> Graph:
    """A new graph with ``nodes``; inputs named in ``rename`` are redirected; metadata origin carried over.

    ``origin`` maps a new node name to the old node whose ONNX origin it inherits.
    """
    rename = rename or {}

    def resolve(name: str) -> str:
        seen = set()
        while name in rename and name not in seen:
            seen.add(name)
            name = rename[name]
        return name

    new_nodes = []
    for n in nodes:
        ins = tuple(resolve(i) for i in n.inputs)
        new_nodes.append(n if ins == n.inputs else dataclasses.replace(n, inputs=ins))
    meta = dict(graph.metadata)
    if origin and isinstance(meta.get("origin"), dict):
        org = dict(meta["origin"])
        for new, old in origin.items():
            if old in org:
                org[new] = org[old]
        meta["origin"] = org
    out = graph.with_nodes(new_nodes)
    return dataclasses.replace(out, metadata=meta)


def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes that no graph output depends on."""
    live: set[str] = set()
    stack = list(graph.outputs)
    by_name = graph.node_by_name
    while stack:
        t = stack.pop()
        if t in live or t not in by_name:
            continue
        live.add(t)
        stack.extend(by_name[t].inputs)
    if len(live) == len(graph.nodes):
        return graph
    return rebuild(graph, [n for n in graph.nodes if n.name in live])
