"""The bfloat16 and int8 synaptic paths (what ``auto`` picks on native-bf16 / VNNI hardware) against float32."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

import ann2snn
from ann2snn.data import load_zoo_sample
from ann2snn.errors import DataError
from ann2snn.sim.int8 import int8_available
from ann2snn.sim.simulate import auto_synaptic_dtype, native_bfloat16, native_int8, resolve_synaptic_dtype

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"


def test_auto_resolves_by_hardware_and_names_are_checked():
    expected = "int8" if native_int8("cpu") else "bfloat16" if native_bfloat16("cpu") else "float32"
    assert resolve_synaptic_dtype("auto", "cpu") == expected
    assert resolve_synaptic_dtype(None, "cpu") == resolve_synaptic_dtype("auto", "cpu")
    assert resolve_synaptic_dtype("float32", "cpu") == "float32"
    assert resolve_synaptic_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(DataError, match="synaptic_dtype"):
        resolve_synaptic_dtype("float16", "cpu")


@functools.cache
def _zoo_network(name):
    sample = load_zoo_sample(name)
    net = ann2snn.convert(str(ZOO / name / "model.onnx"), sample.calib_x[:200],
                          ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    return net, sample.test_x[:200], sample.test_y[:200]


# bfloat16 rounds weights and currents to 8 mantissa bits, int8 rounds weights to 8 bits per output channel:
# both move a few spikes, not the answers
TOLERANCE = {"bfloat16": 0.05, "int8": 0.06}  # relative L2 difference of the outputs from float32


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("name", ["vgg_avgpool", "resnet_small", "inception_concat"])
def test_low_precision_synapses_match_float32_on_a_zoo_model(name, dtype):
    if not (ZOO / name / "model.onnx").is_file():
        pytest.skip(f"zoo model {name} is absent")
    if dtype == "int8" and not int8_available("cpu"):
        pytest.skip("this torch has no oneDNN int8 ops")
    net, x, y = _zoo_network(name)
    f32 = net.simulate(x, [16, 32], synaptic_dtype="float32")
    low = net.simulate(x, [16, 32], synaptic_dtype=dtype)
    assert (f32.synaptic_dtype, low.synaptic_dtype) == ("float32", dtype)
    for t in (16, 32):
        agree = np.mean(f32.predictions(t) == low.predictions(t))
        assert agree >= 0.97, (t, agree)
        rel = np.linalg.norm(low.outputs[t] - f32.outputs[t]) / np.linalg.norm(f32.outputs[t])
        assert rel < TOLERANCE[dtype], (t, rel)
        assert abs(np.mean(low.predictions(t) == y) - np.mean(f32.predictions(t) == y)) <= 0.02


def test_what_auto_picks_runs_on_this_machine():
    if not (ZOO / "vgg_avgpool" / "model.onnx").is_file():
        pytest.skip("zoo model vgg_avgpool is absent")
    net, x, _ = _zoo_network("vgg_avgpool")
    assert net.simulate(x[:10], [4]).synaptic_dtype == auto_synaptic_dtype("cpu")
