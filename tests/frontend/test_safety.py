"""Safe loading: nothing executed, external data confined to the model's folder, sizes bounded before
allocation, truncated/garbage files raise InvalidModelError naming the path."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ann2snn.errors import InvalidModelError
from ann2snn.frontend import LoadLimits, load_onnx
from ann2snn.frontend.testing import one_node_model

W = np.arange(12, dtype=np.float32).reshape(3, 4)


def gemm_model():
    return one_node_model("Gemm", [("x", (2, 4))], initializers={"w": W}, transB=1)


def save_external(tmp_path, location: str, data_path=None, offset=0, length=None):
    """A Gemm model whose weight lives in external data at ``location`` (written to ``data_path``)."""
    model = gemm_model()
    tensor = model.graph.initializer[0]
    raw = tensor.raw_data or numpy_helper.from_array(W).raw_data
    if data_path is not None:
        data_path.parent.mkdir(parents=True, exist_ok=True)
        data_path.write_bytes(b"\0" * offset + raw)
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(len(raw) if length is None else length)}
    for k, v in entries.items():
        e = tensor.external_data.add()
        e.key, e.value = k, v
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_inside_the_folder_loads(tmp_path):
    path = save_external(tmp_path, "sub/w.bin", tmp_path / "model/sub/w.bin", offset=16)
    g = load_onnx(path)
    np.testing.assert_array_equal(g.nodes[0].weight, W)


def test_absolute_external_location_rejected(tmp_path):
    target = tmp_path / "abs.bin"
    path = save_external(tmp_path, str(target), target)
    with pytest.raises(InvalidModelError, match="must be relative"):
        load_onnx(path)


def test_dotdot_escape_rejected(tmp_path):
    path = save_external(tmp_path, "../outside.bin", tmp_path / "outside.bin")
    with pytest.raises(InvalidModelError, match="outside the model's directory"):
        load_onnx(path)


def test_symlink_leading_out_rejected(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(numpy_helper.from_array(W).raw_data)
    path = save_external(tmp_path, "link.bin")
    os.symlink(secret, tmp_path / "model" / "link.bin")
    with pytest.raises(InvalidModelError, match="outside the model's directory"):
        load_onnx(path)


def test_missing_external_file_rejected(tmp_path):
    with pytest.raises(InvalidModelError, match="'w'.*missing"):
        load_onnx(save_external(tmp_path, "nothere.bin"))


def test_external_length_mismatch_rejected(tmp_path):
    path = save_external(tmp_path, "w.bin", tmp_path / "model/w.bin", length=8)
    with pytest.raises(InvalidModelError, match="does not match its declared size"):
        load_onnx(path)


def test_external_data_in_a_modelproto_rejected(tmp_path):
    path = save_external(tmp_path, "w.bin", tmp_path / "model/w.bin")
    proto = onnx.ModelProto.FromString(path.read_bytes())
    with pytest.raises(InvalidModelError, match="external data but the model has no directory"):
        load_onnx(proto)


def test_truncated_file_names_the_path(tmp_path):
    data = gemm_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError, match="cut.onnx"):
        load_onnx(path)


@pytest.mark.parametrize("content", [b"\x00\x01garbage" * 50, os.urandom(2048), b"not an onnx model at all\n"])
def test_garbage_file_names_the_path(tmp_path, content):
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    with pytest.raises(InvalidModelError, match="junk.onnx"):
        load_onnx(path)


@pytest.mark.parametrize("make", [lambda p: p.write_bytes(b""), lambda p: None, lambda p: p.mkdir()],
                         ids=["empty", "missing", "directory"])
def test_empty_missing_or_directory(tmp_path, make):
    path = tmp_path / "m.onnx"
    make(path)
    with pytest.raises(InvalidModelError, match="m.onnx"):
        load_onnx(path)


def test_wrong_argument_type():
    with pytest.raises(InvalidModelError, match="path or an onnx.ModelProto"):
        load_onnx(12)


def test_model_over_size_limit_refused_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(gemm_model().SerializeToString())

    def no_parse(*a, **k):
        raise AssertionError("parsed")

    monkeypatch.setattr(onnx.ModelProto, "ParseFromString", no_parse)
    with pytest.raises(InvalidModelError, match="over the 100-byte model limit"):
        load_onnx(path, limits=LoadLimits(max_model_bytes=100))


def test_huge_declared_tensor_refused_before_allocation():
    model = gemm_model()
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    del t.dims[:]
    t.dims.extend([10**6, 10**6])  # 4 TB declared: allocating it would crash the machine
    with pytest.raises(InvalidModelError, match="'w' declares 4000000000000 bytes, over the"):
        load_onnx(model)


def test_total_tensor_limit():
    with pytest.raises(InvalidModelError, match="total limit"):
        load_onnx(gemm_model(), limits=LoadLimits(max_total_bytes=40))


def test_raw_data_size_mismatch_rejected():
    model = gemm_model()
    model.graph.initializer[0].raw_data = b"\0" * 8
    with pytest.raises(InvalidModelError, match="stores 8 bytes but its dims"):
        load_onnx(model)


def test_attribute_tensors_are_size_checked():
    big = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[10**5, 10**5])
    nodes = [helper.make_node("Constant", [], ["c"], value=big), helper.make_node("Add", ["x", "c"], ["y"])]
    from ann2snn.frontend.testing import make_model

    with pytest.raises(InvalidModelError, match="'v' declares"):
        load_onnx(make_model(nodes, [("x", (1, 2))], ["y"]), limits=LoadLimits(max_tensor_bytes=10**6))


def test_nothing_is_executed_or_loaded_by_onnx(tmp_path, monkeypatch):
    """The importer never calls onnx.load (which would follow external data itself) nor any runtime."""
    path = save_external(tmp_path, "w.bin", tmp_path / "model/w.bin")

    def forbidden(*a, **k):
        raise AssertionError("onnx/onnxruntime must not be used to load the model")

    import onnx.external_data_helper as edh

    for mod, name in [(onnx, "load"), (onnx, "load_model"), (edh, "load_external_data_for_model"),
                      (edh, "load_external_data_for_tensor")]:
        monkeypatch.setattr(mod, name, forbidden)
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # importing it would now fail
    g = load_onnx(path)
    np.testing.assert_array_equal(g.nodes[0].weight, W)
