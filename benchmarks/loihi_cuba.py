"""Loihi CUBA fixed point vs the float SNN on the zoo VGG (the Loihi issue's 1-point target at T=128).

    python benchmarks/loihi_cuba.py [--model vgg_avgpool] [--conversion default|zero] [--start 0] [--n 2000]
        [--options '{"time_dilation": 2}' [--skip-defaults]] [--json F]

--model also takes the held-out check models (``vgg_wide``, ``vgg_deep``) once trained into
benchmarks/.cache/heldout (``python model_zoo/train.py --model vgg_wide --out benchmarks/.cache/heldout``);
their test images are the same Fashion-MNIST test set. --conversion zero converts with ``--reset zero
--v-init 0`` (the NIR conversion: bias correction as thresholds), which Lava's neuron runs as simulated.

Converts vgg_avgpool with the default config (cached in benchmarks/.cache), exports it for Loihi CUBA with
the bundled 1,000 calibration images (what `ann2snn convert vgg_avgpool --target loihi` does), and runs the
bit-exact fixed-point model on test images [start, start+n) at --timesteps (default 64 and 128), or on held-out calibration images (--holdout N), next to the float SNN (float32).
Each extra JSON object in --options is one more export variant (QuantizationOptions fields) in the same run.
The fixed-point simulation runs about 0.10 s per image (T=128) on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import converted, load_model_data, machine, write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg_avgpool")
    ap.add_argument("--conversion", choices=("default", "zero"), default="default")
    ap.add_argument("--timesteps", default="64,128", help="comma-separated T (default 64,128)")
    ap.add_argument("--holdout", type=int, default=0,
                    help="score on the last N of the zoo sample's 1,000 calibration images instead of test images "
                         "(what options may be chosen on; the conversion still calibrates on all 1,000)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--options", nargs="*", default=[], help="JSON QuantizationOptions overrides, one per variant")
    ap.add_argument("--skip-defaults", action="store_true", help="run only the --options variants")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ann2snn.backends.loihi.export import export_loihi
    from ann2snn.backends.loihi.quantized import QuantizationOptions
    from ann2snn.loihi import simulate_loihi

    heldout = Path(__file__).resolve().parent / ".cache" / "heldout" / a.model / "model.onnx"
    path, cx, tx, ty, note = load_model_data("vgg_avgpool" if heldout.is_file() else a.model, n_test=a.start + a.n)
    path = heldout if heldout.is_file() else path
    tx, ty = tx[a.start:], ty[a.start:]
    if a.holdout:
        from ann2snn.data import load_zoo_sample

        tx, ty = cx[-a.holdout:], load_zoo_sample("vgg_avgpool").calib_y[-a.holdout:]
    if a.conversion == "zero":
        from ann2snn.backends.nir import NIR_CONVERSION
        from ann2snn.config import ConversionConfig

        net = converted(a.model, path, cx, ConversionConfig(**NIR_CONVERSION), tag="nir")
    else:
        net = converted(a.model, path, cx)
    ts = tuple(int(t) for t in a.timesteps.split(","))
    flt = net.simulate(tx, list(ts), synaptic_dtype="float32")
    out = {"machine": machine(), "model": a.model, "conversion": a.conversion, "images": f"calibration[-{a.holdout}:]" if a.holdout else [a.start, a.start + len(ty)], "float_snn": {}, "variants": []}
    for t in ts:
        out["float_snn"][str(t)] = float(np.mean(flt.predictions(t) == ty))
    variants = [json.loads(o) for o in a.options]
    for opt in variants if a.skip_defaults and variants else [{}] + variants:
        t0 = time.perf_counter()
        exp = export_loihi(net, calibration=cx, options=QuantizationOptions(**opt))
        res = simulate_loihi(exp, tx, timesteps=ts)
        row = {"options": opt, "seconds": time.perf_counter() - t0, "fixed_point": {}, "agreement_with_float": {}}
        for t in ts:
            row["fixed_point"][str(t)] = float(np.mean(res.predictions(t) == ty))
            row["agreement_with_float"][str(t)] = float(np.mean(res.predictions(t) == flt.predictions(t)))
        out["variants"].append(row)
        print(f"{opt or 'defaults'}: " + "; ".join(
            f"T={t} float {100 * out['float_snn'][str(t)]:.2f} fixed {100 * row['fixed_point'][str(t)]:.2f} "
            f"({100 * (row['fixed_point'][str(t)] - out['float_snn'][str(t)]):+.2f} pt, agreement "
            f"{100 * row['agreement_with_float'][str(t)]:.1f}%)" for t in ts) + f" [{row['seconds']:.0f} s]",
            flush=True)
        write_json(a.json, out)


if __name__ == "__main__":
    main()
