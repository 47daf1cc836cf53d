"""The CLI's conversion flags are generated from ConversionConfig's fields: they cannot drift apart."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from ann2snn.cli import common
from ann2snn.cli.main import build_parser
from ann2snn.config import ConversionConfig


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", ["convert", "evaluate"])
def test_every_config_field_has_a_flag_that_reaches_the_config(command, tmp_path):
    fields = [f.name for f in dataclasses.fields(ConversionConfig)]
    flags = {a.dest for a in _subparser(command)._actions}
    assert set(fields) <= flags
    # a value different from every default, for each field, given on the command line (signed neurons
    # reset by subtraction: --signed and --reset zero go in two command lines)
    argv = ["--norm", "mmse", "--granularity", "layer", "--v-init", "0.25", "--bias-correction", "on",
            "--calibration-timesteps", "16", "--holdout-fraction", "0.5", "--maxpool", "spike",
            "--threshold-scale", "1.5", "--input-encoding", "poisson", "--seed", "3", "--calibration-batch-size", "7",
            "--bias-correction-samples", "9", "--bias-correction-memory-mb", "11", "--auto"]
    default = ConversionConfig()
    changed = set()
    for extra in (["--signed"], ["--reset", "zero"]):
        cfg = common.config_from_args(_subparser(command).parse_args(["m.onnx", *argv, *extra]))
        changed |= {f for f in fields if getattr(cfg, f) != getattr(default, f)}
    assert changed == set(fields), set(fields) - changed
    # every field is given once: --auto and --signed take no value, --reset's value is in the second line
    assert len(argv) - sum(a.startswith("--") for a in argv) == len(fields) - 3
    # no flag given: the --config file's values are kept
    path = tmp_path / "c.json"
    path.write_text('{"seed": 5, "granularity": "layer"}')
    cfg = common.config_from_args(_subparser(command).parse_args(["m.onnx", "--config", str(path), "--seed", "6"]))
    assert (cfg.seed, cfg.granularity, cfg.norm) == (6, "layer", default.norm)


def test_tune_offers_every_field_it_does_not_search():
    from ann2snn.convert.tuning import SEARCHED_FIELDS

    flags = {a.dest for a in _subparser("tune")._actions}
    fixed = {f.name for f in dataclasses.fields(ConversionConfig)} - set(SEARCHED_FIELDS) - {"auto", "calibration_timesteps"}
    assert fixed <= flags and not (set(SEARCHED_FIELDS) & flags)


def test_a_config_field_without_a_flag_stops_the_parser(monkeypatch):
    table = common._config_flags()
    del table["seed"]
    monkeypatch.setattr(common, "_config_flags", lambda: table)
    with pytest.raises(RuntimeError, match="seed"):
        build_parser()


def test_flag_values_are_checked_by_argparse(capsys):
    p = _subparser("convert")
    for bad in (["--seed", "one"], ["--bias-correction", "yes"], ["--granularity", "tensor"]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(["m.onnx", *bad])
        assert e.value.code == 2
    assert "--seed" in capsys.readouterr().err
