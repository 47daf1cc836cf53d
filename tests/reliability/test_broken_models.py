"""A corpus of broken ONNX inputs, generated here: each ends in one clear Ann2SnnError subclass that names the
problem and where it is (the file, and the node or tensor), within bounded time and memory.

The table ``CASES`` is also the corpus the CLI tests (test_cli_failures.py) run through ``ann2snn convert``.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from rel_helpers import (
    copy_model, expect_error, raw_tensor, save_model, seed_models, tiny_cnn,
)

from ann2snn import InvalidModelError, UnsupportedModelError, load_onnx
from ann2snn.frontend import inspect_onnx
from ann2snn.frontend.testing import make_model

I, U = InvalidModelError, UnsupportedModelError


def _mut(fn):
    """A case built by mutating the tiny CNN in place."""
    def build():
        m = copy_model(tiny_cnn())
        fn(m)
        return m
    return build


def _conv_attrs(**attrs):
    def fn(m):
        node = m.graph.node[0]
        del node.attribute[:]
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    return fn


def _set_init(name, array):
    def fn(m):
        for t in m.graph.initializer:
            if t.name == name:
                t.CopyFrom(numpy_helper.from_array(np.asarray(array), name))
    return fn


def _tiny_w(**replace):
    w = numpy_helper.to_array(tiny_cnn().graph.initializer[0]).copy()
    for idx, v in replace.items():
        w.reshape(-1)[int(idx[1:])] = v
    return w


def _conv_relu(hw=4, k=1, **attrs):
    """Conv (k x k) -> Relu alone (no Gemm after it to complain first about the features)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [("x", (1, 1, hw, hw))], ["y"], {"w": np.ones((1, 1, k, k), np.float32)})


def _fold(op, a, b, n_inputs=2, **attrs):
    """A graph that folds ``op`` over constants (a memory bomb when they broadcast/repeat to terabytes)."""
    inputs = (["a", "b"] if b is not None else ["a"] * n_inputs)
    inits = {"a": a} if b is None else {"a": a, "b": b}
    nodes = [helper.make_node(op, inputs, ["k"], name="bomb", **attrs),
             helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return make_model(nodes, [("x", (1, 4))], ["y"], inits)


def _memory_bomb_declared(m):
    # 10^6 x 10^6 x 3 x 3 float32 = 36 TB declared by a few bytes of protobuf, no data behind it
    m.graph.initializer[0].CopyFrom(raw_tensor("w", [10**6, 10**6, 3, 3]))


def _memory_bomb_raw_short(m):
    m.graph.initializer[0].CopyFrom(raw_tensor("w", [2, 1, 3, 3_000_000], raw=b"\0" * 72))


def _float_data_short(m):
    t = raw_tensor("w", [2, 1, 3, 3])
    t.float_data.extend([1.0] * 5)
    m.graph.initializer[0].CopyFrom(t)


def _add_domain(m):
    m.graph.node[1].domain = "com.evil"
    m.opset_import.add(domain="com.evil", version=1)


def _set_dim(i, value):
    def fn(m):
        m.graph.input[0].type.tensor_type.shape.dim[i].dim_value = value
    return fn


# id -> (builder: () -> ModelProto | bytes, expected class, fragments the message must contain)
# ("{file}" in a fragment stands for the model's file name)
CASES = {
    # --- not a model at all
    "empty_file": (lambda: b"", I, ["{file}", "empty"]),
    "random_bytes_1": (lambda: b"\x9b", I, ["{file}", "not a valid ONNX protobuf"]),
    "random_bytes_4k": (lambda: np.random.default_rng(7).bytes(4096), I, ["{file}", "not a valid ONNX protobuf"]),
    "truncated_10pct": (lambda: tiny_cnn().SerializeToString()[:60], I, ["{file}", "truncated or corrupt"]),
    "truncated_90pct": (lambda: (lambda b: b[: int(len(b) * 0.9)])(tiny_cnn().SerializeToString()), I,
                        ["{file}", "truncated or corrupt"]),
    "text_file": (lambda: b"ir_version: 7\ngraph { name: 'g' }\n", I, ["{file}", "not a valid ONNX protobuf"]),
    "protobuf_graph_not_model": (lambda: tiny_cnn().graph.SerializeToString(), I, ["{file}", "no ONNX graph"]),
    "protobuf_node_not_model": (lambda: tiny_cnn().graph.node[0].SerializeToString(), I, ["{file}", "no ONNX graph"]),
    "protobuf_tensor_not_model": (lambda: numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
                                  .SerializeToString(), I, ["{file}"]),
    "graph_without_nodes": (_mut(lambda m: m.graph.ClearField("node")), I, ["{file}", "no ONNX graph"]),
    # --- broken graphs
    "cycle": (_mut(lambda m: m.graph.node[0].input.__setitem__(0, "y")), I, ["cycle", "conv"]),
    "self_loop": (_mut(lambda m: m.graph.node[1].input.__setitem__(0, "r")), I, ["cycle", "relu"]),
    "dangling_input": (_mut(lambda m: m.graph.node[1].input.__setitem__(0, "nowhere")), I,
                       ["{file}", "relu", "nowhere"]),
    "duplicate_output_name": (_mut(lambda m: m.graph.node[1].output.__setitem__(0, "c")), I,
                              ["produced twice", "'c'"]),
    "graph_output_not_produced": (_mut(lambda m: setattr(m.graph.output[0], "name", "ghost")), I,
                                  ["{file}", "ghost"]),
    "no_graph_outputs": (_mut(lambda m: m.graph.ClearField("output")), I, ["no outputs"]),
    "no_graph_inputs": (_mut(lambda m: m.graph.ClearField("input")), I, ["{file}", "no non-constant input"]),
    "no_default_opset": (_mut(lambda m: m.ClearField("opset_import")), I, ["{file}", "no opset"]),
    "input_without_shape": (_mut(lambda m: m.graph.input[0].type.tensor_type.ClearField("shape")), I,
                            ["{file}", "'x'", "no tensor shape"]),
    "input_without_type": (_mut(lambda m: m.graph.input[0].ClearField("type")), I, ["{file}", "'x'"]),
    "integer_input": (_mut(lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", TensorProto.INT64)),
                      U, ["{file}", "'x'", "floating-point"]),
    # --- initializers whose data does not match their dims, bad types
    "raw_data_shorter_than_dims": (_mut(lambda m: m.graph.initializer[0].dims.__setitem__(0, 5)), I,
                                   ["{file}", "'w'", "stores 72 bytes"]),
    "float_data_shorter_than_dims": (_mut(_float_data_short), I, ["{file}", "'w'", "cannot be decoded"]),
    "negative_initializer_dim": (_mut(lambda m: m.graph.initializer[0].dims.__setitem__(0, -2)), I,
                                 ["{file}", "'w'", "negative dimension"]),
    "string_initializer": (_mut(lambda m: m.graph.initializer[0].CopyFrom(
        helper.make_tensor("w", TensorProto.STRING, [1], [b"a"]))), I, ["{file}", "'w'", "data type"]),
    "unknown_data_type": (_mut(lambda m: setattr(m.graph.initializer[0], "data_type", 999)), I,
                          ["{file}", "'w'", "data type 999"]),
    # --- mismatched shapes, zero or negative dims
    "gemm_weight_mismatch": (_mut(_set_init("fw", np.ones((3, 7), np.float32))), U,
                             ["{file}", "fc", "does not match 32 input features"]),
    "conv_channels_mismatch": (_mut(_set_dim(1, 3)), I, ["{file}", "conv", "input channels"]),
    "zero_input_dim": (_mut(_set_dim(2, 0)), I, ["{file}", "'x'"]),
    "negative_input_dim": (_mut(_set_dim(3, -4)), I, ["{file}", "'x'"]),
    "input_rank_1": (_mut(lambda m: m.graph.input[0].type.tensor_type.shape.dim.__delitem__(slice(1, None))), I,
                     ["{file}", "'x'", "batch and a sample shape"]),
    "zero_size_weight": (_mut(_set_init("w", np.zeros((0, 1, 3, 3), np.float32))), U, ["{file}", "fc"]),
    # --- opsets and domains
    "opset_1": (lambda: tiny_cnn(opset=1), U, ["{file}", "opset 1 is outside the supported range"]),
    "opset_99": (_mut(lambda m: setattr(m.opset_import[0], "version", 99)), U,
                 ["{file}", "opset 99 is outside the supported range"]),
    "unknown_domain": (_mut(_add_domain), U, ["{file}", "relu", "com.evil"]),
    "unknown_op": (_mut(lambda m: setattr(m.graph.node[1], "op_type", "FooBar")), U, ["{file}", "relu", "FooBar"]),
    "empty_op_type": (_mut(lambda m: setattr(m.graph.node[1], "op_type", "")), U, ["{file}", "relu"]),
    # --- NaN / Inf weights
    "nan_weight": (_mut(_set_init("w", _tiny_w(i0=np.nan))), I, ["{file}", "'c'", "NaN or Inf"]),
    "inf_bias": (_mut(_set_init("fb", np.array([0, np.inf, 0], np.float32))), I, ["{file}", "'y'", "NaN or Inf"]),
    "bn_zero_variance_eps_0": (lambda: make_model(
        [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", epsilon=0.0)],
        [("x", (1, 2, 4, 4))], ["y"], {"s": np.ones(2, np.float32), "b": np.zeros(2, np.float32),
                                        "m": np.zeros(2, np.float32), "v": np.zeros(2, np.float32)}),
        I, ["{file}", "NaN or Inf"]),
    # --- absurd declared sizes (memory bombs): refused before anything is allocated
    "memory_bomb_declared_tensor": (_mut(_memory_bomb_declared), I, ["{file}", "'w'", "over the", "limit"]),
    "memory_bomb_raw_data_short": (_mut(_memory_bomb_raw_short), I, ["{file}", "'w'", "stores 72 bytes"]),
    "memory_bomb_fold_broadcast": (lambda: _fold("Mul", np.ones((100_000, 1), np.float32),
                                                 np.ones((1, 100_000), np.float32)), I,
                                   ["{file}", "bomb", "folding constants", "(100000, 100000)"]),
    "memory_bomb_fold_concat": (lambda: _fold("Concat", np.ones(1_000_000, np.float32), None, n_inputs=2000,
                                              axis=0), I, ["{file}", "bomb", "folding constants"]),
    "memory_bomb_fold_gather": (lambda: _fold("Gather", np.ones((2, 1_000_000), np.float32),
                                              np.zeros(1000, np.int64), axis=0), I,
                                ["{file}", "bomb", "folding constants"]),
    "memory_bomb_fold_matmul": (lambda: _fold("MatMul", np.ones((100_000, 1), np.float32),
                                              np.ones((1, 100_000), np.float32)), I,
                                ["{file}", "bomb", "folding constants"]),
    "memory_bomb_input_dims": (lambda: _conv_relu(kernel_shape=[1, 1], hw=10**9), I, ["{file}", "'x'", "over the"]),
    # --- absurd attributes
    "conv_kernel_1e6": (_mut(_conv_attrs(kernel_shape=[10**6, 10**6])), U, ["{file}", "conv", "kernel_shape"]),
    "conv_stride_0": (_mut(_conv_attrs(kernel_shape=[3, 3], strides=[0, 0])), U, ["{file}", "conv", "strides"]),
    "conv_negative_pads": (_mut(_conv_attrs(kernel_shape=[3, 3], pads=[-1, -1, -1, -1])), U,
                           ["{file}", "conv", "negative pads"]),
    "conv_pads_1e5": (lambda: _conv_relu(kernel_shape=[1, 1], pads=[10**5] * 4), I, ["{file}", "'c'", "over the"]),
    "conv_dilation_0": (_mut(_conv_attrs(kernel_shape=[3, 3], dilations=[0, 0])), U, ["{file}", "conv", "dilations"]),
    "conv_dilation_2e40": (lambda: _conv_relu(k=2, dilations=[2**40, 2**40]), I, ["{file}", "conv", "window"]),
    "conv_group_0": (_mut(_conv_attrs(kernel_shape=[3, 3], group=0)), I, ["{file}", "conv"]),
    "conv_kernel_string": (_mut(_conv_attrs(kernel_shape="abc")), I, ["{file}", "conv", "'kernel_shape'", "INTS"]),
    "conv_pads_one_int": (_mut(_conv_attrs(kernel_shape=[3, 3], pads=0)), I, ["{file}", "conv", "'pads'", "INTS"]),
    "flatten_axis_string": (_mut(lambda m: m.graph.node[2].attribute[0].CopyFrom(helper.make_attribute("axis", "1"))),
                            I, ["{file}", "flat", "'axis'"]),
    "maxpool_kernel_1e6": (lambda: make_model([helper.make_node("MaxPool", ["x"], ["y"], name="mp",
                                                                kernel_shape=[10**6, 10**6])],
                                              [("x", (1, 1, 4, 4))], ["y"]), I, ["{file}", "mp", "window"]),
    "avgpool_negative_pads": (lambda: make_model([helper.make_node("AveragePool", ["x"], ["y"], name="ap",
                                                                   kernel_shape=[2, 2], pads=[-1] * 4)],
                                                 [("x", (1, 1, 4, 4))], ["y"]), U, ["{file}", "ap", "negative pads"]),
    "flatten_axis_17": (_mut(lambda m: setattr(m.graph.node[2].attribute[0], "i", 17)), U,
                        ["{file}", "flat", "axis 17"]),
    "softmax_axis_99": (lambda: make_model([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=99)],
                                           [("x", (1, 3))], ["y"]), U, ["{file}", "sm", "axis 99"]),
    "gather_index_out_of_range": (lambda: _fold("Gather", np.ones(3, np.float32), np.array([10**9])), U,
                                  ["{file}", "bomb", "out of range"]),
}


def write_case(case_id: str, tmp_path: Path) -> Path:
    """The case's model file, ``<case_id>.onnx`` (used by the CLI tests too)."""
    built = CASES[case_id][0]()
    path = tmp_path / f"{case_id}.onnx"
    if isinstance(built, bytes):
        path.write_bytes(built)
    else:
        save_model(built, path)
    return path


@pytest.mark.parametrize("case_id", list(CASES))
def test_broken_model_raises_a_clear_error(case_id, tmp_path):
    _, cls, fragments = CASES[case_id]
    path = write_case(case_id, tmp_path)
    frags = [f.replace("{file}", path.name) for f in fragments]
    err = expect_error(cls, lambda: load_onnx(path), *frags, timeout=30)
    assert type(err) is cls  # exactly that subclass, not a sibling
    # ``inspect`` (the report walk) fails the same way for malformed files and reports unsupported ones
    if cls is InvalidModelError:
        expect_error(InvalidModelError, lambda: inspect_onnx(path), timeout=30)
    else:
        assert not inspect_onnx(path).convertible


@pytest.mark.parametrize("case_id", [c for c in CASES if c.startswith("memory_bomb")] + ["conv_pads_1e5"])
def test_memory_bombs_are_refused_in_bounded_time_and_memory(case_id, tmp_path):
    """The declared size is refused before numpy allocates it: traced peak stays far below the bomb (and far
    below the model's own 1 GiB per-tensor limit); the file itself is small."""
    path = write_case(case_id, tmp_path)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        with pytest.raises(InvalidModelError):
            load_onnx(path)
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    # the inputs of the folding bombs are real arrays (a few MB); nothing much beyond twice the file is allocated
    assert peak < 2 * size + 32 * 2**20, f"{case_id}: peak traced allocation {peak / 2**20:.1f} MiB"
    assert seconds < 20, f"{case_id}: took {seconds:.1f} s"


# ----------------------------------------------------------------------------------- external data


def _external_model(tmp_path: Path, location: str, data_file: Path | None) -> Path:
    """The tiny CNN with its conv weight stored as external data at ``location``."""
    model = tiny_cnn()
    w = model.graph.initializer[0]
    raw = numpy_helper.from_array(numpy_helper.to_array(w)).raw_data
    if data_file is not None:
        data_file.parent.mkdir(parents=True, exist_ok=True)
        if not data_file.exists():
            data_file.write_bytes(raw)
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": location, "offset": "0", "length": str(len(raw))}.items():
        e = w.external_data.add()
        e.key, e.value = k, v
    return save_model(model, tmp_path / "models" / "m.onnx")


def test_external_data_inside_the_folder_is_read(tmp_path):
    path = _external_model(tmp_path, "w.bin", tmp_path / "models" / "w.bin")
    assert load_onnx(path).nodes[0].weight.shape == (2, 1, 3, 3)


@pytest.mark.parametrize("location, fragment", [
    ("../../etc/passwd", "outside the model's directory"),
    ("../secret.bin", "outside the model's directory"),
    ("/etc/passwd", "must be relative"),
    ("sub/../../secret.bin", "outside the model's directory"),
    ("", "must be relative"),
    ("missing.bin", "is missing"),
])
def test_external_data_outside_the_folder_is_refused(tmp_path, location, fragment):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 72)
    path = _external_model(tmp_path, location, None)
    expect_error(InvalidModelError, lambda: load_onnx(path), "m.onnx", "'w'", fragment)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_external_data_symlink_out_is_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32)).raw_data)
    (tmp_path / "models").mkdir()
    os.symlink(outside, tmp_path / "models" / "link.bin")
    path = _external_model(tmp_path, "link.bin", None)
    expect_error(InvalidModelError, lambda: load_onnx(path), "m.onnx", "'w'", "outside the model's directory")


def test_external_data_larger_than_its_file_is_refused(tmp_path):
    data = tmp_path / "models" / "w.bin"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"\0" * 8)  # the tensor needs 72
    path = _external_model(tmp_path, "w.bin", data)
    expect_error(InvalidModelError, lambda: load_onnx(path), "m.onnx", "'w'", "does not match")


# ----------------------------------------------------------------------------------- the seeds are valid


@pytest.mark.parametrize("name", list(seed_models()))
def test_fuzz_seed_models_import(name):
    """The fuzzers' starting points are valid models (so mutations explore near-valid inputs)."""
    assert load_onnx(seed_models()[name]).nodes


def test_graph_output_listed_twice_is_imported_once(tmp_path):
    """ONNX's checker and onnxruntime accept a graph output listed twice; ann2snn imports it once (no crash)."""
    m = copy_model(tiny_cnn())
    del m.graph.output[:]
    m.graph.output.extend([helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])] * 2)
    onnx.checker.check_model(m, full_check=True)
    assert load_onnx(m).outputs == ("y",)
