"""Does the report's diagnosis name the layer whose fix gives the largest gain? Checked on test data.

    python benchmarks/diagnosis_check.py [--model resnet_small] [--t 32] [--n-test 10000] [--json FILE]

Converts the zoo model with the default config, builds the report (its what-if experiments change one
layer's threshold at a time and score it on 200 held-out *calibration* images, as `ann2snn evaluate
--report` does), then converts once per experiment with that experiment's thresholds (what a user does
with `--scales suggested_scales.json`) and measures accuracy on the first --n-test test images at T.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_model_data, machine, write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet_small")
    ap.add_argument("--t", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import ann2snn
    from ann2snn.report import build as report_build

    path, cx, tx, ty, note = load_model_data(a.model, n_test=a.n_test)
    snn = ann2snn.convert(str(path), cx)
    ev = ann2snn.evaluate(str(path), (tx, ty), snn=snn, timesteps=[a.t])
    captured = {}
    what_if = report_build.dg.what_if

    def keep(*args, **kw):  # the report does not keep every experiment's thresholds: capture them here
        out = what_if(*args, **kw)
        captured["tried"] = out[3]
        return out

    report_build.dg.what_if = keep
    rep = report_build.build_report(ev, snn, calibration=cx, diagnosis_t=a.t)
    diag = rep.doc["diagnosis"]
    base_acc = ev.snn_accuracy[a.t]
    rows = []
    for i, e in enumerate(diag["what_if"]):
        net = ann2snn.convert(str(path), cx, scales=captured["tried"][i])
        acc = float(np.mean(net.simulate(tx, [a.t]).predictions(a.t) == ty))
        rows.append({"layer": e["label"], "tensor": e["layer"], "change": e["change"], "method": e["method"],
                     "threshold": [e["threshold_before"], e["threshold_after"]],
                     "calib_agreement_gain": e["gain_agreement"], "calib_error_gain": e["gain_relative_error"],
                     "best_fix": diag["best_fix"] is not None and e["layer"] == diag["best_fix"]["layer"]
                     and e["change"] == diag["best_fix"]["change"],
                     "test_accuracy": acc, "test_gain": acc - base_acc})
        print(f"{e['label']} {e['change']} ({e['method']}): calib agreement {100 * e['gain_agreement']:+.1f} pt, "
              f"error {-e['gain_relative_error']:+.4f}; test {100 * acc:.2f}% ({100 * (acc - base_acc):+.2f} pt)"
              + ("  <- best fix" if rows[-1]["best_fix"] else ""), flush=True)
    result = {"machine": machine(), "model": a.model, "T": a.t, "data": note, "ann_accuracy": ev.ann_accuracy,
              "default_accuracy": base_acc, "summary": diag["summary"], "experiments": rows}
    print(f"default {100 * base_acc:.2f}% (ANN {100 * ev.ann_accuracy:.2f}%) on {len(ty)} test images at T={a.t}")
    print("| layer | change | threshold | calib. agreement | calib. error | test accuracy | test gain |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']}{' (best fix)' if r['best_fix'] else ''} | {r['change']} ({r['method']}) | "
              f"{r['threshold'][0]:.3g} -> {r['threshold'][1]:.3g} | {100 * r['calib_agreement_gain']:+.1f} pt | "
              f"{-r['calib_error_gain']:+.4f} | {100 * r['test_accuracy']:.2f} | {100 * r['test_gain']:+.2f} |")
    write_json(a.json, result)


if __name__ == "__main__":
    main()
