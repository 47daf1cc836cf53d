"""Shared test fixtures.

- ``shared_dir``: finds the shared folder (env ``ANN2SNN_SHARED``, else ``<repo>/../shared``) and skips a
  test, with the reason, when a file it needs is absent.
- ``external_model`` (parametrized over every model) and ``external_data``: the third-party ONNX models of ``shared/external_models`` with real, correctly
  preprocessed test images (see ``shared/external_models/SOURCES.md``), cached for the session, plus their
  onnxruntime outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def find_shared_dir() -> Path:
    env = os.environ.get("ANN2SNN_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def shared_path(*needed: str) -> Path:
    """The shared folder; skips the calling test when it, or any of the ``needed`` relative paths, is missing."""
    base = find_shared_dir()
    if not base.is_dir():
        pytest.skip(f"shared folder {base} not found (set ANN2SNN_SHARED to its location)")
    for rel in needed:
        if not (base / rel).exists():
            pytest.skip(f"needs {base / rel}, which is absent (set ANN2SNN_SHARED to the shared folder)")
    return base


@pytest.fixture
def shared_dir():
    """``shared_dir(*relative_paths) -> Path`` of the shared folder, skipping if anything needed is absent."""
    return shared_path


# ------------------------------------------------------------------------------------------------ images


def read_png(path: Path) -> np.ndarray:
    """Decode a non-interlaced 8-bit PNG (gray, RGB, gray+alpha, RGBA) with zlib + numpy: (H, W, C) uint8."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: only 8-bit, non-palette, non-interlaced PNGs are supported")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + w * channels)
    bpp, stride = channels, w * channels
    out = np.zeros((h, stride), dtype=np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(stride, np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        elif f in (1, 3, 4):
            cur = np.zeros(stride, np.int32)
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 255
        else:
            raise ValueError(f"{path}: bad PNG filter {f}")
        out[y] = cur
    return out.astype(np.uint8).reshape(h, w, channels)


def _label(path: Path) -> int:
    return int(path.stem.split("_")[-1])


def mnist_test(base: Path, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    d = np.load(base / "external_models/testdata/mnist_test_10k.npz")
    return (d["images"][:n].astype(np.float32), d["labels"][:n].astype(np.int64),
            f"the first {n} images of the real MNIST test set (testdata/mnist_test_10k.npz)")


def cifar10_64(base: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """20 real CIFAR-10 test images + 44 augmented variants of them: (64, 32, 32, 3) float 0..1, RGB."""
    files = sorted((base / "external_models/testdata/foolbox_samples").glob("cifar10_*.png"))
    imgs = np.stack([read_png(f)[..., :3] for f in files])
    labels = np.array([_label(f) for f in files])
    rng = np.random.default_rng(0)
    padded = np.pad(imgs, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    crops = np.stack([padded[i, dy:dy + 32, dx:dx + 32] for i, (dy, dx) in
                      enumerate(rng.integers(0, 9, size=(len(imgs), 2)))])
    shifted = padded[:4, 1:33, 7:39, :][:, :, ::-1]  # shifted and flipped
    x = np.concatenate([imgs, imgs[:, :, ::-1], crops, shifted]).astype(np.float32) / 255.0
    return x, labels, ("the 20 CIFAR-10 test images of foolbox_samples, plus 44 augmented variants of them "
                       "(20 horizontal flips, 20 random 4-pixel-shifted crops, 4 shifted flips)")


def imagenet_64(base: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """20 real ImageNet images resized to 256 (PIL bilinear) + 224 crops: (64, 224, 224, 3) float 0..255 RGB."""
    image = pytest.importorskip("PIL.Image", reason="PIL decodes the (progressive) JPEG ImageNet samples")
    files = sorted((base / "external_models/testdata/foolbox_samples").glob("imagenet_*.jpg"))
    resized = []
    for f in files:
        with image.open(f) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = 256 / min(w, h)
            resized.append(np.asarray(im.resize((round(w * s), round(h * s)), image.BILINEAR)))
    labels = np.array([_label(f) for f in files])

    def crop(a, top, left):
        return a[top:top + 224, left:left + 224]

    center = [crop(a, (a.shape[0] - 224) // 2, (a.shape[1] - 224) // 2) for a in resized]
    x = np.stack(center + [c[:, ::-1] for c in center] + [crop(a, 0, 0) for a in resized]
                 + [crop(a, a.shape[0] - 224, a.shape[1] - 224) for a in resized[:4]]).astype(np.float32)
    return x, labels, ("the 20 ImageNet images of foolbox_samples, resized to 256 and center-cropped to 224, plus "
                       "44 variants (20 flipped center crops, 20 top-left crops, 4 bottom-right crops)")


CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)[None, :, None, None]
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], np.float32)[None, :, None, None]
CAFFE_BGR_MEAN = np.array([104.0, 117.0, 123.0], np.float32)[None, :, None, None]
N_MNIST = 320  # a multiple of 10 (lenet5 batch) and of 64


def _nchw(x):
    return x.transpose(0, 3, 1, 2)


# model file stem -> (dataset, preprocessing, batch onnxruntime must be fed, relative tolerance,
#                     images of the data set the 20 CIFAR/ImageNet originals must classify right, per SOURCES.md)
EXTERNAL_MODELS = {
    "mnist_lenet_chainer": ("mnist", lambda x: np.repeat(x[:, None] / 255.0, 3, 1), 1, 1e-4, None),
    "mnist_cnn_keras2onnx": ("mnist", lambda x: x[:, :, :, None] / 255.0, None, 1e-4, None),
    "mnist_lenet5_bn_pytorch13": ("mnist", lambda x: x[:, None] / 255.0, 10, 1e-4, None),
    "cifar10_convnet_pytorch17_winml": ("cifar10", lambda x: _nchw(x) * 2 - 1, None, 1e-4, 16),
    "cifar10_resnet20_pytorch15_sclbl": ("cifar10", lambda x: (_nchw(x) - CIFAR_MEAN) / CIFAR_STD, 1, 1e-4, 19),
    "cifar10_resnet20_bn_pytorch16": ("cifar10", lambda x: (_nchw(x) - CIFAR_MEAN) / CIFAR_STD, 1, 1e-4, 18),
    # fp16 weights and fp16 arithmetic in onnxruntime against the float32 IR: fp16 tolerance (eps 9.8e-4)
    "squeezenet1.0_caffe2_fp16": ("imagenet", lambda x: _nchw(x)[:, ::-1] - CAFFE_BGR_MEAN, 1, 2e-3, 14),
    "squeezenet1.0_caffe2_fp32_derived": ("imagenet", lambda x: _nchw(x)[:, ::-1] - CAFFE_BGR_MEAN, 1, 1e-4, 14),
}


@dataclass
class ExternalCase:
    name: str
    path: Path
    x: np.ndarray  # preprocessed model input, float32
    labels: np.ndarray  # labels of the first len(labels) rows of x (the un-augmented images)
    fixed_batch: int | None
    rtol: float
    min_correct: int | None
    source: str


class ExternalData:
    """Lazily built, session-cached cases, imported graphs and onnxruntime outputs."""

    def __init__(self):
        self._cases: dict[str, ExternalCase] = {}
        self._ref: dict[str, np.ndarray] = {}
        self._graphs: dict[str, object] = {}
        self._outputs: dict[tuple, np.ndarray] = {}
        self._datasets: dict[str, tuple] = {}

    def case(self, name: str) -> ExternalCase:
        if name not in self._cases:
            dataset, prep, batch, rtol, min_correct = EXTERNAL_MODELS[name]
            base = shared_path(f"external_models/{name}.onnx", "external_models/testdata")
            if dataset not in self._datasets:
                loader = {"mnist": lambda b: mnist_test(b, N_MNIST), "cifar10": cifar10_64,
                          "imagenet": imagenet_64}[dataset]
                self._datasets[dataset] = loader(base)
            raw, labels, source = self._datasets[dataset]
            x = np.ascontiguousarray(prep(raw), dtype=np.float32)
            self._cases[name] = ExternalCase(name, base / f"external_models/{name}.onnx", x, labels, batch, rtol,
                                             min_correct, source)
        return self._cases[name]

    def reference(self, name: str) -> np.ndarray:
        """onnxruntime's output on the case's inputs (fed in chunks of the model's fixed batch)."""
        if name not in self._ref:
            from ann2snn.frontend.testing import run_onnxruntime

            c = self.case(name)
            self._ref[name] = run_onnxruntime(str(c.path), c.x, fixed_batch=c.fixed_batch)
        return self._ref[name]

    def graph(self, name: str):
        if name not in self._graphs:
            from ann2snn.frontend import load_onnx

            self._graphs[name] = load_onnx(self.case(name).path)
        return self._graphs[name]

    def output(self, name: str, graph=None) -> np.ndarray:
        """``graph.run`` (default: the imported graph) on the case's inputs, cached by content: graphs with the
        same nodes and parameters on the same inputs give the same output (``simplify`` leaves SqueezeNet as it
        is, and the fp16 and fp32 SqueezeNet import to identical float32 graphs)."""
        graph = graph if graph is not None else self.graph(name)
        x = self.case(name).x
        key = (graph_fingerprint(graph), hashlib.sha1(x.tobytes()).hexdigest())
        if key not in self._outputs:
            self._outputs[key] = graph.run(x)
        return self._outputs[key]


def graph_fingerprint(graph) -> str:
    """A hash of everything that determines ``graph.run``: inputs, outputs, node types, fields and parameters."""
    h = hashlib.sha1(repr((graph.inputs, graph.outputs)).encode())
    for n in graph.nodes:
        h.update(type(n).__name__.encode())
        for f in dataclasses.fields(n):
            v = getattr(n, f.name)
            if isinstance(v, np.ndarray):
                h.update(f"{f.name}{v.dtype}{v.shape}".encode())
                h.update(np.ascontiguousarray(v).tobytes())
            else:
                h.update(f"{f.name}={v!r}".encode())
    return h.hexdigest()


@pytest.fixture(scope="session")
def external_data() -> ExternalData:
    return ExternalData()


@pytest.fixture
def png_reader():
    """The zlib + numpy PNG decoder (so tests need not import this conftest, which pytest may shadow)."""
    return read_png


def pytest_generate_tests(metafunc):
    # a test taking ``external_model`` runs once per third-party model (names as in EXTERNAL_MODELS)
    if "external_model" in metafunc.fixturenames:
        metafunc.parametrize("external_model", list(EXTERNAL_MODELS))
