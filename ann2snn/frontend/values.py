"""What an ONNX value becomes during import: a run-time ``Tensor`` of the IR, or a folded ``Constant``.

Its own module so that the op converters (``ops/``) and the importer that calls them both import it,
and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ann2snn.ir.nodes import Shape


@dataclass(frozen=True)
class Tensor:
    """A value computed from the graph input at run time (an IR tensor); ``shape`` excludes the batch."""

    name: str
    shape: Shape


@dataclass(frozen=True, eq=False)
class Constant:
    """A value known at import time (initializer, Constant node, folded shape arithmetic).

    ``batch_mask`` (same shape as ``value``, or None) marks entries that hold the batch size: ``Shape``
    sets it on its first entry and the shape-arithmetic converters carry it along, so a ``Reshape`` target
    built from ``Shape(x)[0]`` is recognised as "keep the batch" even when the model's batch is dynamic.
    """

    value: np.ndarray
    batch_mask: np.ndarray | None = None


Value = Tensor | Constant
