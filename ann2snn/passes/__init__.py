"""Graph -> Graph simplification passes (pure: each returns a new graph, or the same one if nothing applies).

``DEFAULT_PASSES`` lists them in the order ``simplify`` applies them; ``simplify`` repeats the list until
nothing changes. Every pass keeps ``graph.run`` outputs identical within float tolerance. The numeric
folding maths lives in ``ann2snn.passes.kernels`` as plain functions.

After ``simplify`` an imported CNN holds Conv2d / Dense (biases and BatchNorms folded in), ReLU, pooling,
Add, Concat, Flatten, and a Softmax at the output if the model has one. Left over, by design:
a ScaleShift on the graph input (input normalization), a ScaleShift that cannot fold (e.g. followed by
a padded conv or a pooling), a Transpose of the graph input (NHWC models).
"""

from __future__ import annotations

from typing import Callable

from ann2snn.ir import Graph
from ann2snn.passes._rewrite import remove_dead_nodes
from ann2snn.passes.layout import drop_identity_layout, fold_layout_into_dense, merge_layout
from ann2snn.passes.scale_shift import (
    fold_bias_add, fold_scale_shift, fold_scale_shift_forward, merge_scale_shifts,
)

Pass = Callable[[Graph], Graph]

DEFAULT_PASSES: tuple[Pass, ...] = (
    remove_dead_nodes,
    drop_identity_layout,
    merge_layout,
    merge_scale_shifts,
    fold_bias_add,
    fold_scale_shift,
    fold_scale_shift_forward,
    fold_layout_into_dense,
)


def simplify(graph: Graph, passes: tuple[Pass, ...] = DEFAULT_PASSES, max_rounds: int = 10) -> Graph:
    """Apply ``passes`` in order, repeatedly, until a round changes nothing; returns a validated graph."""
    for _ in range(max_rounds):
        changed = False
        for p in passes:
            new = p(graph)
            changed |= new is not graph
            graph = new
        if not changed:
            break
    return graph.validate()


__all__ = [
    "DEFAULT_PASSES", "drop_identity_layout", "fold_bias_add", "fold_layout_into_dense", "fold_scale_shift",
    "fold_scale_shift_forward", "merge_layout", "merge_scale_shifts", "remove_dead_nodes", "simplify",
]
