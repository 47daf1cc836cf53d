"""Registry of ONNX op converters.

One decorated function per ONNX op (and opset range) in ``ann2snn/frontend/ops/``::

    @register("Conv", since=1)
    def conv(ctx, node, x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, ...):
        ...

Converters mirror the ONNX spec: inputs positional (``Value`` objects; a missing optional input is None),
attributes as keyword arguments with the spec's defaults. The registry rejects duplicates and picks the
converter with the highest ``since`` that is <= the model's opset for the default domain.
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


_REGISTRY: dict[str, list[OpConverter]] = {}


def register(op_type: str, since: int = 1, *, ir: str, note: str = "") -> Callable:
    """Decorator adding ``func`` as the converter of ``op_type`` from opset ``since`` on."""

    def deco(func: Callable) -> Callable:
        entries = _REGISTRY.setdefault(op_type, [])
        if any(e.since == since for e in entries):
            raise ValueError(f"converter for {op_type} since opset {since} is registered twice")
        entries.append(OpConverter(op_type, since, func, note, ir))
        entries.sort(key=lambda e: e.since)
        return func

    return deco


def lookup(op_type: str, opset: int) -> OpConverter | None:
    """The converter for ``op_type`` at ``opset``, or None if the op (at that opset) is unsupported."""
    _load_ops()
    best = None
    for entry in _REGISTRY.get(op_type, []):
        if entry.since <= opset:
            best = entry
    return best


def supported_ops() -> list[OpConverter]:
    """One entry per op type (its newest converter), sorted by op type."""
    _load_ops()
    return [entries[-1] for _, entries in sorted(_REGISTRY.items())]


def _load_ops() -> None:
    # importing the package runs every @register decorator once
    import ann2snn.frontend.ops  # noqa: F401
