"""Sharded evaluation under torchrun, resumable checkpoints, and a rank that dies.

Each test runs the CLI as a user would (``python -m ann2snn`` / ``torchrun -m ann2snn``) in subprocesses on
the zoo ResNet with a small calibration file, so that the conversion (bias correction and the auto choice
included) and the evaluation both run sharded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ann2snn.data import load_zoo_sample

TORCHRUN = shutil.which("torchrun")
MODEL = "resnet_small"
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, x=load_zoo_sample(MODEL, raw=True).calib_x[:160])  # unlabeled, raw uint8
    return path


def _args(calib: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "ann2snn", "-q", "evaluate", MODEL, "--calib", str(calib), "--limit", "240", "--timesteps",
            "8,24", "--batch-size", "20", "--json", str(out), "--force", *extra]


def _python(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=600, **kw)


def _torchrun(args: list[str]) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc-per-node=2", *args]


def _same_report(a: Path, b: Path) -> None:
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("seconds", "run"):  # how long and how it ran: the only parts allowed to differ
        da.pop(key), db.pop(key)
    assert da == db


@pytest.fixture(scope="module")
def reference(calib, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "one_process.json"
    res = _python(_args(calib, out))
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not on PATH")
def test_two_ranks_give_the_one_process_report(calib, reference, tmp_path):
    out = tmp_path / "two_ranks.json"
    res = subprocess.run(_torchrun(_args(calib, out)[1:]), capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["run"]["ranks"] == 2 and len(doc["predictions"]["24"]) == 240 and doc["thresholds"]
    _same_report(reference, out)
    assert res.stdout.count("SNN acc") == 1  # rank 0 alone prints


def _wait_for_batches(folder: Path, n: int, proc: subprocess.Popen, limit_s: float = 300) -> None:
    end = time.monotonic() + limit_s
    while len(list(folder.glob("batches-*.npz"))) < n:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < end, "no checkpoint written in time"
        time.sleep(0.2)


def test_killed_run_resumes_to_the_same_report(calib, reference, tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "resumed.json"
    args = _args(calib, out, "--checkpoint", str(ckpt), "--checkpoint-every", "1")
    proc = subprocess.Popen([sys.executable, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_batches(ckpt, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = len(list(ckpt.glob("batches-*.npz")))
    res = _python(args)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["run"]["resumed_batches"] >= done >= 3
    _same_report(reference, out)
    # another run's arguments are refused, never mixed in
    other = _python(_args(calib, tmp_path / "other.json", "--checkpoint", str(ckpt), "--timesteps", "8,32"))
    assert other.returncode == 5 and "belongs to another run" in other.stderr and "timesteps" in other.stderr
    assert "Traceback" not in other.stderr


def _pid_of_rank(rank: int, parent_cmd: str = "ann2snn") -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and parent_cmd.encode() in cmd and b"torchrun" not in cmd:
            return int(entry.name)
    return None


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not on PATH")
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the rank's process")
def test_a_dead_rank_stops_the_other_with_an_error(calib, tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    proc = subprocess.Popen(_torchrun(_args(calib, out, "--checkpoint", str(ckpt), "--checkpoint-every", "1")[1:]),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_batches(ckpt, 2, proc)
    victim = _pid_of_rank(1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and time.monotonic() - killed < 60
    assert "ann2snn: error: [rank 0]" in err and "keeps the batches done" in err
    assert not out.exists() and list(ckpt.glob("batches-*.npz"))
