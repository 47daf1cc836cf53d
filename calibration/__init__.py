"""Calibration: streaming activation statistics, threshold selection, and scales files.

Calibration returns data and conversion consumes it: thresholds are a plain mapping
{tensor name: float32 array (C,) or (1,)} that can be saved to and loaded from JSON.

    stats = collect_activation_stats(graph, relu_names, images)
    scales = choose_thresholds(stats, "percentile:99.9", granularity="channel")
    save_scales("scales.json", scales, {"method": "percentile:99.9"})
"""

from ann2snn.calibration.thresholds import (
    DEAD_CHANNEL_FRACTION,
    MIN_RELATIVE_THRESHOLD,
    CalibrationConfigError,
    ThresholdMethod,
    choose_thresholds,
    mmse_errors,
    parse_method,
)
from ann2snn.calibration.statistics import ActivationStats, channel_count, collect_activation_stats
from ann2snn.calibration.scales_io import ScalesFile, check_scales_match, load_scales, read_scales, save_scales

__all__ = [
    "ActivationStats", "CalibrationConfigError", "DEAD_CHANNEL_FRACTION", "MIN_RELATIVE_THRESHOLD",
    "ScalesFile", "ThresholdMethod", "channel_count", "check_scales_match", "choose_thresholds",
    "collect_activation_stats", "load_scales", "mmse_errors", "parse_method", "read_scales", "save_scales",
]
