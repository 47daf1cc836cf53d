"""Loihi hardware limits as data, a checker that reports every violation at once, and a resource estimate.

Numbers come from ``docs/LOIHI_NIR.md`` §3. Loihi 2's per-core limits are not public, so the ``LOIHI2``
preset uses the Loihi 1 per-core numbers (nengo-loihi) as conservative defaults; every field can be
overridden with ``dataclasses.replace(LOIHI2, neurons_per_core=8192)`` and the like.

Besides hardware limits the checker reports what makes netx/Lava load a file wrongly or not at all:
an all-zero dense layer (netx raises), dense weights that netx's weight optimisation and Lava's clipping
change (e.g. all ≥ 0 with a maximum above 255, which become all zero), delays above 62 (clipped), and a dense
layer without a neuron anywhere but last (netx's default neuron never spikes).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ann2snn.errors import BackendConstraintError
from ann2snn.backends.loihi.fixed_point import netx_dense_weights
from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
    layer_type,
)

log = logging.getLogger(__name__)

__all__ = [
    "LoihiProfile",
    "LOIHI1",
    "LOIHI2",
    "LayerResources",
    "ResourceEstimate",
    "check_network",
    "validate_network",
    "estimate_resources",
]

Violation = tuple[str, str, str]  # (layer, problem, way out), as BackendConstraintError takes them


@dataclass(frozen=True)
class LoihiProfile:
    """Limits a netx network must respect to run on a Loihi chip.

    weight_min/weight_max/even_weights: synaptic weights are an 8-bit mantissa times 2 (slayer writes
        ``2·round(w·S/2)`` clamped to [-256, 254]); odd mixed-sign weights above 127 need 9 bits.
    vth_max: 17-bit threshold mantissa (shifted left by 6 on chip).
    bias_max: |bias mantissa| (13-bit signed, ``bias_exp`` fixed at 6 by netx).
    decay_max: largest ``iDecay``/``vDecay`` (12-bit decays; Lava's offsets allow 4096 = full decay).
    state_bits: width of ``u``/``v``; a threshold or bias (shifted by 6) must fit in it.
    max_delay: largest axonal delay netx keeps (larger ones are clipped).
    graded_spikes: whether SDNN (graded-spike) layers can run (Loihi 2 only).
    neurons_per_core, max_fan_in, output_axons_per_core, synapse_memory_bits: per-core resources.
    bits_per_synapse: rough synapse-memory cost of one stored synapse (8-bit weight plus indexing), only
        used by :func:`estimate_resources`.
    max_cores: cores available, checked against :func:`estimate_resources` when set (one chip has 128).
        None (the default) skips the check: the per-core defaults are Loihi 1's conservative numbers, and
        with them a network that runs on one Loihi 2 chip (e.g. lava-dl's PilotNet LIF) would fail it.
    """

    name: str = "loihi2"
    weight_min: int = -256
    weight_max: int = 254
    even_weights: bool = True
    vth_max: int = 131071
    bias_max: int = 4095
    decay_max: int = 4096
    state_bits: int = 24
    max_delay: int = 62
    graded_spikes: bool = True
    neurons_per_core: int = 1024
    max_fan_in: int = 4096
    output_axons_per_core: int = 4096
    synapse_memory_bits: int = 16384 * 64
    bits_per_synapse: int = 16
    max_cores: int | None = None


LOIHI2 = LoihiProfile()
LOIHI1 = LoihiProfile(name="loihi1", decay_max=4095, graded_spikes=False)


@dataclass(frozen=True)
class LayerResources:
    """Estimated resources of one netx layer (flatten layers and neuron-less inputs use none)."""

    index: int
    type: str
    neurons: int
    synapses: int
    fan_in: int
    cores: int


@dataclass(frozen=True)
class ResourceEstimate:
    """Per-layer and total estimate; ``cores`` is a lower bound from neuron count and synapse memory."""

    layers: tuple[LayerResources, ...]
    neurons: int
    synapses: int
    cores: int

    def to_dict(self) -> dict:
        return asdict(self)


def _name(index: int, layer: object) -> str:
    return f"{index} ({layer_type(layer)})"


def _shifted_limit(profile: LoihiProfile) -> int:
    """Largest mantissa whose ``<< 6`` still fits the signed u/v state."""
    return (1 << (profile.state_bits - 1 - 6)) - 1


def _check_neuron(name: str, neuron: NeuronParams, profile: LoihiProfile, out: list[Violation]) -> None:
    vth_limit = min(profile.vth_max, _shifted_limit(profile))
    if not 0 <= neuron.vth_mant <= vth_limit:
        out.append((name, f"vThMant={neuron.vth_mant} is outside [0, {vth_limit}]",
                    "scale weights and threshold down together (a smaller weight scale S)"))
    if neuron.is_cuba:
        for key, value in (("iDecay", neuron.i_decay), ("vDecay", neuron.v_decay)):
            if not 0 <= value <= profile.decay_max:  # type: ignore[operator]
                out.append((name, f"{key}={value} is outside [0, {profile.decay_max}]",
                            "use a decay in 0..4096 (4096·dt/tau)"))
    elif not profile.graded_spikes:
        out.append((name, f"SDNN (graded-spike) neurons cannot run on {profile.name}",
                    "convert to CUBA neurons or target loihi2"))


def _check_weights(name: str, layer: ConvLayer | DenseLayer, profile: LoihiProfile, out: list[Violation]) -> None:
    w = layer.weight
    wmin, wmax = int(w.min()), int(w.max())
    is_dense = isinstance(layer, DenseLayer)
    if is_dense and wmin == wmax == 0:
        out.append((name, "all weights are zero: netx fails to load the layer (OverflowError)",
                    "remove the layer or give it non-zero weights"))
        return
    if wmin < profile.weight_min or wmax > profile.weight_max:
        n_bad = int(np.count_nonzero((w < profile.weight_min) | (w > profile.weight_max)))
        note = ""
        if is_dense and wmin >= 0 and wmax > 255:
            note = "; with all weights >= 0 netx silently turns every weight into 0"
        elif is_dense and wmin < 0 < wmax:
            note = "; netx clips them to [-256, 254]"
        out.append((name, f"{n_bad} weights outside [{profile.weight_min}, {profile.weight_max}] "
                          f"(range {wmin}..{wmax}){note}",
                    "lower the weight scale S so that max|w|·S <= 254"))
    elif is_dense:
        lava_w, weight_exp = netx_dense_weights(w)
        # exact iff Lava's weights are the file's weights scaled by 2**-weight_exp
        if weight_exp > 0 or not np.array_equal(lava_w, w.astype(np.int64) << -weight_exp):
            out.append((name, f"netx's weight optimisation and Lava's clipping change these weights "
                              f"(range {wmin}..{wmax}; happens when all are <= 0 and the minimum is -2**k)",
                        "rescale the layer so its most negative weight is not a power of two, "
                        "or give it one positive weight"))
    if profile.even_weights:
        n_odd = int(np.count_nonzero(w % 2))
        if n_odd:
            out.append((name, f"{n_odd} odd weights: the chip stores an 8-bit mantissa times 2",
                        "quantize as 2·round(w·S/2) (slayer's rule)"))


def _check_bias(name: str, layer: ConvLayer | DenseLayer, profile: LoihiProfile, out: list[Violation]) -> None:
    if layer.bias is None:
        return
    peak = int(np.abs(layer.bias).max(initial=0))
    limit = min(profile.bias_max, _shifted_limit(profile))
    if peak > limit:
        n_bad = int(np.count_nonzero(np.abs(layer.bias) > limit))
        out.append((name, f"{n_bad} bias mantissas exceed |{limit}| (max |bias| = {peak})",
                    "lower the scale S or move part of the bias into the input"))


def _fan_in(layer: ConvLayer | DenseLayer) -> int:
    if isinstance(layer, ConvLayer):
        return int(layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3])
    return int(layer.weight.shape[1])


def check_network(net: NetxNetwork, profile: LoihiProfile = LOIHI2) -> list[Violation]:
    """Every (layer, problem, way out) that keeps ``net`` from running correctly on ``profile``."""
    out: list[Violation] = []
    last = max(i for i, l in enumerate(net.layers) if not isinstance(l, FlattenLayer))
    for i, layer in enumerate(net.layers):
        name = _name(i, layer)
        if isinstance(layer, FlattenLayer):
            continue
        neuron = getattr(layer, "neuron", None)
        if neuron is not None:
            _check_neuron(name, neuron, profile, out)
        if isinstance(layer, InputLayer):
            continue
        _check_weights(name, layer, profile, out)
        _check_bias(name, layer, profile, out)
        fan_in = _fan_in(layer)
        if fan_in > profile.max_fan_in:
            out.append((name, f"fan-in {fan_in} exceeds {profile.max_fan_in} input axons per core",
                        "split the layer or reduce its input size"))
        if isinstance(layer, DenseLayer):
            if layer.delay is not None and (layer.delay.min() < 0 or layer.delay.max() > profile.max_delay):
                out.append((name, f"delays span {int(layer.delay.min())}..{int(layer.delay.max())}, "
                                  f"outside [0, {profile.max_delay}] (netx clips those above 62, Lava drops negative ones)",
                            f"keep delays in 0..{profile.max_delay}"))
            if layer.neuron is None and i != last:
                out.append((name, "dense layer without a neuron is not the last layer: netx's default "
                                  "integrator never spikes, so every later layer is silent",
                            "give the layer a neuron group"))
    if profile.max_cores is not None:
        cores = estimate_resources(net, profile).cores
        if cores > profile.max_cores:
            out.append(("network", f"needs about {cores} cores, more than the {profile.max_cores} available",
                        "shrink the network or raise max_cores for a multi-chip system"))
    return out


def validate_network(net: NetxNetwork, profile: LoihiProfile = LOIHI2) -> None:
    """Raise one :class:`BackendConstraintError` listing every violation, or return quietly."""
    violations = check_network(net, profile)
    if violations:
        raise BackendConstraintError(violations, backend=profile.name)
    log.debug("netx network passes the %s checks", profile.name)


def _conv_synapses(layer: ConvLayer, in_shape: tuple[int, ...]) -> int:
    """Stored synapses of a conv: non-zero kernel taps that land inside the (unpadded) input."""
    ones = torch.ones((1,) + tuple(in_shape), dtype=torch.float64)
    mask = torch.from_numpy((layer.weight != 0).astype(np.float64))
    taps = torch.nn.functional.conv2d(ones, mask, stride=layer.stride, padding=layer.padding,
                                      dilation=layer.dilation, groups=layer.groups)
    return int(round(float(taps.sum())))


def estimate_resources(net: NetxNetwork, profile: LoihiProfile = LOIHI2) -> ResourceEstimate:
    """Neurons, stored synapses and a lower bound on cores, per layer and in total.

    Cores per layer = max(ceil(neurons / neurons_per_core), ceil(synapses · bits_per_synapse /
    synapse_memory_bits)). Conv weights are counted expanded (no weight sharing), which is conservative.
    """
    rows: list[LayerResources] = []
    prev_shape: tuple[int, ...] | None = None
    for i, layer in enumerate(net.layers):
        neurons = synapses = fan_in = 0
        if isinstance(layer, InputLayer):
            neurons = int(np.prod(layer.shape)) if layer.neuron is not None else 0
        elif isinstance(layer, ConvLayer):
            neurons = int(np.prod(layer.shape))
            synapses = _conv_synapses(layer, prev_shape)  # type: ignore[arg-type]
            fan_in = _fan_in(layer)
        elif isinstance(layer, DenseLayer):
            neurons = layer.shape[0]
            synapses = int(np.count_nonzero(layer.weight))
            fan_in = _fan_in(layer)
        cores = 0
        if neurons:
            cores = max(math.ceil(neurons / profile.neurons_per_core),
                        math.ceil(synapses * profile.bits_per_synapse / profile.synapse_memory_bits), 1)
        rows.append(LayerResources(i, layer_type(layer), neurons, synapses, fan_in, cores))
        prev_shape = net.shapes[i]
    return ResourceEstimate(
        layers=tuple(rows),
        neurons=sum(r.neurons for r in rows),
        synapses=sum(r.synapses for r in rows),
        cores=sum(r.cores for r in rows),
    )
