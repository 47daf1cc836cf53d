"""``ann2snn.tune`` / ``ann2snn tune``: budgeted, seeded search on held-out calibration data only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ann2snn
import ann2snn.cli.common  # noqa: F401  imported before any patch: it binds the real load_zoo_sample
import ann2snn.data
import ann2snn
from ann2snn.data import ZooSample, load_zoo_sample
from ann2snn.errors import DataError
from ann2snn.convert.tuning import NORMS, TuneResult, tune

ZOO = Path(__file__).resolve().parents[1] / "model_zoo"
NAME = "lenet_bn_maxpool"
MODEL = str(ZOO / NAME / "model.onnx")

pytestmark = pytest.mark.skipif(not Path(MODEL).is_file(), reason=f"zoo model {NAME} is absent")


@pytest.fixture(scope="module")
def calib():
    return load_zoo_sample(NAME).calib_x[:60]


class Poison:
    """Evaluation data that fails the test on any use (tuning must never read it)."""

    def __getattr__(self, name):
        raise AssertionError(f"tuning touched the evaluation data (.{name})")

    def __len__(self):
        raise AssertionError("tuning touched the evaluation data (len)")

    def __getitem__(self, item):
        raise AssertionError("tuning touched the evaluation data ([])")

    def __array__(self, *a, **k):
        raise AssertionError("tuning touched the evaluation data (np.asarray)")

    def __iter__(self):
        raise AssertionError("tuning touched the evaluation data (iter)")


def test_tune_is_budgeted_and_its_config_converts_and_round_trips(calib, tmp_path):
    r = tune(MODEL, calib, 8, budget=3, holdout_samples=12)
    assert isinstance(r, TuneResult) and len(r.table) == 3 and r.stopped_by == "candidate budget"
    assert r.holdout_samples == 12 and r.fit_samples == 48
    assert len(set(r.holdout_indices)) == 12 and all(0 <= i < len(calib) for i in r.holdout_indices)
    c = r.config
    assert r.kept_defaults  # three stage-1 candidates only: nothing outside the defaults was tried
    assert c == ann2snn.ConversionConfig(calibration_timesteps=8)  # the defaults, v_init/bias 'auto' included
    assert c.norm in NORMS and (c.norm, c.granularity, c.maxpool) == (r.best["norm"], r.best["granularity"],
                                                                    r.best["maxpool"])
    for row in r.table:
        assert 0 <= row["agreement"] <= 1 and row["relative_error"] >= 0
    assert r.best["agreement"] >= max(row["agreement"] for row in r.table) - 1 / 12 - 1e-9
    paths = r.save(tmp_path)
    assert ann2snn.ConversionConfig.from_dict(json.loads(paths["config"].read_text())) == c
    doc = json.loads(paths["tune"].read_text())
    assert doc["format"] == "ann2snn-tune" and len(doc["table"]) == 3
    assert "chosen" in paths["markdown"].read_text()
    assert "kept" in paths["markdown"].read_text()
    snn = ann2snn.convert(MODEL, calib, config=c)  # kept defaults: exactly the default conversion
    default = ann2snn.convert(MODEL, calib, config=ann2snn.ConversionConfig(calibration_timesteps=8))
    assert snn.record.v_init == default.record.v_init and snn.config == default.config


def test_tune_is_reproducible(calib):
    a = tune(MODEL, calib, 8, budget=2, holdout_samples=12)
    b = tune(MODEL, calib, 8, budget=2, holdout_samples=12)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.table]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b.table]
    assert a.config == b.config and a.holdout_indices == b.holdout_indices


def test_grid_order_time_limit_and_callable_module(calib):
    r = tune(MODEL, calib, 4, budget=2, strategy="grid", holdout_samples=8)
    assert [(row["stage"], row["norm"], row["granularity"], row["v_init"], row["bias_correction"], row["maxpool"])
            for row in r.table] == [("grid", "max", "channel", 0.5, False, "pre_neuron"),
                                    ("grid", "max", "channel", 0.5, False, "cumulative")]
    with pytest.raises(DataError, match="no candidate"):
        tune(MODEL, calib, 4, time_limit=0.0, holdout_samples=8)
    assert ann2snn.tune is tune  # the package exports the function (no module of the same name)


def test_cli_tune_never_reads_evaluation_data(calib, tmp_path, monkeypatch, capsys):
    from ann2snn.cli.main import main

    real = load_zoo_sample(NAME)

    def poisoned(name_or_dir, *a, **k):
        assert Path(name_or_dir).name == NAME
        return ZooSample(real.calib_x[:60], Poison(), Poison(), Poison(), real.preprocessing)

    monkeypatch.setattr("ann2snn.cli.common.load_zoo_sample", poisoned)
    out = tmp_path / "tuned"
    code = main(["-q", "tune", NAME, "--target-timesteps", "8", "--budget", "1", "--holdout-samples", "12",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "--config" in printed and "held-out calibration" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert ann2snn.ConversionConfig.from_dict(cfg).calibration_timesteps == 8
    from ann2snn.cli.common import config_from_args
    from ann2snn.cli.main import build_parser

    for cmd in ("convert", "evaluate"):  # what --config makes of it is exactly the tuned config
        args = build_parser().parse_args([cmd, NAME, "--config", str(out / "config.json")])
        assert config_from_args(args) == ann2snn.ConversionConfig.from_dict(cfg)
    table = json.loads((out / "tune.json").read_text())["table"]
    api = tune(MODEL, calib, 8, budget=1, holdout_samples=12)  # same calibration images, same seed
    assert table[0]["agreement"] == api.table[0]["agreement"]
    assert np.isclose(table[0]["relative_error"], api.table[0]["relative_error"])
    assert main(["-q", "tune", NAME, "--budget", "1", "--out", str(out)]) == 7  # exists: --force needed


def test_config_auto_tunes_then_converts_and_saves(calib, tmp_path):
    cfg = ann2snn.ConversionConfig(auto=True, calibration_timesteps=4, holdout_fraction=0.3)
    snn = ann2snn.convert(MODEL, calib[:40], config=cfg)
    tuning = snn.record.tuning
    assert tuning["target_timesteps"] == 4 and len(tuning["table"]) >= 2
    chosen = ann2snn.ConversionConfig.from_dict(tuning["config"])
    assert chosen.auto is False and snn.config.norm == chosen.norm and snn.config.maxpool == chosen.maxpool
    assert snn.config.auto is False  # the saved network does not search again when reused
    back = ann2snn.load(snn.save(tmp_path / "snn"))
    assert back.record.tuning["config"] == tuning["config"]
    x = calib[:8]
    np.testing.assert_array_equal(back.simulate(x, [4]).outputs[4], snn.simulate(x, [4]).outputs[4])
    with pytest.raises(DataError, match="scales"):
        ann2snn.convert(MODEL, calib[:40], config=cfg, scales={"a": np.ones(1)})


def test_a_non_default_choice_must_win_by_a_margin(calib):
    from ann2snn.convert.tuning import DEFAULT_MARGIN_IMAGES

    r = tune(MODEL, calib, 4, budget=8, holdout_samples=12)
    assert r.baseline is not None and len(r.table) == 8
    if not r.kept_defaults:
        assert r.best["agreement"] >= r.baseline["agreement"] + DEFAULT_MARGIN_IMAGES / 12 - 1e-9
        assert r.config.norm == r.best["norm"] and r.config.v_init == r.best["v_init"]
    else:  # kept the defaults: the unconstrained pick did not beat them by the margin
        assert r.config == ann2snn.ConversionConfig(calibration_timesteps=4)
        from ann2snn.convert.tuning import _pick

        assert _pick(r.table, 12)["agreement"] < r.baseline["agreement"] + DEFAULT_MARGIN_IMAGES / 12
