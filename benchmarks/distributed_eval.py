"""Evaluation from an image folder: 1 process (2 threads) vs torchrun with 2 processes (1 thread each), and
peak memory against the number of images.

Writes Fashion-MNIST (Debian's IDX files) as a PNG image folder (one folder per class), then times
``ann2snn evaluate vgg_avgpool --data FOLDER`` both ways (median of --reps runs) and records the peak RSS of
the largest process. A second folder of --n-large images (from the training set) shows whether memory grows
with N. Run alone on the machine (two heavy processes slow each other far more than 2x):

    python benchmarks/distributed_eval.py --n 10000 --n-large 60000 --T 64 --reps 3 --json benchmarks/out/dist.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ann2snn.data import FASHION_MNIST_CLASSES, load_fashion_mnist


def write_folder(root: Path, split: str, n: int) -> Path:
    """The first ``n`` images of a Fashion-MNIST split as ``root/<class>/<index>.png`` (reused if present)."""
    done = root / f".{split}-{n}.done"
    if done.exists():
        return root
    x, y = load_fashion_mnist(split)
    for c in range(len(FASHION_MNIST_CLASSES)):
        (root / f"{c}_{FASHION_MNIST_CLASSES[c].replace('/', '-')}").mkdir(parents=True, exist_ok=True)
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    for i in range(n):
        Image.fromarray(x[i]).save(dirs[int(y[i])] / f"{i:05d}.png")
    done.touch()
    return root


# runs a command and prints the peak RSS (kB) of its largest process: a fresh wrapper per run, because
# RUSAGE_CHILDREN keeps the maximum over every child a process ever waited for
_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def run(cmd: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the largest process) of one command."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return wall, int(res.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000, help="test images timed (default 10000)")
    p.add_argument("--n-large", type=int, default=60000, help="training images for the memory check (default 60000)")
    p.add_argument("--T", type=int, default=64)
    p.add_argument("--rss-T", type=int, default=8, help="T of the memory runs (memory does not depend on T)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--work", help="folder for the image trees (default: a temporary one, removed)")
    p.add_argument("--json")
    a = p.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="ann2snn-dist-"))
    try:
        test = write_folder(work / "test", "test", a.n)
        train = write_folder(work / "train", "train", a.n_large)
        base = ["-m", "ann2snn", "-q", "evaluate", "vgg_avgpool", "--timesteps", str(a.T), "--json"]
        one = [sys.executable, *base, str(work / "one.json"), "--force", "--data", str(test)]
        two = ["torchrun", "--standalone", "--nproc-per-node=2", *base, str(work / "two.json"), "--force",
               "--data", str(test)]
        rows = {"1 process x 2 threads": [], "2 processes x 1 thread (torchrun)": []}
        for _ in range(a.reps):
            rows["1 process x 2 threads"].append(run(one, 2))
            rows["2 processes x 1 thread (torchrun)"].append(run(two, 1))
        same = json.loads((work / "one.json").read_text())["snn_accuracy"] == \
            json.loads((work / "two.json").read_text())["snn_accuracy"]
        out = {"n": a.n, "T": a.T, "reps": a.reps, "load_average_before": os.getloadavg(), "same_accuracy": same}
        print(f"vgg_avgpool, {a.n} images from a PNG folder, T={a.T}, median of {a.reps} (wall includes conversion)")
        for name, vals in rows.items():
            wall = statistics.median(v[0] for v in vals)
            out[name] = {"wall_s": wall, "images_per_s": a.n / wall, "runs": vals}
            print(f"  {name:36s} {wall:7.1f} s  {a.n / wall:7.1f} img/s")
        rss = {}
        for n, folder in ((a.n, test), (a.n_large, train)):
            cmd = [sys.executable, "-m", "ann2snn", "-q", "evaluate", "vgg_avgpool", "--timesteps", str(a.rss_T),
                   "--data", str(folder)]
            rss[n] = run(cmd, 2)[1]
            print(f"  peak RSS, {n:6d} images (T={a.rss_T}): {rss[n]:.0f} MB")
        out["peak_rss_mb"] = rss
        out["load_average_after"] = os.getloadavg()
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(out, indent=1))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
