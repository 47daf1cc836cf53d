"""Property-based fuzzing of the ONNX importer: mutate valid models (drop fields, change dims, op types,
attributes, types, opsets, wiring) and bytes of valid files. The only allowed outcomes: the model imports (and
then its float reference runs on a small batch) or an Ann2SnnError. Runs are derandomized (reproducible in CI).

Examples: 500 mutated few-node models + 100 mutated LeNet (zoo) + 100 byte-mutated files = 700 here;
test_fuzz_saved_files.py adds 200 more.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from rel_helpers import LENET, bounded, copy_model, seed_models

from ann2snn import Ann2SnnError, load_onnx

FUZZ = dict(deadline=None, derandomize=True, database=None, print_blob=True,
            suppress_health_check=list(HealthCheck))

SEEDS = seed_models()
OUTCOMES: Counter = Counter()

OPS = ["Conv", "Relu", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Flatten", "Reshape", "MaxPool",
       "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Concat", "Softmax", "LogSoftmax",
       "Clip", "Transpose", "Squeeze", "Unsqueeze", "Shape", "Gather", "Slice", "Identity", "Dropout", "Cast",
       "Constant", "Sigmoid", "LeakyRelu", "LSTM", "Loop", "If", "QLinearConv", "FooBar", ""]
DOMAINS = ["", "ai.onnx", "com.microsoft", "ai.onnx.ml", "com.evil"]
ATTR_NAMES = ["kernel_shape", "strides", "pads", "dilations", "group", "axis", "axes", "perm", "transA", "transB",
              "alpha", "beta", "epsilon", "ceil_mode", "auto_pad", "count_include_pad", "to", "value", "min", "max",
              "training_mode", "keepdims", "allowzero", "storage_order", "spatial", "momentum", "nope"]

INTS = st.one_of(st.integers(-3, 12), st.sampled_from([0, -1, 2**31 - 1, -2**31, 10**6, 10**9, 2**62, -2**63]))
VALUES = st.one_of(INTS, st.floats(allow_nan=True, allow_infinity=True, width=32), st.text(max_size=6),
                   st.lists(INTS, max_size=5))

KINDS = ["drop_input", "drop_output", "drop_attribute", "drop_node", "drop_initializer", "drop_graph_input",
         "drop_graph_output", "drop_opset", "rename_input", "rename_output", "op_type", "domain", "set_attribute",
         "add_attribute", "input_dim", "input_rank", "init_dim", "init_dtype", "init_raw", "init_nan", "opset",
         "elem_type", "reverse_nodes", "duplicate_node", "output_name"]

MUTATION = st.tuples(st.sampled_from(KINDS), st.integers(0, 2**16), st.integers(0, 2**16), VALUES)


def _pick(seq, i):
    return seq[i % len(seq)] if len(seq) else None


def _int(v) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    if isinstance(v, list) and v:
        return _int(v[0])
    return len(v) if isinstance(v, str) else 0


def _names(m: onnx.ModelProto) -> list[str]:
    names = [t.name for t in m.graph.initializer] + [i.name for i in m.graph.input]
    return names + [o for n in m.graph.node for o in n.output]


def _set_attribute(attr: onnx.AttributeProto, v) -> None:
    name = attr.name
    attr.Clear()
    attr.name = name
    if isinstance(v, list):
        attr.CopyFrom(helper.make_attribute(name, [int(x) for x in v] if v else [0]))
    elif isinstance(v, float):
        attr.CopyFrom(helper.make_attribute(name, v))
    elif isinstance(v, str):
        attr.CopyFrom(helper.make_attribute(name, v.encode("utf-8", "replace")))
    else:
        attr.CopyFrom(helper.make_attribute(name, int(v)))


def mutate(m: onnx.ModelProto, kind: str, a: int, b: int, v) -> None:
    """Apply one mutation in place (indices taken modulo the sizes; a no-op when there is nothing to mutate)."""
    g = m.graph
    node = _pick(g.node, a)
    if kind == "drop_input" and node is not None and len(node.input):
        del node.input[b % len(node.input)]
    elif kind == "drop_output" and node is not None and len(node.output):
        del node.output[b % len(node.output)]
    elif kind == "drop_attribute" and node is not None and len(node.attribute):
        del node.attribute[b % len(node.attribute)]
    elif kind == "drop_node" and len(g.node):
        del g.node[a % len(g.node)]
    elif kind == "drop_initializer" and len(g.initializer):
        del g.initializer[a % len(g.initializer)]
    elif kind == "drop_graph_input" and len(g.input):
        del g.input[a % len(g.input)]
    elif kind == "drop_graph_output" and len(g.output):
        del g.output[a % len(g.output)]
    elif kind == "drop_opset":
        del m.opset_import[:]
    elif kind == "rename_input" and node is not None and len(node.input):
        names = _names(m)
        node.input[b % len(node.input)] = _pick(names, _int(v)) if isinstance(v, int) else f"t{v!r}"[:20]
    elif kind == "rename_output" and node is not None and len(node.output):
        node.output[b % len(node.output)] = _pick(_names(m), b + _int(v))
    elif kind == "output_name" and len(g.output):
        g.output[a % len(g.output)].name = _pick(_names(m), b)
    elif kind == "op_type" and node is not None:
        node.op_type = _pick(OPS, b)
    elif kind == "domain" and node is not None:
        node.domain = _pick(DOMAINS, b)
    elif kind == "set_attribute" and node is not None and len(node.attribute):
        _set_attribute(node.attribute[b % len(node.attribute)], v)
    elif kind == "add_attribute" and node is not None:
        name = _pick(ATTR_NAMES, b)
        if name not in [x.name for x in node.attribute]:
            attr = node.attribute.add()
            attr.name = name
            _set_attribute(attr, v)
    elif kind in ("input_dim", "input_rank", "elem_type") and len(g.input):
        t = g.input[a % len(g.input)].type.tensor_type
        if kind == "elem_type":
            t.elem_type = _int(v) % 17
        elif kind == "input_rank":
            if _int(v) % 2 and len(t.shape.dim):
                del t.shape.dim[b % len(t.shape.dim)]
            else:
                t.shape.dim.add().dim_value = abs(_int(v)) % 5 + 1
        elif len(t.shape.dim):
            d = t.shape.dim[b % len(t.shape.dim)]
            if isinstance(v, str):
                d.dim_param = v or "N"
            else:
                d.dim_value = max(min(_int(v), 2**62), -2**62)
    elif kind in ("init_dim", "init_dtype", "init_raw", "init_nan") and len(g.initializer):
        t = g.initializer[a % len(g.initializer)]
        if kind == "init_dim" and len(t.dims):
            t.dims[b % len(t.dims)] = max(min(_int(v), 2**62), -2**62)
        elif kind == "init_dim":
            t.dims.append(abs(_int(v)) % 7)
        elif kind == "init_dtype":
            t.data_type = _int(v) % 22
        elif kind == "init_raw" and t.raw_data:
            cut = b % (len(t.raw_data) + 1)
            t.raw_data = t.raw_data[:cut] + (str(v).encode()[:8] if _int(v) % 2 else b"")
        elif kind == "init_nan" and t.data_type == TensorProto.FLOAT and t.raw_data:
            arr = np.frombuffer(t.raw_data, np.float32).copy()
            arr[b % arr.size] = [np.nan, np.inf, -np.inf, 3e38][_int(v) % 4]
            t.raw_data = arr.tobytes()
    elif kind == "opset" and len(m.opset_import):
        m.opset_import[0].version = _int(v) % 30
    elif kind == "reverse_nodes":
        nodes = list(g.node)[::-1]
        del g.node[:]
        g.node.extend(nodes)
    elif kind == "duplicate_node" and node is not None:
        g.node.add().CopyFrom(node)


def apply_all(model: onnx.ModelProto, mutations) -> onnx.ModelProto | None:
    m = copy_model(model)
    for kind, a, b, v in mutations:
        try:
            mutate(m, kind, a, b, v)
        except (ValueError, TypeError, OverflowError):  # the mutation itself is not expressible in protobuf
            continue
    return m


def check_import(model) -> str:
    """Import ``model``; on success run the float reference on two random samples. Anything other than success
    or an Ann2SnnError fails the test (an unexpected exception propagates with its traceback)."""
    try:
        graph = bounded(load_onnx, model, timeout=30)
    except Ann2SnnError as e:
        OUTCOMES[type(e).__name__] += 1
        return type(e).__name__
    OUTCOMES["imported"] += 1
    shapes = graph.shapes
    if len(graph.inputs) == 1 and sum(math.prod(s) for s in shapes.values()) < 10**6:
        x = np.random.default_rng(0).standard_normal((2,) + tuple(graph.inputs[0].shape)).astype(np.float32)
        out = bounded(graph.run, x, timeout=30)
        assert out.shape[0] == 2
        OUTCOMES["ran"] += 1
    return "imported"


@settings(max_examples=500, **FUZZ)
@given(seed=st.sampled_from(sorted(SEEDS)), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_mutated_small_models(seed, mutations):
    check_import(apply_all(SEEDS[seed], mutations))


@pytest.fixture(scope="module")
def lenet():
    return onnx.load(str(LENET))


@settings(max_examples=100, **FUZZ)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzz_mutated_zoo_lenet(lenet, mutations):
    check_import(apply_all(lenet, mutations))


SEED_BYTES = {k: m.SerializeToString() for k, m in SEEDS.items()}


@settings(max_examples=100, **FUZZ)
@given(seed=st.sampled_from(sorted(SEED_BYTES)),
       edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 2**16)))
def test_fuzz_mutated_model_bytes(tmp_path_factory, seed, edits, cut):
    data = bytearray(SEED_BYTES[seed])
    for pos, byte in edits:
        data[pos % len(data)] = byte
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path_factory.getbasetemp() / "fuzz_bytes.onnx"
    path.write_bytes(bytes(data))
    check_import(path)


def test_fuzz_outcomes_were_varied():
    """Sanity check of the fuzzers above (when they ran in this session): mutations produced both imports and
    errors, so they explored near-valid inputs rather than only garbage."""
    if not OUTCOMES:
        pytest.skip("run together with the fuzz tests")
    print("ONNX fuzz outcomes:", dict(OUTCOMES))
    assert OUTCOMES["imported"] > 0 and sum(v for k, v in OUTCOMES.items() if k.endswith("Error")) > 0, OUTCOMES
