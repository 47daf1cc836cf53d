"""Real trained deep models: agreement of the SNN's top-1 with the ANN's (onnxruntime) as T grows.

    python benchmarks/deep_models.py [--models resnet20_bn resnet20_sclbl convnet squeezenet] \
        [--timesteps 32 64 128 256 512] [--n-calib 256] [--json benchmarks/out/deep_models.json]

Only 20 real images per data set ship in shared/external_models/testdata/foolbox_samples, so calibration
never sees the images scored:
- CIFAR-10 models (ResNet-20 x2, the Windows-ML ConvNet): calibrated on the 20 CIFAR-100 images, their
  mirror images and seeded crops of them padded by 4 (``--n-calib`` in all); scored on the 20 CIFAR-10 test
  images, their mirror images and two seeded padded crops of each (80 images);
- SqueezeNet 1.0 (224x224, Caffe preprocessing): calibrated on ImageNet samples 0-9 (mirror images and
  seeded 224 crops of the 256-resized image), scored on samples 10-19 the same way (40 images).
Default conversion config. Each model's preprocessing is the one of shared/external_models/SOURCES.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, peak_rss_mb, write_json  # noqa: E402

SHARED = Path(os.environ.get("ANN2SNN_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "external_models"
SAMPLES = SHARED / "testdata" / "foolbox_samples"


def _images(pattern: str, fit=None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 HWC images (each passed through ``fit`` first, e.g. a resize) and the labels in their names
    (``<set>_<index>_<label>.<ext>``)."""
    from PIL import Image

    paths = sorted(SAMPLES.glob(pattern))
    images = [Image.open(p).convert("RGB") for p in paths]
    return (np.stack([fit(i) if fit else np.asarray(i) for i in images]),
            np.array([int(p.stem.split("_")[-1]) for p in paths]))


def _augmented(images: np.ndarray, n: int, crop: int, pad: int, seed: int) -> np.ndarray:
    """The images, their mirror images, then seeded ``crop``-sized crops of both (zero-padded by ``pad``)."""
    base = np.concatenate([images, images[:, :, ::-1]])
    rng = np.random.default_rng(seed)
    padded = np.pad(base, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    room = padded.shape[1] - crop
    crops = [padded[k % len(base), i:i + crop, j:j + crop]
             for k, (i, j) in enumerate(rng.integers(0, room + 1, (max(0, n - len(base)), 2)))]
    if base.shape[1] != crop:  # larger images: the centre crop stands for the image itself
        off = (base.shape[1] - crop) // 2
        base = base[:, off:off + crop, off:off + crop]
    return np.concatenate([base] + ([np.stack(crops)] if crops else []))[:n]


def cifar_sets(preprocessing, n_calib: int):
    from ann2snn.data.preprocessing import Preprocessing

    calib_raw, _ = _images("cifar100_*.png")
    test_raw, labels = _images("cifar10_*.png")
    pre = Preprocessing(**preprocessing)
    calib = pre.apply(_augmented(calib_raw, n_calib, 32, 4, seed=0))
    test = pre.apply(_augmented(test_raw, 4 * len(test_raw), 32, 4, seed=1))
    return calib, test, labels


def imagenet_sets(n_calib: int):
    from ann2snn.data.preprocessing import preset

    pre = preset("caffe")
    # shorter side 256, then a square 256 centre crop (the samples' aspect ratios differ)
    resized, labels = _images("imagenet_*.jpg", fit=replace(pre, crop=(256, 256)).fit_image)
    values = replace(pre, resize=None, crop=None)  # the crops are taken here
    calib = values.apply(_augmented(resized[:10], n_calib, 224, 0, seed=0))
    test = values.apply(_augmented(resized[10:], 40, 224, 0, seed=1))
    return calib, test, labels[10:]


MODELS = {
    "resnet20_bn": ("cifar10_resnet20_bn_pytorch16.onnx", "cifar"),
    "resnet20_sclbl": ("cifar10_resnet20_pytorch15_sclbl.onnx", "cifar"),
    "convnet": ("cifar10_convnet_pytorch17_winml.onnx", "cifar_pm1"),
    "squeezenet": ("squeezenet1.0_caffe2_fp32_derived.onnx", "imagenet"),
}
CIFAR10 = dict(scale=1 / 255, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
PLUS_MINUS_ONE = dict(scale=1 / 255, mean=0.5, std=0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--timesteps", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--n-calib", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=40)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from ann2snn.convert.pipeline import convert
    from ann2snn.evaluation import onnxruntime_outputs

    rows = []
    for name in a.models:
        file, kind = MODELS[name]
        path = str(SHARED / file)
        if kind == "imagenet":
            calib, test, labels = imagenet_sets(a.n_calib)
        else:
            calib, test, labels = cifar_sets(CIFAR10 if kind == "cifar" else PLUS_MINUS_ONE, a.n_calib)
        ann = onnxruntime_outputs(path, test).reshape(len(test), -1).argmax(axis=1)
        t0 = time.perf_counter()
        net = convert(path, calib)
        convert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = net.simulate(test, a.timesteps, batch_size=a.batch_size)
        sim_s = time.perf_counter() - t0
        originals = len(labels)  # the first images of the test set are the real, unaugmented ones
        row = {"model": name, "file": file, "calibration": len(calib), "test": len(test),
               "if_layers": len(net.spiking_layers), "convert_s": convert_s, "simulate_s": sim_s,
               "auto_choice": [net.record.v_init, net.record.bias_correction],
               "bias_correction_samples": net.record.bias_correction_samples,
               "ann_accuracy_originals": float((ann[:originals] == labels).mean()),
               "agreement": {}, "snn_accuracy_originals": {}, "load_avg": os.getloadavg()[0],
               "peak_rss_mb": peak_rss_mb()}
        for t in a.timesteps:
            pred = res.predictions(t)
            row["agreement"][t] = float((pred == ann).mean())
            row["snn_accuracy_originals"][t] = float((pred[:originals] == labels).mean())
        rows.append(row)
        print(f"{name}: {row['if_layers']} IF layers, convert {convert_s:.0f} s (choice {row['auto_choice']}), "
              f"simulate {sim_s:.0f} s; ANN {row['ann_accuracy_originals']:.2f} on the {originals} originals; "
              "agreement " + " / ".join(f"T={t}: {v:.4f}" for t, v in row["agreement"].items())
              + f"; load {row['load_avg']:.2f}", flush=True)
    if a.json:
        write_json(a.json, {"machine": machine(), "args": vars(a), "rows": rows})


if __name__ == "__main__":
    main()
