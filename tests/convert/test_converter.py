"""Each converter on a one-layer model: the converted graph's rate limit equals the ANN, and a
simulation converges to it; save/load round trip gives identical outputs."""

import numpy as np
import pytest

from ann2snn.config import ConversionConfig
from ann2snn.convert.converter import plan_conversion
from ann2snn.convert.converter import build_network
from ann2snn.errors import UnsupportedModelError
from ann2snn.ir import (
    Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, GlobalAvgPool, GlobalMaxPool, Graph, MaxPool2d, ReLU,
    ScaleShift, Softmax, TensorSpec, Transpose,
)
from ann2snn.ir.reference import run_graph
from ann2snn.ir.snn import IF, CumulativeMaxPool2d
from ann2snn.network import load

RNG = np.random.default_rng(0)


def w(*shape):
    return (RNG.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def conv(name, src, cin, cout, k=3, **kw):
    return Conv2d(name, (src,), weight=w(cout, cin, k, k), bias=(RNG.standard_normal(cout) * 0.1).astype(np.float32),
                  padding=(k // 2,) * 4, **kw)


def head(src, features):
    return [Flatten("flat", (src,)), Dense("fc", ("flat",), weight=w(10, features), bias=np.zeros(10, np.float32))]


CASES = {
    "conv_relu": [conv("c1", "x", 2, 4), ReLU("r1", ("c1",)), *head("r1", 4 * 8 * 8)],
    "dense_relu": [Flatten("f0", ("x",)), Dense("d1", ("f0",), weight=w(16, 128), bias=np.zeros(16, np.float32)),
                   ReLU("r1", ("d1",)), Dense("fc", ("r1",), weight=w(10, 16), bias=np.zeros(10, np.float32))],
    "maxpool": [conv("c1", "x", 2, 4), ReLU("r1", ("c1",)), MaxPool2d("p1", ("r1",)), *head("p1", 4 * 4 * 4)],
    "avgpool": [conv("c1", "x", 2, 4), ReLU("r1", ("c1",)), AvgPool2d("p1", ("r1",)), *head("p1", 4 * 4 * 4)],
    "global_pools": [conv("c1", "x", 2, 4), ReLU("r1", ("c1",)), GlobalAvgPool("g1", ("r1",)),
                     conv("c2", "r1", 4, 4), ReLU("r2", ("c2",)), GlobalMaxPool("g2", ("r2",)),
                     Add("a", ("g1", "g2")), *head("a", 4)],
    "residual": [conv("c1", "x", 2, 4), ReLU("r1", ("c1",)), conv("c2", "r1", 4, 4), Add("a", ("c2", "r1")),
                 ReLU("r2", ("a",)), *head("r2", 4 * 8 * 8)],
    "concat": [conv("c1", "x", 2, 3), ReLU("r1", ("c1",)), conv("c2", "x", 2, 5, k=1), ReLU("r2", ("c2",)),
               Concat("cat", ("r1", "r2"), axis=0), conv("c3", "cat", 8, 4), ReLU("r3", ("c3",)),
               *head("r3", 4 * 8 * 8)],
    "clipped_relu_and_bn": [conv("c1", "x", 2, 4), ScaleShift("bn", ("c1",), scale=np.full((4, 1, 1), 1.5, np.float32),
                                                              shift=np.full((4, 1, 1), 0.1, np.float32)),
                            ReLU("r1", ("bn",), ceiling=0.3), *head("r1", 4 * 8 * 8)],
    "nhwc_transpose_softmax": [Transpose("t", ("x",), perm=(2, 0, 1)), conv("c1", "t", 8, 4), ReLU("r1", ("c1",)),
                               *head("r1", 4 * 2 * 8), Softmax("sm", ("fc",), axis=0)],
}


def make(case):
    nodes = CASES[case]
    shape = (8, 2, 8) if case == "nhwc_transpose_softmax" else (2, 8, 8)
    out = nodes[-1].name
    return Graph.from_unordered([TensorSpec("x", shape)], nodes, [out]).validate()


def max_scales(plan, x):
    acts = run_graph(plan.ann, x, outputs=list(plan.spiking))
    # a channel that never fires gets a small positive threshold, as calibration does
    return {k: np.maximum(a.reshape(len(a), a.shape[1], -1).max(axis=(0, 2)) if a.ndim > 2 else a.max(axis=0), 1e-3)
            for k, a in acts.items()}


@pytest.mark.parametrize("maxpool", ["pre_neuron", "cumulative"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_rate_limit_equals_ann_and_simulation_converges(case, maxpool):
    g = make(case)
    x = RNG.random((64,) + g.inputs[0].shape).astype(np.float32)
    cfg = ConversionConfig(maxpool=maxpool, v_init=0.5, bias_correction=False)
    plan = plan_conversion(g, cfg)
    net = build_network(plan, max_scales(plan, x), cfg, 0.5)
    assert any(isinstance(n, IF) for n in net.graph.nodes)
    ann = run_graph(plan.ann, x)
    (out_name,) = net.graph.outputs
    limit = run_graph(net.graph, x) * net.output_units[out_name]
    np.testing.assert_allclose(limit, ann, atol=1e-4 * np.abs(ann).max())
    res = net.simulate(x, [16, 256])
    err16 = np.abs(res.outputs[16] - ann).max()
    err256 = np.abs(res.outputs[256] - ann).max()
    assert err256 < err16 or err16 < 1e-6
    assert err256 < 0.1 * np.abs(ann).max()


def test_spike_maxpool_mode_keeps_a_plain_maxpool():
    g = make("maxpool")
    cfg = ConversionConfig(maxpool="spike", v_init=0.0, bias_correction=False)
    plan = plan_conversion(g, cfg)
    net = build_network(plan, max_scales(plan, RNG.random((16, 2, 8, 8)).astype(np.float32)), cfg, 0.0)
    types = [type(n) for n in net.graph.nodes]
    assert MaxPool2d in types and CumulativeMaxPool2d not in types


def test_pre_neuron_maxpool_moves_the_neuron_after_the_pool():
    g = make("maxpool")
    plan = plan_conversion(g, ConversionConfig(maxpool="pre_neuron"))
    assert plan.relu_target == {"r1": "p1"} and "p1" in plan.fused_pools
    net = build_network(plan, {"p1": np.ones(4, np.float32)}, ConversionConfig(), 0.0)
    names = [type(n).__name__ for n in net.graph.nodes]
    assert names.index("CumulativeMaxPool2d") < names.index("IF")


def test_inner_softmax_is_rejected_with_its_name():
    nodes = [conv("c1", "x", 2, 4), Softmax("inner_sm", ("c1",), axis=0), ReLU("r1", ("inner_sm",)),
             *head("r1", 4 * 8 * 8)]
    g = Graph.from_unordered([TensorSpec("x", (2, 8, 8))], nodes, ["fc"])
    with pytest.raises(UnsupportedModelError, match="inner_sm"):
        plan_conversion(g, ConversionConfig())


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    g = make("residual")
    x = RNG.random((20, 2, 8, 8)).astype(np.float32)
    cfg = ConversionConfig(v_init=0.5, bias_correction=False)
    plan = plan_conversion(g, cfg)
    net = build_network(plan, max_scales(plan, x), cfg, 0.5)
    net.save(tmp_path / "snn")
    back = load(tmp_path / "snn")
    a, b = net.simulate(x, [8, 32]), back.simulate(x, [8, 32])
    for t in (8, 32):
        assert np.array_equal(a.outputs[t], b.outputs[t])
    with pytest.raises(FileExistsError):
        net.save(tmp_path / "snn")


def test_simulation_is_deterministic_with_poisson_input():
    g = make("conv_relu")
    x = RNG.random((10, 2, 8, 8)).astype(np.float32)
    cfg = ConversionConfig(v_init=0.0, bias_correction=False, input_encoding="poisson", seed=3)
    plan = plan_conversion(g, cfg)
    net = build_network(plan, max_scales(plan, x), cfg, 0.0, input_unit=1.0)
    a, b = net.simulate(x, [16]), net.simulate(x, [16])
    assert np.array_equal(a.outputs[16], b.outputs[16])
    other = build_network(plan, max_scales(plan, x), cfg.replace(seed=4), 0.0).simulate(x, [16])
    assert not np.array_equal(a.outputs[16], other.outputs[16])


def test_time_chunk_does_not_change_results():
    g = make("maxpool")
    x = RNG.random((12, 2, 8, 8)).astype(np.float32)
    cfg = ConversionConfig(v_init=0.0, bias_correction=False)
    plan = plan_conversion(g, cfg)
    net = build_network(plan, max_scales(plan, x), cfg, 0.0)
    a = net.simulate(x, [5, 20], time_chunk=3, batch_size=5)
    b = net.simulate(x, [5, 20], time_chunk=20, batch_size=12)
    for t in (5, 20):
        np.testing.assert_allclose(a.outputs[t], b.outputs[t], atol=1e-5)


def test_layer_stats_are_recorded():
    g = make("residual")
    x = RNG.random((16, 2, 8, 8)).astype(np.float32)
    cfg = ConversionConfig(v_init=0.5, bias_correction=False)
    plan = plan_conversion(g, cfg)
    net = build_network(plan, max_scales(plan, x), cfg, 0.5)
    res = net.simulate(x, [8, 64], layer_stats=True)
    assert set(res.layers) == {"r1", "r2"}
    for stats in res.layers.values():
        assert 0 <= stats["firing_rate"][64] <= 1
        assert stats["pearson_r"][64] > stats["pearson_r"][8] - 0.05
        assert stats["pearson_r"][64] > 0.95
        assert stats["sops_per_sample"][64] > stats["sops_per_sample"][8]
