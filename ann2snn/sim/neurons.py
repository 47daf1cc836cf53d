"""Pure neuron update functions: (state, input) -> (output, state). No graph knowledge, no I/O.

The simulator calls these once per time step on whole layers; everything synaptic runs outside them,
batched over the time chunk.
"""

from __future__ import annotations

import torch


def if_step(v: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate-and-fire, threshold 1, reset by subtraction. Returns (spikes in {0,1}, new v)."""
    m = v + current
    s = (m >= 1.0).to(m.dtype)
    return s, m - s


def if_zero_step(v: torch.Tensor, current: torch.Tensor, threshold=1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate-and-fire, reset to zero, fires on v > threshold (NIR's and Lava's IF)."""
    m = v + current
    s = (m > threshold).to(m.dtype)
    return s, m * (1.0 - s)


def signed_if_step(v: torch.Tensor, count: torch.Tensor, current: torch.Tensor):
    """Signed IF: like ``if_step``, plus a -1 spike when v < 0 and the net count is positive.

    Returns (spikes in {-1,0,1}, new v, new count). The count (net spikes so far) never goes negative,
    so the neuron's rate stays a ReLU of its input while early excess spikes are taken back.
    """
    m = v + current
    pos = m >= 1.0
    neg = (m < 0.0) & (count > 0)
    s = pos.to(m.dtype) - neg.to(m.dtype)
    return s, m - s, count + s


def run_if_chunk(v: torch.Tensor, current: torch.Tensor, steps: int, out: torch.Tensor,
                 count: torch.Tensor | None = None, constant: bool = False, reset: str = "subtract",
                 threshold: torch.Tensor | float = 1.0):
    """Run ``steps`` IF updates, writing spikes into ``out[t]``.

    ``current`` is (steps, *v.shape), or v.shape when ``constant`` (the first layer's analog input:
    computed once, reused every step). ``out`` may be of a narrower dtype than ``v`` (bfloat16: spikes
    are exact in it); the membrane potential keeps ``v``'s dtype. Returns the final (v, count); the
    arguments are not modified.

    Same arithmetic as ``if_step``/``signed_if_step`` (m = v + I; s = m >= 1; v = m - s), or
    ``if_zero_step`` with ``reset="zero"`` (``threshold`` broadcasts against v), done in place on one
    working copy of the state, so each step makes three passes over the layer and allocates nothing.
    The simulator runs the fused C form of this loop (``ann2snn.sim.native``, one pass per step, results
    identical) where it can, and this one elsewhere (no C compiler, CUDA, unusual layouts).
    """
    v = v.clone()
    if reset == "zero":
        for t in range(steps):
            v.add_(current if constant else current[t])
            s = out[t]
            torch.gt(v, threshold, out=s)
            v.masked_fill_(s.bool(), 0.0)
        return v, None
    if count is None:
        for t in range(steps):
            v.add_(current if constant else current[t])
            s = out[t]
            torch.ge(v, 1.0, out=s)
            v.sub_(s)
        return v, None
    count = count.clone()
    for t in range(steps):
        v.add_(current if constant else current[t])
        pos = v >= 1.0
        neg = (v < 0.0) & (count > 0)
        s = pos.to(v.dtype) - neg.to(v.dtype)
        v.sub_(s)
        count.add_(s)
        out[t] = s
    return v, count
