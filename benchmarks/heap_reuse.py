"""What keeping freed chunk buffers in glibc's heap (``ann2snn/sim/heap.py``) saves: time and page faults.

    python benchmarks/heap_reuse.py --job main [--reps 3] [--json benchmarks/out/heap_reuse_main.json]
    python benchmarks/heap_reuse.py --job simulate [--models vgg_avgpool resnet_small] [--dtypes int8 float32] \
        [--n 500] [--T 64] [--reps 3] [--json benchmarks/out/heap_reuse.json]

Every measurement runs in fresh processes, one with the simulator's heap settings and one with glibc's defaults
(``heap.reuse_freed_buffers`` made a no-op), alternately. ``--job main``: the README's main job (``convert
model_zoo/*/model.onnx --out DIR --force -q``), wall, user and system time and minor page faults of each run.
``--job simulate``: each process simulates ``--n`` test images at T once to warm up, then ``--reps`` times
(median wall time and page faults of one run). A short process simulating one network barely gains: glibc's
dynamic mmap threshold adapts to its few buffer sizes; a long one with many networks and sizes (the main job,
an evaluation after a conversion) is where its heap churns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, write_json  # noqa: E402

CHILD = """
import json, resource, sys, time, torch
sys.path.insert(0, {bench!r})
from common import converted, load_model_data
from ann2snn.sim import heap
if {defaults}:
    heap.reuse_freed_buffers = lambda: False
torch.set_num_threads({threads})
path, cx, tx, ty, _ = load_model_data({model!r}, n_test={n})
net = converted({model!r}, path, cx)
net.simulate(tx[:{n}], [{T}], synaptic_dtype={dtype!r})
runs = []
for _ in range({reps}):
    f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    net.simulate(tx[:{n}], [{T}], synaptic_dtype={dtype!r})
    runs.append((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0))
print(json.dumps(runs))
"""


MAIN_JOB = """
import resource, sys
from ann2snn.sim import heap
if {defaults}:
    heap.reuse_freed_buffers = lambda: False
from ann2snn.cli.main import main
sys.argv = ["ann2snn", "convert", *{models!r}, "--out", {out!r}, "--force", "-q"]
code = main()
u = resource.getrusage(resource.RUSAGE_SELF)
print(u.ru_utime, u.ru_stime, u.ru_minflt, u.ru_maxrss)
sys.exit(code)
"""


def main_job(defaults: bool, out: str) -> dict:
    models = sorted(str(p) for p in (ROOT / "model_zoo").glob("*/model.onnx"))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MAIN_JOB.format(defaults=defaults, models=models, out=out)],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"main job failed: {done.stderr[-2000:]}")
    user, system, faults, rss = done.stdout.strip().splitlines()[-1].split()
    return {"wall_s": wall, "user_s": float(user), "sys_s": float(system), "minor_faults": int(faults),
            "peak_rss_mb": int(rss) / 1024, "loadavg_after": os.getloadavg()}


def child(a, model: str, dtype: str, defaults: bool) -> list:
    code = CHILD.format(bench=str(ROOT / "benchmarks"), defaults=defaults, threads=a.threads, model=model, n=a.n,
                        T=a.T, dtype=dtype, reps=a.reps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{model} {dtype}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job", choices=["main", "simulate"], default="main")
    ap.add_argument("--models", nargs="+", default=["vgg_avgpool", "resnet_small"])
    ap.add_argument("--dtypes", nargs="+", default=["int8", "float32"])
    ap.add_argument("--n", type=int, default=500, help="test images per simulation (batches of 100)")
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.job == "main":
        runs = {"defaults": [], "reuse": []}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(a.reps):
                for mode in runs:
                    load = os.getloadavg()[0]
                    runs[mode].append(dict(main_job(mode == "defaults", str(Path(tmp) / mode)), loadavg_before=load))
                    x = runs[mode][-1]
                    print(f"run {r} {mode:8s}: {x['wall_s']:6.1f} s wall, {x['user_s']:6.1f} s user, {x['sys_s']:5.1f} s "
                          f"sys, {x['minor_faults']:9d} minor faults, {x['peak_rss_mb']:.0f} MB (load before {load:.2f})",
                          flush=True)
        for mode, v in runs.items():
            print(f"{mode:8s} median wall {statistics.median(x['wall_s'] for x in v):.1f} s, sys "
                  f"{statistics.median(x['sys_s'] for x in v):.1f} s, faults {statistics.median(x['minor_faults'] for x in v):.0f}")
        print(f"machine: {machine()}")
        write_json(a.json, {"machine": machine(), "job": "main", "runs": runs})
        return
    rows = []
    print(f"{'model':18s} {'dtype':8s} {'glibc defaults: s, faults':>28s} {'heap reuse: s, faults':>26s} {'speed-up':>9s}")
    for model in a.models:
        for dtype in a.dtypes:
            runs = {"defaults": child(a, model, dtype, True), "reuse": child(a, model, dtype, False)}
            med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
            rows.append({"model": model, "dtype": dtype, "runs": runs, "median": med})
            (ds, df), (rs, rf) = med["defaults"], med["reuse"]
            print(f"{model:18s} {dtype:8s} {ds:14.2f} {df:12.0f} {rs:14.2f} {rf:11.0f} {ds / rs:9.2f}x", flush=True)
    print(f"machine: {machine()}")
    write_json(a.json, {"machine": machine(), "n": a.n, "T": a.T, "reps": a.reps, "rows": rows})


if __name__ == "__main__":
    main()
