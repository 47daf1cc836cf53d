"""The MNIST models of shared/external_models (Chainer, keras2onnx NHWC, PyTorch with BN after a ReLU and a
batch fixed at 10) convert and keep their accuracy; preprocessing as in SOURCES.md."""

import numpy as np
import pytest

import ann2snn

CASES = {
    "mnist_lenet_chainer.onnx": lambda im: np.repeat(im[:, None], 3, axis=1),
    "mnist_cnn_keras2onnx.onnx": lambda im: im[:, :, :, None],
    "mnist_lenet5_bn_pytorch13.onnx": lambda im: im[:, None],
}


@pytest.mark.parametrize("model", sorted(CASES))
def test_external_mnist_model_converts(model, shared_dir):
    base = shared_dir(f"external_models/{model}", "external_models/testdata/mnist_test_10k.npz") / "external_models"
    with np.load(base / "testdata/mnist_test_10k.npz") as d:
        images = (d["images"][:1400] / 255.0).astype(np.float32)
        labels = d["labels"][:1400].astype(np.int64)
    x = CASES[model](images)
    cfg = ann2snn.ConversionConfig(v_init=0.5, bias_correction=False)
    report = ann2snn.evaluate(str(base / model), (x[1000:], labels[1000:]), x[:400], [16, 64], config=cfg)
    assert report.ann_accuracy > 0.85
    assert report.snn_accuracy[64] >= report.ann_accuracy - 0.01
    assert report.agreement[64] >= 0.97
