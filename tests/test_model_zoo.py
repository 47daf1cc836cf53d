"""The bundled model zoo: manifests, ONNX files, the shared data sample, and their accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ann2snn.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    Preprocessing,
    load_fashion_mnist,
    load_zoo_manifest,
    load_zoo_sample,
    zoo_model_dir,
)
from ann2snn.errors import DataError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ZOO = Path(__file__).resolve().parent.parent / "model_zoo"
SAMPLE = ZOO / "fashion_mnist_sample.npz"
MODELS = ("lenet_bn_maxpool", "vgg_avgpool", "resnet_small", "inception_concat")
MAX_BYTES = 2 * 1024 * 1024
# The ops a Loihi (netx) export can express; vgg_avgpool is the zoo's Loihi-exportable model.
LOIHI_OPS = {"Conv", "AveragePool", "Flatten", "Gemm", "Relu"}


@pytest.fixture(scope="module")
def sample():
    with np.load(SAMPLE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def ort_session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_zoo_lists_exactly_the_documented_models():
    found = sorted(p.parent.name for p in ZOO.glob("*/manifest.json"))
    assert found == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_manifest_valid_and_model_file_small(name):
    m = load_zoo_manifest(name, ZOO)
    assert m["name"] == name == zoo_model_dir(name, ZOO).name
    path = Path(m["model_path"])
    assert path.is_file() and path.stat().st_size < MAX_BYTES
    assert m["onnx_bytes"] == path.stat().st_size
    assert m["input_name"] == "input" and m["input_shape"] == [1, 28, 28]
    assert m["classes"] == list(FASHION_MNIST_CLASSES)
    assert Preprocessing.from_dict(m["preprocessing"]) == Preprocessing(scale=1 / 255, mean=0.0, std=1.0,
                                                                        layout="NCHW", channels=1)
    assert 0.85 <= m["ann_accuracy"] <= 0.95
    assert m["onnx_opset"] == 13 and isinstance(m["seed"], int) and isinstance(m["epochs"], int)
    assert m["training_command"].startswith(f"python model_zoo/train.py --model {name} ")
    assert isinstance(m["torch_version"], str) and m["parameter_count"] > 0
    assert Path(m["sample_path"]).resolve() == SAMPLE.resolve()

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 13
    (inp,) = model.graph.input
    assert inp.name == "input"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # dynamic batch
    assert [o.name for o in model.graph.output] == ["logits"]
    ops = {n.op_type for n in model.graph.node}
    assert ops == set(m["onnx_ops"])
    assert ops <= {"Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool",
                   "Flatten", "Gemm", "Add", "Concat"}


def test_architectural_features():
    ops = {name: set(load_zoo_manifest(name, ZOO)["onnx_ops"]) for name in MODELS}
    assert ops["vgg_avgpool"] <= LOIHI_OPS and "AveragePool" in ops["vgg_avgpool"]
    assert "MaxPool" in ops["lenet_bn_maxpool"]
    assert {"Add", "GlobalAveragePool"} <= ops["resnet_small"]
    assert "Concat" in ops["inception_concat"]


@pytest.mark.parametrize("name", MODELS)
def test_ort_accuracy_on_bundled_sample_matches_manifest(name):
    m = load_zoo_manifest(name, ZOO)
    calib_x, calib_y, test_x, test_y, pre = load_zoo_sample(name, ZOO)
    assert test_x.dtype == np.float32 and test_x.shape == (1000, 1, 28, 28)
    assert 0.0 <= test_x.min() and test_x.max() <= 1.0
    sess = ort_session(Path(m["model_path"]))
    logits = sess.run(["logits"], {"input": test_x})[0]
    assert logits.shape == (1000, 10)
    acc = float((logits.argmax(1) == test_y).mean())
    assert abs(acc - m["ann_accuracy"]) <= 0.03, (name, acc, m["ann_accuracy"])
    # the calibration images come from the training set: the model should fit them at least as well
    calib_acc = float((sess.run(["logits"], {"input": calib_x})[0].argmax(1) == calib_y).mean())
    assert calib_acc >= m["ann_accuracy"] - 0.03


def test_sample_keys_dtypes_shapes(sample):
    assert set(sample) == {"calib_x", "calib_y", "calib_index", "test_x", "test_y"}
    assert sample["calib_x"].dtype == np.uint8 and sample["calib_x"].shape == (1000, 28, 28)
    assert sample["test_x"].dtype == np.uint8 and sample["test_x"].shape == (1000, 28, 28)
    for k in ("calib_y", "test_y", "calib_index"):
        assert sample[k].dtype == np.int64 and sample[k].shape == (1000,)
    assert np.bincount(sample["calib_y"], minlength=10).tolist() == [100] * 10  # class-balanced
    assert len(np.unique(sample["calib_index"])) == 1000
    assert SAMPLE.stat().st_size < MAX_BYTES


def test_load_zoo_sample_raw_and_by_directory():
    raw = load_zoo_sample(ZOO / "vgg_avgpool", raw=True)
    assert raw.calib_x.dtype == np.uint8 and raw.calib_x.shape == (1000, 28, 28)
    assert raw.test_y.dtype == np.int64
    assert isinstance(raw.preprocessing, Preprocessing)


@pytest.mark.skipif(
    not (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (Debian package dataset-fashion-mnist)",
)
def test_sample_is_the_documented_selection(sample):
    x_test, y_test = load_fashion_mnist("test")
    np.testing.assert_array_equal(sample["test_x"], x_test[:1000])
    np.testing.assert_array_equal(sample["test_y"], y_test[:1000])
    x_train, y_train = load_fashion_mnist("train")
    np.testing.assert_array_equal(sample["calib_x"], x_train[sample["calib_index"]])
    np.testing.assert_array_equal(sample["calib_y"], y_train[sample["calib_index"]])


# ------------------------------------------------------------------------------- zoo error handling


def test_unknown_model_names_the_zoo(tmp_path):
    with pytest.raises(DataError, match="no such zoo model 'nope'") as ei:
        load_zoo_sample("nope", ZOO)
    assert "lenet_bn_maxpool" in str(ei.value)
    with pytest.raises(DataError, match="plain model name"):
        load_zoo_manifest("../etc", ZOO)


@pytest.fixture
def zoo_copy(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(ZOO / "lenet_bn_maxpool" / "manifest.json", d / "manifest.json")
    shutil.copy(SAMPLE, tmp_path / SAMPLE.name)
    return d


def _edit(d: Path, **changes):
    p = d / "manifest.json"
    m = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    p.write_text(json.dumps(m))
    return p


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(ann_accuracy=None), "missing 'ann_accuracy'"),
        (dict(ann_accuracy="91%"), "'ann_accuracy' should be float"),
        (dict(ann_accuracy=91.0), r"fraction in \[0, 1\]"),
        (dict(sample_file="../../secret.npz"), "plain file name"),
        (dict(model_file="/abs/model.onnx"), "plain file name"),
        (dict(preprocessing={"std": 0}), "std must be > 0"),
    ],
)
def test_bad_manifest_is_data_error(zoo_copy, changes, match):
    p = _edit(zoo_copy, **changes)
    with pytest.raises(DataError, match=match) as ei:
        load_zoo_manifest(zoo_copy)
    assert str(p) in str(ei.value)


def test_manifest_not_json_and_bad_sample(zoo_copy, tmp_path):
    assert load_zoo_sample(zoo_copy).test_x.shape == (1000, 1, 28, 28)  # the copy works as is
    np.savez(tmp_path / SAMPLE.name, calib_x=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing key") as ei:
        load_zoo_sample(zoo_copy)
    assert SAMPLE.name in str(ei.value)
    (zoo_copy / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_zoo_manifest(zoo_copy)
