"""Layout passes: drop identity reshapes/transposes, merge consecutive ones, fold a layout chain into a Dense."""

from __future__ import annotations

import dataclasses

import numpy as np

from ann2snn.ir import Dense, Flatten, Graph, Reshape, Transpose
from ann2snn.passes._rewrite import rebuild, remove_dead_nodes, single_user
from ann2snn.passes.kernels import apply_layout, dense_weight_through_layout


def _is_identity(node, shapes) -> bool:
    if isinstance(node, (Reshape, Flatten)):
        return tuple(shapes[node.inputs[0]]) == tuple(shapes[node.name])
    if isinstance(node, Transpose):
        return tuple(node.perm) == tuple(range(len(node.perm)))
    return False


def drop_identity_layout(graph: Graph) -> Graph:
    """Remove Reshape/Flatten that keep the shape and Transpose with the identity permutation."""
    while True:
        shapes = graph.shapes
        victim = next((n for n in graph.nodes if _is_identity(n, shapes) and n.name not in graph.outputs), None)
        if victim is None:
            return graph
        graph = rebuild(graph, [n for n in graph.nodes if n is not victim], rename={victim.name: victim.inputs[0]})


def merge_layout(graph: Graph) -> Graph:
    """Reshape/Flatten of a Reshape/Flatten reads the first one's input; Transpose of a Transpose composes.

    The inner node is removed when nothing else reads it.
    """
    while True:
        nodes = graph.node_by_name
        hit = None
        for n in graph.nodes:
            p = nodes.get(n.inputs[0]) if n.inputs else None
            if isinstance(n, (Reshape, Flatten)) and isinstance(p, (Reshape, Flatten)):
                hit = (n, dataclasses.replace(n, inputs=p.inputs))
            elif isinstance(n, Transpose) and isinstance(p, Transpose):
                perm = tuple(p.perm[i] for i in n.perm)
                hit = (n, dataclasses.replace(n, inputs=p.inputs, perm=perm))
            if hit:
                break
        if hit is None:
            return graph
        old, new = hit
        graph = _drop_unused(rebuild(graph, [new if m is old else m for m in graph.nodes]))


def _drop_unused(graph: Graph) -> Graph:
    return remove_dead_nodes(graph)


def fold_layout_into_dense(graph: Graph) -> Graph:
    """A chain of layout nodes with a Transpose, ending in a Dense, becomes Flatten + Dense with permuted columns.

    (Keras exports NCHW -> NHWC Transpose -> Reshape -> MatMul; the Dense then reads the NCHW tensor directly.)
    Every tensor inside the chain must have the chain as its only user.
    """
    while True:
        found = None
        nodes = graph.node_by_name
        for d in graph.nodes:
            if not isinstance(d, Dense):
                continue
            chain = []
            t = d.inputs[0]
            while t in nodes and nodes[t].is_layout and single_user(graph, t) is not None:
                chain.append(nodes[t])
                t = nodes[t].inputs[0]
            chain.reverse()
            if chain and any(isinstance(c, Transpose) for c in chain):
                found = (d, chain, t)
                break
        if found is None:
            return graph
        d, chain, src = found
        shapes = graph.shapes
        index = np.arange(int(np.prod(shapes[src]))).reshape(shapes[src])
        for c in chain:
            index = apply_layout(index, c)
        new_w = dense_weight_through_layout(d.weight, index)
        last = chain[-1]
        flat = Flatten(last.name, (src,))
        keep = [n for n in graph.nodes if n not in chain and n is not d]
        graph = _drop_unused(rebuild(graph, keep + [flat, dataclasses.replace(d, weight=new_w)]))
