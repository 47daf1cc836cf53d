"""Seeded random-weight variants of the ONNX zoo's classics at 224x224 convert and simulate: every IF layer
fires, outputs are finite, and the SNN's readout approaches the ANN's logits as T grows.

Only the three cheapest of the six run here (ResNet-50's 16 residual Sums, ShuffleNet's channel shuffle on spike
tensors and mid-network AveragePools, SqueezeNet's Concats and 4-D Softmax); the thresholds come from four
calibration images and bias correction is off, so the test costs seconds, not the minutes a default
conversion of a 224x224 network takes today (issue #16, part 3)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from ann2snn import ConversionConfig, convert
from ann2snn.frontend import load_onnx
from ann2snn.frontend.testing import light_model_dir, randomize_weights, without_final_softmax
from ann2snn.ir import Reshape, Transpose

LIGHT = light_model_dir()
pytestmark = pytest.mark.skipif(LIGHT is None, reason="this onnx wheel ships no backend/test/data/light models")

RNG = np.random.default_rng(64)
CALIB = RNG.standard_normal((4, 3, 224, 224)).astype(np.float32)
X = RNG.standard_normal((2, 3, 224, 224)).astype(np.float32)
TIMESTEPS = [8, 64]


@pytest.mark.parametrize("name", ["squeezenet", pytest.param("shufflenet", marks=pytest.mark.xfail(
    strict=True, reason="known gap (issue #16): its readout error does not fall with T yet (0.250 at T=8, 0.265 at "
    "T=64 with these weights)")), "resnet50"])
def test_random_light_model_converts_and_converges(name):
    model = without_final_softmax(randomize_weights(onnx.load(str(LIGHT / f"light_{name}.onnx")), seed=1))
    graph = load_onnx(model)
    if name == "shufflenet":  # the channel shuffle runs on spike tensors
        assert any(isinstance(n, Transpose) for n in graph.nodes) and any(isinstance(n, Reshape) for n in graph.nodes)
    snn = convert(graph, CALIB, ConversionConfig(v_init=0.5, bias_correction=False, calibration_batch_size=2))
    res = snn.simulate(X, TIMESTEPS, batch_size=2, time_chunk=4, layer_stats=True)
    ref = graph.run(X).reshape(len(X), -1)  # the logits
    assert len(snn.spiking_layers) > 20
    silent = [k for k, s in res.layers.items() if s["firing_rate"][64] == 0]
    assert not silent, f"IF layers that never fire: {silent[:5]}"
    errors = {}
    for t in TIMESTEPS:
        out = res.outputs[t].reshape(len(X), -1)
        assert out.shape == ref.shape and np.all(np.isfinite(out))
        errors[t] = float(np.abs(out - ref).mean() / np.abs(ref).mean())
    assert errors[64] < errors[8], errors
    assert errors[64] < 0.5, errors
