"""What the NIR-semantics conversion costs: accuracy of ``--target nir`` networks against the default.

    python benchmarks/nir_accuracy.py [--models ...] [--timesteps 16,32,64,128] [--n-test N] [--json FILE]

A NIR file read by the NIR specification alone (and by snnTorch, Norse, Sinabs) has IF neurons that reset to
zero, fire on v > threshold and start at 0. ann2snn converts for that with ``NIR_CONVERSION`` (reset="zero",
v_init=0; bias correction, on or off by the same held-out choice as the default, then lowers per-channel
thresholds instead of charging initial potentials). Each model is converted both ways on its calibration
images (cached in benchmarks/.cache) and both networks are simulated in float32 on the same test images
(zoo: the full Fashion-MNIST test set). ``exportable`` says whether the NIR form can hold the network at all
(MaxPool and Concat have no NIR node); the accuracy of the conversion is measured either way.
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
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--timesteps", default="16,32,64,128")
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ann2snn.backends.nir import NIR_CONVERSION, check_nir
    from ann2snn.config import ConversionConfig
    from ann2snn.evaluation import onnxruntime_outputs

    ts = [int(t) for t in a.timesteps.split(",")]
    out = {"machine": machine(), "timesteps": ts, "nir_conversion": NIR_CONVERSION, "models": {}}
    print("| model | test images | ANN % | conversion | " + " | ".join(f"T={t}" for t in ts) + " | NIR-exportable |")
    print("|---|---|---|---|" + "---|" * len(ts) + "---|")
    for name in a.models or zoo_available():
        path, cx, tx, ty, note = load_model_data(name, n_test=a.n_test)
        ann = float(np.mean(onnxruntime_outputs(path, tx).reshape(len(tx), -1).argmax(axis=1) == ty))
        entry = out["models"][name] = {"data": note, "samples": int(len(ty)), "ann_accuracy": ann}
        for label, config, tag in (("default", None, "default"),
                                   ("nir", ConversionConfig(**NIR_CONVERSION), "nir")):
            t0 = time.perf_counter()
            net = converted(name, path, cx, config, tag=tag)
            seconds = time.perf_counter() - t0
            res = net.simulate(tx, ts, synaptic_dtype="float32")
            acc = {str(t): float(np.mean(res.predictions(t) == ty)) for t in ts}
            problems = check_nir(net, semantics="nir" if label == "nir" else "annotated")
            entry[label] = {"accuracy": acc, "bias_correction": net.record.bias_correction,
                            "v_init": net.record.v_init, "conversion_seconds": seconds,
                            "nir_exportable": not problems,
                            "nir_problem": problems[0][1] if problems else None}
            print(f"| {name} | {len(ty)} | {100 * ann:.2f} | {label} | "
                  + " | ".join(f"{100 * acc[str(t)]:.2f}" for t in ts)
                  + f" | {'yes' if not problems else 'no: ' + problems[0][1].split(':')[0]} |", flush=True)
        write_json(a.json, out)


if __name__ == "__main__":
    main()
