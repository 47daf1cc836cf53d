"""Spiking IR nodes: what ReLU and MaxPool become after conversion.

Weights in a converted graph are normalized (weight-scaling form): every IF neuron has threshold 1 and
emits spikes of value 1, and ``scale`` (the calibrated threshold lambda, per channel) is the ANN value
of one spike per step, so ``rate * scale`` estimates the ANN activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ann2snn.ir.nodes import GlobalMaxPool, MaxPool2d, Node


RESETS = ("subtract", "zero")


@dataclass(frozen=True, eq=False)
class IF(Node):
    """Integrate-and-fire neuron, threshold 1, reset by subtraction (default) or to zero.

    Per step, ``reset="subtract"``:  m = v + I;  s = 1 if m >= 1 else 0;  v = m - s.
    ``reset="zero"`` (NIR's and Lava's IF):  m = v + I;  s = 1 if m > theta else 0;  v = 0 if s else m,
    with ``threshold`` theta (per channel or scalar, 1 unless bias correction lowered it to pay back the
    residue above the threshold that each reset loses).
    Signed (Fast-SNN / SNM style): additionally s = -1 if m < 0 and the neuron's net spike count is
    positive, then v = m + 1 (cancels spikes that were emitted too early; the count never goes negative).
    ``v_init`` is v at t=0 in threshold units (0.5 = theta/2), per channel or scalar.
    ``scale`` (per channel) is the ANN value represented by a rate of one spike per step.
    """

    scale: np.ndarray = field(default=None)
    v_init: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    signed: bool = False
    reset: str = "subtract"
    threshold: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ValueError(f"IF {self.name!r}: reset={self.reset!r} (allowed: {', '.join(RESETS)})")
        if self.signed and self.reset != "subtract":
            raise ValueError(f"IF {self.name!r}: a signed neuron resets by subtraction")
        theta = np.asarray(self.threshold)
        if not (theta.size and np.all(np.isfinite(theta)) and np.all(theta > 0)):
            raise ValueError(f"IF {self.name!r}: thresholds must be finite and positive")
        if self.reset == "subtract" and np.any(theta != 1):
            raise ValueError(f"IF {self.name!r}: a neuron that resets by subtraction has threshold 1")

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])

    def parameters(self):
        return {"scale": self.scale, "v_init": self.v_init, "threshold": self.threshold}

    def describe(self):
        reset = "" if self.reset == "subtract" else f" reset={self.reset}"
        return ("signed " if self.signed else "") + f"IF v0={float(np.mean(self.v_init)):.2f}{reset}"


@dataclass(frozen=True, eq=False)
class CumulativeMaxPool2d(MaxPool2d):
    """Rate-preserving max-pool: out(t) = maxpool(C(t)) - maxpool(C(t-1)), C = cumulative input.

    Placed before an IF (on input current, 'pre_neuron') or after one (on spike counts, 'cumulative');
    either way the accumulated output equals the max of the accumulated inputs at every step.
    """


@dataclass(frozen=True, eq=False)
class CumulativeGlobalMaxPool(GlobalMaxPool):
    """Global version of ``CumulativeMaxPool2d``."""


STATEFUL_OPS: tuple[type[Node], ...] = (IF, CumulativeMaxPool2d, CumulativeGlobalMaxPool)
