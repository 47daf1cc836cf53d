"""Threshold (normalisation scale) selection from activation statistics.

``choose_thresholds(stats, method, granularity, timesteps)`` returns {tensor: float32 array} with one
positive threshold per channel (shape (C,)) or one per layer (shape (1,)). In the threshold form of
normalisation the IF neurons of a layer get threshold θ; in the weight-scaling form the same numbers are
the λ of CONVERSION_LITERATURE §2.2 — the converter decides which.

Methods (the ``method`` string)
    ``max``           the largest activation (Diehl'15); exact.
    ``percentile:P``  the P-th percentile of max(a, 0), 0 < P <= 100 (Rueckauer'17 robust
                      normalisation, P = 99.9 or 99.99); histogram estimate, error <= one bin width.
    ``mmse``          Li'21: over candidates θ_k = max·(1 − 0.01k), k = 0..94, the θ minimising the
                      rate-quantisation error E[(a − CF(a; T, θ))²] with
                      CF(a; T, θ) = θ/T·floor(clamp(a·T/θ, 0, T)). ``rounding="round"`` evaluates it
                      for neurons that start at v0 = θ/2, where CF uses floor(clamp(a·T/θ, 0, T) + 0.5).
                      The expectation is computed from the histogram (each value taken at its bin
                      centre; values <= 0 give a θ-independent error and are left out), over the whole
                      calibration set at once, so Li'21's moving average over batches is not needed.
                      Ties go to the larger θ.

Fallbacks, so every threshold is positive
    - a channel whose method value is <= 0 although it did activate (a percentile that lands on the
      zeros of a sparse channel) gets its max;
    - a channel that never activates (max <= 0) gets ``DEAD_CHANNEL_FRACTION`` x the layer value (the
      same method at layer granularity): any positive θ reproduces its calibration behaviour, and a small
      one keeps its contribution small if it does fire later;
    - a layer that never activates gets 1.0 (logged as a warning);
    - every threshold is at least ``MIN_RELATIVE_THRESHOLD`` x the layer value, which keeps weight
      scaling ratios θ_prev/θ finite in float32.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from ann2snn.calibration.statistics import ActivationStats
from ann2snn.errors import CalibrationConfigError

log = logging.getLogger(__name__)

__all__ = [
    "CalibrationConfigError", "DEAD_CHANNEL_FRACTION", "MIN_RELATIVE_THRESHOLD", "MMSE_CANDIDATES",
    "ThresholdMethod", "choose_thresholds", "mmse_errors", "parse_method",
]

DEAD_CHANNEL_FRACTION = 0.01
MIN_RELATIVE_THRESHOLD = 1e-6
MMSE_CANDIDATES = 95  # θ_k = max·(1 − 0.01k), k = 0..94 (Li'21)
METHOD_FORMS = "'max', 'percentile:P' (0 < P <= 100, e.g. 'percentile:99.9') or 'mmse'"

# elements per chunk in the mmse search: bounds the (rows, candidates, T) temporaries to ~32 MB each
_MMSE_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class ThresholdMethod:
    """A parsed ``method`` string: ``kind`` is 'max', 'percentile' or 'mmse'."""

    kind: Literal["max", "percentile", "mmse"]
    percentile: float | None = None

    def __str__(self) -> str:
        return f"percentile:{self.percentile:g}" if self.kind == "percentile" else self.kind


def parse_method(method: str | ThresholdMethod) -> ThresholdMethod:
    """Parse 'max', 'percentile:P' or 'mmse'; raise CalibrationConfigError listing the allowed forms."""
    if isinstance(method, ThresholdMethod):
        return method
    if not isinstance(method, str):
        raise CalibrationConfigError(f"threshold method must be a string, got {method!r}; use {METHOD_FORMS}")
    text = method.strip().lower()
    if text in ("max", "mmse"):
        return ThresholdMethod(text)
    head, sep, arg = text.partition(":")
    if head == "percentile" and sep:
        try:
            p = float(arg)
        except ValueError:
            p = math.nan
        if 0.0 < p <= 100.0:
            return ThresholdMethod("percentile", p)
        raise CalibrationConfigError(
            f"invalid threshold method {method!r}: the percentile must be a number in (0, 100]; use {METHOD_FORMS}"
        )
    raise CalibrationConfigError(f"invalid threshold method {method!r}; use {METHOD_FORMS}")


def _check_timesteps_rounding(timesteps, rounding) -> None:
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise CalibrationConfigError(f"timesteps must be a positive integer, got {timesteps!r}")
    if rounding not in ("floor", "round"):
        raise CalibrationConfigError(f"rounding must be 'floor' or 'round', got {rounding!r}")


def mmse_errors(
    hist: np.ndarray, top: np.ndarray, timesteps: int, rounding: str = "floor", nonpos: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate thresholds and their rate-quantisation errors, from histograms on (0, top].

    ``hist`` (R, bins), ``top`` (R,). Returns ``(theta, err)``, both (R, 95): θ_k = top·(1 − 0.01k) and
    E[(a − CF(a; T, θ_k))²] with every value at its bin centre; the mean is over the positive values
    plus ``nonpos`` (counted as exact zeros, error 0) when given. Rows with top <= 0 give θ = 0, err = 0.
    """
    _check_timesteps_rounding(timesteps, rounding)
    hist = np.asarray(hist, dtype=np.float64)
    top = np.asarray(top, dtype=np.float64)
    rows, bins = hist.shape
    k = np.arange(MMSE_CANDIDATES)
    theta = top[:, None] * (1.0 - 0.01 * k)[None, :]
    err = np.zeros_like(theta)
    total = hist.sum(axis=1) + (0 if nonpos is None else np.asarray(nonpos, dtype=np.float64))
    step = max(1, _MMSE_CHUNK_ELEMENTS // (MMSE_CANDIDATES * (int(timesteps) + 2) + bins))
    for r0 in range(0, rows, step):
        sl = slice(r0, min(r0 + step, rows))
        err[sl] = _mmse_chunk(hist[sl], top[sl], theta[sl], int(timesteps), rounding)
    err /= np.maximum(total, 1.0)[:, None]
    return theta, err


def _mmse_chunk(hist, top, theta, T, rounding):
    rows, bins = hist.shape
    live = top > 0
    safe_top = np.where(live, top, 1.0)
    # the same float expressions as the definition, so a centre lying exactly on a level edge is
    # assigned as CF itself would assign it: centre (b + 0.5)·top/bins, scaled value u = c·T/θ
    centers = (np.arange(bins) + 0.5)[None, :] * safe_top[:, None] / bins  # (R, bins)
    zero = np.zeros((rows, 1))
    # prefix sums of n, n·c, n·c²: the error over a run of bins that quantise to one level q is
    # S2 − 2q·S1 + q²·S0, so each candidate costs O(T) instead of O(bins)
    p0 = np.concatenate([zero, np.cumsum(hist, axis=1)], axis=1)
    p1 = np.concatenate([zero, np.cumsum(hist * centers, axis=1)], axis=1)
    p2 = np.concatenate([zero, np.cumsum(hist * centers * centers, axis=1)], axis=1)
    th = np.where(live[:, None], theta, 1.0)[:, :, None]  # (R, K, 1)
    j = np.arange(1, T + 1, dtype=np.float64)[None, None, :]
    shift = 0.5 if rounding == "round" else 0.0  # v0 = θ/2 turns floor(u) into floor(u + 0.5)

    def reaches(c):  # does a value c reach level >= j? u is monotone in c, so levels are bin runs
        u = c * T / th
        return (u + shift if shift else u) >= j

    # b_j = number of bin centres below level j: analytic guess, then one exact correction step
    w = (safe_top / bins)[:, None, None]
    idx = np.clip(np.ceil(th * (j - shift) / T / w - 0.5), 0, bins).astype(np.int64)  # (R, K, T)
    c_ext = np.concatenate([centers, np.full((rows, 1), np.inf)], axis=1)  # sentinel for idx == bins
    r_ix = np.arange(rows)[:, None, None]
    idx += ~reaches(c_ext[r_ix, idx])
    idx -= (idx > 0) & reaches(c_ext[r_ix, np.maximum(idx - 1, 0)])
    # level j (0..T) holds bins [b_j, b_{j+1}) with b_0 = 0, b_{T+1} = bins
    bounds = np.concatenate(
        [np.zeros(idx.shape[:2] + (1,), np.int64), idx, np.full(idx.shape[:2] + (1,), bins, np.int64)], axis=2
    )
    s0 = np.diff(p0[r_ix, bounds], axis=2)
    s1 = np.diff(p1[r_ix, bounds], axis=2)
    q = theta[:, :, None] * np.arange(T + 1)[None, None, :] / T
    err = p2[:, -1][:, None] - (2.0 * q * s1 - q * q * s0).sum(axis=2)
    err = np.maximum(err, 0.0)  # rounding in the prefix-sum differences
    return np.where(live[:, None], err, 0.0)


def _method_values(st: "ActivationStats", m: ThresholdMethod, granularity: str, T: int, rounding: str):
    if m.kind == "max":
        return np.maximum(st.max, 0.0) if granularity == "channel" else np.array([max(st.layer_max, 0.0)])
    if m.kind == "percentile":
        return st.percentile(m.percentile, granularity)
    nonpos, hist, top = st.histogram(granularity)
    theta, err = mmse_errors(hist, top, T, rounding, nonpos)
    return theta[np.arange(theta.shape[0]), np.argmin(err, axis=1)]  # argmin: first (largest θ) on ties


def choose_thresholds(
    stats: Mapping[str, "ActivationStats"],
    method: str | ThresholdMethod = "percentile:99.9",
    granularity: Literal["channel", "layer"] = "channel",
    timesteps: int = 32,
    *,
    rounding: Literal["floor", "round"] = "floor",
) -> dict[str, np.ndarray]:
    """Positive float32 thresholds per tensor: shape (C,) for granularity 'channel', (1,) for 'layer'.

    ``timesteps`` and ``rounding`` ('floor': v0 = 0; 'round': v0 = θ/2) only affect ``mmse``.
    Raises CalibrationConfigError for an invalid method, granularity, timesteps or rounding.
    """
    m = parse_method(method)
    if granularity not in ("channel", "layer"):
        raise CalibrationConfigError(f"granularity must be 'channel' or 'layer', got {granularity!r}")
    _check_timesteps_rounding(timesteps, rounding)
    T = int(timesteps)

    out: dict[str, np.ndarray] = {}
    for name, st in stats.items():
        layer = float(_method_values(st, m, "layer", T, rounding)[0])
        if layer <= 0:
            layer = st.layer_max
        if layer <= 0:
            log.warning("tensor '%s' never activates on the calibration data; threshold set to 1.0", name)
            layer = 1.0
        if granularity == "layer":
            th = np.array([layer])
        else:
            th = _method_values(st, m, "channel", T, rounding)
            th = np.where((th <= 0) & (st.max > 0), st.max, th)  # sparse channel: fall back to its max
            dead = st.max <= 0
            th = np.where(dead, DEAD_CHANNEL_FRACTION * layer, th)
            if dead.any():
                log.info("tensor '%s': %d of %d channel(s) never activate", name, int(dead.sum()), dead.size)
        th = np.maximum(th, MIN_RELATIVE_THRESHOLD * layer).astype(np.float32)
        out[name] = np.maximum(th, np.finfo(np.float32).tiny)  # float32 cast must not round to 0
        log.debug("tensor '%s': %s thresholds (%s), range %.4g..%.4g", name, m, granularity, th.min(), th.max())
    return out
