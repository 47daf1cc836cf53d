"""Tuned vs default conversion at a target T on the zoo models (issue: tuning never loses to the default).

    python benchmarks/tune_vs_default.py [--models lenet_bn_maxpool ...] [--target-timesteps 32]
        [--n-test 2000] [--json benchmarks/out/tune.json]

Per model: the default conversion (``ConversionConfig()``) and ``ann2snn.tune`` (staged search, scored on
held-out calibration images only; the test images are never passed to it), both from the zoo sample's
1,000 calibration images; accuracy of both on the first --n-test Fashion-MNIST test images at the target T
(and T/2, 2T), in one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import converted, load_model_data, machine, write_json, zoo_available  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=None, help="default: every zoo model present")
    ap.add_argument("--target-timesteps", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import ann2snn

    t = a.target_timesteps
    ts = sorted({max(1, t // 2), t, 2 * t})
    results = {"machine": machine(), "target_timesteps": t, "n_test": a.n_test, "models": {}}
    for name in a.models or zoo_available():
        path, cx, tx, ty, note = load_model_data(name, n_test=a.n_test)
        default = converted(name, path, cx)
        t0 = time.perf_counter()
        tuned_result = ann2snn.tune(str(path), cx, target_timesteps=t)
        tune_s = time.perf_counter() - t0
        tuned = ann2snn.convert(str(path), cx, config=tuned_result.config)
        acc = {}
        for label, net in (("default", default), ("tuned", tuned)):
            res = net.simulate(tx, ts)
            acc[label] = {str(k): float(np.mean(res.predictions(k) == ty)) for k in ts}
        entry = {"data": note, "samples": int(len(ty)), "accuracy": acc, "tune_seconds": tune_s,
                 "candidates": len(tuned_result.table), "tuned_config": tuned_result.config.to_dict(),
                 "kept_defaults": tuned_result.kept_defaults, "tune_table": tuned_result.table,
                 "default_choices": {k: getattr(default.record, k) for k in ("v_init", "bias_correction")}}
        results["models"][name] = entry
        print(f"{name}: " + "; ".join(f"{lab} " + " ".join(f"T{k}={v:.4f}" for k, v in acc[lab].items())
                                      for lab in acc) + f" ({len(tuned_result.table)} candidates, {tune_s:.0f} s)",
              flush=True)
        write_json(a.json, results)
    print(f"| model | test images | T | default % | tuned % | tuned config |")
    print("|---|---|---|---|---|---|")
    for name, e in results["models"].items():
        c = e["tuned_config"]
        cfg = f"{c['norm']}, {c['granularity']}, v_init {c['v_init']}, BC {c['bias_correction']}, {c['maxpool']}"
        for k in ts:
            print(f"| {name} | {e['samples']} | {k} | {100 * e['accuracy']['default'][str(k)]:.2f} | "
                  f"{100 * e['accuracy']['tuned'][str(k)]:.2f} | {cfg if k == t else ''} |")


if __name__ == "__main__":
    main()
