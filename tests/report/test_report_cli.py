"""`ann2snn evaluate --report DIR` and `ann2snn convert` (report by default) on a small subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ann2snn.cli.main import main
from ann2snn.data import load_zoo_sample
from ann2snn.report import validate_report

NAME = "lenet_bn_maxpool"
ZOO = Path(__file__).resolve().parents[2] / "model_zoo"
FAST = ["--limit", "16", "--timesteps", "4,8", "--v-init", "0.5", "--bias-correction", "off"]

pytestmark = pytest.mark.skipif(not (ZOO / NAME / "model.onnx").is_file(), reason=f"zoo model {NAME} is absent")


@pytest.fixture
def small_calib(tmp_path):
    """64 raw calibration images (the CLI applies the zoo preprocessing), to keep the test fast."""
    raw = load_zoo_sample(NAME, raw=True)
    path = tmp_path / "calib.npz"
    np.savez(path, x=raw.calib_x[:64], y=raw.calib_y[:64])
    return ["--calib", str(path)]


def test_evaluate_writes_the_report_folder(tmp_path, capsys, small_calib):
    out = tmp_path / "rep"
    assert main(["-q", "evaluate", NAME, "--report", str(out), "--report-samples", "8", "--diagnose-at", "8",
                 "--no-plots", *small_calib, *FAST]) == 0
    doc = validate_report(json.loads((out / "report.json").read_text()))
    assert doc["samples"] == 16 and doc["diagnosis"]["timesteps"] == 8
    assert "## Diagnosis" in (out / "report.md").read_text()
    assert "E_SNN/E_ANN" in capsys.readouterr().out
    assert main(["-q", "evaluate", NAME, "--report", str(out), *FAST]) == 7  # exists: --force needed


def test_convert_writes_the_report_by_default(tmp_path, small_calib):
    assert main(["-q", "convert", NAME, "--out", str(tmp_path / "out"), "--report-samples", "0", "--no-plots",
                 *small_calib, *FAST]) == 0
    folder = tmp_path / "out" / NAME
    doc = validate_report(json.loads((folder / "report.json").read_text()))
    assert doc["diagnosis"]["what_if"] == [] and doc["plots"]["files"] == {}
    assert (folder / "report.md").is_file() and (folder / "snn" / "network.json").is_file()


def test_scales_flag_converts_with_the_given_thresholds(tmp_path, small_calib):
    """convert writes scales.json; --scales FILE converts with exactly those thresholds (edited here)."""
    from ann2snn.calibration import load_scales, save_scales
    from ann2snn.network import load

    assert main(["-q", "convert", NAME, "--out", str(tmp_path / "a"), "--no-eval", *small_calib, *FAST]) == 0
    scales = load_scales(tmp_path / "a" / NAME / "scales.json")
    first = next(iter(scales))
    scales[first] = scales[first] * 0.75
    save_scales(tmp_path / "edited.json", scales)
    assert main(["-q", "convert", NAME, "--out", str(tmp_path / "b"), "--no-eval", "--scales",
                 str(tmp_path / "edited.json"), *small_calib, *FAST]) == 0
    net = load(tmp_path / "b" / NAME / "snn")
    assert set(net.scales) == set(scales)
    for name, values in scales.items():
        np.testing.assert_allclose(net.scales[name], values, rtol=1e-6)
    # --auto searches the thresholds itself: both at once is a usage error naming the flags
    assert main(["-q", "evaluate", NAME, "--scales", str(tmp_path / "edited.json"), "--auto", *small_calib,
                 *FAST]) == 5
    assert main(["-q", "evaluate", NAME, "--scales", str(tmp_path / "missing.json"), *small_calib, *FAST]) == 5
