"""Reset-to-zero conversion (what NIR's and Lava's IF do): config checks, the thresholds bias correction
lowers instead of charging initial potentials, time dilation, the held-out choice, and saved files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ann2snn.config import ConversionConfig
from ann2snn.convert.session import ConversionSession
from ann2snn.data import load_zoo_sample
from ann2snn.errors import InvalidModelError
from ann2snn.ir.snn import IF
from ann2snn.network import load

REPO = Path(__file__).resolve().parents[2]
RESNET = REPO / "model_zoo" / "resnet_small" / "model.onnx"


@pytest.mark.parametrize("fields, fragment", [
    ({"reset": "one"}, "reset='one'"),
    ({"reset": "zero", "signed": True}, "signed"),
    ({"threshold_scale": 0}, "threshold_scale=0"),
    ({"threshold_scale": "big"}, "threshold_scale='big'"),
    ({"bias_correction": "charge"}, "bias_correction='charge'"),
])
def test_config_refuses_bad_values(fields, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        ConversionConfig(**fields)


def test_if_refuses_bad_thresholds():
    ok = IF("n", ("x",), scale=np.ones(2, np.float32), reset="zero", threshold=np.array([0.5, 2.0], np.float32))
    assert ok.reset == "zero"
    with pytest.raises(ValueError, match="threshold 1"):  # subtraction removes exactly one threshold: 1
        IF("n", ("x",), scale=np.ones(2, np.float32), threshold=np.array([0.5, 1.0], np.float32))
    with pytest.raises(ValueError, match="positive"):
        IF("n", ("x",), scale=np.ones(2, np.float32), reset="zero", threshold=np.array([0.0, 1.0], np.float32))


@pytest.fixture(scope="module")
def session():
    if not RESNET.is_file():
        pytest.skip(f"{RESNET} is absent")
    return ConversionSession(str(RESNET), load_zoo_sample("resnet_small").calib_x[:300], holdout=True)


def test_bias_correction_lowers_thresholds_and_wins_back_the_residue(session):
    """On the zoo ResNet a reset to zero loses the residue of every spike, layer after layer (held-out
    agreement with the ANN falls far below the subtracting network's); per-channel thresholds from bias
    correction win most of it back, and no neuron starts charged."""
    base = ConversionConfig(reset="zero", v_init=0.0, bias_correction=False)
    plain = session.build(base)
    fixed = session.build(base.replace(bias_correction=True, bias_correction_samples=150))
    for net in (plain, fixed):
        assert all(n.reset == "zero" and not np.any(n.v_init) for n in net.graph.nodes if isinstance(n, IF))
    thresholds = np.concatenate([np.ravel(n.threshold) for n in fixed.graph.nodes if isinstance(n, IF)])
    assert thresholds.min() >= 0.5 and thresholds.mean() < 0.9  # lowered, within the allowed range
    a_plain = session.score(plain, [64])["agreement"]
    a_fixed = session.score(fixed, [64])["agreement"]
    assert a_fixed > a_plain + 0.2, (a_plain, a_fixed)


def test_threshold_scale_dilates_every_threshold(session):
    one = session.build(ConversionConfig(reset="zero", v_init=0.0, bias_correction=False))
    two = session.build(ConversionConfig(reset="zero", v_init=0.0, bias_correction=False, threshold_scale=2.0))
    for a, b in zip(one.graph.nodes, two.graph.nodes):
        if isinstance(a, IF):
            np.testing.assert_allclose(b.scale, 2 * a.scale, rtol=1e-6)
    assert two.config.threshold_scale == 2.0


def test_auto_threshold_scale_is_chosen_on_held_out_images(session):
    net = session.choose(ConversionConfig(reset="zero", v_init=0.0, bias_correction=False, threshold_scale="auto"))
    scored = {row["threshold_scale"] for row in net.record.auto_table}
    assert scored == {1.0, 1.5} and net.config.threshold_scale in scored
    best = max(net.record.auto_table, key=lambda r: (r["agreement"], -r["relative_error"]))
    assert net.config.threshold_scale == best["threshold_scale"]


def test_saved_network_keeps_reset_and_thresholds(session, tmp_path):
    net = session.build(ConversionConfig(reset="zero", v_init=0.0, bias_correction=False))
    name = next(n.name for n in net.graph.nodes if isinstance(n, IF))
    c = np.asarray(net.graph.node(name).scale).size
    theta = np.linspace(0.6, 1.2, c, dtype=np.float32)
    net = replace(net, graph=net.graph.with_nodes([replace(n, threshold=theta) if n.name == name else n
                                                   for n in net.graph.nodes]))
    net.save(tmp_path / "zero.snn")
    back = load(tmp_path / "zero.snn")
    assert back.graph.node(name).reset == "zero"
    np.testing.assert_array_equal(back.graph.node(name).threshold, theta)
    x = load_zoo_sample("resnet_small").test_x[:20]
    np.testing.assert_array_equal(back.simulate(x, [16]).outputs[16], net.simulate(x, [16]).outputs[16])


def test_a_bad_saved_reset_is_an_invalid_model(session, tmp_path):
    net = session.build(ConversionConfig(reset="zero", v_init=0.0, bias_correction=False))
    path = net.save(tmp_path / "zero.snn")
    doc = json.loads((path / "network.json").read_text())
    node = next(e for e in doc["graph"]["nodes"] if e["op"] == "IF")
    node["attrs"]["reset"] = "sideways"  # the config still says zero: only the node is wrong
    (path / "network.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidModelError, match="sideways"):
        load(path)
