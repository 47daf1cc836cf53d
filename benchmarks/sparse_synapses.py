"""Is a sparse (event-driven) synaptic op faster than the dense one at the firing rates our networks have?

    python benchmarks/sparse_synapses.py [--threads 2] [--reps 7] [--json FILE]

For the synaptic shapes of the zoo VGG at time chunk x batch = 4 x 100 (the simulator's default), random
spike tensors at firing rates from 0.5 % to 40 % go through: the dense float32, bfloat16 and int8 kernels
the simulator uses, and torch's sparse kernels on the same spikes, counting the conversion of the dense
spike tensor to the sparse format (the IF produces dense tensors):
- dense layers: CSR spikes x dense weights (``torch.sparse.mm``);
- convolutions (torch has no sparse convolution): the spikes' im2col columns as CSR x the weight matrix,
  which is what an event-driven kernel written with torch ops amounts to.
Median of ``--reps`` timings (each the mean of 5 calls), milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402

from ann2snn.ir import nodes as ir  # noqa: E402
from ann2snn.sim.int8 import Grid, Int8Conv, Int8Dense, int8_available  # noqa: E402

RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
SHAPES = {  # name -> (kind, input shape per sample, output channels/features)
    "dense 1568->128": ("dense", (1568,), 128),
    "conv 16->16 @28x28": ("conv", (16, 28, 28), 16),
    "conv 32->32 @14x14": ("conv", (32, 14, 14), 32),
}


def timed(f, reps: int) -> float:
    f()
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(5):
            f()
        runs.append((time.perf_counter() - t0) / 5 * 1e3)
    return statistics.median(runs)


def kernels(kind, shape, out):
    rng = np.random.default_rng(0)
    if kind == "dense":
        w = torch.from_numpy(rng.normal(0, 0.05, (out, shape[0])).astype(np.float32))
        node = ir.Dense("d", ("x",), weight=w.numpy())
        wt = w.t().contiguous()
        forms = {
            "float32": lambda x: F.linear(x, w),
            "bfloat16": lambda x: F.linear(x.bfloat16(), w.bfloat16()),
            "sparse CSR": lambda x: torch.sparse.mm(x.to_sparse_csr(), wt),
        }
        if int8_available("cpu"):
            forms["int8"] = Int8Dense(node, Grid(1.0, 0, 1))
        return forms
    c = shape[0]
    w = torch.from_numpy(rng.normal(0, 0.1, (out, c, 3, 3)).astype(np.float32))
    node = ir.Conv2d("c", ("x",), weight=w.numpy(), padding=(1, 1, 1, 1))
    wcl = w.contiguous(memory_format=torch.channels_last)
    w_cols = w.reshape(out, -1).t().contiguous()  # (C*9, out)

    def sparse_conv(x):
        cols = F.unfold(x, 3, padding=1)  # (N, C*9, H*W)
        rows_ = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        return torch.sparse.mm(rows_.to_sparse_csr(), w_cols)

    forms = {
        "float32": lambda x: F.conv2d(x, wcl, None, 1, 1),
        "bfloat16": lambda x: F.conv2d(x.bfloat16(), wcl.bfloat16(), None, 1, 1),
        "sparse CSR im2col": sparse_conv,
    }
    if int8_available("cpu"):
        forms["int8"] = Int8Conv(node, Grid(1.0, 0, 1))
    return forms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rows", type=int, default=400, help="time chunk x batch (default 4 x 100)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = {"machine": machine(), "rows": a.rows, "results": {}}
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for name, (kind, shape, n_out) in SHAPES.items():
            forms = kernels(kind, shape, n_out)
            table = out["results"][name] = {}
            print(f"\n{name}, {a.rows} rows: ms per call (median of {a.reps})")
            print("| firing rate | " + " | ".join(forms) + " |")
            print("|---|" + "---|" * len(forms))
            for rate in RATES:
                x = (torch.rand((a.rows,) + shape, generator=gen) < rate).float()
                if kind == "conv":
                    x = x.contiguous(memory_format=torch.channels_last)
                table[rate] = {f: timed(lambda f=f: forms[f](x), a.reps) for f in forms}
                print(f"| {100 * rate:g} % | " + " | ".join(f"{table[rate][f]:.2f}" for f in forms) + " |", flush=True)
    write_json(a.json, out)


if __name__ == "__main__":
    main()
