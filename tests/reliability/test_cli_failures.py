"""The CLI on broken inputs: one ``ann2snn: error: ...`` line (UnsupportedModelError adds one line per node),
the documented exit code of the error class, no traceback; ``--debug`` shows it. Run in process through
``ann2snn.cli.main.main`` and, twice, as a real ``python -m ann2snn`` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from rel_helpers import REPO, bounded, save_model, tiny_cnn, tiny_data
from test_broken_models import CASES, write_case

from ann2snn import DataError, InvalidModelError, UnsupportedModelError
from ann2snn.errors import BackendConstraintError
from ann2snn.cli.main import main

EXIT = {"InvalidModelError": 3, "UnsupportedModelError": 4, "DataError": 5, "BackendConstraintError": 6}


@pytest.fixture
def files(tmp_path):
    """A good tiny model, good calibration/evaluation data, and an output folder."""
    model = save_model(tiny_cnn(), tmp_path / "model.onnx")
    x, y = tiny_data(16)
    np.savez(tmp_path / "calib.npz", x=x, y=y)
    return {"model": str(model), "calib": str(tmp_path / "calib.npz"), "out": str(tmp_path / "out"),
            "dir": tmp_path}


def left_in(out: str) -> list[str]:
    """What a run left in the output folder (hidden temp folders included); the folder itself may exist."""
    return sorted(os.listdir(out)) if os.path.isdir(out) else []


def run_cli(capsys, *argv, timeout=120):
    code = bounded(main, ["-q", *argv], timeout=timeout)
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_failure(code, err, expected_code, *fragments):
    assert code == expected_code, f"exit code {code}, expected {expected_code}; stderr:\n{err}"
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("ann2snn: error: "), err
    assert "Traceback" not in err, err
    for frag in fragments:
        assert frag in err, f"stderr lacks {frag!r}:\n{err}"
    return lines


@pytest.mark.parametrize("case_id", list(CASES))
def test_convert_broken_model(capsys, files, case_id, tmp_path):
    _, cls, _ = CASES[case_id]
    path = write_case(case_id, tmp_path)
    code, _, err = run_cli(capsys, "convert", str(path), "--calib", files["calib"], "--no-eval", "--out", files["out"])
    lines = assert_clean_failure(code, err, cls.exit_code, path.name)
    if cls is InvalidModelError:
        assert len(lines) == 1, err  # one line
    assert left_in(files["out"]) == [], "a failed convert must leave no output"


@pytest.mark.parametrize("case_id", ["truncated_90pct", "cycle", "unknown_op", "opset_99"])
def test_inspect_broken_model(capsys, case_id, tmp_path):
    _, cls, _ = CASES[case_id]
    path = write_case(case_id, tmp_path)
    code, _, err = run_cli(capsys, "inspect", str(path))
    assert_clean_failure(code, err, cls.exit_code, path.name)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


X, Y = tiny_data(16)
DATA_CASES = {
    "calib_wrong_shape": (lambda d: ["--calib", _npz(d / "c.npz", x=X[:, :, :5], y=Y)], "expected shape"),
    "calib_nan": (lambda d: ["--calib", _npz(d / "c.npz", x=np.full_like(X, np.nan), y=Y)], "NaN"),
    "calib_empty": (lambda d: ["--calib", _npz(d / "c.npz", x=X[:0], y=Y[:0])], "empty"),
    "calib_strings": (lambda d: ["--calib", _npz(d / "c.npz", x=np.full((4, 6, 6), "a"), y=Y[:4])], "dtype"),
    "calib_pickled_objects": (lambda d: ["--calib", _npz(d / "c.npz", x=np.array([None] * 3, dtype=object),
                                                          y=Y[:3])], "pickle"),
    "calib_two_channels": (lambda d: ["--calib", _npz(d / "c.npz", x=np.repeat(X, 2, 1), y=Y)], "expected shape"),
    "calib_garbage": (lambda d: ["--calib", str((d / "c.npz").write_bytes(b"PK\x03\x04" + bytes(64)) and d / "c.npz")],
                      "c.npz"),
    "calib_missing": (lambda d: ["--calib", str(d / "missing.npz")], "missing.npz"),
    "data_float_labels": (lambda d: ["--data", _npz(d / "e.npz", x=X, y=Y.astype(float))], "labels"),
    "data_without_labels": (lambda d: ["--data", _npz(d / "e.npz", x=X)], "labels"),
    "config_is_a_list": (lambda d: ["--config", str((d / "c.json").write_text("[1, 2]") and d / "c.json")],
                         "must be an object"),
    "config_unknown_field": (lambda d: ["--config", str((d / "c.json").write_text('{"nope": 1}') and d / "c.json")],
                             "nope"),
    "config_wrong_type": (lambda d: ["--config", str((d / "c.json").write_text('{"calibration_batch_size": 0}')
                                                     and d / "c.json")], "calibration_batch_size"),
    "config_not_json": (lambda d: ["--config", str((d / "c.json").write_text("{oops") and d / "c.json")], "c.json"),
    "config_missing": (lambda d: ["--config", str(d / "none.json")], "none.json"),
    "norm_bogus": (lambda d: ["--norm", "bogus"], "norm"),
    "v_init_out_of_range": (lambda d: ["--v-init", "7"], "v_init"),
    "v_init_not_a_number": (lambda d: ["--v-init", "abc"], "--v-init"),
    "calibration_timesteps_0": (lambda d: ["--calibration-timesteps", "0"], "calibration_timesteps"),
    "seed_negative": (lambda d: ["--seed", "-1"], "seed"),
    "mean_not_a_number": (lambda d: ["--mean", "abc"], "abc"),
    "std_zero": (lambda d: ["--std", "0"], "std"),
    "mean_three_channels": (lambda d: ["--mean", "1,2,3"], "mean"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_convert_bad_data_or_options(capsys, files, case):
    extra, fragment = DATA_CASES[case]
    args = extra(files["dir"])
    argv = ["convert", files["model"], "--out", files["out"], "--timesteps", "4", "--no-report"]
    if "--calib" not in args:
        argv += ["--calib", files["calib"]]
    if "--data" not in args:
        argv += ["--no-eval"]
    code, _, err = run_cli(capsys, *argv, *args)
    assert_clean_failure(code, err, DataError.exit_code, fragment)
    assert left_in(files["out"]) == []


@pytest.mark.parametrize("device", ["nodevice", "cuda:999"])
def test_unavailable_device(capsys, files, device):
    code, _, err = run_cli(capsys, "evaluate", files["model"], "--calib", files["calib"], "--data", files["calib"],
                           "--timesteps", "4", "--device", device, "--v-init", "0.5", "--bias-correction", "off")
    assert_clean_failure(code, err, DataError.exit_code, device)


def test_evaluate_bad_batch_size_and_empty_data(capsys, files):
    code, _, err = run_cli(capsys, "evaluate", files["model"], "--calib", files["calib"], "--data", files["calib"],
                           "--timesteps", "4", "--batch-size", "0", "--v-init", "0.5", "--bias-correction", "off")
    assert_clean_failure(code, err, DataError.exit_code, "batch_size")
    empty = _npz(files["dir"] / "empty.npz", x=X[:0], y=Y[:0])
    code, _, err = run_cli(capsys, "evaluate", files["model"], "--calib", files["calib"], "--data", empty,
                           "--timesteps", "4")
    assert_clean_failure(code, err, DataError.exit_code, "empty.npz")


def test_json_into_a_missing_folder_is_one_line(capsys, files):
    target = files["dir"] / "no" / "such" / "folder" / "r.json"
    code, _, err = run_cli(capsys, "evaluate", files["model"], "--calib", files["calib"], "--data", files["calib"],
                           "--timesteps", "4", "--v-init", "0.5", "--bias-correction", "off", "--json", str(target))
    lines = assert_clean_failure(code, err, 1, "r.json")
    assert len(lines) == 1


def test_missing_model(capsys, files):
    code, _, err = run_cli(capsys, "convert", str(files["dir"] / "absent.onnx"), "--calib", files["calib"],
                           "--no-eval", "--out", files["out"])
    assert_clean_failure(code, err, InvalidModelError.exit_code, "absent.onnx")


def test_unsupported_model_lists_every_node(capsys, files, tmp_path):
    m = tiny_cnn()
    m.graph.node[1].op_type = "Sigmoid"
    m.graph.node[0].domain = "com.evil"
    path = save_model(m, tmp_path / "two_problems.onnx")
    code, _, err = run_cli(capsys, "convert", str(path), "--calib", files["calib"], "--no-eval", "--out", files["out"])
    lines = assert_clean_failure(code, err, UnsupportedModelError.exit_code, "2 unsupported node(s)", "Sigmoid",
                                 "com.evil")
    assert len(lines) == 3


def test_usage_error_exits_2(files):
    with pytest.raises(SystemExit) as e:
        main(["convert", files["model"], "--granularity", "bogus"])
    assert e.value.code == 2


def test_debug_shows_the_exception(files, tmp_path):
    path = write_case("cycle", tmp_path)
    with pytest.raises(InvalidModelError, match="cycle"):
        main(["--debug", "convert", str(path), "--calib", files["calib"], "--no-eval", "--out", files["out"]])
    with pytest.raises(DataError):
        main(["convert", files["model"], "--debug", "--calib", str(tmp_path / "none.npz"), "--no-eval",
              "--out", files["out"]])


def _subprocess(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "ann2snn", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_real_process_one_line_and_exit_code(files, tmp_path):
    """``python -m ann2snn`` on a truncated model: one line, exit code 3, nothing written."""
    path = write_case("truncated_90pct", tmp_path)
    r = _subprocess("-q", "convert", str(path), "--calib", files["calib"], "--no-eval", "--out", "out", cwd=tmp_path)
    assert r.returncode == InvalidModelError.exit_code, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("ann2snn: error: "), r.stderr
    assert "truncated_90pct.onnx" in r.stderr and "Traceback" not in r.stderr
    assert left_in(str(tmp_path / "out")) == []


def test_real_process_debug_shows_the_traceback(files, tmp_path):
    path = write_case("cycle", tmp_path)
    r = _subprocess("--debug", "inspect", str(path), cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "InvalidModelError" in r.stderr and "cycle" in r.stderr


def test_exit_codes_match_the_documented_table():
    from ann2snn.cli.main import EXIT_HELP
    from ann2snn.errors import EXIT_CODES

    for name, code in EXIT_CODES.items():
        if name != "Ann2SnnError":
            assert f"{code}  " in EXIT_HELP and name in EXIT_HELP, name
        assert EXIT.get(name, code) == code
    assert "130 interrupted" in EXIT_HELP and "7  output exists" in EXIT_HELP
    json.dumps(EXIT_CODES)


@pytest.mark.parametrize("limit", ["0", "-5", "ten"])
def test_limit_must_be_a_positive_integer(capsys, files, limit):
    with pytest.raises(SystemExit) as info:  # argparse's usage error: exit code 2, one message, no traceback
        main(["-q", "convert", files["model"], "--out", files["out"], "--calib", files["calib"], "--limit", limit,
              "--no-report"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--limit" in err and "positive integer" in err and "Traceback" not in err
    assert left_in(files["out"]) == []


@pytest.mark.parametrize("target", ["nir", "loihi"])
def test_an_unsupported_target_is_refused_before_calibration(capsys, tmp_path, target):
    """The calibration file does not exist: the target's check must fail first, naming every max-pool."""
    code, _, err = run_cli(capsys, "convert", "lenet_bn_maxpool", "--target", target, "--calib",
                           str(tmp_path / "never_read.npz"), "--out", str(tmp_path / "out"))
    lines = assert_clean_failure(code, err, BackendConstraintError.exit_code, "MaxPool")
    assert sum("MaxPool" in line for line in lines) == 2 and "never_read" not in err
    assert left_in(str(tmp_path / "out")) == []
