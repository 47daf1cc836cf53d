"""Export a converted ``SpikingNetwork`` to a Loihi netx ``.net`` file (CUBA or SDNN), checked and reported.

:func:`export_loihi` lowers the converted graph to a chain of netx layers (one ``BackendConstraintError``
lists everything netx cannot express, with the way out), quantizes it (``quantize.py`` and its stages), checks it against
a :class:`LoihiProfile`, runs Lava's fixed-point arithmetic (``fixed_point.py``) on calibration data to
detect 24-bit ``u``/``v`` and SDNN message/accumulator overflows (and lowers the offending layer's scale until
there are none), and writes ``<name>.net`` plus a small sidecar ``<name>.loihi.json`` with what is needed to
drive and decode it (input scale, readout scale and bias, latency). The returned :class:`LoihiExport` has
the netx network, the per-layer quantization report and the resource estimate.

Driving and decoding (what :mod:`ann2snn.loihi` and the README recipe do):

* CUBA: the input layer is an IF neuron; set its ``bias_mant`` to ``round(x·input_scale)`` (Lava layout
  (W, H, C)). Run ``T + latency`` steps with ``reset_interval = T_max + latency`` (netx clears layer L at the
  start of step L+1, removing what its bias integrated before the first input arrived). The readout is a
  dense layer without neuron: after step ``T + latency`` its ``v/64 = Σ W·s + bias``, so the ANN-unit
  estimate is ``(v/64 + (T−1)·bias) / (readout_scale·T) · output_unit`` and the prediction its argmax.
* SDNN: connect a source sending ``a_in = round(x·input_scale)`` every step to the input neuron's ``a_in``;
  after ``latency + 1`` steps the Sigma output holds ``Σ = W·A`` and ``logits = Σ/readout_scale + bias``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ann2snn.backends.loihi.fixed_point import FixedPointConfig, FixedPointResult, simulate_fixed_point
from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    read_netx,
    write_netx,
)
from ann2snn.backends.loihi.profile import (
    LOIHI1,
    LOIHI2,
    LoihiProfile,
    ResourceEstimate,
    check_network,
    estimate_resources,
)
from ann2snn.backends.loihi.lowering import Stage, lower_graph
from ann2snn.backends.loihi.quantize import NEURON_KINDS, quantize
from ann2snn.backends.loihi.quantized import (
    MESSAGE_MAX, U_LIMIT, HostLayer, LayerQuantization, QuantizationOptions, QuantizedNetwork,
)
from ann2snn.convert.converter import convert_graph, plan_conversion
from ann2snn.errors import BackendConstraintError, DataError, InvalidModelError
from ann2snn.fileio import write_json_atomic
from ann2snn.ir import nodes as ir
from ann2snn.ir.reference import check_input, run_graph
from ann2snn.ir.snn import IF

log = logging.getLogger(__name__)

__all__ = [
    "LoihiExport",
    "OverflowEvent",
    "PROFILES",
    "SIDECAR_SUFFIX",
    "check_loihi",
    "export_loihi",
    "load_loihi",
    "sdnn_graph",
]

PROFILES = {"loihi2": LOIHI2, "loihi1": LOIHI1}
SIDECAR_SUFFIX = ".loihi.json"
SIDECAR_FORMAT = "ann2snn-loihi"
SIDECAR_VERSION = 1
_V_SAT = (1 << 23) - 1
_INT32 = 1 << 31


@dataclass(frozen=True)
class OverflowEvent:
    """An integer range exceeded while running calibration data through the fixed-point model.

    kind: ``u_wrap`` (CUBA per-step input |a| >= 2^17: the 24-bit u wraps), ``readout_wrap`` (the readout's
    running sum reaches 2^17), ``v_saturation`` (v clipped at ±(2^23−1)), ``synapse_wrap`` (an SDNN synaptic
    sum beyond the conv's 24-bit / dense's 32-bit register), ``message`` (an SDNN graded spike beyond 16 bits)
    or ``sigma_wrap`` (an SDNN accumulator beyond int32). ``peak`` is the largest value seen,
    ``limit`` the bound, ``fraction`` the share of calibration samples affected.
    """

    layer: int
    name: str
    kind: str
    peak: float
    limit: float
    fraction: float

    def to_dict(self) -> dict:
        return dict(layer=self.layer, name=self.name, kind=self.kind, peak=self.peak, limit=self.limit,
                    fraction=self.fraction)


@dataclass(frozen=True)
class LoihiExport:
    """A netx network with what is needed to drive it, decode it and judge it.

    neuron: ``cuba`` or ``sdnn``; ``None`` for a netx file not written by ann2snn (then inputs are used as they
    are and the output is decoded from the last layer's raw state or spike counts).
    input_scale: integer bias_mant (CUBA) or a_in (SDNN) per unit of the (preprocessed) input.
    readout_scale / readout_bias / output_unit: decode the readout into ANN output units (see the module doc).
    latency: Lava layer index of the readout, i.e. steps before the input reaches it.
    max_timesteps: CUBA: the readout accumulator is sized for T up to this.
    """

    network: NetxNetwork
    neuron: str | None
    input_scale: float = 1.0
    readout_scale: float | np.ndarray = 1.0
    readout_bias: np.ndarray | None = None
    output_unit: np.ndarray | None = None
    latency: int = 0
    max_timesteps: int = 128
    profile: str = "loihi2"
    layers: tuple[LayerQuantization, ...] = ()
    resources: ResourceEstimate | None = None
    overflow: tuple[OverflowEvent, ...] = ()
    warnings: tuple[str, ...] = ()
    path: Path | None = None
    model: str = ""
    preprocessing: dict | None = None
    options: dict = field(default_factory=dict)
    host_layer: HostLayer | None = None

    # ------------------------------------------------------------------ driving
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample x (the model's input; with a host layer, not the netx input layer's)."""
        return tuple(self.host_layer.in_shape) if self.host_layer is not None else self.network.input_shape

    @property
    def input_neuron(self) -> str | None:
        first = self.network.layers[0]
        neuron = first.neuron if isinstance(first, InputLayer) else None
        if neuron is None:
            return None
        return "cuba" if neuron.is_cuba else "sdnn"

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Integer input drive for real inputs ``x`` (N, *input shape), CHW layout.

        ``round(x·input_scale)``, or with a host layer ``clip(round((W·x + b)·scale), ±4095)``: the current
        the first IF layer (the netx input layer) integrates.
        """
        x = np.asarray(x, dtype=np.float64)
        shape = tuple(self.input_shape)
        if x.shape == shape:
            x = x[None]
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise DataError(f"input must have shape (N, {', '.join(map(str, shape))}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise DataError("input contains NaN or Inf")
        if self.host_layer is not None:
            return self.host_layer.bias_mant(x)
        drive = np.rint(x * self.input_scale).astype(np.int64)
        limit = 4095 if self.input_neuron == "cuba" else MESSAGE_MAX >> self.spike_exp
        if self.input_neuron is not None and np.abs(drive).max(initial=0) > limit:
            raise DataError(f"inputs up to {np.abs(x).max():.4g} exceed the range the network was exported for "
                            f"(|round(x*{self.input_scale:g})| <= {limit})")
        return drive

    def drive(self, x: np.ndarray) -> dict:
        """Keyword arguments for :func:`simulate_fixed_point` that feed ``x`` the way Lava would."""
        drive = self.encode(x)
        kind = self.input_neuron
        if kind == "cuba":
            return {"input_bias": drive}
        if kind == "sdnn":
            return {"input_a_in": drive[:, None]}  # one frame, repeated every step (RingBuffer of period 1)
        return {"input_spikes": drive[:, None]}

    @property
    def spike_exp(self) -> int:
        """netx's ``spike_exp`` the network is made for (SDNN; a ``Network(...)`` argument, not in the file)."""
        return int(self.options.get("sdnn_spike_exp", 6)) if self.neuron == "sdnn" else 6

    def fixed_point_config(self, t_max: int) -> FixedPointConfig:
        """netx options for a run up to ``t_max``: CUBA layers are cleared when the input first reaches them."""
        if self.neuron == "cuba":
            return FixedPointConfig(reset_interval=int(t_max) + self.latency, time_chunk=16)
        return FixedPointConfig(time_chunk=16, spike_exp=self.spike_exp)

    def steps_for(self, t: int) -> int:
        """Lava steps to run for a T-step readout (T plus the pipeline latency)."""
        return int(t) + self.latency

    # ------------------------------------------------------------------ decoding
    def decode(self, result: FixedPointResult, t: int) -> np.ndarray:
        """The readout after ``steps_for(t)`` steps as ANN output estimates, (N, n_outputs)."""
        k = self.steps_for(t) - 1
        last = self.network.layers[result.output_layer]
        if self.neuron == "cuba":
            return self.decode_readout(result.readout[:, k], t)
        if self.neuron == "sdnn":
            return self.decode_readout(result.output[:, k], t)
        # a foreign network: raw readout state, or spike counts of the last layer within the window
        if result.readout is not None:
            return result.readout[:, k].astype(np.float64) / 64.0
        out = result.output[:, : k + 1]
        if isinstance(last, DenseLayer) and last.neuron is not None and last.neuron.is_cuba or (
                isinstance(last, ConvLayer) and last.neuron.is_cuba):
            out = out != 0
        summed = out.sum(axis=1) if not (last.neuron is not None and last.neuron.sigma_output) else out[:, -1]
        return summed.reshape(len(summed), -1).astype(np.float64)

    def decode_readout(self, raw: np.ndarray, t: int) -> np.ndarray:
        """ANN output estimates from what Lava reports after ``t + latency`` steps.

        CUBA: ``raw`` is the readout layer's ``neuron.v`` (Lava units: the HDF5 value × 64):
        ``(v/64 − file bias) / (readout_scale·T) + readout_bias``. SDNN: ``raw`` is the Sigma output:
        ``Σ / readout_scale + readout_bias``. Either way times ``output_unit``; argmax is the prediction.
        """
        raw = np.asarray(raw, np.float64)
        unit = self.output_unit if self.output_unit is not None else 1.0
        if self.neuron == "cuba":
            last = self.network.layers[-1]
            bias = np.asarray(last.bias if isinstance(last, DenseLayer) and last.bias is not None else 0, np.float64)
            v = raw / 64.0
            if self.readout_bias is not None:  # the exact bias, T times; the file's quantized one is there once
                return ((v - bias) / (self.readout_scale * t) + self.readout_bias) * unit
            return (v + (t - 1) * bias) / (self.readout_scale * t) * unit
        if self.neuron == "sdnn":
            out = raw / self.readout_scale
            return (out + self.readout_bias if self.readout_bias is not None else out) * unit
        raise DataError("this network has no ann2snn sidecar: its readout cannot be decoded into ANN units")

    # ------------------------------------------------------------------ persistence / reports
    def metadata(self) -> dict:
        """The sidecar document (what a netx file cannot hold)."""
        return {
            "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "neuron": self.neuron,
            "input_scale": self.input_scale,
            "readout_scale": np.asarray(self.readout_scale, np.float64).tolist(),
            "readout_bias": None if self.readout_bias is None else np.asarray(self.readout_bias).tolist(),
            "output_unit": None if self.output_unit is None else np.asarray(self.output_unit).reshape(-1).tolist(),
            "latency": self.latency, "max_timesteps": self.max_timesteps, "profile": self.profile,
            "model": self.model, "preprocessing": self.preprocessing, "options": self.options,
            "host_layer": None if self.host_layer is None else self.host_layer.to_dict(),
        }

    def to_dict(self) -> dict:
        """Everything in the report: decoding data, per-layer quantization, overflow, resources."""
        doc = self.metadata()
        doc.pop("format")
        doc.pop("version")
        if doc["host_layer"] is not None:  # arrays are in the sidecar; the report keeps the geometry only
            doc["host_layer"] = {k: v for k, v in doc["host_layer"].items() if k not in ("weight", "bias")}
        doc.update(
            path=None if self.path is None else str(self.path),
            layers=[q.to_dict() for q in self.layers],
            overflow=[o.to_dict() for o in self.overflow],
            warnings=list(self.warnings),
            resources=None if self.resources is None else self.resources.to_dict(),
        )
        return doc

    def table(self) -> str:
        """Plain-text per-layer quantization table."""
        def num(v, fmt):
            return "" if v is None else format(v, fmt)

        lines = [f"{'#':>2} {'type':<7} {'S':>9} {'S range':>19} {'vThMant':>7} {'|W|max':>6} {'W err%':>7} "
                 f"{'b err%':>7} {'threshold':>13}  name"]
        for q in self.layers:
            rng = "" if q.scale_min is None else f"{q.scale_min:.4g}..{q.scale_max:.4g}"
            thr = "" if q.threshold_min is None else f"{q.threshold_min:.3g}..{q.threshold_max:.3g}"
            lines.append(f"{q.index:>2} {q.type:<7} {q.scale:9.4g} {rng:>19} {num(q.vth_mant, 'd'):>7} "
                         f"{num(q.weight_max, 'd'):>6} {num(None if q.weight_error is None else 100 * q.weight_error, '.3f'):>7} "
                         f"{num(None if q.bias_error is None else 100 * q.bias_error, '.3f'):>7} {thr:>13}  {q.name}")
        if self.resources is not None:
            r = self.resources
            lines.append(f"resources: {r.neurons} neurons, {r.synapses} synapses, >= {r.cores} cores ({self.profile})")
        for o in self.overflow:
            lines.append(f"overflow: layer {o.layer} ({o.name}) {o.kind}: peak {o.peak:.4g} >= {o.limit:.4g} "
                         f"in {100 * o.fraction:.1f}% of calibration samples")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# Graph selection, checks
# ----------------------------------------------------------------------------------------------------------


def sdnn_graph(net):
    """The graph SDNN quantizes: the converted graph in ANN units, every neuron an exact (unbounded) ReLU.

    Sigma-delta neurons compute ReLU exactly, so the SNN's per-channel thresholds λ are only a choice of
    units; in ANN units (every λ = 1, no bias correction) the weight rows have their natural spread and
    per-channel message scales take over. The IF nodes become ``ReLU`` nodes of the same names: an IF's rate
    saturates at one spike per step (1 in λ units), which in ANN units would clip every activation at 1.
    A clipped ReLU (ReLU6, Clip) keeps its ceiling, which :func:`lower_graph` reports (SDNN cannot clip).
    """

    plan = plan_conversion(net.ann, net.config)
    ones = {k: np.ones_like(np.asarray(v, np.float32)) for k, v in net.scales.items()}
    graph, _ = convert_graph(plan, ones, net.config, input_unit=net.input_unit)
    relu_of = {target: relu for relu, target in plan.relu_target.items()}  # IF name -> the ANN's ReLU

    def ceiling(name: str):
        node = plan.ann.node_by_name.get(relu_of.get(name, name))
        return node.ceiling if isinstance(node, ir.ReLU) else None

    return graph.with_nodes([ir.ReLU(n.name, n.inputs, ceiling=ceiling(n.name)) if isinstance(n, IF) else n
                             for n in graph.nodes])


def check_loihi(net, *, neuron: str = "cuba", profile: LoihiProfile | str = LOIHI2) -> list[tuple[str, str, str]]:
    """Every (layer, problem, way out) that stops ``net`` from being exported to netx: the checks
    :func:`export_loihi` runs before quantizing (the profile's resource limits come after)."""
    return _lowered(net, neuron, _profile(profile))[2]


def _lowered(net, neuron: str, profile: LoihiProfile):
    """(graph the neuron kind quantizes, its stages, structural violations)."""
    if neuron not in NEURON_KINDS:
        raise DataError(f"neuron must be one of {NEURON_KINDS}, got {neuron!r}")
    graph = net.graph if neuron == "cuba" else sdnn_graph(net)
    stages, violations = lower_graph(graph)
    if neuron == "sdnn" and not profile.graded_spikes:
        violations.append(("network", f"SDNN (graded spikes) cannot run on {profile.name}",
                           "use --loihi-neuron cuba or --loihi-profile loihi2"))
    return graph, stages, violations


def _profile(profile: LoihiProfile | str) -> LoihiProfile:
    if isinstance(profile, LoihiProfile):
        return profile
    try:
        return PROFILES[str(profile).lower()]
    except KeyError:
        raise DataError(f"unknown Loihi profile {profile!r}; choose from {sorted(PROFILES)}") from None


# ----------------------------------------------------------------------------------------------------------
# Calibration statistics and overflow detection
# ----------------------------------------------------------------------------------------------------------


def _activation_stats(graph, stages: list[Stage], x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per stage and output channel on calibration data: (largest normalized activation, largest |W·y|)."""

    wanted = {}
    for st in stages:
        if st.kind in ("conv", "dense") and isinstance(graph.node(st.name), (IF, ir.ReLU)):
            wanted[st.name] = graph.node(st.name).inputs[0]
        elif st.kind == "readout":
            wanted[st.name] = st.name
    if not wanted:
        return {}
    names = sorted(set(wanted.values()))
    acts = run_graph(graph, x, outputs=names, batch_size=64)
    # before the input reaches a layer, its inputs hold the zero-input (bias-driven) state: a delta message
    # can swing from that state to the final one, so messages are bounded by both maxima together
    zero = run_graph(graph, np.zeros((1,) + tuple(x.shape[1:]), x.dtype), outputs=names)
    out = {}
    for st in stages:
        if st.name not in wanted:
            continue
        pre = acts[wanted[st.name]].astype(np.float64)
        axes = tuple(i for i in range(pre.ndim) if i != 1)
        z = pre if st.bias is None else pre - st.bias.reshape((-1,) + (1,) * (pre.ndim - 2))
        y_max = np.max(pre, axis=axes) + np.maximum(np.max(zero[wanted[st.name]], axis=axes), 0)
        if st.kind == "readout":
            y_max = np.zeros(pre.shape[1])
        out[st.name] = (np.maximum(y_max, 1e-6), np.maximum(np.abs(z).max(axis=axes), 1e-6))
    return out


def _synapse_input(layer, spikes: np.ndarray, graded: bool) -> np.ndarray:
    """W·s for every (sample, step) of a presynaptic trace, exactly (float64 holds these integers)."""
    b, t = spikes.shape[:2]
    flat = spikes.reshape((b * t,) + spikes.shape[2:]).astype(np.float64)
    if not graded:
        flat = (flat != 0).astype(np.float64)
    with torch.no_grad():
        if isinstance(layer, ConvLayer):
            out = torch.nn.functional.conv2d(
                torch.from_numpy(flat), torch.from_numpy(layer.weight.astype(np.float64)), stride=layer.stride,
                padding=layer.padding, dilation=layer.dilation, groups=layer.groups).numpy()
        else:
            out = flat.reshape(b * t, -1) @ layer.weight.astype(np.float64).T
    return out.reshape((b, t) + out.shape[1:])


def _current(a: np.ndarray, neuron) -> np.ndarray:
    """A CUBA neuron's ``u`` (in synaptic input units) per step for synaptic input ``a`` (batch, steps, ...).

    u_t = u_{t-1}·(1 − iDecay/4096) + a_t; Lava truncates the decay toward zero, which only shrinks |u|, so
    this is an upper bound on |u| (for overflow checks) and the ideal charge (for the reset-loss estimate).
    """
    if neuron.i_decay >= 4096:
        return a
    keep = 1.0 - neuron.i_decay / 4096.0
    u = np.empty_like(a)
    state = np.zeros_like(a[:, 0])
    for k in range(a.shape[1]):
        state = state * keep + a[:, k]
        u[:, k] = state
    return u


def detect_overflow(export: "LoihiExport", x: np.ndarray, t_max: int, *, batch_size: int = 4
                    ) -> tuple[OverflowEvent, ...]:
    """Run ``x`` through the fixed-point model for ``t_max`` (+ latency) steps and report range overflows."""
    net = export.network
    steps = export.steps_for(t_max)
    idx = [i for i, layer in enumerate(net.layers) if not isinstance(layer, FlattenLayer)]
    stats: dict[tuple[int, str], list] = {}
    n = len(x)

    def note(i: int, kind: str, peaks: np.ndarray, limit: float) -> None:
        peaks = np.asarray(peaks, np.float64).reshape(len(peaks), -1).max(axis=1)
        entry = stats.setdefault((i, kind), [0.0, limit, 0])
        entry[0] = max(entry[0], float(peaks.max(initial=0)))
        entry[2] += int(np.count_nonzero(peaks >= limit))

    config = export.fixed_point_config(t_max)
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        res = simulate_fixed_point(net, steps, record=("s", "v"), config=config, **export.drive(xb))
        for pos, i in enumerate(idx):
            layer = net.layers[i]
            if isinstance(layer, InputLayer):
                continue
            p = idx[pos - 1]
            pre = res.s[p]
            prev = net.layers[p]
            graded = prev.neuron is not None and not prev.neuron.is_cuba if not isinstance(prev, FlattenLayer) else False
            neuron = layer.neuron if isinstance(layer, ConvLayer) else layer.effective_neuron
            a = _synapse_input(layer, pre, graded)
            if neuron.is_cuba:
                if isinstance(layer, DenseLayer) and layer.neuron is None:
                    bias = 0.0 if layer.bias is None else np.abs(layer.bias).astype(np.float64)
                    run = np.abs(np.cumsum(a, axis=1)) + bias
                    note(i, "readout_wrap", run, U_LIMIT)
                else:
                    note(i, "u_wrap", np.abs(_current(a, neuron)), U_LIMIT)
                    if i in res.v:
                        note(i, "v_saturation", np.abs(res.v[i]), _V_SAT)
            else:
                note(i, "synapse_wrap", np.abs(a), (1 << 23) if isinstance(layer, ConvLayer) else _INT32)
                bias = 0.0
                if layer.bias is not None and not neuron.sigma_output:
                    b = layer.bias.astype(np.float64) * float(1 << (export.spike_exp + 6))
                    bias = b.reshape((-1,) + (1,) * (a.ndim - 3)) if isinstance(layer, ConvLayer) and b.ndim == 1 else b
                note(i, "sigma_wrap", np.abs(np.cumsum(a, axis=1) + bias), _INT32)
                if not neuron.sigma_output:
                    note(i, "message", np.abs(res.s[i]), MESSAGE_MAX + 1)
    events = []
    names = {q.index: q.name for q in export.layers}
    for (i, kind), (peak, limit, count) in sorted(stats.items()):
        if count:
            events.append(OverflowEvent(i, names.get(i, str(i)), kind, peak, float(limit), count / n))
    return tuple(events)


def reset_loss(export: "LoihiExport", x: np.ndarray, t: int, *, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Per CUBA layer (by name) and channel: spikes a subtracting IF would fire / spikes Lava's fires.

    Runs ``x`` through the fixed-point model for ``t`` steps (plus latency). For every IF neuron the ideal count
    is ``clip(Σ_t I_t / θ, 0, t)`` with I_t its actual integer input (synaptic input from the previous layer's
    actual spikes, plus bias) and θ its nominal threshold; Lava's reset to zero loses each spike's overshoot,
    so its count is lower. Layer L is counted over steps L+1..L+t (after netx's reset clears it).
    """
    net = export.network
    steps = export.steps_for(t)
    config = export.fixed_point_config(t)
    idx = [i for i, layer in enumerate(net.layers) if not isinstance(layer, FlattenLayer)]
    ideal: dict[int, np.ndarray] = {}
    actual: dict[int, np.ndarray] = {}
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        drive = export.drive(xb)
        res = simulate_fixed_point(net, steps, record=("s",), config=config, **drive)
        for lava, i in enumerate(idx):
            layer = net.layers[i]
            neuron = layer.neuron if not isinstance(layer, DenseLayer) else layer.neuron
            if neuron is None or not neuron.is_cuba:
                continue
            window = slice(lava, lava + t)
            if isinstance(layer, InputLayer):
                bias = np.asarray(drive["input_bias"], np.float64)
                total = bias * t
            else:
                prev = res.s[idx[lava - 1]][:, window.start - 1:window.stop - 1]  # delivered one step later
                a = _current(_synapse_input(layer, prev, graded=False), neuron)
                total = a.sum(axis=1)
                if layer.bias is not None:
                    b = layer.bias.astype(np.float64)
                    total = total + t * (b.reshape((-1,) + (1,) * (total.ndim - 2)) if b.ndim == 1 and total.ndim > 2
                                         else b)
            want = np.clip(total / (neuron.vth_mant + 1), 0, t)
            got = res.s[i][:, window].sum(axis=1).astype(np.float64)
            axes = (0,) + tuple(range(2, want.ndim))
            ideal[i] = ideal.get(i, 0) + want.sum(axis=axes)
            actual[i] = actual.get(i, 0) + got.sum(axis=axes)
    names = {q.index: q.name for q in export.layers}
    return {names[i]: (ideal[i] + 1.0) / (actual[i] + 1.0) for i in ideal}


# ----------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------


def export_loihi(net, path: str | os.PathLike | None = None, *, neuron: str = "cuba",
                 profile: LoihiProfile | str = LOIHI2, calibration: np.ndarray | None = None,
                 max_timesteps: int = 128, options: QuantizationOptions | None = None,
                 overflow_samples: int = 16, preprocessing: dict | None = None) -> LoihiExport:
    """Quantize ``net`` (a SpikingNetwork) for Loihi and write ``path`` (a ``.net`` file) when given.

    neuron: ``cuba`` (binary spikes; reset to zero, see cuba.py) or ``sdnn`` (graded sigma-delta).
    calibration: (N, *input shape) real inputs: sets the input range, the SDNN activation ranges, and the
        first ``overflow_samples`` of them are run through the fixed-point model for ``max_timesteps`` steps
        to detect accumulator overflow (a layer that overflows gets a smaller scale until none does).
    CUBA: Lava resets to zero and loses each spike's overshoot (15-50 % fewer spikes per layer on the zoo
        VGG, see :func:`reset_loss`); ``QuantizationOptions.time_dilation`` and ``current_decay`` shrink it.
    Raises one :class:`BackendConstraintError` listing every node netx cannot express, or every profile
    violation of the quantized network.
    """
    profile = _profile(profile)
    options = options or QuantizationOptions()
    graph, stages, violations = _lowered(net, neuron, profile)
    if violations:
        raise BackendConstraintError(violations, backend=f"netx/{profile.name}")
    warnings: list[str] = []
    if neuron == "cuba":
    
        charged = [n.name for n in graph.nodes if isinstance(n, IF) and np.any(np.asarray(n.v_init) != 0)]
        if charged:  # netx/Lava CUBA neurons start at v = 0 (the reset_interval clears them there)
            warnings.append(f"{len(charged)} IF layer(s) start at a non-zero potential (v_init / bias-correction "
                            "charge), which Lava's CUBA neurons cannot: they start at 0 on Loihi")
    x_cal = None
    if calibration is not None:
        x_cal = check_input(graph, calibration)[graph.inputs[0].name]
        input_max = float(np.abs(x_cal).max())
        if neuron == "cuba" and float(x_cal.min()) < 0:
            frac = float(np.mean(x_cal < 0))
            warnings.append(f"{100 * frac:.1f}% of calibration inputs are negative: a CUBA input neuron driven by "
                            "its bias never fires for them (use --loihi-neuron sdnn, or inputs >= 0)")
    else:
        input_max = 1.0
        warnings.append("no calibration data: inputs assumed in [-1, 1], no overflow check was run")
    act_max = {}
    if x_cal is not None:  # margins for inputs beyond the calibration set (CUBA uses the readout's only)
        act_max = {k: (1.25 * y, 1.25 * a) for k, (y, a) in _activation_stats(graph, stages, x_cal[:256]).items()}
    output_unit = np.asarray(net.output_units[graph.outputs[0]], np.float64).reshape(-1)
    caps: dict[str, float] = {}
    for attempt in range(4):  # quantize; on overflow, shrink the overflowing layers' scales and again
        try:
            q = quantize(stages, tuple(graph.inputs[0].shape), neuron=neuron, max_timesteps=int(max_timesteps),
                         input_max=input_max,
                         input_unit=float(net.input_unit), output_unit=output_unit, options=options,
                         profile=profile, activation_max=act_max, scale_caps=caps)
        except ValueError as exc:  # e.g. a layer whose weights all round to zero: netx cannot load it
            raise BackendConstraintError([("quantization", str(exc), "check the layer's weights (all tiny or "
                                           "zero?) and the calibration data")], backend=f"netx/{profile.name}"
                                         ) from exc
        problems = check_network(q.network, profile)
        if problems:
            raise BackendConstraintError(problems, backend=f"netx/{profile.name}")
        export = _make_export(q, profile, net, warnings, preprocessing)
        if x_cal is None or overflow_samples <= 0:
            break
        t_check = max_timesteps if neuron == "cuba" else 4
        events = detect_overflow(export, x_cal[:overflow_samples], t_check)
        # v clipped at -(2^23-1) happens to neurons driven far below threshold; they never fire in either model,
        # so one line says where (CUBA's doubled biases make it common: not an error to act on)
        floor = [f"layer {e.layer} ({100 * e.fraction:.0f}%)" for e in events if e.kind == "v_saturation"]
        note = () if not floor else (
            f"v pinned at -(2^23-1) on calibration data in {', '.join(floor)} of the samples: neurons driven "
            "far below threshold, which would not fire in the float SNN either (harmless)",)
        fixable = [e for e in events if e.kind != "v_saturation"]
        export = replace(export, overflow=tuple(fixable), warnings=export.warnings + note)
        if not fixable or attempt == 3:
            break
        for e in fixable:  # shrink the layer's scales so its peak lands at 80% of the limit
            layer_q = export.layers[e.layer]
            caps[layer_q.name] = caps.get(layer_q.name, 1.0) * 0.8 * e.limit / e.peak
            log.info("overflow in layer %d (%s, %s): scales multiplied by %.4g", e.layer, layer_q.name, e.kind,
                     caps[layer_q.name])
    if caps:
        export = replace(export, warnings=export.warnings + tuple(
            f"scales of '{k}' multiplied by {v:.4g} to avoid overflow on calibration data" for k, v in caps.items()))
    if path is not None:
        export = write_loihi(export, path)
    return export


def _make_export(q: QuantizedNetwork, profile: LoihiProfile, net, warnings: list[str], preprocessing) -> LoihiExport:
    opts = dict(q.options.__dict__)
    return LoihiExport(
        network=q.network, neuron=q.neuron, input_scale=float(q.input_scale), readout_scale=q.readout_scale,
        readout_bias=None if q.readout_bias is None else np.asarray(q.readout_bias, np.float64),
        output_unit=q.output_unit, latency=q.latency, max_timesteps=q.max_timesteps,
        profile=profile.name, layers=q.layers, resources=estimate_resources(q.network, profile),
        warnings=tuple(warnings) + q.warnings, model=str(net.graph.name), preprocessing=preprocessing,
        options=opts, host_layer=q.host_layer,
    )


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + SIDECAR_SUFFIX)


def write_loihi(export: LoihiExport, path: str | os.PathLike) -> LoihiExport:
    """Write ``<path>`` (netx HDF5, atomically) and its sidecar ``<stem>.loihi.json``."""
    path = Path(path)
    if path.suffix != ".net":
        raise DataError(f"a netx file must end in .net, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_netx(export.network, path)
    write_json_atomic(sidecar_path(path), export.metadata())
    return replace(export, path=path)


def load_loihi(path: str | os.PathLike) -> LoihiExport:
    """Read a ``.net`` file; with an ann2snn sidecar the result decodes exactly like the export did.

    Without one (a lava-dl network) inputs are used as they are (``input_scale`` 1, so pass inputs already
    in the network's integer units), CUBA layers are not cleared, and the output is the raw readout ``v/64``
    of a final dense layer without neuron, the Sigma sum of an SDNN output, or else the output spike counts.
    """
    path = Path(path)
    network = read_netx(path)
    latency = sum(1 for layer in network.layers if not isinstance(layer, FlattenLayer)) - 1
    side = sidecar_path(path)
    if not side.is_file():
        return LoihiExport(network=network, neuron=None, latency=latency, path=path, model=path.stem)
    try:
        doc = json.loads(side.read_text())
        if doc.get("format") != SIDECAR_FORMAT or doc.get("version") != SIDECAR_VERSION:
            raise ValueError(f"not an {SIDECAR_FORMAT} v{SIDECAR_VERSION} sidecar")
        export = LoihiExport(
            network=network, neuron=doc["neuron"], input_scale=float(doc["input_scale"]),
            readout_scale=np.asarray(doc["readout_scale"], np.float64),
            readout_bias=None if doc["readout_bias"] is None else np.asarray(doc["readout_bias"], np.float64),
            output_unit=None if doc["output_unit"] is None else np.asarray(doc["output_unit"], np.float64),
            latency=int(doc["latency"]), max_timesteps=int(doc["max_timesteps"]), profile=str(doc["profile"]),
            path=path, model=str(doc.get("model", "")), preprocessing=doc.get("preprocessing"),
            options=dict(doc.get("options") or {}),
            host_layer=None if doc.get("host_layer") is None else HostLayer.from_dict(doc["host_layer"]),
        )
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidModelError(f"{side}: malformed ann2snn Loihi sidecar: {exc}") from None
    if export.neuron not in NEURON_KINDS or export.latency != latency:
        raise InvalidModelError(f"{side}: does not describe {path.name} (neuron {export.neuron!r}, "
                                f"latency {export.latency} vs {latency} layers)")
    return export
