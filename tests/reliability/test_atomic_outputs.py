"""Atomic outputs: every file is written to a temporary name in its folder and renamed; a failed or interrupted
``convert`` leaves no partial output and never replaces an existing one unless ``--force``; inputs are never
modified (hashed before and after, failing runs included)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import save_model, sha256, tiny_cnn, tiny_data, tree_hashes

import ann2snn
from ann2snn import DataError
from ann2snn.cli.main import main


@pytest.fixture
def setup(tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "in" / "model.onnx")
    x, y = tiny_data(16)
    np.savez(tmp_path / "in" / "calib.npz", x=x, y=y)
    np.savez(tmp_path / "in" / "bad.npz", x=x[:, :, :5], y=y)
    return tmp_path


def _inputs(root):
    return {p.name: sha256(p) for p in sorted((root / "in").iterdir())}


def convert(root, *extra, calib="calib.npz"):
    return main(["-q", "convert", str(root / "in" / "model.onnx"), "--calib", str(root / "in" / calib),
                 "--out", str(root / "out"), "--v-init", "0.5", "--bias-correction", "off", "--timesteps", "4",
                 "--no-report", *extra])


def _listing(root):
    """Every entry under out/, hidden temp folders included."""
    out = root / "out"
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


def test_success_writes_a_complete_output_and_no_temporaries(setup):
    before = _inputs(setup)
    assert convert(setup, "--data", str(setup / "in" / "calib.npz")) == 0
    assert _listing(setup) == ["model", "model/report.json", "model/scales.json", "model/snn",
                               "model/snn/network.json", "model/snn/weights.npz"]
    assert _inputs(setup) == before
    ann2snn.load(setup / "out" / "model" / "snn")  # the saved network is complete


def test_failed_convert_leaves_nothing_and_inputs_unchanged(setup, capsys):
    before = _inputs(setup)
    assert convert(setup, "--no-eval", calib="bad.npz") == DataError.exit_code
    assert [p for p in _listing(setup)] == []
    assert _inputs(setup) == before
    assert "bad.npz" not in capsys.readouterr().out


def test_existing_output_is_never_replaced_without_force(setup, capsys):
    assert convert(setup, "--no-eval") == 0
    first = tree_hashes(setup / "out")
    capsys.readouterr()
    assert convert(setup, "--no-eval", "--norm", "max") == 7
    assert "--force" in capsys.readouterr().err
    assert tree_hashes(setup / "out") == first


def test_force_replaces_and_leaves_no_backup(setup):
    assert convert(setup, "--no-eval") == 0
    first = tree_hashes(setup / "out")
    assert convert(setup, "--no-eval", "--norm", "max", "--force") == 0
    second = tree_hashes(setup / "out")
    assert set(second) == set(first) and second != first
    assert not any(part.startswith(".") for name in _listing(setup) for part in name.split("/"))


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupted_convert_leaves_nothing_exit_130(setup, monkeypatch, capsys):
    """Ctrl-C during the last step (the network is already saved in the temporary folder)."""
    before = _inputs(setup)
    monkeypatch.setattr("ann2snn.cli.convert_cmd.save_scales", _interrupt)
    assert convert(setup, "--no-eval") == 130
    assert "interrupted" in capsys.readouterr().err
    assert _listing(setup) == []
    assert _inputs(setup) == before


def test_interrupted_forced_convert_keeps_the_old_output(setup, monkeypatch):
    assert convert(setup, "--no-eval") == 0
    first = tree_hashes(setup / "out")
    monkeypatch.setattr("ann2snn.cli.convert_cmd.save_scales", _interrupt)
    assert convert(setup, "--no-eval", "--norm", "max", "--force") == 130
    assert tree_hashes(setup / "out") == first


def test_late_failure_keeps_the_old_output(setup, monkeypatch):
    """A failure while evaluating (after the network was saved) with --force: the old output stays whole."""
    assert convert(setup, "--no-eval") == 0
    first = tree_hashes(setup / "out")

    def fail(*a, **k):
        raise DataError("evaluation failed on purpose")

    monkeypatch.setattr("ann2snn.cli.convert_cmd.evaluate", fail)
    assert convert(setup, "--data", str(setup / "in" / "calib.npz"), "--force") == DataError.exit_code
    assert tree_hashes(setup / "out") == first


def _interrupt_before_the_rename(fd):
    raise KeyboardInterrupt  # the temporary file is written, not yet renamed into place


def test_evaluate_json_is_atomic_and_not_overwritten(setup, monkeypatch, capsys):
    (setup / "out").mkdir()
    target = setup / "out" / "r.json"
    args = ["-q", "evaluate", str(setup / "in" / "model.onnx"), "--calib", str(setup / "in" / "calib.npz"),
            "--data", str(setup / "in" / "calib.npz"), "--timesteps", "4", "--v-init", "0.5",
            "--bias-correction", "off", "--json", str(target)]
    before = _inputs(setup)
    monkeypatch.setattr("ann2snn.fileio.os.fsync", _interrupt_before_the_rename)
    assert main(args) == 130
    assert _listing(setup) == []
    monkeypatch.undo()
    assert main(args) == 0 and target.is_file()
    first = sha256(target)
    assert main(args) == 7 and sha256(target) == first
    assert _listing(setup) == ["r.json"]
    assert _inputs(setup) == before


def test_saving_a_network_is_atomic(setup, monkeypatch):
    x, _ = tiny_data(8)
    net = ann2snn.convert(tiny_cnn(), x, ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    target = setup / "nets" / "snn"
    net.save(target)
    first = tree_hashes(target)

    def broken_savez(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        net.save(target, overwrite=True)
    with pytest.raises(OSError):
        net.save(setup / "nets" / "other")
    monkeypatch.undo()
    assert tree_hashes(target) == first
    assert sorted(os.listdir(setup / "nets")) == ["snn"]  # no temp folder, no half-written network
    with pytest.raises(FileExistsError):
        net.save(target)


def test_writing_netx_is_atomic(tmp_path, monkeypatch):
    from ann2snn.backends.loihi import netx
    from test_broken_saved_files import _netx_net

    path = netx.write_netx(_netx_net(), tmp_path / "n.net")
    first = sha256(path)

    def broken(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(netx, "_write_layer", broken)
    with pytest.raises(KeyboardInterrupt):
        netx.write_netx(_netx_net(), path)
    assert sha256(path) == first and sorted(os.listdir(tmp_path)) == ["n.net"]


def _fail_on_rename_into(monkeypatch, target: Path):
    """``os.replace(temporary, target)`` raises KeyboardInterrupt: the moment between moving the old output aside
    and moving the new one in."""
    real = os.replace
    fired = []

    def flaky(src, dst):
        if Path(dst) == target and Path(src).name.startswith(".") and not fired:
            fired.append(src)
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)


def test_output_folder_interrupted_between_renames_keeps_the_old_output(tmp_path, monkeypatch):
    from ann2snn.cli.common import output_dir

    target = tmp_path / "out" / "model"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    first = tree_hashes(tmp_path / "out")
    _fail_on_rename_into(monkeypatch, target)
    with pytest.raises(KeyboardInterrupt):
        with output_dir(target, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert tree_hashes(tmp_path / "out") == first  # the old output is back in place, nothing hidden left


def test_network_save_interrupted_between_renames_keeps_the_old_network(tmp_path, monkeypatch):
    x, _ = tiny_data(8)
    net = ann2snn.convert(tiny_cnn(), x, ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    target = net.save(tmp_path / "snn")
    first = tree_hashes(tmp_path)
    _fail_on_rename_into(monkeypatch, target)
    with pytest.raises(KeyboardInterrupt):
        net.save(target, overwrite=True)
    monkeypatch.undo()
    assert tree_hashes(tmp_path) == first
