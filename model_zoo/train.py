#!/usr/bin/env python
"""Train the model-zoo CNNs on Fashion-MNIST and export them to ONNX with a manifest.

    python model_zoo/train.py --model all                 # every model, its default epochs, seed 0
    python model_zoo/train.py --model lenet_bn_maxpool    # one model
    python model_zoo/train.py --model vgg_wide --out benchmarks/.cache/heldout   # a held-out check model

Per model this writes ``<out>/<name>/model.onnx`` and ``<out>/<name>/manifest.json``; the shared
``<out>/fashion_mnist_sample.npz`` is written when missing (it does not depend on any model).
``ann_accuracy`` in the manifest is measured with onnxruntime on the full 10,000-image test set.

Reproducibility: fixed seeds (python, numpy, torch), ``torch.use_deterministic_algorithms(True)``,
a seeded ``torch.Generator`` for shuffling, no data augmentation, and ``torch.set_num_threads(2)``
(CPU float reductions depend on the thread count, so it is fixed, not taken from the machine).
Data comes from the Debian package ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

# Sleep instead of spinning in OpenMP barriers: on a shared, oversubscribed CPU spinning threads slow
# training down many times over. It changes no numerics. Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    from ann2snn.data import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, Preprocessing, load_fashion_mnist
except ImportError:  # run from a source checkout without PYTHONPATH / install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ann2snn.data import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, Preprocessing, load_fashion_mnist

log = logging.getLogger("model_zoo.train")

NUM_THREADS = 2
BATCH_SIZE = 128
LR = 1e-3
OPSET = 13
SAMPLE_FILE = "fashion_mnist_sample.npz"
SAMPLE_SEED = 0  # the calibration selection does not depend on --seed
CALIB_PER_CLASS = 100
N_TEST_SAMPLE = 1000
MAX_ONNX_BYTES = 2 * 1024 * 1024
PREPROCESSING = Preprocessing(scale=1 / 255, mean=0.0, std=1.0, layout="NCHW", channels=1)


# ---------------------------------------------------------------------------------------------
# models (input: N x 1 x 28 x 28 float in [0, 1]; ReLU is the only activation)
# ---------------------------------------------------------------------------------------------


def lenet_bn_maxpool() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # 16x14x14
        nn.Conv2d(16, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),            # 32x5x5
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def _vgg(c1: int, c2: int, hidden: int) -> nn.Sequential:
    """2 x (Conv3x3-ReLU-Conv3x3-ReLU-AvgPool2) with c1/c2 channels, Flatten, Linear(c2*49, hidden)-ReLU-Linear(hidden, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),                                                                 # c1 x 14 x 14
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),                                                                 # c2 x 7 x 7
        nn.Flatten(),
        nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def vgg_avgpool() -> nn.Module:
    return _vgg(16, 32, 128)


def vgg_wide() -> nn.Module:
    """Held-out check model (not bundled): vgg_avgpool's layout at twice the width and half the dense layer."""
    return _vgg(32, 64, 64)


def vgg_deep() -> nn.Module:
    """Held-out check model (not bundled): narrower and deeper, 7 convolutions in 3 stages, 2 dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),                                                                 # 16x14x14
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(),
        nn.Conv2d(24, 24, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),                                                                 # 24x7x7
        nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3), nn.ReLU(),                                                 # 32x5x5
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 96), nn.ReLU(),
        nn.Linear(96, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus identity (or 1x1 conv-BN projection) shortcut, Add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = BasicBlock(16, 16, stride=2)   # 16x14x14, identity shortcut is impossible -> 1x1
        self.block2 = BasicBlock(16, 32, stride=2)   # 32x7x7, 1x1 projection
        self.block3 = BasicBlock(32, 32, stride=1)   # 32x7x7, identity shortcut
        self.pool = nn.AdaptiveAvgPool2d(1)          # -> GlobalAveragePool
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet_small() -> nn.Module:
    return ResNetSmall()


def conv_bn_relu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class InceptionBlock(nn.Module):
    """Three parallel conv branches (1x1 | 1x1->3x3 | 1x1->5x5), each Conv-BN-ReLU, concatenated on channels."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int):
        super().__init__()
        self.b1 = nn.Sequential(*conv_bn_relu(cin, c1, 1))
        self.b3 = nn.Sequential(*conv_bn_relu(cin, c3r, 1), *conv_bn_relu(c3r, c3, 3))
        self.b5 = nn.Sequential(*conv_bn_relu(cin, c5r, 1), *conv_bn_relu(c5r, c5, 5))
        self.out_channels = c1 + c3 + c5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x)], dim=1)


class InceptionConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(1, 16, 3), nn.MaxPool2d(2))                   # 16x14x14
        self.inc1 = InceptionBlock(16, 16, 16, 24, 8, 8)                                       # 48x14x14
        self.pool1 = nn.MaxPool2d(2)                                                           # 48x7x7
        self.inc2 = InceptionBlock(48, 24, 24, 32, 8, 8)                                       # 64x7x7
        self.pool2 = nn.AvgPool2d(2, ceil_mode=False)                                          # 64x3x3
        self.fc = nn.Linear(64 * 3 * 3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.inc2(self.pool1(self.inc1(self.stem(x)))))
        return self.fc(torch.flatten(x, 1))


def inception_concat() -> nn.Module:
    return InceptionConcat()


# name -> (builder, default epochs, description)
MODELS = {
    "lenet_bn_maxpool": (
        lenet_bn_maxpool, 6,
        "LeNet-style: 2 x (Conv5x5-BatchNorm-ReLU-MaxPool2), Flatten, Linear(800,128)-ReLU-Linear(128,10).",
    ),
    "vgg_avgpool": (
        vgg_avgpool, 8,
        "VGG-style, Loihi-exportable (conv, avgpool, flatten, dense, ReLU only; no BN, no MaxPool): "
        "2 x (Conv3x3-ReLU-Conv3x3-ReLU-AvgPool2) with 16/32 channels, Flatten, Linear(1568,128)-ReLU-Linear(128,10).",
    ),
    "resnet_small": (
        resnet_small, 8,
        "Small ResNet: stem Conv3x3(16)-BN-ReLU, 3 basic blocks (16 s2 with 1x1 projection, 32 s2 with 1x1 "
        "projection, 32 s1 identity; conv-BN-ReLU-conv-BN + shortcut, Add, ReLU), GlobalAveragePool, Linear(32,10).",
    ),
    "inception_concat": (
        inception_concat, 8,
        "Inception-style: stem Conv3x3(16)-BN-ReLU-MaxPool2, 2 inception blocks (parallel 1x1 | 1x1->3x3 | "
        "1x1->5x5 Conv-BN-ReLU branches, channel Concat) separated by MaxPool2, AvgPool2, Flatten, Linear(576,10).",
    ),
}


# Loihi-exportable models of vgg_avgpool's family that no default was chosen on: the CUBA export is checked
# on them (benchmarks/loihi_cuba.py). Trained on demand with --model NAME --out DIR; `all` leaves them out
# and they are not part of the bundled zoo.
HELD_OUT_MODELS = {
    "vgg_wide": (
        vgg_wide, 6,
        "Held-out Loihi check model: 2 x (Conv3x3-ReLU-Conv3x3-ReLU-AvgPool2) with 32/64 channels, Flatten, "
        "Linear(3136,64)-ReLU-Linear(64,10).",
    ),
    "vgg_deep": (
        vgg_deep, 8,
        "Held-out Loihi check model: Conv3x3 8-16, AvgPool2, Conv3x3 16-24-24, AvgPool2, Conv3x3 32, Conv3x3 32 "
        "(valid), Flatten, Linear(800,96)-ReLU-Linear(96,64)-ReLU-Linear(64,10).",
    ),
}
ALL_MODELS = {**MODELS, **HELD_OUT_MODELS}


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def set_determinism(seed: int) -> None:
    torch.set_num_threads(NUM_THREADS)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(PREPROCESSING.apply(x))


def train(name: str, epochs: int, seed: int, x_train: np.ndarray, y_train: np.ndarray) -> tuple[nn.Module, float]:
    set_determinism(seed)
    model = ALL_MODELS[name][0]()
    xt, yt = to_tensor(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = (len(xt) + BATCH_SIZE - 1) // BATCH_SIZE
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(xt), BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(yb)
            correct += int((out.argmax(1) == yb).sum())
            total += len(yb)
        log.info("%s epoch %d/%d: loss %.4f train acc %.4f (%.0f s)", name, epoch + 1, epochs,
                 loss_sum / total, correct / total, time.perf_counter() - t0)
    model.eval()
    return model, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# export + evaluation
# ---------------------------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: Path) -> list[str]:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        model, (dummy,), str(path), dynamo=False, opset_version=OPSET,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
    )
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    size = path.stat().st_size
    if size >= MAX_ONNX_BYTES:
        raise SystemExit(f"{path}: {size} bytes, over the 2 MB limit of the model zoo")
    return sorted({n.op_type for n in m.graph.node})


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = NUM_THREADS
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    xin = PREPROCESSING.apply(x)
    correct = 0
    for i in range(0, len(xin), batch):
        logits = sess.run(["logits"], {"input": xin[i:i + batch]})[0]
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / len(y)


def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(to_tensor(x)).argmax(1).numpy()
    return float((pred == y).mean())


# ---------------------------------------------------------------------------------------------
# shared sample
# ---------------------------------------------------------------------------------------------


def sample_arrays(x_train, y_train, x_test, y_test) -> dict[str, np.ndarray]:
    """1,000 class-balanced training images (seeded, shuffled) + the first 1,000 test images."""
    rng = np.random.default_rng(SAMPLE_SEED)
    idx = np.concatenate([
        rng.choice(np.flatnonzero(y_train == c), size=CALIB_PER_CLASS, replace=False) for c in range(10)
    ])
    idx = rng.permutation(idx)
    return {
        "calib_x": x_train[idx].astype(np.uint8),
        "calib_y": y_train[idx].astype(np.int64),
        "calib_index": idx.astype(np.int64),
        "test_x": x_test[:N_TEST_SAMPLE].astype(np.uint8),
        "test_y": y_test[:N_TEST_SAMPLE].astype(np.int64),
    }


def write_sample(out: Path, arrays: dict[str, np.ndarray]) -> None:
    path = out / SAMPLE_FILE
    if path.exists():
        with np.load(path, allow_pickle=False) as old:
            if set(old.files) == set(arrays) and all(np.array_equal(old[k], v) for k, v in arrays.items()):
                log.info("%s is up to date", path)
                return
        log.warning("%s differs from the seeded selection: rewriting it", path)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    log.info("wrote %s", path)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all", choices=[*ALL_MODELS, "all"],
                    help="model to train (default: all = the bundled zoo; the held-out models only by name)")
    ap.add_argument("--epochs", type=int, default=None, help="override the model's default epoch count")
    ap.add_argument("--seed", type=int, default=0, help="seed for init and shuffling (default: 0)")
    ap.add_argument("--out", default="model_zoo", help="output folder (default: model_zoo)")
    ap.add_argument("--data-root", default=FASHION_MNIST_ROOT, help="Fashion-MNIST IDX folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    out = Path(args.out)
    x_train, y_train = load_fashion_mnist("train", args.data_root)
    x_test, y_test = load_fashion_mnist("test", args.data_root)
    write_sample(out, sample_arrays(x_train, y_train, x_test, y_test))

    names = list(MODELS) if args.model == "all" else [args.model]
    for name in names:
        builder, default_epochs, description = ALL_MODELS[name]
        epochs = args.epochs if args.epochs is not None else default_epochs
        model, train_s = train(name, epochs, args.seed, x_train, y_train)
        onnx_path = out / name / "model.onnx"
        ops = export_onnx(model, onnx_path)
        acc = ort_accuracy(onnx_path, x_test, y_test)
        tacc = torch_accuracy(model, x_test, y_test)
        n_params = sum(p.numel() for p in model.parameters())
        import onnx

        op_counts = Counter(n.op_type for n in onnx.load(str(onnx_path)).graph.node)
        cmd = f"python model_zoo/train.py --model {name} --epochs {epochs} --seed {args.seed}"
        if Path(args.out) != Path("model_zoo"):
            cmd += f" --out {args.out}"
        manifest = {
            "name": name,
            "description": description,
            "model_file": "model.onnx",
            "input_name": "input",
            "output_name": "logits",
            "input_shape": [1, 28, 28],
            "preprocessing": PREPROCESSING.to_dict(),
            "classes": list(FASHION_MNIST_CLASSES),
            "ann_accuracy": round(acc, 4),
            "ann_accuracy_note": "onnxruntime, full Fashion-MNIST test set (10,000 images), fraction correct",
            "torch_accuracy": round(tacc, 4),
            "training_command": cmd,
            "seed": args.seed,
            "epochs": epochs,
            "batch_size": BATCH_SIZE,
            "optimizer": f"Adam lr={LR}, cosine annealing to 0 per step, no weight decay, no augmentation",
            "torch_threads": NUM_THREADS,
            "training_time_s": round(train_s, 1),
            "torch_version": torch.__version__,
            "onnx_opset": OPSET,
            "onnx_ops": dict(sorted(op_counts.items())),
            "onnx_bytes": onnx_path.stat().st_size,
            "parameter_count": n_params,
            "sample_file": SAMPLE_FILE,
            "dataset": "Fashion-MNIST (Debian package dataset-fashion-mnist)",
        }
        (out / name / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        log.info("%s: onnxruntime acc %.4f (torch %.4f), %d params, %d bytes, ops %s, %.0f s",
                 name, acc, tacc, n_params, onnx_path.stat().st_size, ops, train_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
