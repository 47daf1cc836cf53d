"""Registry of ONNX op converters, and the table of known ops that cannot become spiking layers.

One decorated function per ONNX op (and opset range) in ``ann2snn/frontend/ops/``::

    @register("Conv", since=1, ir="Conv2d", note="...")
    def conv(ctx, node, x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, ...):
        ...

Converters mirror the ONNX spec: inputs positional (``Tensor``/``Constant`` values; a missing optional
input is None), attributes as keyword arguments with the spec's defaults. The registry rejects duplicates
and picks the converter with the highest ``since`` that is <= the model's opset for the default domain.

``UNCONVERTIBLE`` names ops that ann2snn knows but refuses on purpose, with the reason shown to the user
(``ann2snn inspect``, ``UnsupportedModelError``, ``ann2snn ops``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# supported range of the default ONNX domain
MIN_OPSET = 7
MAX_OPSET = 21


@dataclass(frozen=True)
class OpConverter:
    op_type: str
    since: int
    func: Callable
    # one-line user-facing note for the supported-op table (`ann2snn ops`, README)
    note: str
    # how the op ends up in the IR ("Conv2d", "folded", "ScaleShift or Add"...)
    ir: str


@dataclass(frozen=True)
class Unconvertible:
    """A known ONNX op that has no rate-coded spiking equivalent."""

    op_type: str
    reason: str
    # True if the op maps a tensor to a tensor of the same shape: the importer then keeps checking the
    # nodes after it (so one report lists every problem, not only the first on each path)
    elementwise: bool = False


_REGISTRY: dict[str, list[OpConverter]] = {}


def register(op_type: str, since: int = 1, *, ir: str, note: str = "") -> Callable:
    """Decorator adding ``func`` as the converter of ``op_type`` from opset ``since`` on."""

    def deco(func: Callable) -> Callable:
        entries = _REGISTRY.setdefault(op_type, [])
        if any(e.since == since for e in entries):
            raise ValueError(f"converter for {op_type} since opset {since} is registered twice")
        if op_type in UNCONVERTIBLE:
            raise ValueError(f"{op_type} is listed as unconvertible and cannot also have a converter")
        entries.append(OpConverter(op_type, since, func, note, ir))
        entries.sort(key=lambda e: e.since)
        return func

    return deco


def lookup(op_type: str, opset: int) -> OpConverter | None:
    """The converter for ``op_type`` at ``opset``, or None if the op (at that opset) is unsupported."""
    best = None
    for entry in _REGISTRY.get(op_type, []):
        if entry.since <= opset:
            best = entry
    return best


def converters(op_type: str) -> list[OpConverter]:
    """Every registered converter of ``op_type``, oldest first."""
    return list(_REGISTRY.get(op_type, []))


def supported_ops() -> list[OpConverter]:
    """One entry per op type (its newest converter), sorted by op type."""
    return [entries[-1] for _, entries in sorted(_REGISTRY.items())]


def first_opset(op_type: str) -> int | None:
    """The lowest opset of the supported range (MIN_OPSET..MAX_OPSET) at which ``op_type`` converts."""
    entries = converters(op_type)
    if not entries:
        return None
    return max(MIN_OPSET, entries[0].since)


def unsupported_reason(op_type: str, domain: str, opset: int) -> str:
    """The message for an op without a converter (domain, opset or op type)."""
    if domain not in ("", "ai.onnx"):
        return f"op from domain '{domain}' is not supported (only the default ONNX domain is)"
    if op_type in UNCONVERTIBLE:
        return UNCONVERTIBLE[op_type].reason
    entries = converters(op_type)
    if entries:
        return f"{op_type} is supported only from opset {entries[0].since}, the model has opset {opset}"
    return f"ann2snn has no converter for {op_type}"


def is_elementwise_unconvertible(op_type: str, domain: str) -> bool:
    return domain in ("", "ai.onnx") and op_type in UNCONVERTIBLE and UNCONVERTIBLE[op_type].elementwise


def _table(rows: list[tuple[str, str, bool]]) -> dict[str, Unconvertible]:
    return {op: Unconvertible(op, reason, elementwise) for op, reason, elementwise in rows}


_SIGNED = "needs negative outputs, but a rate-coded IF neuron only fires for positive input"
_SMOOTH = "has no rate-coded IF equivalent: its curve is not piecewise linear through 0 like ReLU"

UNCONVERTIBLE: dict[str, Unconvertible] = _table([
    ("Sigmoid", "Sigmoid has no rate-coded IF equivalent (a saturating, non-ReLU curve; retrain with ReLU)", True),
    ("HardSigmoid", "HardSigmoid has no rate-coded IF equivalent (it outputs 0.5 at 0 and saturates; use ReLU)", True),
    ("Tanh", f"Tanh {_SIGNED} (and it saturates; retrain with ReLU)", True),
    ("LeakyRelu", f"LeakyRelu's negative slope {_SIGNED}; retrain with ReLU", True),
    ("PRelu", f"PRelu's negative slope {_SIGNED}; retrain with ReLU", True),
    ("Elu", f"Elu {_SIGNED}; retrain with ReLU", True),
    ("Selu", f"Selu {_SIGNED}; retrain with ReLU", True),
    ("Celu", f"Celu {_SIGNED}; retrain with ReLU", True),
    ("Gelu", f"Gelu {_SMOOTH}", True),
    ("Softplus", f"Softplus {_SMOOTH}", True),
    ("Softsign", f"Softsign {_SIGNED}", True),
    ("HardSwish", f"HardSwish {_SMOOTH}", True),
    ("Mish", f"Mish {_SMOOTH}", True),
    ("ThresholdedRelu", "ThresholdedRelu jumps from 0 to alpha: no rate-coded IF equivalent", True),
    ("Exp", "Exp is not piecewise linear: no rate-coded equivalent", True),
    ("Log", "Log is not piecewise linear: no rate-coded equivalent", True),
    ("Sqrt", "Sqrt is not piecewise linear: no rate-coded equivalent", True),
    ("Reciprocal", "Reciprocal divides by an activation: no rate-coded equivalent", True),
    ("Abs", "Abs reads negative values; an IF neuron's rate cannot encode them", True),
    ("Sin", "Sin is not piecewise linear: no rate-coded equivalent", True),
    ("Cos", "Cos is not piecewise linear: no rate-coded equivalent", True),
    ("Erf", "Erf is not piecewise linear: no rate-coded equivalent", True),
    ("Floor", "Floor quantizes activations: no rate-coded equivalent", True),
    ("Ceil", "Ceil quantizes activations: no rate-coded equivalent", True),
    ("Round", "Round quantizes activations: no rate-coded equivalent", True),
    ("Sign", "Sign is a step function: no rate-coded equivalent", True),
    ("LRN", "LRN divides by a sum of squared activations: no rate-coded equivalent", True),
    ("InstanceNormalization", "InstanceNormalization uses per-sample statistics computed at run time", True),
    ("LayerNormalization", "LayerNormalization uses per-sample statistics computed at run time", True),
    ("GroupNormalization", "GroupNormalization uses per-sample statistics computed at run time", True),
    ("MeanVarianceNormalization", "MeanVarianceNormalization uses per-sample statistics computed at run time", True),
    ("LpNormalization", "LpNormalization divides by a norm computed at run time", True),
    ("Hardmax", "Hardmax is an arg-max: no rate-coded equivalent before the read-out", False),
    ("RNN", "recurrent layers (RNN) are not supported: ann2snn converts feed-forward CNNs", False),
    ("GRU", "recurrent layers (GRU) are not supported: ann2snn converts feed-forward CNNs", False),
    ("LSTM", "recurrent layers (LSTM) are not supported: ann2snn converts feed-forward CNNs", False),
    ("Loop", "control flow (Loop) is not supported: ann2snn needs a static feed-forward graph", False),
    ("If", "control flow (If) is not supported: ann2snn needs a static feed-forward graph", False),
    ("Scan", "control flow (Scan) is not supported: ann2snn needs a static feed-forward graph", False),
    ("QuantizeLinear", "quantized models are not supported: export the float model", False),
    ("DequantizeLinear", "quantized models are not supported: export the float model", False),
    ("QLinearConv", "quantized models are not supported: export the float model", False),
    ("QLinearMatMul", "quantized models are not supported: export the float model", False),
    ("ConvInteger", "quantized models are not supported: export the float model", False),
    ("MatMulInteger", "quantized models are not supported: export the float model", False),
])
