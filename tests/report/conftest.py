"""Tiny conversions of every zoo model, shared by the report tests (small subsets: the CPU is shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

import ann2snn
from ann2snn.data import load_zoo_sample

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"
MODELS = sorted(p.parent.name for p in ZOO.glob("*/manifest.json") if (p.parent / "model.onnx").is_file())
TIMESTEPS = [4, 8, 16]

_cache: dict[str, tuple] = {}


def tiny_evaluation(name: str):
    """(snn, EvaluationReport, calibration images) on 16 test images at T=4, 8, 16; cached per session."""
    if name not in _cache:
        sample = load_zoo_sample(name)
        calib = sample.calib_x[:48]
        cfg = ann2snn.ConversionConfig(v_init=0.5, bias_correction=False)
        snn = ann2snn.convert(str(ZOO / name / "model.onnx"), calib, cfg)
        ev = ann2snn.evaluate(str(ZOO / name / "model.onnx"), (sample.test_x[:16], sample.test_y[:16]), snn=snn,
                              timesteps=TIMESTEPS)
        _cache[name] = (snn, ev, calib)
    return _cache[name]


@pytest.fixture
def zoo_eval():
    return tiny_evaluation
