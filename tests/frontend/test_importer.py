"""Importer behaviour: topological sorting, initializers listed as inputs, one error listing every unsupported
node (with specific reasons for known unconvertible ops), opset range, inspect_onnx's per-node report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.frontend import inspect_onnx, load_onnx
from ann2snn.frontend.registry import UNCONVERTIBLE
from ann2snn.frontend.testing import assert_matches_onnxruntime, make_model, one_node_model

RNG = np.random.default_rng(9)


def small_cnn_nodes():
    return [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]


INITS = {"w": RNG.standard_normal((4, 1, 3, 3)).astype(np.float32),
         "fw": RNG.standard_normal((3, 64)).astype(np.float32), "fb": np.zeros(3, np.float32)}


def test_reversed_nodes_are_sorted():
    m = make_model(list(reversed(small_cnn_nodes())), [("x", ("N", 1, 8, 8))], ["y"], INITS)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    g = assert_matches_onnxruntime(m, RNG.standard_normal((3, 1, 8, 8)).astype(np.float32))
    assert [type(n).__name__ for n in g.nodes] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dense"]


def test_initializers_listed_as_inputs_are_constants():
    m = make_model(small_cnn_nodes(), [("x", (1, 1, 8, 8))] + [(k, v.shape) for k, v in INITS.items()], ["y"], INITS,
                   opset=7)
    g = assert_matches_onnxruntime(m, RNG.standard_normal((1, 1, 8, 8)).astype(np.float32))
    assert [t.name for t in g.inputs] == ["x"]


def test_cycle_rejected():
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2")]
    with pytest.raises(InvalidModelError, match="cycle"):
        load_onnx(make_model(nodes, [("x", (1, 2))], ["a"]))


def test_undefined_input_rejected():
    with pytest.raises(InvalidModelError, match="'relu'.*undefined.*'nope'"):
        load_onnx(make_model([helper.make_node("Relu", ["nope"], ["y"], name="relu")], [("x", (1, 2))], ["y"]))


def many_unsupported_model():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"], name="act_sigmoid"),
             helper.make_node("LeakyRelu", ["s"], ["l"], name="act_leaky", alpha=0.1),
             helper.make_node("MaxPool", ["l"], ["p"], name="pool_so", kernel_shape=[2, 2], storage_order=1),
             helper.make_node("FancyOp", ["p"], ["q"], name="custom_op", domain="com.example"),
             helper.make_node("Relu", ["q"], ["y"], name="relu_after_custom")]
    m = make_model(nodes, [("x", (1, 1, 8, 8))], ["y"], {"w": INITS["w"]})
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


def test_every_unsupported_node_is_listed_once():
    with pytest.raises(UnsupportedModelError) as e:
        load_onnx(many_unsupported_model())
    problems = {name: (op, reason) for op, name, reason in e.value.problems}
    assert set(problems) == {"act_sigmoid", "act_leaky", "pool_so", "custom_op"}
    assert problems["act_sigmoid"] == ("Sigmoid", UNCONVERTIBLE["Sigmoid"].reason)
    assert "Sigmoid has no rate-coded IF equivalent" in problems["act_sigmoid"][1]
    assert "negative" in problems["act_leaky"][1]
    assert "storage_order=1" in problems["pool_so"][1]  # checked although it follows unsupported nodes
    assert "domain 'com.example'" in problems["custom_op"][1]
    msg = str(e.value)
    assert msg.startswith("4 unsupported node(s)")
    for name in problems:
        assert f"'{name}'" in msg


def test_inspect_reports_every_node():
    report = inspect_onnx(many_unsupported_model())
    assert not report.convertible and report.graph is None
    status = {r.name: r.status for r in report.rows}
    assert status == {"conv": "ok", "act_sigmoid": "UNSUPPORTED", "act_leaky": "UNSUPPORTED",
                      "pool_so": "UNSUPPORTED", "custom_op": "UNSUPPORTED", "relu_after_custom": "not checked"}
    assert report.rows[0].ir_ops == ("Conv2d",) and report.rows[0].params == 36 and report.rows[0].macs == 64 * 4 * 9
    d = report.to_dict()
    assert len(d["problems"]) == 4 and d["convertible"] is False


def test_inspect_convertible_model():
    m = make_model(small_cnn_nodes(), [("x", ("N", 1, 8, 8))], ["y"], INITS)
    r = inspect_onnx(m)
    assert r.convertible and r.problems == [] and len(r.graph.nodes) == 5
    assert [row.ir_label for row in r.rows] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dense"]
    assert r.rows[-1].output_shape == ("N", 3)
    assert r.total_params == 36 + 64 * 3 + 3  # conv without bias
    assert r.total_macs == sum(r.graph.macs().values())


def test_inspect_marks_constants_and_folded_nodes():
    nodes = [helper.make_node("Constant", [], ["s"], value=helper.make_tensor("v", TensorProto.INT64, [2], [0, -1])),
             helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Reshape", ["i", "s"], ["y"])]
    r = inspect_onnx(make_model(nodes, [("x", (2, 3, 4))], ["y"]))
    assert [row.ir_label for row in r.rows] == ["constant", "folded", "Flatten"]


@pytest.mark.parametrize("opset", [6, 22])
def test_opset_outside_range_rejected(opset):
    m = one_node_model("Relu", [("x", (1, 2))], opset=opset)
    with pytest.raises(UnsupportedModelError, match=f"opset {opset} is outside the supported range 7..21"):
        load_onnx(m)


def test_unknown_op_and_unknown_attribute_reported():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu", bogus=3),
             helper.make_node("NoSuchOp", ["r"], ["y"], name="nosuch")]
    with pytest.raises(UnsupportedModelError) as e:
        load_onnx(make_model(nodes, [("x", (1, 2))], ["y"]))
    reasons = {n: r for _, n, r in e.value.problems}
    assert "unexpected inputs or attributes" in reasons["relu"] and "bogus" in reasons["relu"]
    assert reasons["nosuch"] == "ann2snn has no converter for NoSuchOp"


def test_constant_output_rejected():
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Constant", [], ["k"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))]
    with pytest.raises(UnsupportedModelError, match="graph output is a constant"):
        load_onnx(make_model(nodes, [("x", (1, 2))], ["r", "k"]))


def test_integer_graph_input_rejected():
    m = one_node_model("Relu", [("x", (1, 2))])
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(UnsupportedModelError, match="not a floating-point tensor"):
        load_onnx(m)


def test_input_without_sample_shape_rejected():
    with pytest.raises(InvalidModelError, match="'x'.*unknown non-batch dimension"):
        load_onnx(one_node_model("Relu", [("x", (1, "H"))]))


def test_dead_nodes_are_dropped_and_metadata_recorded():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="used"),
             helper.make_node("Conv", ["x", "w"], ["dead"], name="unused")]
    g = load_onnx(make_model(nodes, [("x", (1, 1, 4, 4))], ["y"], {"w": INITS["w"]}, opset=9))
    assert [n.name for n in g.nodes] == ["y"]
    assert g.metadata["opset"] == 9 and g.metadata["origin"]["y"] == ["Relu", "used"]


def test_inconsistent_constants_raise_invalid_model_naming_the_node():
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], name="bad_cat", axis=0),
             helper.make_node("Reshape", ["x", "c"], ["y"])]
    inits = {"a": np.zeros((2, 2), np.int64), "b": np.zeros((3,), np.int64)}
    with pytest.raises(InvalidModelError, match="'bad_cat' \\(Concat\\)"):
        load_onnx(make_model(nodes, [("x", (1, 4))], ["y"], inits))
