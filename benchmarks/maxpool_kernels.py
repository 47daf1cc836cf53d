"""Max-pool kernels: torch's ``F.max_pool2d`` vs the separable max of strided views (``ir.reference._window_max``),
on NCHW and channels-last inputs, at the shapes of the zoo's and SqueezeNet's max-pools.

    python benchmarks/maxpool_kernels.py [--threads 2] [--reps 15] [--json benchmarks/out/maxpool_kernels.json]

Prints the median time per call (ms) of each kernel and layout, and checks that both give the same values
(they must: a max has one answer). ``ir.reference._maxpool`` takes ``F.max_pool2d`` only for channels-last
inputs of at least ``_CHANNELS_LAST_POOL_MIN`` channels, where this table shows it to be the faster one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402

from ann2snn.ir.reference import _CHANNELS_LAST_POOL_MIN, _window_max  # noqa: E402

# (label, N, C, H, W, kernel, stride): N = time chunk x batch for the simulator's (4 x 100) and SqueezeNet's (4 x 8)
SHAPES = [
    ("lenet pool1 (6ch 24x24, 2/2)", 400, 6, 24, 24, 2, 2),
    ("lenet pool2 (16ch 8x8, 2/2)", 400, 16, 8, 8, 2, 2),
    ("inception branch (16ch 14x14, 3/1)", 400, 16, 16, 16, 3, 1),
    ("32ch 14x14, 2/2", 400, 32, 14, 14, 2, 2),
    ("64ch 14x14, 2/2", 400, 64, 14, 14, 2, 2),
    ("64ch 28x28, 3/2", 100, 64, 28, 28, 3, 2),
    ("128ch 28x28, 3/2", 100, 128, 28, 28, 3, 2),
    ("squeezenet pool1 (96ch 109x109, 3/2)", 32, 96, 109, 109, 3, 2),
    ("squeezenet pool3 (256ch 54x54, 3/2)", 32, 256, 54, 54, 3, 2),
]


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for label, n, c, h, w, k, s in SHAPES:
        x = torch.rand(n, c, h, w)
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        row = {"shape": label}
        for layout, t in (("nchw", x), ("channels_last", x.contiguous(memory_format=torch.channels_last))):
            torch_kernel = lambda: F.max_pool2d(t, k, s)  # noqa: E731
            strided = lambda: _window_max(t, (k, k), (s, s), (1, 1), (oh, ow))  # noqa: E731
            if not torch.equal(torch_kernel(), strided()):
                sys.exit(f"{label} {layout}: the kernels disagree")
            row[f"torch_{layout}_ms"] = median_ms(torch_kernel, a.reps)
            row[f"strided_{layout}_ms"] = median_ms(strided, a.reps)
        rows.append(row)
        print(f"{label:40s} NCHW: torch {row['torch_nchw_ms']:7.2f}  strided {row['strided_nchw_ms']:7.2f} | "
              f"channels-last: torch {row['torch_channels_last_ms']:7.2f}  strided "
              f"{row['strided_channels_last_ms']:7.2f} ms", flush=True)
    print(f"machine: {machine()}; the reference takes torch's kernel for channels-last inputs of >= "
          f"{_CHANNELS_LAST_POOL_MIN} channels")
    if a.json:
        write_json(a.json, {"machine": machine(), "reps": a.reps, "threads": a.threads, "rows": rows})


if __name__ == "__main__":
    main()
