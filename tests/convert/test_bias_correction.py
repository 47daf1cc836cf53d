"""Bias correction: the per-step part (bias) and the one-off transient part (initial potential) apart."""

from __future__ import annotations

import numpy as np
import pytest

import ann2snn
from ann2snn.config import ConversionConfig
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph, TensorSpec
from ann2snn.ir.reference import run_graph


def _deep_mlp(seed: int = 0, depth: int = 5, width: int = 24) -> Graph:
    rng = np.random.default_rng(seed)
    nodes, prev, n_in = [], "x", 16
    for i in range(depth):
        w = rng.normal(0, 1.6 / np.sqrt(n_in), (width, n_in)).astype(np.float32)
        nodes += [ir.Dense(f"d{i}", (prev,), weight=w, bias=rng.normal(0.05, 0.05, width).astype(np.float32)),
                  ir.ReLU(f"r{i}", (f"d{i}",))]
        prev, n_in = f"r{i}", width
    nodes.append(ir.Dense("out", (prev,), weight=rng.normal(0, 0.3, (4, width)).astype(np.float32)))
    return Graph.from_unordered((TensorSpec("x", (16,)),), nodes, ("out",), name="deep_mlp")


def _rate_error(net, x, layer: str, t: int) -> float:
    """Mean |SNN mean rate - ANN mean (clipped) activation| over the layer's channels, in lambda units."""
    res = net.simulate(x, [t], probe=[layer])
    lam = np.asarray(net.scales[layer], np.float64).reshape(-1)
    ann = np.minimum(run_graph(net.ann, x, outputs=[layer])[layer], lam).mean(axis=0)
    return float(np.mean(np.abs(res.probe[layer][t] - ann) / lam))


@pytest.fixture(scope="module")
def nets():
    x = np.random.default_rng(1).uniform(0, 1, (256, 16)).astype(np.float32)
    plain = ann2snn.convert(_deep_mlp(), x, ConversionConfig(v_init=0.0, bias_correction=False,
                                                            calibration_timesteps=16))
    corrected = ann2snn.convert(_deep_mlp(), x, ConversionConfig(v_init=0.0, bias_correction=True,
                                                                calibration_timesteps=16))
    return plain, corrected, x


def test_correction_fixes_the_deep_layers_at_the_calibration_t(nets):
    plain, corrected, x = nets
    last = plain.spiking_layers[-1]
    before, after = _rate_error(plain, x, last, 16), _rate_error(corrected, x, last, 16)
    assert before > 0.02  # the deepest layer starts late: a real deficit to correct
    assert after < 0.5 * before


def test_correction_does_not_grow_with_t(nets):
    # a bias-only correction also repays the start-up deficit at every step: at large T it over-corrects
    plain, corrected, x = nets
    last = plain.spiking_layers[-1]
    assert _rate_error(corrected, x, last, 1024) <= _rate_error(plain, x, last, 1024) + 0.005
    v0 = np.asarray(corrected.graph.node(last).v_init)
    assert v0.shape == (24,) and np.all(v0 >= -1) and np.all(v0 < 1) and np.any(v0 > 0)
