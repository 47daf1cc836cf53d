"""Accuracy vs T: ann2snn (default ConversionConfig, and signed neurons) and SpikingJelly 2.0.0's
rate-coding converter on the same models, same calibration images and same test images, in one run.

    python benchmarks/accuracy_vs_t.py [--models vgg_avgpool mnist_lenet_chainer] [--n-test 0] \
        [--timesteps 8 16 32 64 128 256] [--sj-n-test 2000] [--sj-modes 99.9% Max] [--json out.json]

Zoo models: calibration = the zoo sample's calibration split; test = the first --n-test images of
the Fashion-MNIST test set (all 10,000 by default). MNIST models (shared/external_models): calibration =
the first 1,000 MNIST test images, test = the rest (9,000). ann2snn is scored on the whole test set up to
T=256, also with signed neurons; SpikingJelly (benchmarks/.venv-sj, a subprocess; about 3x slower than our
simulator) on the first --sj-n-test test images, where ann2snn's predictions are scored again so the two
rows compare the same images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    converted, export_ir, load_model_data, machine, mnist_available, run_sj, write_json, zoo_available,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=None, help="default: every zoo and MNIST model present")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    ap.add_argument("--n-test", type=int, default=0, help="test images per model (0 = all the rest)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sj-modes", nargs="*", default=["99.9%", "Max"])
    ap.add_argument("--sj-timesteps", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--sj-n-test", type=int, default=2000,
                    help="SpikingJelly runs on the first N test images; ann2snn is also scored on them")
    ap.add_argument("--signed-timesteps", type=int, nargs="*", default=[8, 16, 32, 64],
                    help="also convert with signed=True and score these T (empty: skip)")
    ap.add_argument("--synaptic-dtype", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ann2snn.config import ConversionConfig
    from ann2snn.evaluation import onnxruntime_outputs

    models = a.models or (zoo_available() + mnist_available())
    results = {"machine": machine(), "timesteps": a.timesteps, "sj_timesteps": a.sj_timesteps,
               "signed_timesteps": a.signed_timesteps, "n_test": a.n_test, "sj_n_test": a.sj_n_test, "models": {}}
    kw = {} if a.synaptic_dtype is None else {"synaptic_dtype": a.synaptic_dtype}
    for name in models:
        path, cx, tx, ty, note = load_model_data(name, n_test=a.n_test or None)
        n_sub = min(a.sj_n_test, len(ty))
        t0 = time.perf_counter()
        net = converted(name, path, cx)
        convert_s = time.perf_counter() - t0
        ann_pred = onnxruntime_outputs(path, tx).reshape(len(tx), -1).argmax(axis=1)
        t0 = time.perf_counter()
        res = net.simulate(tx, a.timesteps, **kw)
        pred = {t: res.predictions(t) for t in a.timesteps}
        entry = {"data": note, "samples": int(len(ty)), "calibration": int(len(cx)),
                 "ann_accuracy": float(np.mean(ann_pred == ty)),
                 "ann2snn": {str(t): float(np.mean(p == ty)) for t, p in pred.items()},
                 "ann2snn_agreement": {str(t): float(np.mean(p == ann_pred)) for t, p in pred.items()},
                 "subset": {"samples": n_sub, "ann_accuracy": float(np.mean(ann_pred[:n_sub] == ty[:n_sub])),
                            "ann2snn": {str(t): float(np.mean(p[:n_sub] == ty[:n_sub])) for t, p in pred.items()}},
                 "ann2snn_convert_seconds": convert_s, "ann2snn_simulate_seconds": time.perf_counter() - t0,
                 "ann2snn_choices": {k: net.info.get(k) for k in ("v_init", "bias_correction")}}
        print(f"{name}: ANN {entry['ann_accuracy']:.4f}; ann2snn " +
              " ".join(f"T{t}={v:.4f}" for t, v in entry["ann2snn"].items()), flush=True)
        if a.signed_timesteps:
            signed = converted(name, path, cx, ConversionConfig(signed=True), tag="signed")
            sres = signed.simulate(tx, a.signed_timesteps, **kw)
            entry["ann2snn_signed"] = {str(t): float(np.mean(sres.predictions(t) == ty)) for t in a.signed_timesteps}
            print("  signed: " + " ".join(f"T{t}={v:.4f}" for t, v in entry["ann2snn_signed"].items()), flush=True)
        for mode in a.sj_modes:
            try:
                with tempfile.TemporaryDirectory() as d:
                    d = Path(d)
                    export_ir(net.ann, d / "m.json", d / "m.npz")
                    np.savez(d / "data.npz", calib_x=cx, test_x=tx[:n_sub], test_y=ty[:n_sub])
                    sj = run_sj(["--spec", str(d / "m.json"), "--weights", str(d / "m.npz"), "--data",
                                 str(d / "data.npz"), "--mode", mode, "--accuracy", "--threads", str(a.threads),
                                 "--timesteps", *map(str, a.sj_timesteps)])
                entry["subset"][f"spikingjelly_{mode}"] = sj["snn_accuracy"]
                entry["subset"][f"spikingjelly_{mode}_ann_accuracy"] = sj["ann_accuracy"]
                print(f"  SJ {mode} (first {n_sub}): ANN(torch) {sj['ann_accuracy']:.4f}; " +
                      " ".join(f"T{t}={sj['snn_accuracy'][str(t)]:.4f}" for t in a.sj_timesteps), flush=True)
            except Exception as e:  # noqa: BLE001 - report and go on with the other models
                entry["subset"][f"spikingjelly_{mode}"] = f"failed: {type(e).__name__}: {str(e)[-300:]}"
                print(f"  SJ {mode}: failed {e}", flush=True)
        results["models"][name] = entry
        write_json(a.json, results)
    print_table(results)


def _cells(acc, ts) -> str:
    if not isinstance(acc, dict):
        return str(acc)
    return " | ".join(f"{100 * acc[str(t)]:.2f}" if str(t) in acc else "" for t in ts)


def print_table(results):
    """Two markdown tables: full test sets (ann2snn, signed) and the SpikingJelly subset (same images)."""
    ts = results["timesteps"]
    print("| model | data (n) | ANN | converter | " + " | ".join(f"T={t}" for t in ts) + " |")
    print("|" + "---|" * (4 + len(ts)))
    for name, e in results["models"].items():
        rows = [("ann2snn (default)", e["ann2snn"]), ("ann2snn signed", e.get("ann2snn_signed"))]
        for label, acc in rows:
            if acc is not None:
                print(f"| {name} | {e['data']} ({e['samples']}) | {100 * e['ann_accuracy']:.2f} | {label} | "
                      f"{_cells(acc, ts)} |")
    sts = results.get("sj_timesteps", ts)
    print()
    print("| model | subset (n) | ANN | converter | " + " | ".join(f"T={t}" for t in sts) + " |")
    print("|" + "---|" * (4 + len(sts)))
    for name, e in results["models"].items():
        sub = e["subset"]
        rows = [("ann2snn (default)", sub["ann2snn"])] + [
            (k.replace("spikingjelly_", "SJ 2.0.0 "), v) for k, v in sub.items()
            if k.startswith("spikingjelly_") and not k.endswith("accuracy")]
        for label, acc in rows:
            print(f"| {name} | first {sub['samples']} | {100 * sub['ann_accuracy']:.2f} | {label} | "
                  f"{_cells(acc, sts)} |")


if __name__ == "__main__":
    main()
