"""Typed in-memory model of a Lava-dl netx HDF5 network (``.net``), with an h5py reader and writer.

The reading rules follow lava-dl 0.6.0 ``netx`` exactly (see ``docs/LOIHI_NIR.md`` §1): ``type`` is decoded
from a (1,) or scalar byte string, ``weight``/``bias`` are cast with ``astype(int)`` (floats are truncated
toward zero), stride/padding/dilation may be scalars or (H, W) pairs, a 1-D dense weight is reshaped to
``(N, -1)``, and a dense layer without a ``neuron`` group gets netx's built-in non-spiking integrator.

All arrays and shapes use PyTorch layouts: activations (C, H, W), conv weight (C_out, C_in/groups, kH, kW),
dense weight (out, in) with ``in`` flattened in C·H·W order. Lava itself works in (W, H, C) ("WHC", x/y/z);
:func:`lava_to_chw` and :func:`chw_to_lava` convert the last three axes between the two.

The writer emits the schema slayer writes (``type`` as a (1,) ``S10`` dataset, ``neuron/type`` as a scalar
string, integer-valued float arrays) and never ``messageBits`` (netx crashes on it). It writes to a temporary
file in the target directory and renames it into place, so a failed write never leaves a partial file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Union

import h5py
import numpy as np

from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.fileio import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "NeuronParams",
    "InputLayer",
    "ConvLayer",
    "FlattenLayer",
    "DenseLayer",
    "NetxLayer",
    "NetxNetwork",
    "DEFAULT_DENSE_NEURON",
    "layer_type",
    "read_netx",
    "write_netx",
    "lava_to_chw",
    "chw_to_lava",
]

# largest dataset the reader loads (checked against the declared shape before reading)
MAX_DATASET_BYTES = 1024**3
CUBA_TYPES = ("CUBA", "LOIHI")  # netx maps both to Lava's LIF; LOIHI is the legacy spelling
NEURON_TYPES = CUBA_TYPES + ("SDNN",)
# Layer types netx knows but raises NotImplementedError on, plus the ones this package does not model.
_UNSUPPORTED_TYPES = {
    "pool": "netx raises NotImplementedError; emit pooling as a depthwise conv",
    "average": "netx raises NotImplementedError",
    "concat": "netx raises NotImplementedError; netx cannot express skip connections",
    "convT": "netx raises NotImplementedError",
    "unpool": "netx raises NotImplementedError",
    "dense_rec": "recurrent dense layers are not modelled by ann2snn",
    "dense_comp": "complex (resonate-and-fire) dense layers are not modelled by ann2snn",
}


# ----------------------------------------------------------------------------------------------------------
# Layout helpers
# ----------------------------------------------------------------------------------------------------------


def lava_to_chw(x: np.ndarray) -> np.ndarray:
    """Reverse the last three axes: Lava (…, W, H, C) -> PyTorch (…, C, H, W).

    Use it on arrays taken from Lava, e.g. an input layer's ``bias_mant`` of shape (W, H, C). Arrays with a
    trailing time axis, such as Lava's (W, H, C, T) recordings, need ``np.moveaxis(x, -1, 0)`` first.
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"expected at least 3 dims (..., W, H, C), got shape {x.shape}")
    lead = tuple(range(x.ndim - 3))
    return x.transpose(lead + (x.ndim - 1, x.ndim - 2, x.ndim - 3))


def chw_to_lava(x: np.ndarray) -> np.ndarray:
    """Reverse the last three axes: PyTorch (…, C, H, W) -> Lava (…, W, H, C). Inverse of :func:`lava_to_chw`."""
    return lava_to_chw(x)  # reversing three axes is its own inverse


# ----------------------------------------------------------------------------------------------------------
# Typed model
# ----------------------------------------------------------------------------------------------------------


def _frozen_int_array(value: object, what: str) -> np.ndarray:
    """A read-only int64 copy; refuses non-integer values instead of silently truncating them."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.trunc(arr)):
            raise InvalidModelError(f"{what} must be integer-valued")
    elif arr.dtype.kind not in "iub":
        raise InvalidModelError(f"{what} must be numeric, got dtype {arr.dtype}")
    out = np.array(arr, dtype=np.int64, copy=True)
    out.flags.writeable = False
    return out


def _int_pair(value: object, what: str) -> tuple[int, int]:
    arr = _frozen_int_array(value, what).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size == 2:
        return int(arr[0]), int(arr[1])
    raise InvalidModelError(f"{what} must be an int or an (H, W) pair, got shape {np.shape(value)}")


def _same_fields(a: object, b: object) -> bool:
    """Field-wise equality that compares numpy arrays by shape and value."""
    if type(a) is not type(b):
        return NotImplemented
    for f in fields(a):  # type: ignore[arg-type]
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or np.shape(x) != np.shape(y) or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


@dataclass(frozen=True)
class NeuronParams:
    """Shared neuron parameters of one layer (the ``neuron`` group of a netx layer).

    ``type`` is ``CUBA``/``LOIHI`` (Lava LIF: ``vth=vth_mant``, ``du=i_decay-1``, ``dv=v_decay``,
    ``bias_exp=6``) or ``SDNN`` (Delta on the input layer, Sigma when ``sigma_output``, else SigmaDelta with
    ReLU). ``i_decay``/``v_decay`` are 12-bit decays out of 4096 and only exist for CUBA; netx reads nothing
    else (refDelay, gradedSpike, theta... are ignored).
    """

    type: str
    vth_mant: int = 0
    i_decay: int | None = None
    v_decay: int | None = None
    sigma_output: bool = False

    def __post_init__(self) -> None:
        if self.type not in NEURON_TYPES:
            raise InvalidModelError(f"neuron type {self.type!r} is not one of {NEURON_TYPES}")
        for name in ("vth_mant", "i_decay", "v_decay"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise InvalidModelError(f"neuron {name} must be an int, got {value!r}")
                object.__setattr__(self, name, int(value))
        if self.is_cuba:
            if self.i_decay is None or self.v_decay is None:
                raise InvalidModelError(f"{self.type} neuron needs i_decay and v_decay")
            if self.sigma_output:
                raise InvalidModelError("sigma_output only applies to SDNN neurons")
        elif self.i_decay is not None or self.v_decay is not None:
            raise InvalidModelError("SDNN neurons have no i_decay/v_decay (netx ignores them)")
        object.__setattr__(self, "sigma_output", bool(self.sigma_output))

    @property
    def is_cuba(self) -> bool:
        return self.type in CUBA_TYPES

    @classmethod
    def cuba(cls, vth_mant: int, i_decay: int = 4096, v_decay: int = 0) -> "NeuronParams":
        """A CUBA LIF; the defaults (i_decay=4096, v_decay=0) make a plain integrate-and-fire neuron."""
        return cls("CUBA", vth_mant, i_decay, v_decay)

    @classmethod
    def sdnn(cls, vth_mant: int = 0, sigma_output: bool = False) -> "NeuronParams":
        return cls("SDNN", vth_mant, sigma_output=sigma_output)


# netx's neuron for a dense layer without a `neuron` group: `1 << 18 - 1` parses as 1 << 17 = 131072, a
# threshold v can never exceed (v saturates at 2**23 - 1 = (131072 << 6) - 1), so it never spikes: a readout.
DEFAULT_DENSE_NEURON = NeuronParams("CUBA", vth_mant=1 << 17, i_decay=0, v_decay=4096)


@dataclass(frozen=True, eq=False)
class InputLayer:
    """netx ``input``: ``shape`` is (C, H, W) or (N,).

    With a neuron it becomes a neuron-only block driven through its ``bias_mant`` or ``a_in``; without one it
    only fixes the input shape and the input feeds the next synapse directly. ``transform_weight`` and
    ``transform_bias`` are the file's scalar ``weight``/``bias``: netx reads them but never applies them.
    """

    shape: tuple[int, ...]
    neuron: NeuronParams | None = None
    transform_weight: int | None = None
    transform_bias: int | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise InvalidModelError(f"input shape must be (C, H, W) or (N,) with positive sizes, got {shape}")
        object.__setattr__(self, "shape", shape)
        for name in ("transform_weight", "transform_bias"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))

    __eq__ = _same_fields
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """netx ``conv``: PyTorch cross-correlation with the stored kernel, followed by a neuron group.

    ``weight`` is (C_out, C_in/groups, kH, kW); stride/padding/dilation are (H, W); ``shape`` is the output
    (C_out, H_out, W_out); ``bias`` is per channel (C_out,) or per neuron (C_out, H_out, W_out). netx always
    reads a conv layer's ``neuron`` group, so it is required here.
    """

    weight: np.ndarray
    shape: tuple[int, int, int]
    neuron: NeuronParams
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        weight = _frozen_int_array(self.weight, "conv weight")
        if weight.ndim != 4:
            raise InvalidModelError(f"conv weight must be (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
        object.__setattr__(self, "weight", weight)
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InvalidModelError(f"conv shape must be (C_out, H_out, W_out), got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if shape[0] != weight.shape[0]:
            raise InvalidModelError(f"conv shape has {shape[0]} channels but the weight has {weight.shape[0]}")
        if not isinstance(self.neuron, NeuronParams):
            raise InvalidModelError("conv layer needs a NeuronParams neuron (netx always reads it)")
        object.__setattr__(self, "stride", _int_pair(self.stride, "conv stride"))
        object.__setattr__(self, "padding", _int_pair(self.padding, "conv padding"))
        object.__setattr__(self, "dilation", _int_pair(self.dilation, "conv dilation"))
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise InvalidModelError(
                f"conv needs stride>=1, dilation>=1, padding>=0; got {self.stride}, {self.dilation}, {self.padding}"
            )
        groups = int(self.groups)
        if groups < 1 or shape[0] % groups:
            raise InvalidModelError(f"conv groups={groups} must be >= 1 and divide C_out={shape[0]}")
        object.__setattr__(self, "groups", groups)
        if self.bias is not None:
            bias = _frozen_int_array(self.bias, "conv bias")
            if bias.shape not in ((shape[0],), shape):
                raise InvalidModelError(f"conv bias must have shape ({shape[0]},) or {shape}, got {bias.shape}")
            object.__setattr__(self, "bias", bias)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def output_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """Output (H, W) for an input (H, W): floor((in + 2·pad − dil·(k−1) − 1)/stride) + 1."""
        return tuple(  # type: ignore[return-value]
            (in_hw[d] + 2 * self.padding[d] - self.dilation[d] * (self.kernel_size[d] - 1) - 1) // self.stride[d] + 1
            for d in range(2)
        )

    __eq__ = _same_fields
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class FlattenLayer:
    """netx ``flatten``: the next dense layer reads the previous (C, H, W) output in C·H·W order."""

    __eq__ = _same_fields
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class DenseLayer:
    """netx ``dense``: ``weight`` (out, in); optional ``bias`` (out,) and axonal ``delay``.

    ``delay`` is kept as stored: a scalar, a per-output (out,) or per-input (in,) vector, or an (out, in)
    matrix (netx resolves an ambiguous vector as per-output first). With ``neuron=None`` netx uses
    :data:`DEFAULT_DENSE_NEURON`, a non-spiking integrator read out through its ``u``/``v``.
    """

    weight: np.ndarray
    neuron: NeuronParams | None = None
    bias: np.ndarray | None = None
    delay: np.ndarray | None = None

    def __post_init__(self) -> None:
        weight = _frozen_int_array(self.weight, "dense weight")
        if weight.ndim != 2 or min(weight.shape) < 1:
            raise InvalidModelError(f"dense weight must be a non-empty (out, in) matrix, got shape {weight.shape}")
        object.__setattr__(self, "weight", weight)
        if self.neuron is not None and not isinstance(self.neuron, NeuronParams):
            raise InvalidModelError("dense neuron must be NeuronParams or None")
        n_out, n_in = weight.shape
        if self.bias is not None:
            bias = _frozen_int_array(self.bias, "dense bias")
            if bias.shape != (n_out,):
                raise InvalidModelError(f"dense bias must have shape ({n_out},), got {bias.shape}")
            object.__setattr__(self, "bias", bias)
        if self.delay is not None:
            delay = _frozen_int_array(self.delay, "dense delay")
            if delay.shape not in ((), (n_out,), (n_in,), (n_out, n_in)):
                raise InvalidModelError(
                    f"dense delay must be a scalar, ({n_out},), ({n_in},) or ({n_out}, {n_in}); got {delay.shape}"
                )
            object.__setattr__(self, "delay", delay)

    @property
    def shape(self) -> tuple[int]:
        return (int(self.weight.shape[0]),)

    @property
    def effective_neuron(self) -> NeuronParams:
        """The neuron netx builds: the layer's own, or the default integrator when it has none."""
        return self.neuron if self.neuron is not None else DEFAULT_DENSE_NEURON

    def delay_matrix(self) -> np.ndarray | None:
        """Per-synapse (out, in) delays as netx builds them (clipped to 0..62), or None without delays."""
        if self.delay is None:
            return None
        n_out, n_in = self.weight.shape
        delay = self.delay
        if delay.max(initial=0) > 62:  # netx clips (with a warning) only when some delay exceeds 62
            delay = np.clip(delay, 0, 62)
        if delay.ndim == 0:
            return np.full((n_out, n_in), int(delay), dtype=np.int64)
        if delay.ndim == 1:
            return np.repeat(delay.reshape(-1, 1), n_in, 1) if delay.size == n_out else np.repeat(
                delay.reshape(1, -1), n_out, 0
            )
        return np.array(delay, dtype=np.int64)

    __eq__ = _same_fields
    __hash__ = None  # type: ignore[assignment]


NetxLayer = Union[InputLayer, ConvLayer, FlattenLayer, DenseLayer]


@dataclass(frozen=True, eq=False)
class NetxNetwork:
    """A feed-forward chain of netx layers, connected in index order (as netx connects them).

    Construction checks the chain: an input layer may only come first, a conv needs a (C, H, W) input with
    matching channels and an output shape that agrees with the conv formula, a flatten must sit between a
    (C, H, W) layer and a dense layer, and a dense layer's fan-in must equal the size of its input.
    ``shapes[i]`` is the output shape of layer i (a flatten reports the flat size).
    """

    layers: tuple[NetxLayer, ...]
    shapes: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise InvalidModelError("a netx network needs at least one layer")
        shapes: list[tuple[int, ...]] = []
        prev: tuple[int, ...] | None = None
        for i, layer in enumerate(layers):
            where = f"layer {i} ({layer_type(layer)})"
            if isinstance(layer, InputLayer):
                if i != 0:
                    raise InvalidModelError(f"{where}: an input layer can only be the first layer")
                out = layer.shape
            elif isinstance(layer, ConvLayer):
                if prev is None or len(prev) != 3:
                    raise InvalidModelError(f"{where}: a conv layer needs a (C, H, W) input before it, got {prev}")
                if layer.in_channels != prev[0]:
                    raise InvalidModelError(
                        f"{where}: weight expects {layer.in_channels} input channels, the input has {prev[0]}"
                    )
                if layer.output_hw(prev[1:]) != layer.shape[1:]:
                    raise InvalidModelError(
                        f"{where}: shape {layer.shape} disagrees with the conv formula on input {prev}: "
                        f"expected (H, W) = {layer.output_hw(prev[1:])}"
                    )
                out = layer.shape
            elif isinstance(layer, FlattenLayer):
                if prev is None or len(prev) != 3:
                    raise InvalidModelError(f"{where}: flatten needs a (C, H, W) layer before it, got {prev}")
                if i + 1 >= len(layers) or not isinstance(layers[i + 1], DenseLayer):
                    raise InvalidModelError(f"{where}: flatten must be followed by a dense layer")
                out = (int(np.prod(prev)),)
            elif isinstance(layer, DenseLayer):
                n_in = int(layer.weight.shape[1])
                if prev is not None and len(prev) != 1:
                    raise InvalidModelError(f"{where}: a dense layer after a (C, H, W) output needs a flatten layer")
                if prev is not None and prev[0] != n_in:
                    raise InvalidModelError(f"{where}: weight has {n_in} inputs, the previous layer gives {prev[0]}")
                out = layer.shape
            else:
                raise InvalidModelError(f"layer {i}: {type(layer).__name__} is not a netx layer")
            shapes.append(out)
            prev = out
        object.__setattr__(self, "shapes", tuple(shapes))

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of what drives the network: the input layer's shape, or a leading dense layer's fan-in."""
        first = self.layers[0]
        if isinstance(first, InputLayer):
            return first.shape
        if isinstance(first, DenseLayer):
            return (int(first.weight.shape[1]),)
        raise InvalidModelError("the network's input shape is unknown")  # unreachable after validation

    __eq__ = _same_fields
    __hash__ = None  # type: ignore[assignment]


def layer_type(layer: object) -> str:
    """The netx ``type`` string of a layer object."""
    return {InputLayer: "input", ConvLayer: "conv", FlattenLayer: "flatten", DenseLayer: "dense"}.get(
        type(layer), type(layer).__name__
    )


# ----------------------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------------------


def _decode_str(ds: h5py.Dataset) -> str:
    """netx's string rule: element 0 of a shaped dataset, else the scalar; bytes decoded as ASCII."""
    if not isinstance(ds, h5py.Dataset):
        raise InvalidModelError(f"'{ds.name}' must be a string dataset, not a group")
    value = ds[0] if len(ds.shape) > 0 else ds[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("ascii")
    if isinstance(value, str):
        return value
    raise InvalidModelError(f"'{ds.name}' is not a string dataset")


def _read_raw(group: h5py.Group, key: str) -> np.ndarray:
    obj = group[key]
    if not isinstance(obj, h5py.Dataset):
        raise InvalidModelError(f"'{obj.name}' must be a dataset")
    nbytes = int(np.prod(obj.shape or (), dtype=object)) * obj.dtype.itemsize
    if nbytes > MAX_DATASET_BYTES:  # checked before reading: a chunked dataset can declare terabytes in a tiny file
        raise InvalidModelError(f"'{obj.name}' declares shape {obj.shape} ({nbytes} bytes), over the "
                                f"{MAX_DATASET_BYTES}-byte limit")
    return np.asarray(obj[()])


def _foreign_storage(handle: h5py.File) -> list[str]:
    """Links and datasets whose data lives in another file (external links, external or virtual datasets)."""
    found: list[str] = []

    def link(name: str, lnk) -> None:
        if isinstance(lnk, h5py.ExternalLink):
            found.append(f"'{name}' links to the file '{lnk.filename}'")

    def obj(name: str, o) -> None:
        if isinstance(o, h5py.Dataset) and (o.external or o.is_virtual):
            found.append(f"'{name}' stores its data in another file")

    handle.visititems_links(link)
    handle.visititems(obj)
    return found


def _read_copy(group: h5py.Group, key: str) -> np.ndarray:
    """Keys netx reads with ``astype(int)``: floats are truncated toward zero, as netx does."""
    raw = _read_raw(group, key)
    if raw.dtype.kind not in "iubf":
        raise InvalidModelError(f"'{group.name}/{key}' must be numeric, got dtype {raw.dtype}")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        raise InvalidModelError(f"'{group.name}/{key}' holds non-finite values")
    truncated = raw.astype(np.int64)
    if raw.dtype.kind == "f" and not np.array_equal(truncated, raw):
        log.warning("%s/%s holds non-integer values; truncated toward zero as netx does", group.name, key)
    return truncated


def _read_int(group: h5py.Group, key: str) -> int:
    raw = _read_raw(group, key)
    if raw.size != 1 or raw.dtype.kind not in "iubf" or float(raw.reshape(-1)[0]) != int(raw.reshape(-1)[0]):
        raise InvalidModelError(f"'{group.name}/{key}' must be a single integer, got {raw!r}")
    return int(raw.reshape(-1)[0])


def _read_neuron(group: h5py.Group, unsupported: list[tuple[str, str, str]], index: int) -> NeuronParams | None:
    ntype = _decode_str(group["type"])
    if "RF" in ntype:
        unsupported.append(("neuron", f"layer {index}", f"neuron type {ntype!r} (resonate-and-fire) is not modelled"))
        return None
    if "messageBits" in group:
        unsupported.append(("neuron", f"layer {index}", "neuron/messageBits: netx reads it as a group and crashes"))
        return None
    if ntype in CUBA_TYPES:
        return NeuronParams(
            ntype, _read_int(group, "vThMant"), _read_int(group, "iDecay"), _read_int(group, "vDecay")
        )
    if ntype == "SDNN":
        sigma = "sigma_output" in group  # netx tests presence only, not the stored value
        vth = _read_int(group, "vThMant") if ("vThMant" in group or not sigma) else 0
        return NeuronParams("SDNN", vth, sigma_output=sigma)
    unsupported.append(("neuron", f"layer {index}", f"unknown neuron type {ntype!r}"))
    return None


def _read_input(g: h5py.Group, neuron: NeuronParams | None) -> InputLayer:
    shape = _read_copy(g, "shape").reshape(-1)
    transform: dict[str, int] = {}
    for key in ("weight", "bias"):
        if key in g:
            value = _read_copy(g, key)
            if value.size != 1:
                raise InvalidModelError(f"input {key} must be a scalar transform, got shape {value.shape}")
            transform[key] = int(value.reshape(-1)[0])
    return InputLayer(tuple(shape), neuron, transform.get("weight"), transform.get("bias"))


def _read_conv(g: h5py.Group, neuron: NeuronParams | None) -> ConvLayer:
    if neuron is None:
        raise InvalidModelError("conv layer has no neuron group (netx requires one)")
    weight = _read_copy(g, "weight")
    if weight.ndim > 4 and all(s == 1 for s in weight.shape[4:]):  # slayer may add a trailing unit axis
        weight = weight.reshape(weight.shape[:4])
    if weight.ndim != 4:
        raise InvalidModelError(f"conv weight must be (C_out, C_in/groups, kH, kW[, 1]), got shape {weight.shape}")
    shape = tuple(_read_copy(g, "shape").reshape(-1))
    bias = _read_copy(g, "bias") if "bias" in g else None
    if bias is not None and bias.ndim == 3:
        bias = lava_to_chw(bias)  # netx compares a full-size bias with the Lava (W, H, C) shape
    return ConvLayer(
        weight=weight,
        shape=shape,  # type: ignore[arg-type]
        neuron=neuron,
        stride=_int_pair(_read_raw(g, "stride"), "conv stride"),
        padding=_int_pair(_read_raw(g, "padding"), "conv padding"),
        dilation=_int_pair(_read_raw(g, "dilation"), "conv dilation"),
        groups=_read_int(g, "groups"),
        bias=bias,
    )


def _read_dense(g: h5py.Group, neuron: NeuronParams | None) -> DenseLayer:
    n_out = int(np.prod(_read_copy(g, "shape")))
    weight = _read_copy(g, "weight")
    if weight.ndim == 1:
        if n_out < 1 or weight.size % n_out:
            raise InvalidModelError(f"1-D dense weight of size {weight.size} cannot be reshaped to ({n_out}, -1)")
        weight = weight.reshape(n_out, -1)
    if weight.ndim != 2 or weight.shape[0] != n_out:
        raise InvalidModelError(f"dense weight must be ({n_out}, in) for shape {n_out}, got {weight.shape}")
    bias = None
    if "bias" in g:
        bias = _read_copy(g, "bias")
        if bias.size == 1:  # netx hands a dense bias to Lava as is; one value broadcasts over the layer
            bias = np.full(n_out, int(bias.reshape(-1)[0]), dtype=np.int64)
    delay = _read_copy(g, "delay") if "delay" in g else None  # netx's block casts delays with astype(int)
    return DenseLayer(weight=weight, neuron=neuron, bias=bias, delay=delay)


def read_netx(path: str | os.PathLike[str]) -> NetxNetwork:
    """Read a netx ``.net`` (HDF5) file into a :class:`NetxNetwork`, following netx's reading rules.

    Raises :class:`InvalidModelError` (naming the path and layer index) for a missing, corrupt or truncated
    file, missing keys and inconsistent shapes, and one :class:`UnsupportedModelError` listing every layer
    type or neuron type that netx or ann2snn cannot run (pool, concat, convT, RF neurons...).
    """
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:  # missing, not HDF5, truncated superblock
        raise InvalidModelError(f"{path}: cannot open as a netx HDF5 file: {exc}") from exc
    with handle:
        try:
            foreign = _foreign_storage(handle)
        except Exception as exc:  # h5py raises assorted errors on corrupt files (even SystemError)
            raise InvalidModelError(f"{path}: cannot walk the HDF5 file: {exc}") from exc
        if foreign:  # a netx file is self-contained; reading another file's bytes is refused
            raise InvalidModelError(f"{path}: refused: " + "; ".join(foreign[:5]))
        if "layer" not in handle or not isinstance(handle["layer"], h5py.Group):
            raise InvalidModelError(f"{path}: no 'layer' group (not a netx network)")
        group = handle["layer"]
        try:
            names = set(group.keys())
        except (OSError, RuntimeError) as exc:
            raise InvalidModelError(f"{path}: cannot list layers: {exc}") from exc
        expected = {str(i) for i in range(len(names))}
        if names != expected:  # netx reads f"{i}" for i in range(len(layer))
            raise InvalidModelError(f"{path}: layer groups must be named 0..{len(names) - 1}, got {sorted(names)}")
        if not names:
            raise InvalidModelError(f"{path}: the 'layer' group is empty")
        unsupported: list[tuple[str, str, str]] = []
        layers: list[NetxLayer | None] = []
        for i in range(len(names)):
            try:
                layers.append(_read_layer(group[str(i)], i, unsupported))
            except InvalidModelError as exc:
                raise InvalidModelError(f"{path}: layer {i}: {exc}") from exc
            except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
                # h5py reports truncated/corrupt datasets and missing keys through these
                raise InvalidModelError(f"{path}: layer {i}: unreadable or missing data: {exc}") from exc
    if unsupported:
        raise UnsupportedModelError(unsupported, context=str(path))
    try:
        return NetxNetwork(tuple(layer for layer in layers if layer is not None))
    except InvalidModelError as exc:
        raise InvalidModelError(f"{path}: {exc}") from exc


def _read_layer(g: h5py.Group, index: int, unsupported: list[tuple[str, str, str]]) -> NetxLayer | None:
    if not isinstance(g, h5py.Group):
        raise InvalidModelError("is not a group")
    ltype = _decode_str(g["type"])
    if ltype in _UNSUPPORTED_TYPES:
        unsupported.append((ltype, f"layer {index}", _UNSUPPORTED_TYPES[ltype]))
        return None
    if ltype not in ("input", "conv", "flatten", "dense"):
        unsupported.append((ltype, f"layer {index}", "unknown layer type (netx would skip it silently)"))
        return None
    if ltype == "flatten":
        return FlattenLayer()
    n_before = len(unsupported)
    neuron = _read_neuron(g["neuron"], unsupported, index) if "neuron" in g else None
    if len(unsupported) > n_before:
        return None
    if ltype == "input":
        return _read_input(g, neuron)
    if ltype == "conv":
        return _read_conv(g, neuron)
    return _read_dense(g, neuron)


# ----------------------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------------------


def _integer_valued(arr: np.ndarray) -> np.ndarray:
    """Slayer's storage: float32 arrays holding integers; float64 when float32 would round (|x| > 2**24)."""
    dtype = np.float32 if np.abs(arr).max(initial=0) <= 2**24 else np.float64
    return np.asarray(arr, dtype=dtype)


def _write_str(g: h5py.Group, key: str, value: str) -> None:
    g.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _write_neuron(g: h5py.Group, neuron: NeuronParams) -> None:
    ng = g.create_group("neuron")
    ng.create_dataset("type", data=neuron.type)  # scalar variable-length string, as slayer writes it
    ng.create_dataset("vThMant", data=np.int64(neuron.vth_mant))
    if neuron.is_cuba:
        ng.create_dataset("iDecay", data=np.int64(neuron.i_decay))
        ng.create_dataset("vDecay", data=np.int64(neuron.v_decay))
        ng.create_dataset("refDelay", data=np.int64(1))  # written by slayer, ignored by netx
        ng.create_dataset("gradedSpike", data=False)
    else:
        ng.create_dataset("activation", data="relu")  # ignored by netx: SigmaDelta is always ReLU
        if neuron.sigma_output:
            ng.create_dataset("sigma_output", data=True)


def _write_layer(g: h5py.Group, layer: NetxLayer, in_shape: tuple[int, ...] | None) -> None:
    if isinstance(layer, InputLayer):
        _write_str(g, "type", "input")
        g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
        if layer.transform_weight is not None:
            g.create_dataset("weight", data=np.float32(layer.transform_weight))
        if layer.transform_bias is not None:
            g.create_dataset("bias", data=np.float32(layer.transform_bias))
    elif isinstance(layer, ConvLayer):
        _write_str(g, "type", "conv")
        g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
        g.create_dataset("weight", data=_integer_valued(layer.weight))
        g.create_dataset("stride", data=np.asarray(layer.stride, dtype=np.int64))
        g.create_dataset("padding", data=np.asarray(layer.padding, dtype=np.int64))
        g.create_dataset("dilation", data=np.asarray(layer.dilation, dtype=np.int64))
        g.create_dataset("groups", data=np.int64(layer.groups))
        # written by slayer and handy for humans; netx does not read them
        g.create_dataset("inChannels", data=np.int64(layer.in_channels))
        g.create_dataset("outChannels", data=np.int64(layer.shape[0]))
        g.create_dataset("kernelSize", data=np.asarray(layer.kernel_size, dtype=np.int64))
        if layer.bias is not None:
            bias = layer.bias if layer.bias.ndim == 1 else chw_to_lava(layer.bias)
            g.create_dataset("bias", data=_integer_valued(bias))
    elif isinstance(layer, FlattenLayer):
        _write_str(g, "type", "flatten")
        g.create_dataset("shape", data=np.asarray([int(np.prod(in_shape or (1,))), 1, 1], dtype=np.int64))
    elif isinstance(layer, DenseLayer):
        _write_str(g, "type", "dense")
        g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
        g.create_dataset("weight", data=_integer_valued(layer.weight))
        g.create_dataset("inFeatures", data=np.int64(layer.weight.shape[1]))
        g.create_dataset("outFeatures", data=np.int64(layer.weight.shape[0]))
        if layer.bias is not None:
            g.create_dataset("bias", data=_integer_valued(layer.bias))
        if layer.delay is not None:
            g.create_dataset("delay", data=np.asarray(layer.delay, dtype=np.int64))
    neuron = getattr(layer, "neuron", None)
    if neuron is not None:
        _write_neuron(g, neuron)


def write_netx(network: NetxNetwork, path: str | os.PathLike[str]) -> Path:
    """Write ``network`` as a netx ``.net`` file at ``path`` (atomically) and return the path.

    The file is written to a temporary file in the same directory and moved into place with
    :func:`os.replace`, so readers never see a partial file and a failure leaves any old file untouched.
    The writer does not judge whether netx or a chip can run the network: call
    :func:`ann2snn.backends.loihi.profile.validate_network` first.
    """
    if not isinstance(network, NetxNetwork):
        raise TypeError(f"write_netx expects a NetxNetwork, got {type(network).__name__}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            layers = handle.create_group("layer")
            in_shape: tuple[int, ...] | None = None
            for i, layer in enumerate(network.layers):
                _write_layer(layers.create_group(str(i)), layer, in_shape)
                in_shape = network.shapes[i]
    log.info("wrote netx network with %d layers to %s", len(network.layers), path)
    return path
