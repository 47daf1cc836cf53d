"""Every third-party model in shared/external_models imports, and graph.run reproduces onnxruntime on real,
correctly preprocessed images (before and after ``simplify``).

Data (see tests/conftest.py): MNIST models: the first 320 images of the real MNIST test set; CIFAR-10 models:
the 20 real CIFAR-10 test images of foolbox_samples plus 44 flipped/shifted/cropped variants (64); SqueezeNet:
the 20 real ImageNet samples, resized to 256 with crops at the center, flipped, top-left and bottom-right (64).
Models with a fixed batch (LeNet-5: 10, the batch-1 models) are fed to onnxruntime in chunks of that batch.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from ann2snn.frontend import load_onnx
from ann2snn.passes import simplify

# the models' accuracy on the first 320 MNIST test images must be near SOURCES.md's full-test-set figure
MNIST_MIN_ACCURACY = {"mnist_lenet_chainer": 0.97, "mnist_cnn_keras2onnx": 0.85, "mnist_lenet5_bn_pytorch13": 0.97}


def _check(case, ref, out):
    assert out.shape == ref.shape, (out.shape, ref.shape)
    rel = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
    assert rel <= case.rtol, f"{case.name}: max|diff| / max|out| = {rel:.3g} > {case.rtol:g}"
    n = len(ref)
    agree = (out.reshape(n, -1).argmax(1) == ref.reshape(n, -1).argmax(1)).mean()
    assert agree == 1.0, f"{case.name}: argmax agreement {agree:.4f}"
    return rel


def test_graph_run_matches_onnxruntime(external_data, external_model):
    name = external_model
    case = external_data.case(name)
    assert len(case.x) >= 64
    ref = external_data.reference(name)
    _check(case, ref, external_data.output(name))
    # the models are trained: with the documented preprocessing they classify the real images as SOURCES.md says
    n = len(case.labels)
    correct = int((ref[:n].reshape(n, -1).argmax(1) == case.labels).sum())
    if case.min_correct is not None:
        assert correct >= case.min_correct, f"{correct}/{n} correct, SOURCES.md documents {case.min_correct}"
    else:
        assert correct / n >= MNIST_MIN_ACCURACY[name]


def test_simplified_graph_matches_onnxruntime(external_data, external_model):
    name = external_model
    case = external_data.case(name)
    simple = simplify(external_data.graph(name))
    _check(case, external_data.reference(name), external_data.output(name, simple))
    kinds = Counter(type(n).__name__ for n in simple.nodes)
    # every BatchNorm / bias Add folded: no ScaleShift is left in these models (none normalizes its input)
    assert "ScaleShift" not in kinds, kinds
    assert simple.outputs == external_data.graph(name).outputs


def test_keras_model_is_stored_unsorted_and_imports(shared_dir):
    path = shared_dir("external_models/mnist_cnn_keras2onnx.onnx") / "external_models/mnist_cnn_keras2onnx.onnx"
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(onnx.load(str(path)))
    g = load_onnx(path)
    assert g.inputs[0].shape == (28, 28, 1)  # NHWC input as Keras exports it
    assert type(g.nodes[0]).__name__ == "Transpose" and g.nodes[0].perm == (2, 0, 1)
    kinds = [type(n).__name__ for n in simplify(g).nodes]
    assert kinds == ["Transpose", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dense",
                     "Dense", "Softmax"]


def test_lenet5_fixed_batch_bn_after_relu_folds_into_next_gemm(external_data):
    g = external_data.graph("mnist_lenet5_bn_pytorch13")
    assert g.metadata["declared_batch"] == 10
    assert len(external_data.case("mnist_lenet5_bn_pytorch13").x) % 10 == 0
    kinds = [type(n).__name__ for n in simplify(g).nodes]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dense", "ReLU",
                     "Dense", "ReLU", "Dense", "Softmax"]
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)  # any batch size runs
    assert g.run(x).shape == (3, 10)


def test_resnet_bn_dynamic_flatten_and_folding(external_data):
    g = external_data.graph("cifar10_resnet20_bn_pytorch16")
    kinds = Counter(type(n).__name__ for n in g.nodes)
    assert kinds["ScaleShift"] == 21 and kinds["Flatten"] == 1 and kinds["Add"] == 9
    s = Counter(type(n).__name__ for n in simplify(g).nodes)
    assert s == Counter({"Conv2d": 21, "ReLU": 19, "Add": 9, "GlobalAvgPool": 1, "Flatten": 1, "Dense": 1})


def test_fp16_and_fp32_squeezenet_give_the_same_graph(external_data):
    a = external_data.graph("squeezenet1.0_caffe2_fp16")
    b = external_data.graph("squeezenet1.0_caffe2_fp32_derived")
    assert [type(n) for n in a.nodes] == [type(n) for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes):
        for k, v in na.parameters().items():
            assert v.dtype == np.float32
            np.testing.assert_array_equal(v, nb.parameters()[k])
    assert type(a.nodes[-1]).__name__ == "Softmax" and a.nodes[-1].axis == 0  # (1000, 1, 1) output


def test_png_decoder_matches_pil(shared_dir, png_reader):
    image = pytest.importorskip("PIL.Image")
    base = shared_dir("external_models/testdata/foolbox_samples")
    for f in sorted((base / "external_models/testdata/foolbox_samples").glob("*.png"))[::10]:
        with image.open(f) as im:
            want = np.asarray(im)
        got = png_reader(f)
        np.testing.assert_array_equal(got.reshape(want.shape), want)
