"""Bias correction's cost against depth: the layer-major implementation (ann2snn.convert.bias_correction)
against the definition it replaces (each IF layer measured on a re-simulation of the whole corrected
prefix up to it; tests/convert/test_bias_correction.py::_prefix_reference), same network, samples and T.

    python benchmarks/bias_correction_scaling.py [--samples 8] [--t 8] [--reps 3] [--json out.json]
    python benchmarks/bias_correction_scaling.py --default-convert 256   # + ResNet-20's default conversion

Models: the trained CIFAR-10 ResNet-20 (shared/external_models, 19 IF layers, 32x32; calibration = the
CIFAR-100 sample images as benchmarks/deep_models.py builds them, CIFAR mean/std) and the onnx wheel's light ResNet-50
(49 IF layers, 224x224) with seeded random weights (random calibration images). Both corrections run on
the same plain network (v_init 0.5, no correction); the largest difference of their corrected biases is
printed beside the timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "convert"))
from common import machine, write_json  # noqa: E402
from deep_models import CIFAR10, cifar_sets  # noqa: E402

def models():
    from ann2snn.frontend.testing import light_model_dir, randomize_weights, without_final_softmax

    shared = Path(os.environ.get("ANN2SNN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    yield "cifar10_resnet20_bn_pytorch16", str(shared / "external_models" / "cifar10_resnet20_bn_pytorch16.onnx"), \
        cifar_sets(CIFAR10, 40)[0]
    light = onnx.load(str(light_model_dir() / "light_resnet50.onnx"))
    x = np.random.default_rng(0).normal(0, 1, (16, 3, 224, 224)).astype(np.float32)
    yield "light_resnet50 (random weights)", without_final_softmax(randomize_weights(light, seed=0)), x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--t", type=int, default=8, help="calibration T (the correction simulates 4 x T)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="run the models whose name contains this")
    ap.add_argument("--default-convert", type=int, default=0, metavar="N",
                    help="also time ResNet-20's default conversion (auto v_init x BC) with N calibration images")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ann2snn.config import ConversionConfig
    from ann2snn.convert.bias_correction import bias_correct
    from ann2snn.convert.pipeline import convert
    from test_bias_correction import _prefix_reference

    rows = []
    for name, model, calib in models():
        if a.only and a.only not in name:
            continue
        net = convert(model, calib, ConversionConfig(v_init=0.5, bias_correction=False, calibration_batch_size=8))
        x = calib[: a.samples]
        layers = len(net.spiking_layers)
        times = {"layer-major": [], "prefix re-simulation": []}
        for _ in range(a.reps):
            t0 = time.perf_counter()
            new = bias_correct(net, x, a.t)
            times["layer-major"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = _prefix_reference(net, x, a.t)
        times["prefix re-simulation"].append(time.perf_counter() - t0)  # once: it is the slow one
        diff = max(float(np.abs(g.bias - w.bias).max()) for g, w in zip(new.graph.nodes, ref.nodes)
                   if getattr(w, "bias", None) is not None)
        gmacs = sum(net.ann.macs().values()) / 1e9
        row = {"model": name, "if_layers": layers, "samples": len(x), "t": a.t, "ann_gmacs_per_sample": gmacs,
               "bias_max_diff": diff, "load_avg": os.getloadavg()[0]}
        for k, v in times.items():
            # normalized by the work of one ANN pass over the samples and 4T steps: constant if linear in depth
            per = float(np.median(v)) / (len(x) * 4 * a.t * gmacs)
            row[k] = {"median_s": float(np.median(v)), "runs_s": v, "per_if_layer_s": float(np.median(v)) / layers,
                      "s_per_sample_step_gmac": per}
        rows.append(row)
        print(f"{name}: {layers} IF layers; layer-major {row['layer-major']['median_s']:.1f} s "
              f"({row['layer-major']['per_if_layer_s']:.2f} s/layer), prefix re-simulation "
              f"{row['prefix re-simulation']['median_s']:.1f} s ({row['prefix re-simulation']['per_if_layer_s']:.2f}"
              f" s/layer); per sample, step and ANN GMAC: {row['layer-major']['s_per_sample_step_gmac']:.3f} vs "
              f"{row['prefix re-simulation']['s_per_sample_step_gmac']:.3f} s; max bias difference {diff:.2e}; "
              f"load {row['load_avg']:.2f}", flush=True)
    if a.default_convert:
        _, model, _ = next(models())
        calib = cifar_sets(CIFAR10, a.default_convert)[0]
        t0 = time.perf_counter()
        net = convert(model, calib, ConversionConfig())
        row = {"model": "cifar10_resnet20_bn_pytorch16 default conversion", "calibration": len(calib),
               "convert_s": time.perf_counter() - t0, "choice": [net.info.get("v_init"), net.info.get("bias_correction")],
               "load_avg": os.getloadavg()[0]}
        rows.append(row)
        print(f"ResNet-20 default conversion, {len(calib)} calibration images: {row['convert_s']:.1f} s "
              f"(v_init, BC = {row['choice']}); load {row['load_avg']:.2f}", flush=True)
    if a.json:
        write_json(a.json, {"machine": machine(), "args": vars(a), "rows": rows})


if __name__ == "__main__":
    main()
