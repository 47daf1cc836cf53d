"""Shared helpers of the benchmarks: models, data, cached conversion, IR -> torch spec for SpikingJelly.

Run the scripts from the repository root (``python benchmarks/<script>.py``). Converted networks are
cached in ``benchmarks/.cache/`` (git-ignored); delete it to re-convert.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
SJ_PYTHON = ROOT / "benchmarks" / ".venv-sj" / "bin" / "python"
EXTERNAL = Path(os.environ.get("ANN2SNN_EXTERNAL_MODELS", ROOT.parent / "shared" / "external_models"))
ZOO = ("lenet_bn_maxpool", "vgg_avgpool", "resnet_small", "inception_concat")
MNIST = ("mnist_lenet_chainer", "mnist_cnn_keras2onnx", "mnist_lenet5_bn_pytorch13")


def write_json(path, obj) -> None:
    """Write a benchmark's results (the --json option; no-op when path is None), creating the folder."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=1))


def machine() -> dict:
    import torch

    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
        flags = next((ln for ln in out.splitlines() if ln.startswith("Flags")), "")
        model += " (avx512_bf16)" if "avx512_bf16" in flags else ""
        model += " (amx)" if "amx_bf16" in flags else ""
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "loadavg": os.getloadavg()}


def peak_rss_mb() -> float:
    """Peak resident set of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def zoo_available() -> list[str]:
    return [m for m in ZOO if (ROOT / "model_zoo" / m / "model.onnx").is_file()]


def mnist_available() -> list[str]:
    return [m for m in MNIST if (EXTERNAL / f"{m}.onnx").is_file()]


def load_model_data(name: str, n_test: int | None = None, n_calib: int = 1000):
    """-> (onnx path, calib_x, test_x, test_y, note). Zoo: calibration = the zoo sample's calib split,
    test = the full Fashion-MNIST test set (first n_test). MNIST: calibrate on the first n_calib test
    images, evaluate on the following ones (first n_test of them). ``squeezenet``: ImageNet SqueezeNet 1.0 at
    224x224 on the calibration and test crops of ``deep_models.imagenet_sets`` (labels of the 10 original
    test images, -1 for their crops)."""
    if name == "squeezenet":
        from deep_models import MODELS, SHARED, imagenet_sets

        cx, tx, labels = imagenet_sets(min(n_calib, 256))
        ty = np.full(len(tx), -1, np.int64)
        ty[:len(labels)] = labels
        if n_test:
            tx, ty = tx[:n_test], ty[:n_test]
        return SHARED / MODELS["squeezenet"][0], cx, tx, ty, "ImageNet samples 10-19 and crops"
    if name in ZOO:
        from ann2snn.data import load_fashion_mnist, load_zoo_sample

        cx, _, _, _, pre = load_zoo_sample(name)
        x, y = load_fashion_mnist("test")
        x = pre.apply(x)
        if n_test:
            x, y = x[:n_test], y[:n_test]
        return ROOT / "model_zoo" / name / "model.onnx", cx, x, y.astype(np.int64), "Fashion-MNIST test"
    z = np.load(EXTERNAL / "testdata" / "mnist_test_10k.npz")
    keys = list(z.files)
    xk = next(k for k in keys if k.startswith("x") or "image" in k)
    yk = next(k for k in keys if k.startswith("y") or "label" in k)
    x = z[xk].astype(np.float32)
    if x.max() > 1.5:
        x = x / 255.0
    x = x.reshape(len(x), 28, 28)
    y = z[yk].astype(np.int64)
    if name == "mnist_lenet_chainer":
        x = np.repeat(x[:, None], 3, axis=1)
    elif name == "mnist_cnn_keras2onnx":
        x = x[:, :, :, None]
    else:
        x = x[:, None]
    x = np.ascontiguousarray(x, dtype=np.float32)
    cx, tx, ty = x[:n_calib], x[n_calib:], y[n_calib:]
    if n_test:
        tx, ty = tx[:n_test], ty[:n_test]
    return EXTERNAL / f"{name}.onnx", cx, tx, ty, f"MNIST test[{n_calib}:]"


def converted(name: str, onnx_path, calib_x, config=None, tag: str = "default"):
    """Convert (default config unless given) once and cache the network in benchmarks/.cache/."""
    from ann2snn.convert.pipeline import convert
    from ann2snn.network import load

    path = CACHE / f"{name}.{tag}.snn"
    if path.is_dir():
        return load(path)
    net = convert(str(onnx_path), calib_x, config)
    net.save(path, overwrite=True)
    return net


# ------------------------------------------------------------------------------------------------
# ann2snn IR (the simplified ANN) -> a layer list + arrays that benchmarks/sj_convert.py turns into an
# nn.Module with one nn.ReLU module per ReLU (what SpikingJelly converts).
# ------------------------------------------------------------------------------------------------

def export_ir(graph, path_json: Path, path_npz: Path) -> None:
    import torch

    from ann2snn.ir import nodes as ir
    from ann2snn.ir.reference import _window_geometry

    shapes = graph.shapes
    arrays, layers = {}, []
    for n in graph.nodes:
        e = {"name": n.name, "inputs": list(n.inputs), "op": type(n).__name__}
        if isinstance(n, ir.Conv2d):
            arrays[f"{n.name}/w"] = n.weight
            if n.bias is not None:
                arrays[f"{n.name}/b"] = n.bias
            e.update(stride=list(n.stride), padding=list(n.padding), dilation=list(n.dilation), groups=n.groups)
        elif isinstance(n, ir.Dense):
            arrays[f"{n.name}/w"] = n.weight
            if n.bias is not None:
                arrays[f"{n.name}/b"] = n.bias
        elif isinstance(n, ir.ScaleShift):
            arrays[f"{n.name}/scale"] = np.asarray(n.scale, np.float32)
            arrays[f"{n.name}/shift"] = np.asarray(n.shift, np.float32)
        elif isinstance(n, ir.ReLU):
            if n.ceiling is not None:
                raise NotImplementedError("ReLU with a ceiling")
        elif isinstance(n, (ir.MaxPool2d, ir.AvgPool2d)):
            x = torch.zeros((1,) + tuple(shapes[n.inputs[0]]))
            (t, l, b, r), (eb, er), (oh, ow), dil = _window_geometry(n, x)
            e.update(kernel=list(n.kernel), stride=list(n.stride), pad=[l, r + er, t, b + eb], crop=[oh, ow],
                     dilation=list(dil))
            if isinstance(n, ir.AvgPool2d) and (t or l or b or r or eb or er):
                raise NotImplementedError("padded AvgPool2d")
        elif isinstance(n, ir.Reshape):
            e["shape"] = list(n.shape)
        elif isinstance(n, ir.Transpose):
            e["perm"] = list(n.perm)
        elif isinstance(n, ir.Concat):
            e["axis"] = n.axis
        elif isinstance(n, ir.Softmax):
            e.update(axis=n.axis, log=n.log)
        elif not isinstance(n, (ir.Add, ir.Flatten, ir.GlobalAvgPool, ir.GlobalMaxPool)):
            raise NotImplementedError(type(n).__name__)
        layers.append(e)
    path_json.write_text(json.dumps({"input": graph.inputs[0].name, "input_shape": list(graph.inputs[0].shape),
                                     "output": graph.outputs[0], "layers": layers}))
    np.savez(path_npz, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})


def run_sj(args: list[str]) -> dict:
    """Run benchmarks/sj_convert.py in the SpikingJelly venv; returns its JSON result."""
    if not SJ_PYTHON.is_file():
        raise FileNotFoundError(f"{SJ_PYTHON} missing: see benchmarks/RESULTS.md for the venv set-up")
    cmd = [str(SJ_PYTHON), str(ROOT / "benchmarks" / "sj_convert.py"), *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"sj_convert failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])
