"""``ann2snn inspect`` and ``ann2snn ops``: in-process through ann2snn.cli.main.main, plus real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from ann2snn.cli.main import main
from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.frontend.testing import make_model

REPO = Path(__file__).resolve().parents[1]


def model_path(shared_dir, name):
    rel = f"external_models/{name}.onnx"
    return shared_dir(rel) / rel


def test_inspect_external_model(shared_dir, capsys, external_model):
    path = model_path(shared_dir, external_model)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    n_nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    assert f"totals: {n_nodes} ONNX nodes" in out
    assert "convertible: yes" in out and "UNSUPPORTED" not in out
    for ir_op in ("Conv2d", "ReLU"):
        assert ir_op in out


@pytest.mark.parametrize("name", ["mnist_lenet5_bn_pytorch13", "cifar10_resnet20_bn_pytorch16"])
def test_inspect_json(shared_dir, capsys, name):
    path = model_path(shared_dir, name)
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["convertible"] is True and report["problems"] == []
    assert len(report["nodes"]) == len(onnx.load(str(path)).graph.node)
    assert report["totals"]["params"] == sum(r["params"] for r in report["nodes"]) > 0
    kinds = {r["ir"] for r in report["nodes"]}
    assert "constant" in kinds or "ScaleShift" in kinds


@pytest.fixture
def unsupported_model(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="gate_sigmoid"),
             helper.make_node("LeakyRelu", ["s"], ["l"], name="leaky", alpha=0.2),
             helper.make_node("Mystery", ["l"], ["y"], name="vendor_op", domain="com.vendor")]
    m = make_model(nodes, [("x", (1, 1, 6, 6))], ["y"], {"w": np.ones((2, 1, 3, 3), np.float32)})
    m.opset_import.append(helper.make_opsetid("com.vendor", 1))
    path = tmp_path / "bad.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def test_inspect_unsupported_lists_all_and_exits_nonzero(unsupported_model, capsys):
    rc = main(["inspect", str(unsupported_model)])
    out, err = capsys.readouterr()
    assert rc == UnsupportedModelError.exit_code != 0
    assert "Traceback" not in out + err
    for name, why in [("gate_sigmoid", "Sigmoid has no rate-coded IF equivalent"), ("leaky", "negative"),
                      ("vendor_op", "domain 'com.vendor'")]:
        assert name in out  # the table
        assert any(name in line and why in line for line in err.splitlines()), (name, err)
    assert "3 unsupported node(s)" in err and "convertible: NO" in out


def test_inspect_unsupported_json_still_prints_report(unsupported_model, capsys):
    rc = main(["inspect", "--json", str(unsupported_model)])
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert rc == UnsupportedModelError.exit_code
    assert report["convertible"] is False and len(report["problems"]) == 3


def test_inspect_garbage_file(tmp_path, capsys):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x08\x07" + os.urandom(300))
    rc = main(["inspect", str(path)])
    _, err = capsys.readouterr()
    assert rc == InvalidModelError.exit_code and "garbage.onnx" in err and "Traceback" not in err


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "ann2snn", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_subprocess_inspect(shared_dir, unsupported_model):
    ok = _run("inspect", str(model_path(shared_dir, "cifar10_resnet20_bn_pytorch16")))
    assert ok.returncode == 0, ok.stderr
    assert "BatchNormalization" in ok.stdout and "convertible: yes" in ok.stdout
    bad = _run("-q", "inspect", str(unsupported_model))
    assert bad.returncode == UnsupportedModelError.exit_code
    assert "Traceback" not in bad.stderr and "gate_sigmoid" in bad.stderr and "vendor_op" in bad.stderr


def test_ops_table(capsys):
    assert main(["ops"]) == 0
    text = capsys.readouterr().out
    assert "Conv" in text and "Sigmoid has no rate-coded IF equivalent" in text
    assert main(["ops", "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| ONNX op | since opset | IR op | notes |" in md
    assert any(line.startswith("| Conv | 7 | Conv2d |") for line in md.splitlines())
    assert any(line.startswith("| Sigmoid |") for line in md.splitlines())


def test_update_readme_fills_the_markers(tmp_path):
    from ann2snn.cli.ops_cmd import render_markdown, update_readme

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- ops-table:start -->\nstale\n<!-- ops-table:end -->\nrest\n")
    assert update_readme(readme) is True and update_readme(readme) is False
    text = readme.read_text()
    assert render_markdown() in text and "stale" not in text and text.endswith("rest\n")
