"""Accuracy of the bfloat16 synaptic path against float32 on the same converted networks.

    python benchmarks/dtype_accuracy.py [--models ...] [--timesteps 16,32,64] [--n-test N] [--json FILE]

Zoo models on the Fashion-MNIST test set, MNIST models of ../shared/external_models on MNIST test[1000:]
(calibration as in accuracy_vs_t.py); each network is converted once (default config, cached) and
simulated with ``synaptic_dtype="float32"`` and ``"bfloat16"`` in the same run.
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
    ap.add_argument("--timesteps", default="16,32,64")
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--bf16-only", action="store_true",
                    help="simulate bfloat16 only and compare with float32 accuracy from --float32-json")
    ap.add_argument("--float32-json", default="benchmarks/out/accuracy_merged.json",
                    help="accuracy_vs_t.py output holding the float32 figures (with --bf16-only)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ts = [int(t) for t in a.timesteps.split(",")]
    out = {"machine": machine(), "timesteps": ts, "models": {}}
    # float32 accuracy as recorded by accuracy_vs_t.py on the same test images (--bf16-only)
    recorded = json.loads(Path(a.float32_json).read_text())["models"] if a.bf16_only else {}
    print("| model | test images | " + " | ".join(f"T={t} fp32 / bf16 (Δ pt, agreement)" for t in ts) + " |")
    print("|---|---|" + "---|" * len(ts))
    for name in a.models or (zoo_available() + mnist_available()):
        path, cx, tx, ty, note = load_model_data(name, n_test=a.n_test)
        if a.bf16_only and recorded[name]["samples"] != len(ty):
            sys.exit(f"{name}: {a.float32_json} holds float32 figures on {recorded[name]['samples']} images, "
                     f"this run has {len(ty)}: drop --n-test or rerun accuracy_vs_t.py with it")
        net = converted(name, path, cx)
        dtypes = ("bfloat16",) if a.bf16_only else ("float32", "bfloat16")
        res = {d: net.simulate(tx, ts, synaptic_dtype=d) for d in dtypes}
        row = {}
        for t in ts:
            p16 = res["bfloat16"].predictions(t)
            if a.bf16_only:
                f32 = recorded[name]["ann2snn"][str(t)]
                row[str(t)] = {"float32": f32, "bfloat16": float(np.mean(p16 == ty)), "agreement": float("nan")}
                continue
            p32 = res["float32"].predictions(t)
            row[str(t)] = {"float32": float(np.mean(p32 == ty)), "bfloat16": float(np.mean(p16 == ty)),
                           "agreement": float(np.mean(p32 == p16))}
        out["models"][name] = {"data": note, "samples": int(len(ty)), "accuracy": row}
        print(f"| {name} | {len(ty)} | " + " | ".join(
            f"{100 * r['float32']:.2f} / {100 * r['bfloat16']:.2f} ({100 * (r['bfloat16'] - r['float32']):+.2f}, "
            f"{100 * r['agreement']:.1f}%)" for r in row.values()) + " |", flush=True)
        write_json(a.json, out)


if __name__ == "__main__":
    main()
