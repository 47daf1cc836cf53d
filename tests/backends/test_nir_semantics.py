"""NIR export, nir form (``semantics="nir"``, the default): files whose primitives, read by the NIR
specification alone, reproduce ann2snn's simulation; node types every consumer implements; readable by
nir 1.0.4 (what ``pip install sinabs`` brings); and snnTorch, Norse and Sinabs running the zoo's
vgg_avgpool and resnet_small as ann2snn simulates them (each skipped when the package is absent)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from ann2snn.backends.nir import NIR_CONVERSION, check_nir, check_nir_config, export_nir, to_nir
from ann2snn.config import ConversionConfig
from ann2snn.errors import BackendConstraintError
from ann2snn.ir import Add, AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool, ReLU, ScaleShift
from ann2snn.ir.snn import IF

from nir_helpers import FP32, _b, _w, make_net
from nir_reference import NirInterpreter

REPO = Path(__file__).resolve().parents[2]
CONSUMER_TYPES = (nir.Input, nir.Output, nir.Conv2d, nir.Affine, nir.IF, nir.Flatten)
T = 32
N_TEST = 300  # of the 1000 bundled test images (benchmarks/nir_consumers.py runs all of them)


def _residual_nodes(rng):
    """Conv, per-channel scale, avg-pool with pads, an identity residual join, global pool, dense layers."""
    return [
        Conv2d("c1", ("x",), weight=_w(rng, 4, 2, 3, 3), bias=_b(rng, 4), padding=(1,) * 4),
        ScaleShift("bn", ("c1",), scale=np.linspace(0.8, 1.5, 4, dtype=np.float32).reshape(4, 1, 1),
                   shift=np.zeros((4, 1, 1), np.float32)),
        ReLU("r1", ("bn",)),
        AvgPool2d("p1", ("r1",), kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1), count_include_pad=True),
        Conv2d("c2", ("p1",), weight=_w(rng, 4, 4, 3, 3), bias=_b(rng, 4), padding=(1,) * 4),
        Add("a", ("c2", "p1")), ReLU("r2", ("a",)),
        GlobalAvgPool("g", ("r2",)), Flatten("flat", ("g",)),
        Dense("d1", ("flat",), weight=_w(rng, 12, 4), bias=_b(rng, 12)), ReLU("r3", ("d1",)),
        Dense("fc", ("r3",), weight=_w(rng, 5, 12))]


def _with_thresholds(net, values):
    """``net`` with per-channel IF thresholds (what bias correction sets on a reset-to-zero network)."""
    nodes = [replace(n, threshold=np.asarray(values[: np.asarray(n.scale).size], np.float32))
             if isinstance(n, IF) else n for n in net.graph.nodes]
    return replace(net, graph=net.graph.with_nodes(nodes))


def test_the_primitives_alone_reproduce_the_simulation(tmp_path):
    rng = np.random.default_rng(21)
    x = np.random.default_rng(22).random((40, 2, 8, 8)).astype(np.float32)
    net = make_net(_residual_nodes(rng), x=x[:32], reset="zero")
    # powers of two: dividing the input current by the threshold (how the file carries it) is exact
    net = _with_thresholds(net, [0.5, 1.0, 0.25, 2.0, 0.5] * 4)
    g = nir.read(export_nir(net, tmp_path / "net.nir"), type_check=True)
    assert all(isinstance(nd, CONSUMER_TYPES) for nd in g.nodes.values()), {type(nd).__name__
                                                                            for nd in g.nodes.values()}
    assert all(np.all(nd.v_threshold == 1) for nd in g.nodes.values() if isinstance(nd, nir.IF))
    steps = 24
    res = net.simulate(x[32:], [steps], probe=net.spiking_layers, synaptic_dtype=FP32)
    out, counts = NirInterpreter(g).run(x[32:], steps, summed=True)
    np.testing.assert_allclose(out["output"] / steps, res.outputs[steps], rtol=1e-4, atol=1e-5)
    for name in net.spiking_layers:
        c = counts[name]
        per_channel = c.reshape(len(c), c.shape[1], -1).mean(axis=(0, 2)) if c.ndim > 2 else c.mean(axis=0)
        scale = np.asarray(net.graph.node(name).scale, np.float64).reshape(-1)
        np.testing.assert_allclose(per_channel / steps * scale, res.probe[name][steps], rtol=1e-6, atol=1e-9)
        assert c.sum() > 0, name  # every layer spikes: the comparison is not vacuous


def test_the_annotated_form_read_by_the_specification_does_not():
    """The check above can fail: a reset-by-subtraction network's annotated file, read literally, differs."""
    rng = np.random.default_rng(21)
    x = np.random.default_rng(22).random((40, 2, 8, 8)).astype(np.float32)
    net = make_net(_residual_nodes(rng), x=x[:32], v_init=0.5)
    g = to_nir(net, semantics="annotated", readout="current")
    res = net.simulate(x[32:], [24], synaptic_dtype=FP32)
    out, _ = NirInterpreter(g).run(x[32:], 24, summed=True)
    assert not np.allclose(out["output"] / 24, res.outputs[24], rtol=1e-2, atol=1e-3)


def test_files_read_in_nir_1_0_4(tmp_path):
    """nir 1.0.4 (pinned by Sinabs) has no node metadata on most types and no IF v_reset: the file has neither."""
    rng = np.random.default_rng(23)
    net = _with_thresholds(make_net(_residual_nodes(rng), reset="zero"), [0.5, 0.75, 1.0, 1.25] * 5)
    path = export_nir(net, tmp_path / "net.nir")
    with h5py.File(path) as f:
        nodes = f["node"]["nodes"]
        assert set(f["node"]) == {"type", "nodes", "edges", "metadata"}
        for name in nodes:
            assert "metadata" not in nodes[name], name
            assert "v_reset" not in nodes[name], name
    g = nir.read(path)  # the default v_reset (0) reads back
    assert all(np.all(nd.v_reset == 0) for nd in g.nodes.values() if isinstance(nd, nir.IF))


def test_every_problem_is_named_before_anything_is_written(tmp_path):
    rng = np.random.default_rng(24)
    net = make_net(_residual_nodes(rng), v_init=0.5)  # reset by subtraction, starting at theta/2
    problems = check_nir(net)
    assert [p[0] for p in problems] == ["r1", "r2", "r3"]
    assert all("resets by subtraction" in p[1] and "non-zero potential" in p[1] for p in problems)
    with pytest.raises(BackendConstraintError, match="(?s)r1.*r2.*r3"):
        export_nir(net, tmp_path / "bad.nir")
    assert not (tmp_path / "bad.nir").exists()
    assert check_nir_config(ConversionConfig()) and not check_nir_config(ConversionConfig(**NIR_CONVERSION))
    assert not check_nir_config(ConversionConfig(), semantics="annotated")


def test_graph_metadata_says_what_the_file_means(tmp_path):
    rng = np.random.default_rng(25)
    net = make_net(_residual_nodes(rng), reset="zero")
    pre = {"scale": 1 / 255, "mean": [0.5], "std": [0.25], "layout": "NCHW", "channels": 1}
    meta = nir.read(export_nir(net, tmp_path / "net.nir", preprocessing=pre)).metadata
    assert meta["semantics"] == "nir" and meta["reset"] == "zero" and meta["fire_condition"] == "v > v_threshold"
    assert float(meta["v_init"]) == 0.0 and meta["readout"] == "current"
    assert json.loads(meta["preprocessing"]) == pre
    # the annotated form's graph-level v_init is what the neurons really start at (bias correction charges
    # each neuron), not the config's
    net = make_net(_residual_nodes(rng), v_init=0.5)
    nodes = [replace(n, v_init=np.linspace(-0.5, 0.9, 4, dtype=np.float32)) if n.name == "r2" else n
             for n in net.graph.nodes]
    meta = to_nir(replace(net, graph=net.graph.with_nodes(nodes)), semantics="annotated").metadata
    assert meta["v_init"] == "per_neuron"
    np.testing.assert_allclose(meta["v_init_range"], [-0.5, 0.9])


# ---------------------------------------------------------------------------------------------- the zoo


@cache
def _zoo(name: str):
    """(network converted for NIR, its file's graph, bundled test images, labels) of a zoo model."""
    path = REPO / "model_zoo" / name / "model.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    import ann2snn
    from ann2snn.data import load_zoo_sample

    sample = load_zoo_sample(name)
    # bias correction on (the thresholds it lowers are folded into the file), not chosen: the export is tested
    config = ConversionConfig(**NIR_CONVERSION, bias_correction=True, bias_correction_samples=200)
    net = ann2snn.convert(str(path), calibration=sample.calib_x[:300], config=config)
    graph = to_nir(net)
    return net, graph, sample.test_x[:N_TEST], sample.test_y[:N_TEST]


@cache
def _zoo_predictions(name: str) -> np.ndarray:
    net, _, x, _ = _zoo(name)
    return net.simulate(x, [T], synaptic_dtype=FP32).predictions(T)


@pytest.mark.parametrize("name", ["vgg_avgpool", "resnet_small"])
def test_zoo_file_executed_by_the_specification_matches(name):
    net, graph, x, y = _zoo(name)
    assert all(isinstance(nd, CONSUMER_TYPES) for nd in graph.nodes.values())
    ours = _zoo_predictions(name)
    out, _ = NirInterpreter(graph).run(x[:100], T, summed=True)
    agreement = float(np.mean(out["output"].argmax(1) == ours[:100]))
    assert agreement >= 0.99, agreement
    assert np.mean(ours == y) > 0.75  # a working network, not a constant one


@pytest.mark.parametrize("consumer", ["snntorch", "norse", "sinabs"])
@pytest.mark.parametrize("name", ["vgg_avgpool", "resnet_small"])
def test_consumer_runs_the_zoo_file_as_we_simulate_it(consumer, name, tmp_path):
    pytest.importorskip({"norse": "norse.torch"}.get(consumer, consumer),
                        reason=f"{consumer} is not installed (.ci/run installs it)")
    from ann2snn.backends.nir_consumers import run

    net, graph, x, y = _zoo(name)
    ours = _zoo_predictions(name)
    # through the file, as a user would: written, then read back with nir.read
    read = nir.read(export_nir(net, tmp_path / f"{name}.nir"))
    pred = run(consumer, read, x, T).argmax(1)
    agreement = float(np.mean(pred == ours))
    assert agreement >= 0.99, (consumer, name, agreement, float(np.mean(pred == y)))
