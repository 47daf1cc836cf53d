"""The converter registry: duplicates rejected, opset selection, naming, and the unconvertible-op table."""

from __future__ import annotations

import pytest

from ann2snn.frontend import registry


def test_duplicate_registration_rejected(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    registry.register("Foo", since=7, ir="ReLU")(lambda ctx, node, x: x)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("Foo", since=7, ir="ReLU")(lambda ctx, node, x: x)


def test_unconvertible_op_cannot_get_a_converter(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    with pytest.raises(ValueError, match="unconvertible"):
        registry.register("Sigmoid", since=7, ir="?")(lambda ctx, node, x: x)


@pytest.mark.parametrize("opset, func", [(7, "softmax"), (12, "softmax"), (13, "softmax_13"), (21, "softmax_13")])
def test_lookup_picks_highest_since_not_above_opset(opset, func):
    assert registry.lookup("Softmax", opset).func.__name__ == func


def test_lookup_unknown():
    assert registry.lookup("NoSuchOp", 13) is None


def test_converters_are_named_after_their_op():
    registry.supported_ops()
    for op, entries in registry._REGISTRY.items():
        for e in entries:
            assert e.func.__name__.replace("_", "").startswith(op.lower()), (op, e.func.__name__)
            assert e.ir and e.note, op


def test_supported_ops_cover_the_issue():
    ops = {e.op_type for e in registry.supported_ops()}
    assert {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Relu", "Clip", "MaxPool",
            "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
            "Unsqueeze", "Concat", "Shape", "Gather", "Slice", "Softmax", "LogSoftmax", "Dropout", "Identity",
            "Constant", "Cast"} <= ops
    assert all(registry.MIN_OPSET <= registry.first_opset(op) <= registry.MAX_OPSET for op in ops)


def test_unconvertible_table_reasons():
    for op in ("Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu"):
        assert op in registry.UNCONVERTIBLE and registry.lookup(op, 21) is None
        assert op in registry.unsupported_reason(op, "", 13)
    assert registry.unsupported_reason("Relu", "com.x", 13).startswith("op from domain 'com.x'")
