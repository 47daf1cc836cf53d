"""Per-neuron samples of one IF layer: ANN activation vs SNN rate, through the public simulator.

The simulator reads out its graph's first output, so probing a layer is a simulation of the same
network with that layer as the output (the graph pruned to what feeds it) and, as the output unit,
the layer's threshold lambda: the readout is then rate x lambda per neuron, comparable with the ANN.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ann2snn.ir.reference import run_graph
from ann2snn.ir.snn import IF


def layer_network(snn, layer: str):
    """A copy of ``snn`` whose readout is IF layer ``layer`` (rate x lambda per neuron)."""
    node = snn.graph.node(layer)
    if not isinstance(node, IF):
        raise ValueError(f"'{layer}' is not an IF layer of the network")
    graph = snn.graph.prefix(layer)
    shape = graph.shapes[layer]
    lam = np.asarray(node.scale, np.float32).reshape(-1)
    unit = lam.reshape((-1,) + (1,) * (len(shape) - 1)) if lam.size > 1 else lam.reshape((1,) * len(shape))
    unit = np.broadcast_to(unit, shape).astype(np.float32)
    return dataclasses.replace(snn, graph=graph, output_units={layer: unit}, output_softmax=None)


def layer_samples(snn, layer: str, x: np.ndarray, timesteps: int, *, max_points: int = 20000,
                  seed: int = 0) -> dict:
    """ANN activation and SNN rate of every neuron of ``layer`` on ``x`` at T=``timesteps``.

    Returns {"layer", "T", "ann": ANN activation / lambda, "snn": SNN rate (spikes per step, net of
    signed spikes), "lambda_mean", "samples"}; both arrays are flattened and, beyond ``max_points``,
    subsampled with a seeded generator (same points for both).
    """
    node = snn.graph.node(layer)
    net = layer_network(snn, layer)
    res = net.simulate(x, [int(timesteps)])
    snn_val = res.outputs[int(timesteps)]
    ann_val = run_graph(snn.ann, x, outputs=[layer])[layer]
    lam = np.asarray(node.scale, np.float32).reshape(-1)
    lam_b = lam.reshape((1, -1) + (1,) * (ann_val.ndim - 2)) if lam.size > 1 else lam.reshape(())
    ann_n = (ann_val / lam_b).reshape(-1)
    snn_n = (snn_val / lam_b).reshape(-1)
    if ann_n.size > max_points:
        idx = np.random.default_rng(seed).choice(ann_n.size, max_points, replace=False)
        ann_n, snn_n = ann_n[idx], snn_n[idx]
    return {"layer": layer, "T": int(timesteps), "ann": ann_n.astype(np.float32), "snn": snn_n.astype(np.float32),
            "lambda_mean": float(lam.mean()), "samples": int(len(x))}
