"""Helpers to check the importer against onnxruntime (used by the tests; handy when adding a converter).

    model = one_node_model("MaxPool", [("x", (2, 3, 9, 9))], kernel_shape=[3, 3], ceil_mode=1)
    max_err, ref, out = compare_with_onnxruntime(model, x)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[tuple[str, Sequence]],
               outputs: Sequence[str], initializers: dict[str, np.ndarray] | None = None, opset: int = 13,
               input_type: int = TensorProto.FLOAT, ir_version: int | None = None,
               output_type: int | None = None) -> onnx.ModelProto:
    """A model from nodes; ``inputs`` are (name, shape with batch), outputs have unknown shapes and, unless
    ``output_type`` says otherwise, the input's element type."""
    output_type = input_type if output_type is None else output_type
    graph = helper.make_graph(
        list(nodes), "test",
        [helper.make_tensor_value_info(n, input_type, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info(o, output_type, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ann2snn-tests")
    # onnxruntime only accepts IR versions it knows: pick the one that matches the opset
    model.ir_version = ir_version or _ir_version_for(opset)
    return model


def _ir_version_for(opset: int) -> int:
    table = [(8, 3), (9, 4), (10, 5), (11, 6), (14, 7), (18, 8), (21, 10)]
    for top, ir in table:
        if opset <= top:
            return ir
    return 10


def one_node_model(op_type: str, inputs: Sequence[tuple[str, Sequence]], *,
                   initializers: dict[str, np.ndarray] | None = None, node_inputs: Sequence[str] | None = None,
                   n_outputs: int = 1, opset: int = 13, name: str = "node", **attrs) -> onnx.ModelProto:
    """A model of one node; node inputs default to the graph inputs followed by the initializers."""
    names = list(node_inputs) if node_inputs is not None else [n for n, _ in inputs] + list(initializers or {})
    outs = ["y"] + [f"y{i}" for i in range(1, n_outputs)]
    node = helper.make_node(op_type, names, outs, name=name, **attrs)
    return make_model([node], inputs, outs, initializers, opset)


def run_onnxruntime(model: onnx.ModelProto | str, x: np.ndarray | dict, *, fixed_batch: int | None = None,
                    output: int = 0) -> np.ndarray:
    """Run a model with onnxruntime (CPU), feeding chunks of ``fixed_batch`` when the model fixes its batch."""
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # initializers listed as inputs make ORT warn; not our business here
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feeds = x if isinstance(x, dict) else {inp.name: x}
    dtype = np.float16 if "float16" in inp.type else np.float32
    feeds = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in feeds.items()}
    n = next(iter(feeds.values())).shape[0]
    step = fixed_batch or n
    outs = []
    for i in range(0, n, step):
        chunk = {k: v[i:i + step] for k, v in feeds.items()}
        outs.append(np.asarray(sess.run(None, chunk)[output], dtype=np.float32))
    return np.concatenate(outs)


def compare_with_onnxruntime(model: onnx.ModelProto, x: np.ndarray, *, fixed_batch: int | None = None,
                             graph=None) -> tuple[float, np.ndarray, np.ndarray]:
    """(max abs difference, onnxruntime output, graph.run output) for one input batch."""
    from ann2snn.frontend.importer import load_onnx

    ref = run_onnxruntime(model, x, fixed_batch=fixed_batch)
    graph = graph if graph is not None else load_onnx(model)
    out = graph.run(x)
    if out.shape != ref.shape:
        raise AssertionError(f"shape mismatch: graph.run gives {out.shape}, onnxruntime {ref.shape}")
    return float(np.max(np.abs(out - ref))) if ref.size else 0.0, ref, out


def assert_matches_onnxruntime(model: onnx.ModelProto, x: np.ndarray, *, rtol: float = 1e-5, atol: float = 1e-5,
                               fixed_batch: int | None = None):
    """Import ``model``, run it on ``x`` and assert it matches onnxruntime; returns the imported graph."""
    from ann2snn.frontend.importer import load_onnx

    graph = load_onnx(model)
    err, ref, out = compare_with_onnxruntime(model, x, fixed_batch=fixed_batch, graph=graph)
    bound = atol + rtol * float(np.max(np.abs(ref))) if ref.size else atol
    if not err <= bound:
        raise AssertionError(f"graph.run differs from onnxruntime by {err:.3g} (allowed {bound:.3g})")
    return graph
