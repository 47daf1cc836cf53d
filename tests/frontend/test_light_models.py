"""The ONNX model zoo's classics at 224x224, as shipped inside the onnx wheel (``onnx/backend/test/data/light``):
every one is inspected, the three with LRN are refused naming every LRN node, the other six import and match
onnxruntime, both as shipped (every weight 0.02) and with seeded random weights of the same shapes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from ann2snn.errors import UnsupportedModelError
from ann2snn.frontend import inspect_onnx, load_onnx
from ann2snn.frontend.testing import light_model_dir, randomize_weights, run_onnxruntime, without_final_softmax

LIGHT = light_model_dir()
pytestmark = pytest.mark.skipif(LIGHT is None, reason="this onnx wheel ships no backend/test/data/light models")

WITH_LRN = ["bvlc_alexnet", "inception_v1", "zfnet512"]
CONVERTIBLE = ["densenet121", "inception_v2", "resnet50", "shufflenet", "squeezenet", "vgg19"]
X = np.random.default_rng(16).standard_normal((2, 3, 224, 224)).astype(np.float32)


def light(name: str) -> onnx.ModelProto:
    return onnx.load(str(LIGHT / f"light_{name}.onnx"))


def assert_close_to_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> float:
    """graph.run vs onnxruntime, within 1e-4 of max|output|; returns the relative error."""
    ref = run_onnxruntime(model, x, fixed_batch=1)
    out = load_onnx(model).run(x).reshape(ref.shape)
    rel = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    assert np.all(np.isfinite(out)) and rel <= 1e-4, rel
    return rel


def test_the_nine_are_there():
    assert sorted(p.stem[len("light_"):] for p in LIGHT.glob("light_*.onnx")) == sorted(WITH_LRN + CONVERTIBLE)


@pytest.mark.parametrize("name", WITH_LRN + CONVERTIBLE)
def test_inspect_runs_on_every_model(name):
    report = inspect_onnx(str(LIGHT / f"light_{name}.onnx"))
    assert len(report.rows) == len(light(name).graph.node)
    folded = [r for r in report.rows if r.op_type == "ConstantOfShape"]
    assert folded and all(r.kind == "constant" for r in folded)  # the weights
    assert report.convertible == (name in CONVERTIBLE)


@pytest.mark.parametrize("name", WITH_LRN)
def test_lrn_models_are_refused_naming_every_lrn_node(name):
    model = light(name)
    lrn = {n.name or n.output[0] for n in model.graph.node if n.op_type == "LRN"}
    with pytest.raises(UnsupportedModelError) as e:
        load_onnx(model)
    named = {node for op, node, _ in e.value.problems if op == "LRN"}
    assert len(lrn) >= 2 and named == lrn
    assert all(op == "LRN" for op, _, _ in e.value.problems)  # nothing else is wrong with these graphs
    assert all(n in str(e.value) for n in lrn)


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_shipped_model_matches_onnxruntime(name):
    assert_close_to_onnxruntime(light(name), X[:1])


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_random_weight_variant_matches_onnxruntime(name):
    model = randomize_weights(light(name), seed=0)
    assert not any(n.op_type == "ConstantOfShape" for n in model.graph.node)
    cut = without_final_softmax(model)
    ref = run_onnxruntime(cut, X, fixed_batch=1)
    assert np.std(ref) > 0 and not np.allclose(ref[0], ref[1])  # the weights make the outputs differ
    assert_close_to_onnxruntime(cut, X)
