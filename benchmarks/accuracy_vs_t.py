"""Accuracy vs T: ann2snn (default ConversionConfig, ``ann2snn.evaluate``) and SpikingJelly 2.0.0's
rate-coding converter on the same models, same calibration images and same test images, in one run.

    python benchmarks/accuracy_vs_t.py --models vgg_avgpool mnist_lenet_chainer --n-test 2000 \
        --timesteps 8 16 32 64 [--sj-modes 99.9% Max] [--json benchmarks/out/acc.json]

Zoo models: calibration = the zoo sample's calibration split; test = the first --n-test images of
the Fashion-MNIST test set. MNIST models (shared/external_models): calibration = the first 1,000
MNIST test images, test = the next --n-test. SpikingJelly runs in benchmarks/.venv-sj (subprocess).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import converted, export_ir, load_model_data, machine, mnist_available, run_sj, zoo_available  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=None, help="default: every zoo and MNIST model present")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sj-modes", nargs="*", default=["99.9%", "Max"])
    ap.add_argument("--synaptic-dtype", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ann2snn.evaluate import evaluate

    models = a.models or (zoo_available() + mnist_available())
    results = {"machine": machine(), "timesteps": a.timesteps, "n_test": a.n_test, "models": {}}
    for name in models:
        path, cx, tx, ty, note = load_model_data(name, n_test=a.n_test)
        t0 = time.perf_counter()
        net = converted(name, path, cx)
        kw = {} if a.synaptic_dtype is None else {"synaptic_dtype": a.synaptic_dtype}
        if kw:  # evaluate() has no synaptic_dtype knob: simulate directly
            res = net.simulate(tx, a.timesteps, **kw)
            from ann2snn.evaluate import accuracy_of, onnxruntime_outputs
            ann_acc = accuracy_of(onnxruntime_outputs(path, tx), ty)
            snn_acc = {str(t): float((res.predictions(t) == ty).mean()) for t in a.timesteps}
        else:
            rep = evaluate(str(path), (tx, ty), cx, a.timesteps, snn=net)
            ann_acc, snn_acc = rep.ann_accuracy, rep.snn_accuracy
        entry = {"data": note, "samples": int(len(ty)), "calibration": int(len(cx)), "ann_accuracy": ann_acc,
                 "ann2snn": snn_acc, "ann2snn_seconds": time.perf_counter() - t0,
                 "ann2snn_choices": {k: net.info.get(k) for k in ("v_init", "bias_correction")}}
        print(f"{name}: ANN {ann_acc:.4f}; ann2snn " + " ".join(f"T{t}={snn_acc[str(t)]:.4f}" for t in a.timesteps),
              flush=True)
        for mode in a.sj_modes:
            try:
                with tempfile.TemporaryDirectory() as d:
                    d = Path(d)
                    export_ir(net.ann, d / "m.json", d / "m.npz")
                    np.savez(d / "data.npz", calib_x=cx, test_x=tx, test_y=ty)
                    sj = run_sj(["--spec", str(d / "m.json"), "--weights", str(d / "m.npz"), "--data",
                                 str(d / "data.npz"), "--mode", mode, "--accuracy", "--threads", str(a.threads),
                                 "--timesteps", *map(str, a.timesteps)])
                entry[f"spikingjelly_{mode}"] = sj["snn_accuracy"]
                entry[f"spikingjelly_{mode}_ann_accuracy"] = sj["ann_accuracy"]
                print(f"  SJ {mode}: ANN(torch) {sj['ann_accuracy']:.4f}; " +
                      " ".join(f"T{t}={sj['snn_accuracy'][str(t)]:.4f}" for t in a.timesteps), flush=True)
            except Exception as e:  # noqa: BLE001 - report and go on with the other models
                entry[f"spikingjelly_{mode}"] = f"failed: {type(e).__name__}: {str(e)[-300:]}"
                print(f"  SJ {mode}: failed {e}", flush=True)
        results["models"][name] = entry
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results):
    ts = results["timesteps"]
    head = f"| model | data (n) | ANN | converter | " + " | ".join(f"T={t}" for t in ts) + " |"
    print(head)
    print("|" + "---|" * (4 + len(ts)))
    for name, e in results["models"].items():
        rows = [("ann2snn (default)", e["ann2snn"])] + [(k.replace("spikingjelly_", "SJ 2.0.0 "), v)
                                                         for k, v in e.items()
                                                         if k.startswith("spikingjelly_") and not k.endswith("accuracy")]
        for label, acc in rows:
            cells = " | ".join(f"{100 * acc[str(t)]:.2f}" for t in ts) if isinstance(acc, dict) else acc
            print(f"| {name} | {e['data']} ({e['samples']}) | {100 * e['ann_accuracy']:.2f} | {label} | {cells} |")


if __name__ == "__main__":
    main()
