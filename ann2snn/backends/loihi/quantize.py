"""Quantize a converted ``SpikingNetwork`` into a netx network: CUBA integrate-and-fire or SDNN sigma-delta.

The stages, one module each:
1. **Lowering** (``lowering.py``): the converted graph as a chain of netx layers to be, or every reason it
   cannot be one, each with a way out.
2. **Scale search** (``scale_search.py``): per output channel, the integer scale with the least
   quantization error of weights and biases.
3. **CUBA** (``cuba.py``, binary spikes) or **SDNN** (``sdnn.py``, graded sigma-delta): integer weights,
   biases and thresholds of each layer, the input layer and the readout, with a per-layer report
   (``quantized.py`` holds the result types and the helpers both share).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ann2snn.backends.loihi.cuba import quantize_cuba
from ann2snn.backends.loihi.lowering import Stage
from ann2snn.backends.loihi.profile import LOIHI2, LoihiProfile
from ann2snn.backends.loihi.quantized import QuantizationOptions, QuantizedNetwork
from ann2snn.backends.loihi.sdnn import quantize_sdnn

NEURON_KINDS = ("cuba", "sdnn")


def quantize(stages: list[Stage], input_shape: tuple[int, ...], *, neuron: str, max_timesteps: int,
             input_max: float, input_unit: float, output_unit: np.ndarray, options: QuantizationOptions,
             profile: LoihiProfile = LOIHI2,
             activation_max: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
             scale_caps: dict[str, float] | None = None) -> QuantizedNetwork:
    """Integer netx network from lowered stages (see the module docstring for the arithmetic).

    neuron: ``cuba`` or ``sdnn``. max_timesteps: the longest run the network is sized for (CUBA readout).
    input_max: largest |x| the input will see (from calibration; 1 for images in [0, 1]).
    input_unit: the converted graph's value of one input unit (its first-layer weights are w·input_unit).
    activation_max: per stage name, per output channel (largest normalized activation, largest |W·y|),
        from calibration: SDNN sizes every layer with it, CUBA its readout.
    scale_caps: extra factors (<= 1) on the scales of a stage, by name (from overflow repair).
    """
    if neuron not in NEURON_KINDS:
        raise ValueError(f"neuron must be one of {NEURON_KINDS}, got {neuron!r}")
    if int(max_timesteps) < 1:
        raise ValueError(f"max_timesteps must be >= 1, got {max_timesteps}")
    caps = dict(scale_caps or {})
    if neuron == "cuba":
        q = quantize_cuba(stages, input_shape, input_max, input_unit, output_unit, options, profile, caps,
                           activation_max or {}, int(max_timesteps))
    else:
        q = quantize_sdnn(stages, input_shape, input_max, input_unit, output_unit, options, profile,
                           activation_max or {}, caps)
    return replace(q, max_timesteps=int(max_timesteps))
