"""Conversion options, with documented defaults. Every knob of the pipeline lives here."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from ann2snn.calibration.thresholds import parse_method
from ann2snn.errors import CalibrationConfigError
from ann2snn.ir.snn import RESETS


# the allowed values of the enumerated fields (the CLI's choices are these)
GRANULARITIES = ("channel", "layer")
MAXPOOL_MODES = ("pre_neuron", "cumulative", "spike")
INPUT_ENCODINGS = ("analog", "poisson")
THRESHOLD_SCALES_AUTO = (1.0, 1.5)  # the candidates of threshold_scale="auto"


def bias_correction_text(value) -> str:
    """The CLI spelling of a bias_correction value: on, off or auto."""
    return value if isinstance(value, str) else ("on" if value else "off")


@dataclass(frozen=True)
class ConversionConfig:
    """How an ANN becomes an SNN.

    norm: threshold statistic per spiking layer: ``max``, ``percentile:P`` or ``mmse`` (minimises the
        rate-quantization error at ``calibration_timesteps``).
    granularity: ``channel`` (one threshold per channel, the default: clearly better than per layer on
        every measured model) or ``layer``.
    v_init: initial membrane potential as a fraction of the threshold: 0.0, 0.5 (theta/2, turns the
        rate code's floor into round), or ``"auto"``: chosen per model on a held-out part of the
        calibration data, together with ``bias_correction``.
    bias_correction: make each spiking layer's mean rate per channel match the ANN's mean activation on
        calibration data (Li et al. 2021, light calibration), split into a bias shift for the steady-state
        error and an initial-potential charge for the start-up deficit, so the correction does not grow
        with T (see ``ann2snn.convert.bias_correction``); ``True``, ``False`` or ``"auto"``. With
        ``reset="zero"`` it lowers per-channel thresholds instead, and charges no initial potential.
    calibration_timesteps: T used by mmse, bias correction and ``auto`` choices.
    bias_correction_samples: calibration samples bias correction simulates (at most).
    bias_correction_memory_mb: memory for the spike recordings bias correction keeps (1 bit per neuron
        and step over 4 x ``calibration_timesteps``); a network too large for all the samples in it uses
        fewer (logged).
    maxpool: ``pre_neuron`` (max over the cumulative input current before the IF: exact in the limit,
        4x fewer neurons), ``cumulative`` (exact max of cumulative spike counts, graded output) or
        ``spike`` (max over spikes per step, what SpikingJelly does; loses accuracy; for comparison).
    signed: signed IF neurons (emit -1 to cancel excess spikes: more accurate at small T, ~30% slower).
    reset: ``subtract`` (v -= threshold after a spike, fires on v >= threshold: rates are exact up to
        1/T) or ``zero`` (v = 0 after a spike, fires on v > threshold: NIR's and Lava's IF, which loses
        the residue; bias correction then lowers per-channel thresholds to pay it back, and
        ``threshold_scale`` can dilate time).
    threshold_scale: every calibrated threshold is multiplied by this factor (> 0; time dilation: lower
        rates, so the residue a reset to zero loses is a smaller part of each spike), or ``"auto"``: 1 or
        1.5, chosen on held-out calibration data with ``v_init`` and ``bias_correction``.
    input_encoding: ``analog`` (constant current into the first layer) or ``poisson`` (seeded).
    seed: seed of the Poisson encoder (and of any random choice; determinism is a promise).
    auto: run :func:`ann2snn.tune` first (``ann2snn tune``): search norm, granularity, v_init, bias
        correction and the max-pool mode for T = ``calibration_timesteps`` on held-out calibration data, and
        convert with the chosen settings (the search table is kept in ``snn.record.tuning``). Slower: up
        to 20 candidate conversions.
    """

    norm: str = "percentile:99.9"
    granularity: str = "channel"
    v_init: float | str = "auto"
    bias_correction: bool | str = "auto"
    calibration_timesteps: int = 32
    holdout_fraction: float = 0.25
    maxpool: str = "pre_neuron"
    signed: bool = False
    reset: str = "subtract"
    threshold_scale: float | str = 1.0
    input_encoding: str = "analog"
    seed: int = 0
    calibration_batch_size: int = 128
    bias_correction_samples: int = 256
    bias_correction_memory_mb: int = 1024
    auto: bool = False

    def __post_init__(self):
        problems = []
        try:
            parse_method(self.norm)  # the one parser of threshold method strings
        except CalibrationConfigError as e:
            problems.append(f"norm={self.norm!r}: {e}")
        if self.granularity not in GRANULARITIES:
            problems.append(f"granularity={self.granularity!r} (allowed: {', '.join(GRANULARITIES)})")
        if self.v_init != "auto" and not (isinstance(self.v_init, (int, float)) and 0 <= self.v_init < 1):
            problems.append(f"v_init={self.v_init!r} (allowed: a fraction in [0, 1) or 'auto')")
        if self.bias_correction not in (True, False, "auto"):
            problems.append(f"bias_correction={self.bias_correction!r} (allowed: true, false, auto)")
        if self.maxpool not in MAXPOOL_MODES:
            problems.append(f"maxpool={self.maxpool!r} (allowed: {', '.join(MAXPOOL_MODES)})")
        if self.input_encoding not in INPUT_ENCODINGS:
            problems.append(f"input_encoding={self.input_encoding!r} (allowed: {', '.join(INPUT_ENCODINGS)})")
        if not isinstance(self.calibration_timesteps, int) or self.calibration_timesteps < 1:
            problems.append(f"calibration_timesteps={self.calibration_timesteps!r} must be a positive int")
        if not isinstance(self.holdout_fraction, numbers.Real) or not 0 < self.holdout_fraction < 1:
            problems.append(f"holdout_fraction={self.holdout_fraction!r} must be in (0, 1)")
        for name in ("calibration_batch_size", "bias_correction_samples", "bias_correction_memory_mb"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                problems.append(f"{name}={v!r} must be a positive int")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            problems.append(f"seed={self.seed!r} must be a non-negative int")
        if self.signed not in (True, False):
            problems.append(f"signed={self.signed!r} must be true or false")
        if self.reset not in RESETS:
            problems.append(f"reset={self.reset!r} (allowed: {', '.join(RESETS)})")
        elif self.reset != "subtract" and self.signed is True:
            problems.append("signed neurons reset by subtraction: reset='zero' needs signed=False")
        if self.threshold_scale != "auto" and (
                isinstance(self.threshold_scale, bool) or not isinstance(self.threshold_scale, numbers.Real)
                or not 0 < self.threshold_scale < float("inf")):
            problems.append(f"threshold_scale={self.threshold_scale!r} must be a positive number or 'auto'")
        if self.auto not in (True, False):
            problems.append(f"auto={self.auto!r} must be true or false")
        if problems:
            raise ValueError("invalid ConversionConfig: " + "; ".join(problems))

    def replace(self, **changes) -> "ConversionConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConversionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ConversionConfig field(s): {unknown}")
        return cls(**d)
