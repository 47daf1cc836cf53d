"""Loihi export: lowering, scale search, netx round trip, all violations at once, fixed-point accuracy, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ann2snn
from ann2snn import loihi
from ann2snn.backends.loihi.export import sdnn_graph
from ann2snn.backends.loihi.netx import ConvLayer, DenseLayer, FlattenLayer, InputLayer, read_netx
from ann2snn.backends.loihi.lowering import lower_graph
from ann2snn.backends.loihi.quantized import QuantizationOptions
from ann2snn.backends.loihi.scale_search import q_weight, search_scale
from ann2snn.config import ConversionConfig
from ann2snn.errors import BackendConstraintError
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph, TensorSpec

REPO = Path(__file__).resolve().parents[3]
VGG = REPO / "model_zoo" / "vgg_avgpool" / "model.onnx"
FAST = ConversionConfig(v_init=0.0, bias_correction=False)


def _tiny_graph(seed: int = 0) -> Graph:
    """Conv-ReLU-AvgPool-Conv-ReLU-GlobalAvgPool-Flatten-Dense-ReLU-Dense on (2, 8, 8)."""
    rng = np.random.default_rng(seed)
    f = np.float32
    nodes = [
        ir.Conv2d("c1", ("x",), weight=rng.normal(0, 0.5, (4, 2, 3, 3)).astype(f), bias=rng.normal(0, 0.1, 4).astype(f),
                  padding=(1, 1, 1, 1)),
        ir.ReLU("r1", ("c1",)),
        ir.AvgPool2d("p1", ("r1",), kernel=(2, 2), stride=(2, 2)),
        ir.Conv2d("c2", ("p1",), weight=rng.normal(0, 0.4, (6, 4, 3, 3)).astype(f), bias=rng.normal(0, 0.1, 6).astype(f),
                  padding=(1, 1, 1, 1)),
        ir.ReLU("r2", ("c2",)),
        ir.GlobalAvgPool("gap", ("r2",)),
        ir.Flatten("flat", ("gap",)),
        ir.Dense("d1", ("flat",), weight=rng.normal(0, 0.6, (5, 6)).astype(f), bias=rng.normal(0, 0.1, 5).astype(f)),
        ir.ReLU("r3", ("d1",)),
        ir.Dense("out", ("r3",), weight=rng.normal(0, 0.6, (3, 5)).astype(f), bias=rng.normal(0, 0.1, 3).astype(f)),
    ]
    return Graph.from_unordered((TensorSpec("x", (2, 8, 8)),), nodes, ("out",), name="tiny")


@pytest.fixture(scope="module")
def tiny_snn():
    x = np.random.default_rng(1).uniform(0, 1, (48, 2, 8, 8)).astype(np.float32)
    return ann2snn.convert(_tiny_graph(), x, FAST), x


def test_lowering_makes_pools_depthwise_convs_and_one_readout(tiny_snn) -> None:
    net, _ = tiny_snn
    stages, violations = lower_graph(net.graph)
    assert violations == []
    assert [s.kind for s in stages] == ["conv", "pool", "conv", "pool", "flatten", "dense", "readout"]
    pool = stages[1]
    assert pool.groups == 4 and pool.stride == (2, 2)
    assert np.allclose(pool.weight, 0.25) and pool.weight.shape == (4, 1, 2, 2)
    gap = stages[3]
    assert gap.weight.shape == (6, 1, 4, 4) and gap.stride == (4, 4) and gap.out_shape == (6, 1, 1)


def test_search_scale_takes_the_largest_near_optimal_scale() -> None:
    w = np.random.default_rng(0).normal(0, 1, 500)
    s = search_scale(w)
    err = lambda k: np.sum((q_weight(w, k) / k - w) ** 2)  # noqa: E731
    grid = np.geomspace(s / 20, s * 4, 400)
    assert err(s) <= 1.01 * min(err(k) for k in grid) + 1e-12
    assert search_scale(w, s_max=10.0) <= 10.0
    assert np.abs(q_weight(w, s)).max() <= 256 and np.all(q_weight(w, s) % 2 == 0)


@pytest.mark.parametrize("neuron", ["cuba", "sdnn"])
def test_export_roundtrip_is_identical(tiny_snn, tmp_path, neuron) -> None:
    net, x = tiny_snn
    exp = loihi.export(net, tmp_path / "tiny.net", neuron=neuron, calibration=x, max_timesteps=16,
                       overflow_samples=2)
    assert exp.path == tmp_path / "tiny.net" and (tmp_path / "tiny.loihi.json").is_file()
    back = read_netx(exp.path)
    assert back == exp.network  # writer -> reader: every layer, weight, bias and neuron parameter
    first = back.layers[0]
    assert isinstance(first, InputLayer) and first.neuron is not None
    assert any(isinstance(layer, FlattenLayer) for layer in back.layers)
    last = back.layers[-1]
    assert isinstance(last, DenseLayer)
    assert (last.neuron is None) if neuron == "cuba" else last.neuron.sigma_output
    for layer in back.layers:
        if isinstance(layer, (ConvLayer, DenseLayer)):
            assert np.all(layer.weight % 2 == 0) and layer.weight.min() >= -256 and layer.weight.max() <= 254
            assert np.any(layer.weight)
    loaded = loihi.load(exp.path)
    assert loaded.neuron == neuron and loaded.latency == exp.latency
    assert loaded.metadata() == json.loads(json.dumps(exp.metadata()))
    a = loihi.simulate_loihi(exp, x[:6], [4, 16])
    b = loihi.simulate_loihi(exp.path, x[:6], [4, 16])
    for t in (4, 16):
        np.testing.assert_array_equal(a.outputs[t], b.outputs[t])
    assert exp.resources is not None and exp.resources.neurons > 0 and exp.resources.cores >= 1


def test_cuba_readout_is_sized_from_calibration_and_does_not_overflow_on_it(vgg) -> None:
    """Without data the readout must survive every input firing every step; with calibration data it is
    sized for 2.5x the largest accumulated sum seen, a finer scale, and the 24-bit sum still never wraps."""
    from ann2snn.backends.loihi.export import detect_overflow

    net, s = vgg
    x = s.calib_x[:256]
    blind = loihi.export(net, None, neuron="cuba", calibration=None, max_timesteps=64)
    tuned = loihi.export(net, None, neuron="cuba", calibration=x, max_timesteps=64, overflow_samples=0)
    assert tuned.readout_scale > 1.5 * blind.readout_scale
    # v pinned at -(2^23-1) (neurons driven far below threshold) is benign; nothing may wrap
    assert not [e for e in detect_overflow(tuned, x[:4], 64) if e.kind != "v_saturation"]


def test_cuba_current_decay_smooths_the_current_and_loses_less_to_the_reset(vgg) -> None:
    """iDecay < 4096 low-pass filters u: thresholds and biases scale by 4096/iDecay (same normalized
    thresholds), and the smoother per-step input leaves less overshoot for Lava's reset to zero to lose."""
    from ann2snn.backends.loihi.export import reset_loss

    net, s = vgg
    x = s.calib_x[:64]
    kw = dict(neuron="cuba", calibration=x, max_timesteps=64, overflow_samples=0)
    plain = loihi.export(net, None, options=QuantizationOptions(time_dilation=1.5, current_decay=4096), **kw)
    smooth = loihi.export(net, None, options=QuantizationOptions(time_dilation=1.5, current_decay=2048), **kw)
    hidden = [layer for layer in smooth.network.layers[1:]
              if isinstance(layer, (ConvLayer, DenseLayer)) and layer.neuron is not None]
    assert hidden and all(layer.neuron.i_decay == 2048 for layer in hidden)
    assert smooth.network.layers[0].neuron.i_decay == 4096  # the bias-driven input layer has no current
    for a, b in zip(plain.layers[1:], smooth.layers[1:]):
        if a.vth_mant is not None:
            assert abs((b.vth_mant + 1) - 2 * (a.vth_mant + 1)) <= 2
            assert b.threshold_min == pytest.approx(a.threshold_min, rel=0.02)
    lost_plain = np.median([np.median(r) for r in list(reset_loss(plain, x[:4], 64).values())[1:]])
    lost_smooth = np.median([np.median(r) for r in list(reset_loss(smooth, x[:4], 64).values())[1:]])
    assert 1.0 < lost_smooth < lost_plain
    with pytest.raises(ValueError, match="current_decay"):
        QuantizationOptions(current_decay=0)


def test_all_violations_reported_together() -> None:
    rng = np.random.default_rng(0)
    f = np.float32
    w = lambda *s: rng.normal(0, 0.5, s).astype(f)  # noqa: E731
    nodes = [
        ir.Conv2d("c1", ("x",), weight=w(4, 1, 3, 3), padding=(1, 1, 1, 1)),
        ir.ReLU("r1", ("c1",)),
        ir.MaxPool2d("pool", ("r1",), kernel=(2, 2), stride=(2, 2)),
        ir.Conv2d("c2", ("pool",), weight=w(4, 4, 3, 3), padding=(1, 1, 1, 1)),
        ir.ReLU("r2", ("c2",)),
        ir.Add("residual", ("r2", "pool")),
        ir.Conv2d("c3", ("residual",), weight=w(4, 4, 1, 1)),
        ir.ReLU("r3", ("c3",)),
        ir.Concat("concat", ("r3", "residual"), axis=0),
        ir.Flatten("flat", ("concat",)),
        ir.Dense("out", ("flat",), weight=w(3, 128)),
    ]
    graph = Graph.from_unordered((TensorSpec("x", (1, 8, 8)),), nodes, ("out",), name="branchy")
    x = rng.uniform(0, 1, (16, 1, 8, 8)).astype(f)
    net = ann2snn.convert(graph, x, FAST)
    with pytest.raises(BackendConstraintError) as info:
        loihi.export(net, None, calibration=x)
    err = info.value
    text = str(err)
    offenders = {layer for layer, _, _ in err.violations}
    assert {"pool", "residual", "concat"} <= offenders, text
    ways = {layer: way for layer, _, way in err.violations}
    assert "AvgPool" in ways["pool"]
    assert "--target nir" in ways["residual"] and "--target nir" in ways["concat"]
    assert all(way for _, _, way in err.violations)
    assert loihi.check(net) == err.violations  # the same list without quantizing


def test_sdnn_graph_computes_the_unclipped_ann(tiny_snn) -> None:
    # SDNN neurons are exact ReLUs: the graph it quantizes must not saturate at one spike per step
    net, x = tiny_snn
    from ann2snn.ir.reference import run_graph

    hidden = run_graph(net.ann, x, outputs=["r1"])["r1"]
    assert hidden.max() > 1.5  # activations above 1 ANN unit: a saturating graph would clip them
    np.testing.assert_allclose(sdnn_graph(net).run(x), net.ann.run(x), rtol=1e-4, atol=1e-5)


def test_sdnn_reports_a_clipped_relu() -> None:
    rng = np.random.default_rng(0)
    nodes = [ir.Dense("d1", ("x",), weight=rng.normal(0, 1, (6, 4)).astype(np.float32)),
             ir.ReLU("relu6", ("d1",), ceiling=6.0),
             ir.Dense("out", ("relu6",), weight=rng.normal(0, 1, (3, 6)).astype(np.float32))]
    graph = Graph.from_unordered((TensorSpec("x", (4,)),), nodes, ("out",), name="clip")
    x = rng.uniform(0, 1, (32, 4)).astype(np.float32)
    net = ann2snn.convert(graph, x, FAST)
    problems = loihi.check(net, neuron="sdnn")
    assert [p[0] for p in problems] == ["relu6"] and "cuba" in problems[0][2]
    assert loihi.check(net, neuron="cuba") == []


def test_sdnn_is_refused_on_loihi1(tiny_snn) -> None:
    net, x = tiny_snn
    with pytest.raises(BackendConstraintError, match="SDNN"):
        loihi.export(net, None, neuron="sdnn", profile="loihi1", calibration=x, overflow_samples=0)


def test_input_bias_layouts(tiny_snn) -> None:
    net, x = tiny_snn
    exp = loihi.export(net, None, calibration=x, overflow_samples=0)
    chw = loihi.input_bias(exp, x[:3])
    assert chw.shape == (3,) + tuple(exp.network.input_shape) and chw.dtype == np.int64
    assert np.abs(chw).max() <= 4095
    lava = loihi.input_bias(exp, x[:3], layout="lava")
    np.testing.assert_array_equal(lava[1], chw[1].transpose(2, 1, 0))
    pixels = loihi.export(net, None, calibration=x, overflow_samples=0,
                          options=loihi.QuantizationOptions(input_layer="pixels"))
    assert pixels.network.input_shape == (2, 8, 8)
    np.testing.assert_array_equal(loihi.input_bias(pixels, x[:2]), np.rint(x[:2] * pixels.input_scale))
    sd = loihi.export(net, None, neuron="sdnn", calibration=x, overflow_samples=0)
    with pytest.raises(ann2snn.DataError):
        loihi.input_bias(sd, x[:1])
    assert loihi.input_a_in(sd, x[:1]).shape == (1, 2, 8, 8)


# ---------------------------------------------------------------------------------------------- zoo VGG


@pytest.fixture(scope="module")
def vgg():
    if not VGG.is_file():
        pytest.skip(f"zoo model {VGG} is absent")
    from ann2snn.data import load_zoo_sample

    s = load_zoo_sample("vgg_avgpool")
    net = ann2snn.convert(str(VGG), s.calib_x[:256], FAST)
    return net, s


def test_vgg_sdnn_reproduces_the_ann(vgg) -> None:
    net, s = vgg
    exp = loihi.export(net, None, neuron="sdnn", calibration=s.calib_x[:256], overflow_samples=2)
    x, y = s.test_x[:150], s.test_y[:150]
    ann = sdnn_graph(net).run(x).argmax(1)
    res = loihi.simulate_loihi(exp, x, [1, 8])
    assert np.mean(res.predictions(1) == ann) >= 0.97
    np.testing.assert_array_equal(res.predictions(1), res.predictions(8))  # settled: constant in T
    assert abs(np.mean(res.predictions(1) == y) - np.mean(ann == y)) <= 0.02


def test_vgg_cuba_tracks_the_float_snn(vgg) -> None:
    net, s = vgg
    exp = loihi.export(net, None, neuron="cuba", calibration=s.calib_x[:256], max_timesteps=48, overflow_samples=1)
    assert exp.network.input_shape == (16, 28, 28)  # the first conv's IF is the input layer
    x = s.test_x[:24]
    fixed = loihi.simulate_loihi(exp, x, [48]).predictions(48)
    float_snn = net.simulate(x, [48]).predictions(48)
    assert np.mean(fixed == float_snn) >= 0.8


def test_vgg_reset_to_zero_conversion_runs_on_cuba_as_simulated(vgg) -> None:
    """A reset-to-zero conversion is Lava's CUBA neuron already: its per-channel thresholds fold into the
    weights, and with an unfiltered current and no dilation the fixed point follows the float simulation
    (only quantization and the pipeline latency differ)."""
    from dataclasses import replace

    from ann2snn.ir.snn import IF

    _, s = vgg
    net = ann2snn.convert(str(VGG), s.calib_x[:256], ConversionConfig(reset="zero", v_init=0.0,
                                                                      bias_correction=False))
    name = [n.name for n in net.graph.nodes if isinstance(n, IF)][1]
    c = np.asarray(net.graph.node(name).scale).size
    theta = np.linspace(0.7, 1.4, c, dtype=np.float32)  # thresholds as bias correction sets them
    net = replace(net, graph=net.graph.with_nodes([replace(n, threshold=theta) if n.name == name else n
                                                   for n in net.graph.nodes]))
    exp = loihi.export(net, None, neuron="cuba", calibration=s.calib_x[:256], max_timesteps=32, overflow_samples=1,
                       options=QuantizationOptions(time_dilation=1.0, current_decay=4096))
    x = s.test_x[:60]
    fixed = loihi.simulate_loihi(exp, x, [32]).predictions(32)
    float_snn = net.simulate(x, [32]).predictions(32)
    assert np.mean(fixed == float_snn) >= 0.9
    # the folding itself: the lowered stage is the conv with each row (and bias) divided by its threshold
    stage = next(st for st in lower_graph(net.graph)[0] if st.name == name)
    conv = net.graph.node(net.graph.node(name).inputs[0])
    np.testing.assert_allclose(stage.weight, conv.weight / theta[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(stage.bias, conv.bias / theta, rtol=1e-6)


def test_a_charged_reset_to_zero_network_is_refused(vgg) -> None:
    _, s = vgg
    net = ann2snn.convert(str(VGG), s.calib_x[:64], ConversionConfig(reset="zero", v_init=0.5,
                                                                     bias_correction=False))
    problems = [p for p in loihi.check(net) if "starts at v = 0" in p[1]]
    assert len(problems) == len(net.spiking_layers) and all("--v-init 0" in p[2] for p in problems)
    with pytest.raises(BackendConstraintError, match="--v-init 0"):
        loihi.export(net)


def test_cli_convert_target_loihi_and_evaluate_net(vgg, tmp_path) -> None:
    from ann2snn.cli.main import main

    net, s = vgg
    out = tmp_path / "out"
    rc = main(["-q", "convert", str(VGG), "--target", "loihi", "--loihi-neuron", "sdnn", "--out", str(out),
               "--v-init", "0", "--bias-correction", "off", "--limit", "40", "--timesteps", "1,4",
               "--no-plots", "--what-if-layers", "0", "--report-samples", "40"])
    assert rc == 0
    folder = out / "vgg_avgpool"
    assert (folder / "vgg_avgpool.net").is_file() and (folder / "vgg_avgpool.loihi.json").is_file()
    report = json.loads((folder / "loihi_report.json").read_text())
    assert set(report["fixed_point_accuracy"]) == {"1", "4"} and report["samples"] == 40
    assert {"ann_accuracy", "snn_accuracy", "export"} <= set(report)
    assert report["export"]["resources"]["neurons"] > 0
    conversion_report = json.loads((folder / "report.json").read_text())  # the fixed-point column of report.md
    assert conversion_report["fixed_point_accuracy"] == report["fixed_point_accuracy"]
    assert "fixed-point SNN %" in (folder / "report.md").read_text()
    data = tmp_path / "test.npz"
    np.savez(data, x=np.rint(s.test_x[:20, 0] * 255).astype(np.uint8), y=s.test_y[:20])  # raw images
    js = tmp_path / "eval.json"
    rc = main(["-q", "evaluate", str(folder / "vgg_avgpool.net"), "--data", str(data), "--timesteps", "2",
               "--json", str(js)])
    assert rc == 0
    assert 0.5 <= json.loads(js.read_text())["fixed_point_accuracy"]["2"] <= 1.0


def test_cli_loihi_options_reach_the_netx_file_and_bad_ones_fail_before_converting(vgg, tmp_path) -> None:
    from ann2snn.cli.main import main

    out = tmp_path / "out"
    fast = ["--v-init", "0", "--bias-correction", "off", "--limit", "16", "--timesteps", "8", "--no-eval"]
    rc = main(["-q", "convert", str(VGG), "--target", "loihi", "--out", str(out), *fast,
               "--loihi-option", "current_decay=4096", "--loihi-option", "time_dilation=2"])
    assert rc == 0
    folder = out / "vgg_avgpool"
    net = read_netx(folder / "vgg_avgpool.net")
    hidden = [layer for layer in net.layers[1:] if isinstance(layer, ConvLayer)]
    assert all(layer.neuron.i_decay == 4096 for layer in hidden)
    assert net.layers[0].neuron.vth_mant == 2 * 4095 - 1  # time dilation 2 on the input layer
    sidecar = json.loads((folder / "vgg_avgpool.loihi.json").read_text())
    assert sidecar["options"]["current_decay"] == 4096 and sidecar["options"]["time_dilation"] == 2
    for bad in (["--loihi-option", "current_decay=0.5"], ["--loihi-option", "dilation=2"],
                ["--loihi-option", "time_dilation"]):
        rc = main(["-q", "convert", str(VGG), "--target", "loihi", "--out", str(tmp_path / "bad"), *fast, *bad])
        assert rc == 5 and not (tmp_path / "bad").exists()
    rc = main(["-q", "convert", str(VGG), "--out", str(tmp_path / "bad"), *fast, "--loihi-option", "time_dilation=2"])
    assert rc == 5 and not (tmp_path / "bad").exists()


def test_cli_convert_reports_violations_and_writes_nothing(tmp_path) -> None:
    from ann2snn.cli.main import main

    lenet = REPO / "model_zoo" / "lenet_bn_maxpool" / "model.onnx"
    if not lenet.is_file():
        pytest.skip("zoo model lenet_bn_maxpool is absent")
    out = tmp_path / "out"
    rc = main(["-q", "convert", str(lenet), "--target", "loihi", "--out", str(out), "--no-eval",
               "--v-init", "0", "--bias-correction", "off"])
    assert rc == BackendConstraintError.exit_code
    assert not (out / "lenet_bn_maxpool").exists()
