"""Safe ONNX loading: nothing is executed, nothing outside the model's folder is read, sizes are bounded.

- the protobuf is parsed only after its size is checked against ``LoadLimits.max_model_bytes``;
- external data is read by us, never by ``onnx.load``: locations must be relative, must resolve (after
  symlinks) inside the model's directory, and must fit in the file;
- every tensor's declared size (dims x item size) is checked against ``max_tensor_bytes`` before any
  array is allocated, and its stored bytes must match the declared dims.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, numpy_helper

from ann2snn.errors import InvalidModelError

_ITEMSIZE = {
    TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2,
    TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.INT16: 2, TensorProto.UINT16: 2,
    TensorProto.INT32: 4, TensorProto.UINT32: 4, TensorProto.INT64: 8, TensorProto.UINT64: 8,
    TensorProto.BOOL: 1,
}


@dataclass(frozen=True)
class LoadLimits:
    max_model_bytes: int = 2 * 1024**3 - 1  # protobuf's own hard limit
    max_tensor_bytes: int = 1024**3
    max_total_bytes: int = 4 * 1024**3  # all tensors of the model together (checked by the importer)


def load_model_proto(model, limits: LoadLimits) -> tuple[onnx.ModelProto, str, Path | None]:
    """Parse a model from a path or take a ModelProto; returns (proto, path for messages, base dir)."""
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "<ModelProto>", None
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidModelError(f"expected a path or an onnx.ModelProto, got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such model file")
    size = path.stat().st_size
    if size > limits.max_model_bytes:
        raise InvalidModelError(f"{path}: {size} bytes is over the {limits.max_model_bytes}-byte model limit")
    if size == 0:
        raise InvalidModelError(f"{path}: the file is empty")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as e:
        raise InvalidModelError(f"{path}: not a valid ONNX protobuf (truncated or corrupt): {e}") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise InvalidModelError(f"{path}: the file holds no ONNX graph (not a model, or an empty one)")
    return proto, str(path), path.resolve().parent


def declared_bytes(tp: TensorProto, where: str) -> int:
    """Bytes a tensor's dims and data type declare (checked before anything is allocated)."""
    if any(d < 0 for d in tp.dims):
        raise InvalidModelError(f"{where}: tensor '{tp.name}' has a negative dimension {list(tp.dims)}")
    if tp.data_type not in _ITEMSIZE:
        raise InvalidModelError(f"{where}: tensor '{tp.name}' has unsupported data type {tp.data_type}")
    return int(np.prod(tp.dims, dtype=object)) * _ITEMSIZE[tp.data_type]


def _external_bytes(tp: TensorProto, base_dir: Path | None, where: str, nbytes: int) -> bytes:
    info = {e.key: e.value for e in tp.external_data}
    loc = info.get("location", "")
    if base_dir is None:
        raise InvalidModelError(f"{where}: tensor '{tp.name}' uses external data but the model has no directory")
    if not loc or os.path.isabs(loc) or Path(loc).drive:
        raise InvalidModelError(f"{where}: tensor '{tp.name}': external data location '{loc}' must be relative")
    target = (base_dir / loc).resolve()
    if base_dir not in target.parents:
        raise InvalidModelError(
            f"{where}: tensor '{tp.name}': external data '{loc}' resolves outside the model's directory"
        )
    if not target.is_file():
        raise InvalidModelError(f"{where}: tensor '{tp.name}': external data file '{loc}' is missing")
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", nbytes))
    except ValueError:
        raise InvalidModelError(f"{where}: tensor '{tp.name}': bad external data offset/length") from None
    if offset < 0 or length != nbytes or offset + length > target.stat().st_size:
        raise InvalidModelError(
            f"{where}: tensor '{tp.name}': external data ({offset}+{length} bytes) does not match "
            f"its declared size {nbytes} or the file '{loc}'"
        )
    with open(target, "rb") as f:
        f.seek(offset)
        return f.read(length)


def checked_size(tp: TensorProto, limits: LoadLimits, where: str) -> int:
    """The declared size of a tensor, refused (before anything is allocated) when over the per-tensor limit."""
    nbytes = declared_bytes(tp, where)
    if nbytes > limits.max_tensor_bytes:
        raise InvalidModelError(
            f"{where}: tensor '{tp.name}' declares {nbytes} bytes, over the {limits.max_tensor_bytes}-byte limit"
        )
    return nbytes


def tensor_to_array(tp: TensorProto, base_dir: Path | None, limits: LoadLimits, where: str) -> np.ndarray:
    """Decode a TensorProto after checking its declared size; float16/bfloat16/double become float32."""
    nbytes = checked_size(tp, limits, where)
    if tp.data_location == TensorProto.EXTERNAL:
        raw = _external_bytes(tp, base_dir, where, nbytes)
        tp = TensorProto.FromString(tp.SerializeToString())
        del tp.external_data[:]
        tp.data_location = TensorProto.DEFAULT
        tp.raw_data = raw
    elif tp.HasField("raw_data") and len(tp.raw_data) != nbytes:
        raise InvalidModelError(
            f"{where}: tensor '{tp.name}' stores {len(tp.raw_data)} bytes but its dims {list(tp.dims)} need {nbytes}"
        )
    try:
        arr = numpy_helper.to_array(tp)
    except Exception as e:  # onnx raises assorted errors on inconsistent typed fields
        raise InvalidModelError(f"{where}: tensor '{tp.name}' cannot be decoded: {e}") from None
    if arr.dtype in (np.float16, np.float64) or arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    elif not arr.flags.writeable:  # arrays over protobuf bytes are read-only; torch warns about those
        arr = arr.copy()
    return arr
