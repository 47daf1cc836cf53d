"""Loihi limits: every violation reported at once, presets, and the resource estimate."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest

from ann2snn.errors import BackendConstraintError
from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
)
from ann2snn.backends.loihi.profile import LOIHI1, LOIHI2, check_network, estimate_resources, validate_network


def good_net() -> NetxNetwork:
    lif = NeuronParams.cuba(vth_mant=100)
    return NetxNetwork((
        InputLayer((2, 6, 6), lif),
        ConvLayer(weight=np.full((4, 2, 3, 3), 2), shape=(4, 4, 4), neuron=lif, bias=np.array([1, -1, 0, 3])),
        FlattenLayer(),
        DenseLayer(weight=np.tile([[2, -4]], (3, 32)), neuron=lif),
        DenseLayer(weight=np.array([[2, -2, 4]])),
    ))


def test_clean_network_passes() -> None:
    assert check_network(good_net()) == []
    validate_network(good_net())


def test_all_violations_reported_together() -> None:
    bad_neuron = NeuronParams.cuba(vth_mant=200_000, i_decay=5000, v_decay=0)
    net = NetxNetwork((
        InputLayer((2, 6, 6), NeuronParams.cuba(100)),
        ConvLayer(weight=np.full((4, 2, 3, 3), 3), shape=(4, 4, 4), neuron=bad_neuron,
                  bias=np.array([5000, 0, 0, 0])),  # odd weights, vThMant, iDecay, bias
        FlattenLayer(),
        DenseLayer(weight=np.zeros((3, 64))),  # all zero: netx cannot load it; also not last
        DenseLayer(weight=np.array([[300, 4, 8]]), neuron=NeuronParams.cuba(10),
                   delay=np.array([70])),  # all positive > 255, delay > 62
        DenseLayer(weight=np.array([[-2]])),  # changed by netx + Lava clipping
    ))
    with pytest.raises(BackendConstraintError) as info:
        validate_network(net)
    err = info.value
    by_layer: dict[str, list[str]] = {}
    for layer, problem, way_out in err.violations:
        assert way_out
        by_layer.setdefault(layer, []).append(problem)
    assert set(by_layer) == {"1 (conv)", "3 (dense)", "4 (dense)", "5 (dense)"}
    conv = " | ".join(by_layer["1 (conv)"])
    for needle in ("vThMant=200000", "iDecay=5000", "odd weights", "bias"):
        assert needle in conv
    dense3 = " | ".join(by_layer["3 (dense)"])
    assert "all weights are zero" in dense3 and "never spikes" in dense3
    dense4 = " | ".join(by_layer["4 (dense)"])
    assert "every weight into 0" in dense4 and "delays" in dense4
    assert "change these weights" in by_layer["5 (dense)"][0]
    assert len(err.violations) == 9 and "loihi2" in str(err) and str(err).count("layer '") == 9


def test_fan_in_and_cores_are_overridable() -> None:
    small = dataclasses.replace(LOIHI2, max_fan_in=32, neurons_per_core=16, max_cores=3)
    problems = check_network(good_net(), small)
    assert ("3 (dense)", "fan-in 64 exceeds 32 input axons per core") in [(l, p) for l, p, _ in problems]
    assert any(layer == "network" and "cores" in p for layer, p, _ in problems)


def test_loihi1_rejects_sdnn_and_full_decay() -> None:
    net = NetxNetwork((InputLayer((3,), NeuronParams.sdnn(0)),
                       DenseLayer(weight=np.array([[2, -2, 2]]), neuron=NeuronParams.cuba(10))))
    assert check_network(net, LOIHI2) == []
    problems = [p for _, p, _ in check_network(net, LOIHI1)]
    assert any("SDNN" in p for p in problems) and any("iDecay=4096" in p for p in problems)


def test_estimate_resources() -> None:
    est = estimate_resources(good_net())
    rows = {r.index: r for r in est.layers}
    assert rows[0].neurons == 72 and rows[1].neurons == 64 and rows[2].neurons == 0
    assert rows[1].synapses == 64 * 18 and rows[1].fan_in == 18  # 3x3x2 taps, all inside the input
    assert rows[3].synapses == 3 * 64 and rows[4].synapses == 3
    assert est.neurons == 72 + 64 + 3 + 1 and est.cores == 4
    assert est.to_dict()["synapses"] == est.synapses
    padded = ConvLayer(weight=np.full((1, 1, 3, 3), 2), shape=(1, 2, 2), neuron=NeuronParams.cuba(1),
                       padding=(1, 1), stride=(2, 2))
    est = estimate_resources(NetxNetwork((InputLayer((1, 3, 3)), padded)))
    assert est.layers[1].synapses == 4 * 4  # each output sees a 2x2 corner; taps on padding are not stored

