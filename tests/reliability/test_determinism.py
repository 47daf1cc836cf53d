"""Determinism: the same inputs, config and seed give bit-identical thresholds, weights and outputs (Poisson
encoding included); another seed gives other Poisson spikes. On the zoo LeNet with a small data subset, and
through the CLI (byte-identical files)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from rel_helpers import LENET, save_model, tiny_cnn, tiny_data

import ann2snn
from ann2snn.cli.main import main
from ann2snn.data import load_zoo_sample


@pytest.fixture(scope="module")
def lenet_data():
    s = load_zoo_sample("lenet_bn_maxpool")
    return s.calib_x[:16], s.test_x[:6]


@pytest.fixture(scope="module")
def nets(lenet_data):
    """Each configuration converted twice from scratch. Bias correction simulates (Poisson spikes included), so it
    is part of what must be repeatable."""
    calib, _ = lenet_data
    out = {}
    for encoding in ("analog", "poisson"):
        cfg = ann2snn.ConversionConfig(v_init=0.5, bias_correction=True, calibration_timesteps=4,
                                       input_encoding=encoding, seed=7)
        out[encoding] = [ann2snn.convert(str(LENET), calib, cfg) for _ in range(2)]
    return out


def _arrays(net) -> dict[str, np.ndarray]:
    out = {f"scale/{k}": np.asarray(v) for k, v in net.scales.items()}
    out.update({f"unit/{k}": np.asarray(v) for k, v in net.output_units.items()})
    for prefix, graph in (("snn", net.graph), ("ann", net.ann)):
        for n in graph.nodes:
            for name, a in n.parameters().items():
                if a is not None:
                    out[f"{prefix}/{n.name}/{name}"] = np.asarray(a)
    out["input_unit"] = np.asarray(net.input_unit)
    return out


def assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


@pytest.mark.parametrize("encoding", ["analog", "poisson"])
def test_convert_and_simulate_twice_is_bit_identical(nets, lenet_data, encoding):
    _, test = lenet_data
    a, b = nets[encoding]
    assert_bit_identical(_arrays(a), _arrays(b))
    runs = [net.simulate(test, [4, 12], batch_size=4, time_chunk=3) for net in (a, b)]
    for t in (4, 12):
        assert runs[0].outputs[t].tobytes() == runs[1].outputs[t].tobytes()
    # the time chunk only regroups float sums (last-bit differences); the spikes are the same. (Poisson spikes are
    # seeded per batch, so another batch size draws other spikes: batch size is part of a Poisson run's recipe.)
    other = a.simulate(test, [4, 12], batch_size=4, time_chunk=12)
    for t in (4, 12):
        np.testing.assert_allclose(other.outputs[t], runs[0].outputs[t], rtol=0, atol=1e-5)


def test_poisson_seed_changes_the_spikes_and_only_the_seed(nets, lenet_data):
    _, test = lenet_data
    net = nets["poisson"][0]
    reseeded = dataclasses.replace(net, config=net.config.replace(seed=8))
    a = net.simulate(test, [8]).outputs[8]
    b = net.simulate(test, [8]).outputs[8]
    c = reseeded.simulate(test, [8]).outputs[8]
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c), "another seed must draw other Poisson spikes"
    # analog input has no randomness: the seed changes nothing
    analog = nets["analog"][0]
    d = analog.simulate(test, [8]).outputs[8]
    e = dataclasses.replace(analog, config=analog.config.replace(seed=8)).simulate(test, [8]).outputs[8]
    assert d.tobytes() == e.tobytes()


def test_saved_and_reloaded_network_gives_identical_outputs(nets, lenet_data, tmp_path):
    _, test = lenet_data
    net = nets["poisson"][0]
    loaded = ann2snn.load(net.save(tmp_path / "snn"))
    assert_bit_identical(_arrays(net), _arrays(loaded))
    assert net.simulate(test, [8]).outputs[8].tobytes() == loaded.simulate(test, [8]).outputs[8].tobytes()


def test_cli_convert_twice_writes_identical_files(tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "model.onnx")
    x, y = tiny_data(24)
    np.savez(tmp_path / "calib.npz", x=x, y=y)
    for out in ("a", "b"):
        assert main(["-q", "convert", str(model), "--calib", str(tmp_path / "calib.npz"), "--no-eval",
                     "--out", str(tmp_path / out), "--input-encoding", "poisson", "--seed", "5", "--v-init", "auto",
                     "--bias-correction", "on", "--calibration-timesteps", "4"]) == 0
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    assert (a / "scales.json").read_bytes() == (b / "scales.json").read_bytes()
    assert (a / "snn" / "network.json").read_bytes() == (b / "snn" / "network.json").read_bytes()
    with np.load(a / "snn" / "weights.npz") as za, np.load(b / "snn" / "weights.npz") as zb:
        assert_bit_identical({k: za[k] for k in za.files}, {k: zb[k] for k in zb.files})
    assert json.loads((a / "snn" / "network.json").read_text())["config"]["seed"] == 5
