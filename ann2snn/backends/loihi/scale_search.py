"""The integer scale of a layer's weights and biases: least quantization error, finest resolution.

For float weights ``w`` and biases ``b`` (in consistent units) and a candidate scale S::

    Q_w(S) = clip(2·round(w·S/2), -256, 254)          (slayer's 8-bit mantissa ×2 rule)
    Q_b(S) = clip(round(b·S·k), -4095, 4095) / k       (k: bias units per weight unit)
    E(S)   = (‖Q_w(S)/S − w‖² + ‖Q_b(S)/(S·k) − b‖²) / (‖w‖² + ‖b‖²)

S is searched on a log grid from S₀/16 to min(4·S₀, S_max), S₀ being the largest S that clips no weight and
S_max the layer's hardware/overflow bound. Rounding error falls like 1/S² until clipping starts, so E has its
minimum near S₀; the chosen S is the **largest S with E(S) ≤ (1 + tolerance)·min E** (tolerance 1 %): the
least error, and among equals the finest threshold (CUBA) and bias resolution. The CUBA and SDNN paths
choose scales **per output channel**: the converted graph's weights are normalized by per-channel
thresholds λ, so rows of one layer differ by up to 50× in magnitude (one scale per layer costs points of
accuracy: benchmarks/RESULTS.md, "Loihi quantization: design measurements").
"""

from __future__ import annotations

import math

import numpy as np


def q_weight(w: np.ndarray, s: float) -> np.ndarray:
    return np.clip(2.0 * np.round(w * s / 2.0), -256, 254)


def q_bias(b: np.ndarray, s: float, bias_unit: float, limit: int) -> np.ndarray:
    return np.clip(np.round(b * s * bias_unit), -limit, limit)


def no_clip_scale(w: np.ndarray) -> float:
    """The largest S for which 2·round(w·S/2) stays in [-256, 254] without clipping."""
    hi, lo = float(np.max(w)), float(np.min(w))
    bounds = [255.0 / hi if hi > 0 else math.inf, 257.0 / -lo if lo < 0 else math.inf]
    s = min(bounds)
    return s if math.isfinite(s) else 1.0


def search_scale(w: np.ndarray, b: np.ndarray | None = None, *, s_max: float = math.inf, bias_unit: float = 1.0,
                 bias_limit: int = 4095, tolerance: float = 0.01, points: int = 64,
                 weight_unit: np.ndarray | None = None) -> float:
    """The scale S minimizing the quantization error of (w, b), largest S within ``tolerance`` of the minimum.

    See the module docstring for the objective. ``s_max`` bounds S (hardware or overflow limits); the result
    is always <= s_max. ``bias_unit`` converts S into bias units (1 for CUBA; 1/4096 for SDNN, whose bias is
    added as ``bias << 12`` to an accumulator in weight·message units). ``weight_unit`` (per weight) converts
    weight errors into the bias's units when ``w`` is per message unit (SDNN: the input's message units).
    """
    w = np.asarray(w, np.float64).reshape(-1)
    unit = np.ones_like(w) if weight_unit is None else np.broadcast_to(np.asarray(weight_unit, np.float64).reshape(-1), w.shape)
    b = None if b is None or not np.any(b) else np.asarray(b, np.float64).reshape(-1)
    if not np.any(w):
        return float(min(s_max, 1.0))
    s0 = no_clip_scale(w)
    hi = min(4.0 * s0, s_max)
    lo = min(s0 / 16.0, hi)
    cands = np.unique(np.concatenate([np.geomspace(lo, hi, points), [min(s0, s_max)]]))
    norm = float(np.sum((w * unit) ** 2) + (0.0 if b is None else np.sum(b ** 2)))
    c = cands[:, None]
    err = np.sum(((q_weight(w[None, :], c) / c - w[None, :]) * unit[None, :]) ** 2, axis=1)
    if b is not None:
        qb = q_bias(b[None, :], c, bias_unit, bias_limit) / (c * bias_unit)
        err = err + np.sum((qb - b[None, :]) ** 2, axis=1)
    err = err / norm
    ok = np.nonzero(err <= err.min() * (1.0 + tolerance) + 1e-18)[0]
    return float(cands[ok.max()])
