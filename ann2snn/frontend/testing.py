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


# --------------------------------------------------------------------------------------------- the onnx light models

def light_model_dir():
    """The folder of the ONNX model zoo's "light" classics that ship inside the ``onnx`` wheel (their weights are
    ``ConstantOfShape`` nodes of one value, 0.02), or None when this onnx has none."""
    from pathlib import Path

    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return d if d.is_dir() and any(d.glob("light_*.onnx")) else None


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    users: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in graph.node:
        for k, i in enumerate(n.input):
            users.setdefault(i, []).append((n, k))
    return users


def _role(name: str, users, depth: int = 0) -> tuple[str, onnx.NodeProto | None]:
    """What a weight tensor is, from its first consumer: ('conv_w', node), ('dense_w', node), ('bias', _),
    ('bn', _) with its input index, ('scale', _), ('shift', _), or ('other', None)."""
    for node, k in users.get(name, []):
        op = node.op_type
        if op == "Conv":
            return ("conv_w" if k == 1 else "bias"), node
        if op in ("Gemm", "MatMul"):
            return ("dense_w" if k == 1 else "bias"), node
        if op == "BatchNormalization":
            return ("bn_scale", "bn_bias", "bn_mean", "bn_var")[k - 1], node
        if op in ("Unsqueeze", "Reshape", "Identity", "Cast") and k == 0 and depth < 4:
            return _role(node.output[0], users, depth + 1)
        if op == "Mul":
            return "scale", node
        if op in ("Add", "Sub", "Sum"):
            return "shift", node
    return "other", None


def randomize_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` whose weights (float initializers and ``ConstantOfShape`` weight nodes) are seeded
    random values of the same shapes, as a trained export would hold them: He-normal conv weights
    (std sqrt(2 / fan_in)), dense weights of std sqrt(1 / fan_in) (no ReLU follows the classifier, whose logits
    would otherwise saturate the softmax), zero biases, neutral batch-norm statistics (scale 1, shift 0, mean 0,
    var 1; scale 0.5 on a batch norm that feeds a residual Sum/Add) and neutral per-channel Mul/Add constants.
    Shape constants and everything else are kept.

    The light models' constant 0.02 weights make every output equal, so only such variants check anything.
    """
    rng = np.random.default_rng(seed)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    users = _consumers(g)
    inits = {i.name: i for i in g.initializer}
    initial = set(inits)

    def value_for(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        role, node = _role(name, users)
        if role == "conv_w":
            fan_in = int(np.prod(shape[1:]))
            return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if role == "dense_w":
            trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            fan_in = shape[1] if trans_b else shape[0]
            return (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)
        if role in ("bias", "bn_bias", "bn_mean", "shift"):
            return np.zeros(shape, np.float32)
        if role == "bn_scale" and any(u.op_type in ("Sum", "Add") for u, _ in users.get(node.output[0], [])):
            # a residual branch: half scale keeps the activations' variance from doubling at every block
            return np.full(shape, 0.5, np.float32)
        if role in ("bn_scale", "bn_var", "scale"):
            return np.ones(shape, np.float32)
        return None

    kept = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]).reshape(-1))
            v = value_for(node.output[0], shape)
            if v is not None:
                g.initializer.append(numpy_helper.from_array(v, node.output[0]))
                continue
        kept.append(node)
    del g.node[:]
    g.node.extend(kept)
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT or init.name.endswith("__SHAPE"):
            continue
        v = value_for(init.name, tuple(init.dims))
        if v is not None:
            init.CopyFrom(numpy_helper.from_array(v, init.name))
    used = {i for n in g.node for i in n.input}  # the shape tensors of the replaced nodes are now unused
    live = [i for i in g.initializer if i.name in used or i.name in {o.name for o in g.output}]
    del g.initializer[:]
    g.initializer.extend(live)
    # old IR versions also list every initializer as a graph input: keep that list equal to the initializers
    names = {i.name for i in live}
    listed = [vi for vi in g.input if vi.name in names or vi.name not in initial]
    listed_names = {vi.name for vi in listed}
    if model.ir_version < 4:
        listed += [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in live
                   if i.name not in listed_names]
    del g.input[:]
    g.input.extend(listed)
    return model


def without_final_softmax(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that ends at the input of its last Softmax (the logits), or ``model`` itself when it
    has none: the softmax of a deep random network saturates, its logits stay informative."""
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    if not softmaxes:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"][-1]
    model.graph.node.remove(softmax)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, None))
    return model
