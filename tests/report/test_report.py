"""The conversion report: produced for every zoo model, valid against its schema, readable, with plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ann2snn.report import REPORT_SCHEMA, SchemaError, build_report, layer_samples, validate, validate_report
from ann2snn.report import plots as report_plots
from ann2snn.report.energy import energy_estimate

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"
MODELS = sorted(p.parent.name for p in ZOO.glob("*/manifest.json") if (p.parent / "model.onnx").is_file())
TIMESTEPS = [4, 8, 16]  # as in tests/report/conftest.py
PLOTTED = "lenet_bn_maxpool" if "lenet_bn_maxpool" in MODELS else MODELS[0]  # plots are drawn for one model


@pytest.mark.parametrize("name", MODELS)
def test_report_for_every_zoo_model_validates_and_is_written(name, zoo_eval, tmp_path):
    snn, ev, calib = zoo_eval(name)
    rep = build_report(ev, snn, calibration=calib, diagnosis_t=8, what_if_samples=8, what_if_layers=1,
                       scatter_samples=2)
    doc = rep.doc
    validate_report(doc)
    assert doc["layer_order"] == snn.spiking_layers
    assert [r["T"] for r in doc["accuracy_table"]] == TIMESTEPS
    assert doc["diagnosis"]["timesteps"] == 8
    # every layer has the per-T statistics the table needs
    for lay in doc["layers"].values():
        for key in ("firing_rate", "saturated_fraction", "silent_fraction", "pearson_r", "relative_error",
                    "sops_per_sample", "sops_vs_macs"):
            assert set(lay[key]) == {str(t) for t in TIMESTEPS}
    # the what-if ran on the top layer, both directions
    assert {e["change"] for e in doc["diagnosis"]["what_if"]} == {"raise", "lower"}
    ratio = doc["energy"]["fp32"]["ratio"]["8"]
    assert ratio is not None and ratio > 0
    assert any("E_SNN/E_ANN" in s for s in doc["diagnosis"]["summary"])
    written = rep.write(tmp_path / name, plots=name == PLOTTED)
    back = json.loads((tmp_path / name / "report.json").read_text())
    validate_report(back)
    md = (tmp_path / name / "report.md").read_text()
    for heading in ("## Diagnosis", "## Accuracy vs T", "## Per-layer statistics at T=8", "## Estimated energy",
                    "### What-if"):
        assert heading in md
    if name == PLOTTED and report_plots.available():
        assert back["plots"]["available"] and set(back["plots"]["files"]) == {"accuracy", "layers", "scatter"}
        for rel in back["plots"]["files"].values():
            png = tmp_path / name / rel
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({rel})" in md
        assert set(written) >= {"report.json", "report.md", "accuracy"}


def test_report_kinds_name_maxpool_and_residual_layers(zoo_eval):
    kinds = {}
    for name in ("lenet_bn_maxpool", "resnet_small"):
        if name not in MODELS:
            pytest.skip(f"zoo model {name} is absent")
        snn, ev, calib = zoo_eval(name)
        doc = build_report(ev, snn, what_if_samples=0, scatter_samples=0).doc
        kinds[name] = {lay["kind"] for lay in doc["layers"].values()}
        assert doc["diagnosis"]["what_if"] == [] and "skipped" in doc["diagnosis"]["what_if_note"]
    assert "conv+maxpool" in kinds["lenet_bn_maxpool"]
    assert "residual add" in kinds["resnet_small"]


def test_without_matplotlib_the_report_says_how_to_get_plots(zoo_eval, tmp_path, monkeypatch):
    snn, ev, calib = zoo_eval(MODELS[0])
    rep = build_report(ev, snn, what_if_samples=0, scatter_samples=0)
    monkeypatch.setattr(report_plots, "available", lambda: False)
    rep.write(tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["plots"] == {"available": False, "files": {}, "hint": report_plots.HINT}
    assert "pip install ann2snn[plots]" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "plots").exists()


def test_fixed_point_hook_adds_a_column(zoo_eval):
    snn, ev, calib = zoo_eval(MODELS[0])
    rep = build_report(ev, snn, fixed_point_accuracy={8: 0.5, "16": 0.75}, what_if_samples=0, scatter_samples=0)
    rows = {r["T"]: r["fixed_point"] for r in rep.doc["accuracy_table"]}
    assert rows == {4: None, 8: 0.5, 16: 0.75}
    assert "fixed-point SNN %" in rep.markdown()


def test_probe_gives_per_neuron_ann_and_snn_values(zoo_eval):
    snn, ev, calib = zoo_eval(MODELS[0])
    layer = snn.spiking_layers[0]
    s = layer_samples(snn, layer, calib[:3], 16, max_points=500)
    assert s["ann"].shape == s["snn"].shape == (500,)
    assert s["snn"].min() >= 0 and s["snn"].max() <= 1 + 1e-6   # rates of an unsigned IF
    assert np.all(np.isclose(s["snn"] * 16, np.round(s["snn"] * 16), atol=1e-3))  # whole spike counts
    assert np.corrcoef(np.clip(s["ann"], 0, 1), s["snn"])[0, 1] > 0.9


def test_energy_formula_by_hand():
    layers = {"a": {"sops_per_sample": {"8": 100.0}}, "b": {"sops_per_sample": {"8": 300.0}}}
    e = energy_estimate(layers, [8], first_macs=50, ann_macs=1000)
    assert e["sops_per_sample"]["8"] == 400.0
    assert math.isclose(e["fp32"]["ratio"]["8"], (50 * 4.6 + 400 * 0.9) / (1000 * 4.6))
    assert math.isclose(e["int8"]["ratio"]["8"], (50 * 0.23 + 400 * 0.03) / (1000 * 0.23))


def test_validator_reports_each_kind_of_mismatch(zoo_eval):
    snn, ev, calib = zoo_eval(MODELS[0])
    good = build_report(ev, snn, what_if_samples=0, scatter_samples=0).doc
    assert validate(good, REPORT_SCHEMA) == []
    bad = json.loads(json.dumps(good))
    del bad["t_star"]                                   # missing key
    bad["samples"] = "24"                               # wrong type
    bad["energy"]["extra"] = 1                          # unexpected key in a closed block
    bad["snn_accuracy"]["eight"] = 0.5                  # per-T key that is not a T
    bad["ann_accuracy"] = 1.5                           # out of range
    bad["diagnosis"]["findings"][0]["problem"] = "bad"  # not in the enum
    errors = validate(bad, REPORT_SCHEMA)
    text = "\n".join(errors)
    for needle in ("missing required key 't_star'", "$.samples: expected integer", "$.energy.extra: unexpected key",
                   "eight", "$.ann_accuracy: 1.5 > maximum", "'bad' is not one of"):
        assert needle in text, needle
    with pytest.raises(SchemaError):
        validate_report(bad)
    assert validate(True, {"type": "integer"}) and validate(float("nan"), {"type": "number"})


def test_best_fix_is_written_as_a_scales_file_to_convert_with(zoo_eval, tmp_path, monkeypatch):
    """The report's suggested_scales.json = the network's thresholds with the best fix's layer changed."""
    from ann2snn.calibration import load_scales
    from ann2snn.report import build as report_build

    name = "resnet_small" if "resnet_small" in MODELS else MODELS[0]
    snn, ev, calib = zoo_eval(name)
    # whichever experiment wins on real data, the file must hold the thresholds it was measured with
    monkeypatch.setattr(report_build.dg, "best_fix", lambda exps, *a, **k: exps[-1] if exps else None)
    rep = build_report(ev, snn, calibration=calib, diagnosis_t=8, what_if_samples=8, what_if_layers=1,
                       scatter_samples=0)
    fix = rep.doc["diagnosis"]["best_fix"]
    assert fix is not None
    written = rep.write(tmp_path, plots=False)
    scales = load_scales(written["suggested_scales.json"])
    assert set(scales) == set(snn.scales)
    for layer, values in scales.items():
        if layer == fix["layer"]:
            assert float(np.mean(values)) == pytest.approx(fix["threshold_after"], rel=1e-5)
            assert not np.allclose(values, snn.scales[layer])
        else:
            np.testing.assert_array_equal(values, snn.scales[layer])
    assert any("--scales suggested_scales.json" in s for s in rep.doc["diagnosis"]["summary"])
    # no measured fix: no file
    monkeypatch.setattr(report_build.dg, "best_fix", lambda exps, *a, **k: None)
    rep = build_report(ev, snn, calibration=calib, diagnosis_t=8, what_if_samples=8, what_if_layers=1,
                       scatter_samples=0)
    assert "suggested_scales.json" not in rep.write(tmp_path / "none", plots=False)
