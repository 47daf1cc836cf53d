"""Calibration on a real trained model with real images: the first model-zoo model the importer loads,
else a public MNIST LeNet (one model keeps the suite fast; the others are exercised elsewhere).

Skips cleanly while the ONNX importer cannot load any of them yet (UnsupportedModelError).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ann2snn.calibration import (
    channel_count,
    check_scales_match,
    choose_thresholds,
    collect_activation_stats,
    load_scales,
    save_scales,
)
from ann2snn.errors import UnsupportedModelError

# a plain helper module next to the tests (tests/calibration is on sys.path under pytest)
from calib_helpers import per_channel

ROOT = Path(__file__).resolve().parents[2]
# the shared folder as tests/conftest.py finds it: $ANN2SNN_SHARED, else next to the repository
EXTERNAL = Path(os.environ.get("ANN2SNN_SHARED") or ROOT.parent / "shared") / "external_models"
N_SAMPLES = 128


def _candidates() -> list[Path]:
    return sorted((ROOT / "model_zoo").glob("*/model.onnx")) + [EXTERNAL / "mnist_lenet_chainer.onnx"]


def _images(onnx_path: Path) -> np.ndarray | None:
    """(N, 28, 28) float32 images preprocessed as the model expects (None if the data is missing)."""
    manifest = onnx_path.parent / "manifest.json"
    if manifest.exists():
        info = json.loads(manifest.read_text())
        pre = info.get("preprocessing", {})
        sample = ROOT / "model_zoo" / info.get("sample_file", "fashion_mnist_sample.npz")
        if not sample.exists():
            return None
        raw = np.load(sample)["calib_x"][:N_SAMPLES]
        x = raw.astype(np.float32) * pre.get("scale", 1 / 255)
        return (x - pre.get("mean", 0.0)) / pre.get("std", 1.0)
    data = EXTERNAL / "testdata" / "mnist_test_10k.npz"
    if not data.exists():
        return None
    return np.load(data)["images"][:N_SAMPLES].astype(np.float32) / 255.0  # this model wants [0, 1]


@pytest.fixture(scope="module")
def real_model():
    """(model name, IR graph, calibration images) of the first candidate that imports."""
    try:
        from ann2snn.frontend import load_onnx
    except ImportError as e:
        pytest.skip(f"ONNX importer not available: {e}")
    reasons = []
    for onnx_path in _candidates():
        images = _images(onnx_path) if onnx_path.exists() else None
        if images is None:
            reasons.append(f"{onnx_path}: model or data missing")
            continue
        try:
            graph = load_onnx(onnx_path)
        except UnsupportedModelError as e:
            reasons.append(f"{onnx_path.name}: {str(e).splitlines()[0]}")
            continue
        (spec,) = graph.inputs
        # (N, 28, 28) -> the model's (N, C, 28, 28): grey images repeated over the channels it wants
        x = np.repeat(images[:, None], spec.shape[0], axis=1).reshape((len(images),) + tuple(spec.shape))
        return onnx_path.parent.name if onnx_path.name == "model.onnx" else onnx_path.stem, graph, x
    pytest.skip("the importer cannot load a real model yet: " + "; ".join(reasons))


def test_calibrate_real_model(real_model, tmp_path):
    name_, graph, x = real_model
    relus = [n.name for n in graph.nodes if type(n).__name__ == "ReLU"]
    if not relus:
        pytest.skip(f"{name_} imported without ReLU nodes")

    stats = collect_activation_stats(graph, relus, x, batch_size=64)
    acts = graph.run(x, outputs=relus, batch_size=N_SAMPLES)
    for name in relus:
        st, v = stats[name], per_channel(acts[name])
        np.testing.assert_array_equal(st.max, v.max(axis=1))
        np.testing.assert_array_equal(st.nonpos, (v <= 0).sum(axis=1))
        assert st.min.min() >= 0
        for p in (99.0, 99.9, 99.99):
            assert np.all(np.abs(st.percentile(p) - np.percentile(v, p, axis=1)) <= st.bin_width() + 1e-9)
            assert abs(st.percentile(p, "layer")[0] - np.percentile(v, p)) <= st.bin_width("layer")[0] + 1e-9

    required = {name: channel_count(graph.shapes[name]) for name in relus}
    for method in ("max", "percentile:99.99", "mmse"):
        for gran in ("channel", "layer"):
            scales = choose_thresholds(stats, method, gran, timesteps=32)
            check_scales_match(scales, required)
            for name, th in scales.items():
                assert th.dtype == np.float32 and np.all(th > 0) and np.all(np.isfinite(th))
                assert th.shape == ((required[name],) if gran == "channel" else (1,))
                live = stats[name].max > 0
                if gran == "channel":
                    assert np.all(th[live] <= stats[name].max[live].astype(np.float32))
            path = save_scales(tmp_path / f"{method.replace(':', '_')}_{gran}.json", scales, {"method": method})
            loaded = load_scales(path)
            check_scales_match(loaded, required, source=str(path))
            for name in scales:
                np.testing.assert_array_equal(loaded[name], scales[name])
