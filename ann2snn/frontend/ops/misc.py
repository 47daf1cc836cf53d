"""Identity, Dropout (inference), Constant, Cast: no IR node; values pass through or fold."""

from __future__ import annotations

import numpy as np
import onnx

from ann2snn.frontend.values import Constant, Tensor
from ann2snn.frontend.ops._common import constant_scalar
from ann2snn.frontend.registry import register

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


@register("Identity", since=1, ir="folded", note="passes its input through")
def identity(ctx, node, x):
    return x


def _dropout(ctx, node, x):
    if len(node.output) > 1 and ctx.is_used(node.output[1]):
        raise ctx.unsupported(f"the mask output '{node.output[1]}' is used (it only exists in training)")
    return x


@register("Dropout", since=7, ir="folded", note="inference: identity; the mask output must be unused")
def dropout(ctx, node, x, *, ratio=0.5):
    return _dropout(ctx, node, x)


@register("Dropout", since=12, ir="folded", note="inference: identity; training_mode must be false; mask unused")
def dropout_12(ctx, node, x, ratio=None, training_mode=None, *, seed=None):
    if training_mode is not None and bool(constant_scalar(ctx, training_mode, "training_mode")):
        raise ctx.unsupported("training_mode=true drops activations at random")
    return _dropout(ctx, node, x)


@register("Constant", since=1, ir="constant", note="value, value_float(s), value_int(s)")
def constant(ctx, node, *, value=None, value_float=None, value_floats=None, value_int=None, value_ints=None,
             sparse_value=None, value_string=None, value_strings=None):
    if sparse_value is not None or value_string is not None or value_strings is not None:
        raise ctx.unsupported("sparse and string constants are not supported")
    if value is not None:
        return Constant(np.asarray(value))
    if value_float is not None:
        return Constant(np.array(value_float, dtype=np.float32))
    if value_floats is not None:
        return Constant(np.array(value_floats, dtype=np.float32))
    if value_int is not None:
        return Constant(np.array(value_int, dtype=np.int64))
    if value_ints is not None:
        return Constant(np.array(value_ints, dtype=np.int64))
    raise ctx.unsupported("the Constant node holds no value")


@register("Cast", since=6, ir="folded | constant", note="activations: to float types only (identity); "
          "constants: cast")
def cast(ctx, node, x, *, to, saturate=1, round_mode="up"):
    if isinstance(x, Tensor):
        if to not in _FLOATS:
            raise ctx.unsupported(f"casting an activation to {onnx.TensorProto.DataType.Name(to)} is not supported "
                                  "(only to float types, which is an identity in the float32 IR)")
        return x
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
    except Exception:  # noqa: BLE001 - onnx raises KeyError/ValueError for unknown enums
        raise ctx.unsupported(f"cast to data type {to} is not supported") from None
    v = np.asarray(x.value)
    if to in _FLOATS:
        out = v.astype(dtype).astype(np.float32)  # round like the target type, keep float32 in the IR
    elif dtype == np.bool_:
        out = v.astype(np.bool_)
    else:
        out = (np.trunc(v) if v.dtype.kind == "f" else v).astype(dtype)
    return Constant(out, x.batch_mask)
