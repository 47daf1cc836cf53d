"""The fused IF kernels (``ann2snn/sim/if_kernels.c``) against the eager update (``neurons.run_if_chunk``), and
the kernels' block size, on layer shapes of the zoo models and of SqueezeNet.

    python benchmarks/if_kernels.py [--blocks 256 1024 4096 16384] [--reps 15] [--threads 2] \
        [--json benchmarks/out/if_kernels.json]

One chunk of 4 steps of a plain IF layer (float32 current and spikes, spikes written into a preallocated
buffer, so allocation is not timed), median ms per call. Each block size is a build of the same source with
``-DBLOCK=...`` (the shipped default is 1024); every build's spikes and states are checked equal to the eager
path's.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402

from ann2snn.sim import native  # noqa: E402
from ann2snn.sim.neurons import run_if_chunk  # noqa: E402

STEPS = 4
# (label, N = batch, C, H, W or None for a dense layer): the simulator's chunk is STEPS x batch
SHAPES = [
    ("vgg conv1 (100 x 16ch 28x28)", 100, 16, 28, 28),
    ("vgg conv3 (100 x 32ch 14x14)", 100, 32, 14, 14),
    ("dense 100 x 128", 100, 128, None, None),
    ("squeezenet fire (8 x 128ch 54x54)", 8, 128, 54, 54),
]


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def build(block: int, folder: Path) -> ctypes.CDLL:
    cc = native.shutil.which("gcc") or native.shutil.which("cc")
    target = folder / f"if_kernels-block{block}.so"
    flags = native._FLAGS + ["-march=native", f"-DBLOCK={block}"]
    if not native._compile(cc, flags, native._loaded_openmp(), target):
        sys.exit(f"could not build the kernels with BLOCK={block}")
    lib = ctypes.CDLL(str(target))
    native._declare(lib)
    return lib


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        libs = {b: build(b, Path(tmp)) for b in a.blocks}
        for label, n, c, h, w in SHAPES:
            shape = (n, c) if h is None else (n, c, h, w)
            fmt = torch.contiguous_format if h is None else torch.channels_last
            cur = torch.stack([(torch.rand(shape) * 0.6).contiguous(memory_format=fmt) for _ in range(STEPS)])
            v0 = torch.rand(shape).contiguous(memory_format=fmt)
            out = torch.empty_like(cur)
            ref_v, _ = run_if_chunk(v0, cur, STEPS, out)
            ref_out = out.clone()
            row = {"shape": label, "eager_ms": median_ms(lambda: run_if_chunk(v0, cur, STEPS, out), a.reps)}
            for b, lib in libs.items():
                v = v0.clone()
                lib.ann2snn_if_subtract_f32_f32(cur.data_ptr(), v.numel(), v.data_ptr(), out.data_ptr(), v.numel(),
                                                STEPS)
                if not (torch.equal(v, ref_v) and torch.equal(out, ref_out)):
                    sys.exit(f"{label}: BLOCK={b} differs from the eager path")
                row[f"block_{b}_ms"] = median_ms(lambda: lib.ann2snn_if_subtract_f32_f32(
                    cur.data_ptr(), v.numel(), v.data_ptr(), out.data_ptr(), v.numel(), STEPS), a.reps)
            rows.append(row)
            print(f"{label:36s} eager {row['eager_ms']:7.3f} ms | " + "  ".join(
                f"block {b}: {row[f'block_{b}_ms']:6.3f}" for b in a.blocks), flush=True)
    print(f"machine: {machine()}")
    write_json(a.json, {"machine": machine(), "steps": STEPS, "reps": a.reps, "rows": rows})


if __name__ == "__main__":
    main()
