"""The bfloat16 synaptic path (what ``auto`` picks on native-bf16 hardware without VNNI) against float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ann2snn
from ann2snn.data import load_zoo_sample
from ann2snn.errors import DataError
from ann2snn.sim.simulate import native_bfloat16, native_int8, resolve_synaptic_dtype

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"


def test_auto_resolves_by_hardware_and_names_are_checked():
    expected = "int8" if native_int8("cpu") else "bfloat16" if native_bfloat16("cpu") else "float32"
    assert resolve_synaptic_dtype("auto", "cpu") == expected
    assert resolve_synaptic_dtype(None, "cpu") == resolve_synaptic_dtype("auto", "cpu")
    assert resolve_synaptic_dtype("float32", "cpu") == "float32"
    assert resolve_synaptic_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(DataError, match="synaptic_dtype"):
        resolve_synaptic_dtype("float16", "cpu")


@pytest.mark.parametrize("name", ["vgg_avgpool", "inception_concat"])
def test_bfloat16_matches_float32_on_a_zoo_model(name):
    if not (ZOO / name / "model.onnx").is_file():
        pytest.skip(f"zoo model {name} is absent")
    sample = load_zoo_sample(name)
    net = ann2snn.convert(str(ZOO / name / "model.onnx"), sample.calib_x[:200],
                          ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    x, y = sample.test_x[:200], sample.test_y[:200]
    f32 = net.simulate(x, [16, 32], synaptic_dtype="float32")
    b16 = net.simulate(x, [16, 32], synaptic_dtype="bfloat16")
    assert (f32.synaptic_dtype, b16.synaptic_dtype) == ("float32", "bfloat16")
    for t in (16, 32):
        # rounding weights and currents to 8 mantissa bits moves a few spikes, not the answers
        agree = np.mean(f32.predictions(t) == b16.predictions(t))
        assert agree >= 0.97, (t, agree)
        rel = np.linalg.norm(b16.outputs[t] - f32.outputs[t]) / np.linalg.norm(f32.outputs[t])
        assert rel < 0.05, (t, rel)
        assert abs(np.mean(b16.predictions(t) == y) - np.mean(f32.predictions(t) == y)) <= 0.02
