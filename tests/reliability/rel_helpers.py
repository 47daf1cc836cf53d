"""Helpers of the reliability tests: tiny models and data, a deadline runner, file hashes, peak-RSS sampling.

Everything is generated here (nothing downloaded); models are a few nodes so that importing one takes
milliseconds and converting one well under a second.
"""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ann2snn.frontend.testing import make_model
from ann2snn.sim.heap import release_freed_memory

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "model_zoo"
LENET = ZOO / "lenet_bn_maxpool" / "model.onnx"

# generous: the CI machine is shared; a hang (or a runaway allocation) takes far longer than this
DEADLINE_S = 60.0


# ------------------------------------------------------------------------------------------- deadline


def bounded(fn, *args, timeout: float = DEADLINE_S, **kwargs):
    """Run ``fn(*args, **kwargs)`` in a thread and fail the test if it does not return within ``timeout`` s.

    Returns its result or re-raises its exception in the caller (so ``pytest.raises`` works around it).
    A hung thread cannot be killed, but the test fails and names the call instead of blocking CI.
    """
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller as is
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name=f"bounded-{getattr(fn, '__name__', 'call')}")
    start = time.perf_counter()
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {timeout:.0f} s (hang?)")
    box["seconds"] = time.perf_counter() - start
    if "error" in box:
        raise box["error"]
    return box["value"]


def expect_error(cls, fn, *fragments: str, timeout: float = DEADLINE_S):
    """``fn()`` must raise exactly an instance of ``cls`` (an Ann2SnnError subclass) within ``timeout`` s,
    whose message contains every fragment (what is wrong and where: a file, node or tensor name)."""
    with pytest.raises(cls) as info:
        bounded(fn, timeout=timeout)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{type(info.value).__name__} message lacks {frag!r}: {msg}"
    return info.value


# ------------------------------------------------------------------------------------------- models


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def tiny_cnn(opset: int = 13, seed: int = 0, hw: int = 6) -> onnx.ModelProto:
    """Conv(1->2, 3x3) -> Relu -> Flatten -> Gemm(->3) on (N, 1, hw, hw): the smallest CNN."""
    r = _rng(seed)
    o = hw - 2
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[0, 0, 0, 0],
                         strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = {"w": r.normal(size=(2, 1, 3, 3)).astype(np.float32), "b": r.normal(size=2).astype(np.float32),
             "fw": r.normal(size=(3, 2 * o * o)).astype(np.float32) / o, "fb": r.normal(size=3).astype(np.float32)}
    return make_model(nodes, [("x", (1, 1, hw, hw))], ["y"], inits, opset=opset)


def tiny_mlp(seed: int = 1) -> onnx.ModelProto:
    """Gemm(8->6) -> Relu -> Gemm(->4) on (N, 8)."""
    r = _rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="relu1"),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1)]
    inits = {"w1": r.normal(size=(6, 8)).astype(np.float32), "b1": r.normal(size=6).astype(np.float32),
             "w2": r.normal(size=(4, 6)).astype(np.float32), "b2": r.normal(size=4).astype(np.float32)}
    return make_model(nodes, [("x", (1, 8))], ["y"], inits)


def pool_residual_net(seed: int = 2) -> onnx.ModelProto:
    """Conv -> BN -> Relu -> MaxPool, a residual Add, AveragePool, Concat, GAP, shape-arithmetic Reshape, Softmax."""
    r = _rng(seed)
    f32 = np.float32
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["bn"], name="bn", epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r2", "p1"], ["res"], name="add"),
        helper.make_node("AveragePool", ["res"], ["ap"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["ap", "ap"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Shape", ["gap"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "i0"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["tgt"], name="tgt", axis=0),
        helper.make_node("Reshape", ["gap", "tgt"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "wf"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "bf"], ["logits"], name="bias"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    inits = {"w1": r.normal(size=(4, 1, 3, 3)).astype(f32), "s": np.ones(4, f32), "bb": np.zeros(4, f32),
             "m": np.zeros(4, f32), "v": np.ones(4, f32), "w2": r.normal(size=(4, 4, 3, 3)).astype(f32) / 3,
             "b2": r.normal(size=4).astype(f32), "i0": np.array(0, np.int64), "ax0": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64), "wf": r.normal(size=(8, 5)).astype(f32),
             "bf": r.normal(size=5).astype(f32)}
    return make_model(nodes, [("x", (1, 1, 8, 8))], ["y"], inits)


def clip_transpose_net(seed: int = 3) -> onnx.ModelProto:
    """Mul/Sub normalisation -> Conv -> Clip(0, 6) -> Transpose(NHWC) -> Reshape -> MatMul (a Keras-like tail)."""
    r = _rng(seed)
    f32 = np.float32
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["xs"], name="sub"),
        helper.make_node("Mul", ["xs", "scale"], ["xn"], name="mul"),
        helper.make_node("Conv", ["xn", "w"], ["c"], name="conv", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("Transpose", ["r"], ["t"], name="nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc"),
    ]
    inits = {"mean": np.array(0.5, f32), "scale": np.array(2.0, f32), "w": r.normal(size=(3, 2, 2, 2)).astype(f32),
             "lo": np.array(0.0, f32), "hi": np.array(6.0, f32), "shape": np.array([-1, 12], np.int64),
             "wf": r.normal(size=(12, 4)).astype(f32)}
    return make_model(nodes, [("x", (1, 2, 4, 4))], ["y"], inits)


def seed_models() -> dict[str, onnx.ModelProto]:
    """Small valid models the fuzzers start from (each imports cleanly; checked by a test)."""
    return {"tiny_cnn": tiny_cnn(), "tiny_mlp": tiny_mlp(), "pool_residual": pool_residual_net(),
            "clip_transpose": clip_transpose_net(), "tiny_cnn_opset9": tiny_cnn(opset=9)}


def tiny_data(n: int, shape=(1, 6, 6), seed: int = 0, classes: int = 3):
    r = _rng(seed)
    return r.random((n,) + tuple(shape), dtype=np.float32), r.integers(0, classes, n).astype(np.int64)


def save_model(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def raw_tensor(name: str, dims, data_type=TensorProto.FLOAT, raw: bytes | None = None) -> TensorProto:
    """A TensorProto with arbitrary dims and (optionally) raw bytes, bypassing numpy (for forged tensors)."""
    t = TensorProto()
    t.name, t.data_type = name, data_type
    t.dims.extend(int(d) for d in dims)
    if raw is not None:
        t.raw_data = raw
    return t


# ------------------------------------------------------------------------------------------- files


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (hidden ones included); {} when it is absent."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident-set growth of this process while the block runs, sampled every ``interval`` s.

    ``resource.getrusage`` only gives the lifetime maximum; sampling /proc/self/statm from a thread gives the
    peak of one call relative to the RSS just before it (torch's CPU allocator is invisible to tracemalloc).
    """

    def __init__(self, interval: float = 0.0005):
        self.interval = interval
        self.baseline = self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        gc.collect()
        release_freed_memory()  # give freed heap memory back first, so that each call's own working set shows
        self.baseline = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.peak = max(self.peak, rss_bytes())
        self._stop.set()
        self._thread.join()
        return False

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
