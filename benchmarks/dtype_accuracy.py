"""Accuracy of the bfloat16 and int8 synaptic paths against float32 on the same converted networks.

    python benchmarks/dtype_accuracy.py [--models ...] [--dtypes bfloat16 int8] [--timesteps 16,32,64]
                                        [--n-test N] [--json FILE]

Zoo models on the Fashion-MNIST test set, MNIST models of ../shared/external_models on MNIST test[1000:]
(calibration as in accuracy_vs_t.py); each network is converted once (default config, cached) and
simulated with ``synaptic_dtype="float32"`` and each of ``--dtypes`` in the same run (with ``--reference-json``:
float32 accuracy read from an accuracy_vs_t.py run on the same images instead of simulated).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import converted, load_model_data, machine, mnist_available, write_json, zoo_available  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "int8"], help="modes compared with float32")
    ap.add_argument("--timesteps", default="16,32,64")
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--reference-json", default=None,
                    help="accuracy_vs_t.py output holding the float32 figures (float32 is then not simulated)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ts = [int(t) for t in a.timesteps.split(",")]
    out = {"machine": machine(), "timesteps": ts, "dtypes": a.dtypes, "models": {}}
    recorded = json.loads(Path(a.reference_json).read_text())["models"] if a.reference_json else {}
    print("| model | test images | mode | " + " | ".join(f"T={t} fp32 / mode (Δ pt, agreement)" for t in ts) + " |")
    print("|---|---|---|" + "---|" * len(ts))
    for name in a.models or (zoo_available() + mnist_available()):
        path, cx, tx, ty, note = load_model_data(name, n_test=a.n_test)
        if recorded and recorded[name]["samples"] != len(ty):
            sys.exit(f"{name}: {a.reference_json} holds float32 figures on {recorded[name]['samples']} images, "
                     f"this run has {len(ty)}: drop --n-test or rerun accuracy_vs_t.py with it")
        net = converted(name, path, cx)
        res = {d: net.simulate(tx, ts, synaptic_dtype=d) for d in ([] if recorded else ["float32"]) + a.dtypes}
        rows = {}
        for d in a.dtypes:
            row = rows[d] = {}
            for t in ts:
                pd = res[d].predictions(t)
                if recorded:
                    f32, agree = recorded[name]["ann2snn"][str(t)], float("nan")
                else:
                    p32 = res["float32"].predictions(t)
                    f32, agree = float(np.mean(p32 == ty)), float(np.mean(p32 == pd))
                row[str(t)] = {"float32": f32, d: float(np.mean(pd == ty)), "agreement": agree}
            print(f"| {name} | {len(ty)} | {d} | " + " | ".join(
                f"{100 * r['float32']:.2f} / {100 * r[d]:.2f} ({100 * (r[d] - r['float32']):+.2f}, "
                f"{100 * r['agreement']:.1f}%)" for r in row.values()) + " |", flush=True)
        out["models"][name] = {"data": note, "samples": int(len(ty)), "accuracy": rows}
        write_json(a.json, out)


if __name__ == "__main__":
    main()
