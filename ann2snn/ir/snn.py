"""Spiking IR nodes: what ReLU and MaxPool become after conversion.

Weights in a converted graph are normalized (weight-scaling form): every IF neuron has threshold 1 and
emits spikes of value 1, and ``scale`` (the calibrated threshold lambda, per channel) is the ANN value
of one spike per step, so ``rate * scale`` estimates the ANN activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ann2snn.ir.nodes import GlobalMaxPool, MaxPool2d, Node


@dataclass(frozen=True, eq=False)
class IF(Node):
    """Integrate-and-fire neuron, threshold 1, reset by subtraction.

    Per step:  m = v + I;  s = 1 if m >= 1 else 0;  v = m - s.
    Signed (Fast-SNN / SNM style): additionally s = -1 if m < 0 and the neuron's net spike count is
    positive, then v = m + 1 (cancels spikes that were emitted too early; the count never goes negative).
    ``v_init`` is v at t=0 in threshold units (0.5 = theta/2), per channel or scalar.
    ``scale`` (per channel) is the ANN value represented by a rate of one spike per step.
    """

    scale: np.ndarray = field(default=None)
    v_init: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    signed: bool = False

    def output_shape(self, in_shapes):
        return tuple(in_shapes[0])

    def parameters(self):
        return {"scale": self.scale, "v_init": self.v_init}

    def describe(self):
        return ("signed " if self.signed else "") + f"IF v0={float(np.mean(self.v_init)):.2f}"


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
