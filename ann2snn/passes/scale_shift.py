"""ScaleShift passes: merge consecutive ones, fold them into the Conv2d/Dense before or after them."""

from __future__ import annotations

import dataclasses

import numpy as np

from ann2snn.ir import Conv2d, Dense, Graph, ScaleShift
from ann2snn.passes._rewrite import is_graph_input, rebuild, single_user
from ann2snn.passes.kernels import (
    apply_layout, compose_scale_shift, fold_affine_after, fold_affine_before_conv, fold_affine_before_dense,
    per_channel,
)


def _rewrite_first(graph: Graph, try_node) -> Graph:
    """Apply ``try_node(graph, node) -> Graph | None`` to the first node it accepts, until none does."""
    while True:
        for n in graph.nodes:
            new = try_node(graph, n)
            if new is not None:
                graph = new
                break
        else:
            return graph


def merge_scale_shifts(graph: Graph) -> Graph:
    """ScaleShift -> ScaleShift (the first with one user) becomes one ScaleShift (e.g. Sub then Div)."""

    def attempt(g: Graph, n):
        if not isinstance(n, ScaleShift):
            return None
        p = g.node_by_name.get(n.inputs[0])
        if not isinstance(p, ScaleShift) or single_user(g, p.name) is not n:
            return None
        s, t = compose_scale_shift(p.scale, p.shift, n.scale, n.shift)
        merged = dataclasses.replace(n, inputs=p.inputs, scale=s, shift=t)
        return rebuild(g, [merged if m is n else m for m in g.nodes if m is not p])

    return _rewrite_first(graph, attempt)


def _fold_backward(graph: Graph, only_bias: bool) -> Graph:
    def attempt(g: Graph, n):
        if not isinstance(n, ScaleShift):
            return None
        if only_bias and not np.all(np.asarray(n.scale) == 1):
            return None
        p = g.node_by_name.get(n.inputs[0])
        if not isinstance(p, (Conv2d, Dense)) or single_user(g, p.name) is not n:
            return None
        shape = g.shapes[p.name]
        s, t = per_channel(n.scale, shape), per_channel(n.shift, shape)
        if s is None or t is None:
            return None
        w, b = fold_affine_after(p.weight, p.bias, s, t)
        merged = dataclasses.replace(p, name=n.name, weight=w, bias=b)
        nodes = [merged if m is n else m for m in g.nodes if m is not p]
        return rebuild(g, nodes, origin={n.name: p.name})

    return _rewrite_first(graph, attempt)


def fold_bias_add(graph: Graph) -> Graph:
    """A ScaleShift with scale 1 (a constant Add, e.g. MatMul + Add) after a Conv2d/Dense with one user -> bias."""
    return _fold_backward(graph, only_bias=True)


def fold_scale_shift(graph: Graph) -> Graph:
    """A per-output-channel ScaleShift after a Conv2d/Dense with one user -> its weights (BatchNorm after conv)."""
    return _fold_backward(graph, only_bias=False)


def _reads_graph_input(g: Graph, tensor: str) -> bool:
    """True if ``tensor`` is a graph input or derives from one through layout nodes only."""
    nodes = g.node_by_name
    while tensor in nodes and nodes[tensor].is_layout:
        tensor = nodes[tensor].inputs[0]
    return is_graph_input(g, tensor)


def fold_scale_shift_forward(graph: Graph) -> Graph:
    """A ScaleShift feeding (through layout nodes) a Dense, or a Conv2d, folds into that layer's weights.

    This handles BatchNorm after a ReLU (``Gemm -> Relu -> Unsqueeze -> BN -> Squeeze -> Gemm``): the arrays are
    expanded to the full element shape, moved through the layout nodes, then folded. Into a Conv2d only when
    they are per input channel and the conv has no padding (or the shift is zero). A ScaleShift on the graph
    input (input normalization) stays.
    """

    def attempt(g: Graph, n):
        if not isinstance(n, ScaleShift) or _reads_graph_input(g, n.inputs[0]):
            return None
        shapes = g.shapes
        scale = np.broadcast_to(np.asarray(n.scale, np.float64), shapes[n.name])
        shift = np.broadcast_to(np.asarray(n.shift, np.float64), shapes[n.name])
        t, layouts = n.name, []
        target = None
        while True:
            u = single_user(g, t)
            if u is None:
                return None
            if u.is_layout:
                layouts.append(u)
                scale, shift = apply_layout(scale, u), apply_layout(shift, u)
                t = u.name
                continue
            if isinstance(u, (Dense, Conv2d)):
                target = u
            break
        if target is None:
            return None
        if isinstance(target, Dense):
            w, b = fold_affine_before_dense(target.weight, target.bias, scale.reshape(-1), shift.reshape(-1))
        else:
            s, sh = per_channel(scale, scale.shape), per_channel(shift, shift.shape)
            if s is None or sh is None or (any(target.padding) and np.any(sh != 0)):
                return None
            w, b = fold_affine_before_conv(target.weight, target.bias, s, sh, target.groups)
        new_target = dataclasses.replace(target, weight=w, bias=b)
        nodes = [new_target if m is target else m for m in g.nodes if m is not n]
        return rebuild(g, nodes, rename={n.name: n.inputs[0]})

    return _rewrite_first(graph, attempt)
