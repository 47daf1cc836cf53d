"""Bias correction: the per-step part (bias) and the one-off transient part (initial potential) apart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import ann2snn
from ann2snn.config import ConversionConfig
from ann2snn.convert.bias_correction import bias_correct
from ann2snn.data import load_zoo_sample
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph, TensorSpec
from ann2snn.ir.reference import run_graph
from ann2snn.ir.snn import IF


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


# ------------------------------------------------------------------ the layer-major implementation

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"


def _linear_source(graph, tensor):
    """The first Conv/Dense reached from ``tensor`` without crossing a neuron (an Add's first such input)."""
    n = graph.node_by_name.get(tensor)
    if isinstance(n, (ir.Conv2d, ir.Dense)):
        return n
    if n is None or isinstance(n, IF):
        return None
    return next((s for s in (_linear_source(graph, i) for i in n.inputs) if s is not None), None)


def _prefix_reference(net, x, t1: int):
    """Bias correction as defined: layer by layer, each measured by simulating the whole (corrected)
    prefix of the graph up to it. Written here independently of the library's layer-major replay."""
    t2 = 4 * t1
    graph = net.graph
    acts = run_graph(net.ann, x, outputs=net.spiking_layers)
    for name in net.spiking_layers:
        src = _linear_source(graph, graph.node(name).inputs[0])
        lam = np.asarray(net.scales[name], np.float64).reshape(-1)
        a = acts[name]
        ann = np.minimum(a, lam.reshape((-1,) + (1,) * (a.ndim - 2)))
        ann = ann.reshape(len(a), len(lam), -1).mean(axis=(0, 2))
        prefix = replace(net, graph=graph.prefix(name), output_units={name: np.ones(1, np.float32)})
        res = prefix.simulate(x, [t1, t2], probe=[name], synaptic_dtype="float32")
        phi1, phi2 = res.probe[name][t1] / lam, res.probe[name][t2] / lam
        delta = (t2 * phi2 - t1 * phi1) / (t2 - t1) - ann / lam
        deficit = t1 * t2 * (phi2 - phi1) / (t2 - t1)
        v0 = np.clip(np.asarray(graph.node(name).v_init, np.float64) + deficit, -1.0, 0.99)
        bias = src.bias if src.bias is not None else np.zeros(len(lam), np.float32)
        graph = graph.with_nodes([replace(n, bias=(bias - delta).astype(np.float32)) if n.name == src.name else
                                  replace(n, v_init=v0.astype(np.float32)) if n.name == name else n
                                  for n in graph.nodes])
    return graph


def _assert_same_corrections(got, want, bias_tol=2e-3, v0_tol=0.02):
    checked = 0
    for g, w in zip(got.nodes, want.nodes):
        assert g.name == w.name
        if isinstance(g, (ir.Conv2d, ir.Dense)) and w.bias is not None:
            np.testing.assert_allclose(g.bias, w.bias, atol=bias_tol, err_msg=g.name)
            checked += 1
        if isinstance(g, IF):
            np.testing.assert_allclose(np.broadcast_to(g.v_init, np.shape(w.v_init)), w.v_init, atol=v0_tol,
                                       err_msg=g.name)
    assert checked >= 3


@pytest.mark.parametrize("name", ["resnet_small", "lenet_bn_maxpool"])  # residual Adds; pre-neuron max-pool
def test_layer_major_correction_equals_correcting_each_prefix(name):
    sample = load_zoo_sample(name)
    x = sample.calib_x[:40]
    plain = ann2snn.convert(str(ZOO / name / "model.onnx"), sample.calib_x[:200],
                            ConversionConfig(v_init=0.5, bias_correction=False))
    corrected = bias_correct(plain, x, 8)
    assert corrected.record.bias_correction_samples == 40
    _assert_same_corrections(corrected.graph, _prefix_reference(plain, x, 8))
    # and the correction is real: the deepest corrected layer's start-up charge moved
    moved = [n for n in corrected.graph.nodes if isinstance(n, IF)
             and np.abs(np.asarray(n.v_init) - 0.5).max() > 0.05]
    assert moved


def test_layer_major_correction_of_signed_neurons_equals_the_prefix_definition():
    x = np.random.default_rng(1).uniform(0, 1, (64, 16)).astype(np.float32)
    plain = ann2snn.convert(_deep_mlp(), x, ConversionConfig(v_init=0.0, bias_correction=False, signed=True))
    _assert_same_corrections(bias_correct(plain, x, 8).graph, _prefix_reference(plain, x, 8))


def test_memory_budget_uses_fewer_samples_and_says_so(caplog):
    sample = load_zoo_sample("resnet_small")
    plain = ann2snn.convert(str(ZOO / "resnet_small" / "model.onnx"), sample.calib_x[:200],
                            ConversionConfig(v_init=0.5, bias_correction=False))
    x = sample.calib_x[:64]
    with caplog.at_level("INFO", logger="ann2snn.convert.bias_correction"):
        small = bias_correct(plain, x, 8, memory_mb=1)
    n = small.record.bias_correction_samples
    assert 1 <= n < len(x)
    assert f"{n} of {len(x)} samples" in caplog.text
    _assert_same_corrections(small.graph, bias_correct(plain, x[:n], 8).graph, bias_tol=0, v0_tol=0)
