"""snnTorch, Norse and Sinabs running ann2snn's NIR files: agreement with ann2snn's simulation.

    python benchmarks/nir_consumers.py [--models vgg_avgpool resnet_small] [--timesteps 32] [--json FILE]

Each zoo model is converted for NIR (``NIR_CONVERSION``, on its calibration images; the network
benchmarks/nir_accuracy.py caches), written with ``export_nir`` (semantics="nir", readout="current"), read back
with ``nir.read`` and run by each installed consumer through ``ann2snn.backends.nir_consumers`` (the
documented import plus the fixes listed there) on the model's 1000 bundled test images. Agreement: the
fraction of images whose prediction (argmax of the output summed over T steps) equals ann2snn's float32
simulation of the same network.
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
from common import ROOT, converted, machine, write_json  # noqa: E402

IMPORTS = {"snntorch": "snntorch.import_nir.import_from_nir + Leaky(beta=1, reset zero, init_hidden)",
           "norse": "nirtorch.nir_to_torch + norse.torch.IAFCell (norse.torch.from_nir runs joins a step late)",
           "sinabs": "nirtorch.nir_to_torch + sinabs.layers.IAFSqueeze(SingleSpike, MembraneReset, no v floor)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["vgg_avgpool", "resnet_small"])
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import nir

    from ann2snn.backends.nir import NIR_CONVERSION, export_nir
    from ann2snn.backends.nir_consumers import CONSUMERS, run, versions
    from ann2snn.config import ConversionConfig
    from ann2snn.data import load_zoo_sample

    t = a.timesteps
    found = versions()
    out = {"machine": machine(), "timesteps": t, "versions": found, "models": {}}
    print(f"versions: {found}")
    print(f"| consumer | version | import path | model | images | agreement with ann2snn % | accuracy % (ann2snn %) "
          "| seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models:
        sample = load_zoo_sample(name)
        net = converted(name, ROOT / "model_zoo" / name / "model.onnx", sample.calib_x,
                        ConversionConfig(**NIR_CONVERSION), tag="nir")
        x, y = sample.test_x, sample.test_y
        ours = net.simulate(x, [t], synaptic_dtype="float32").predictions(t)
        entry = out["models"][name] = {"images": int(len(y)), "ann2snn_accuracy": float(np.mean(ours == y)),
                                       "consumers": {}}
        with tempfile.TemporaryDirectory() as tmp:
            graph = nir.read(export_nir(net, Path(tmp) / f"{name}.nir"))
        for consumer in CONSUMERS:
            if found[consumer] is None:
                print(f"| {consumer} | not installed | | {name} | | | | |")
                continue
            t0 = time.perf_counter()
            pred = run(consumer, graph, x, t).argmax(1)
            seconds = time.perf_counter() - t0
            row = {"version": found[consumer], "import": IMPORTS[consumer], "seconds": seconds,
                   "agreement": float(np.mean(pred == ours)), "accuracy": float(np.mean(pred == y))}
            entry["consumers"][consumer] = row
            print(f"| {consumer} | {row['version']} | {row['import']} | {name} | {len(y)} | "
                  f"{100 * row['agreement']:.1f} | {100 * row['accuracy']:.1f} ({100 * entry['ann2snn_accuracy']:.1f}) "
                  f"| {seconds:.0f} |", flush=True)
        write_json(a.json, out)


if __name__ == "__main__":
    main()
