"""Quantize a converted ``SpikingNetwork`` into a netx network: CUBA integrate-and-fire or SDNN sigma-delta.

Two steps:

1. **Lowering** (:func:`lower_graph`): the converted graph must be a chain
   ``input -> [Conv2d/Dense + IF | AvgPool2d/GlobalAvgPool | Flatten]* -> linear tail``. Each weighted op with
   its IF becomes a netx ``conv``/``dense`` layer with a neuron; an average pool becomes a depthwise ``conv``
   (groups = C, constant kernel, stride = the pool stride) with its own neuron; a Flatten becomes a netx
   ``flatten``; everything linear after the last IF (Flatten, Dense, ...) is folded into ONE readout
   ``dense``. Everything else (max pooling, residual Add, Concat, a ScaleShift between layers, Transpose,
   signed neurons, asymmetric padding, ...) is collected and reported together, each with a way out.
2. **Quantization** (:func:`quantize`): integer weights, biases and thresholds.

**Scale objective** (:func:`search_scale`, both targets). For float weights ``w`` and biases ``b`` (in
consistent units) and a candidate scale S::

    Q_w(S) = clip(2·round(w·S/2), -256, 254)          (slayer's 8-bit mantissa ×2 rule)
    Q_b(S) = clip(round(b·S·k), -4095, 4095) / k       (k: bias units per weight unit)
    E(S)   = (‖Q_w(S)/S − w‖² + ‖Q_b(S)/(S·k) − b‖²) / (‖w‖² + ‖b‖²)

S is searched on a log grid from S₀/16 to min(4·S₀, S_max), S₀ being the largest S that clips no weight and
S_max the layer's hardware/overflow bound. Rounding error falls like 1/S² until clipping starts, so E has its
minimum near S₀; the chosen S is the **largest S with E(S) ≤ (1 + tolerance)·min E** (tolerance 1 %): the
least error, and among equals the finest threshold (CUBA) and bias resolution. Scales are chosen **per
output channel**: the converted graph's weights are normalized by per-channel thresholds λ, so rows of one
layer differ by up to 50× in magnitude, and one scale per layer costs 3-4 points of accuracy on the zoo's
VGG (measured: per-layer 85.6 %, per-channel 89.3 %, float 89.2 %). The report gives per layer the scale,
the range of channel scales, the relative weight and bias errors ‖Q/S − x‖/‖x‖ and the clipped counts.

**CUBA** (binary spikes). The IF (threshold 1, reset by subtraction) becomes ``NeuronParams.cuba(vThMant,
iDecay, vDecay=0)``: per step ``u = u·(1 − iDecay/4096) + W·s; V += u + bias; spike if V > vThMant; V = 0``.
vThMant is shared by a layer, so a channel with scale S_c fires at ``Σ w·s ≥ (vThMant+1)/S_c`` (times
iDecay/4096, below), its threshold θ_c in units of its λ; the next layer's weights are multiplied by θ_c (a
spike of that channel is worth θ_c·λ_c). The layer's threshold scale V is the ``threshold_percentile`` (50)
of the channels' weight-optimal scales S*_c and S_c = min(S*_c, V): half of the channels keep θ = 1 (their
weights at least as fine as with one scale per layer), the half with the largest weights gets a higher
threshold (fewer spikes) instead of clipped weights (capping θ at 4 clipped 40 % of those layers' weight norm
and cost 2 points). On the zoo VGG at T=128 (`benchmarks/loihi_cuba.py`, test images 0-3,999, dilation 2,
unfiltered current) the median lost 0.78 pt to the float SNN where the 25th percentile lost 1.10 pt (75th:
the same as the median on images 0-999, 90th and 100th: 0.5-0.6 pt worse). Lava resets to **zero**, not
by subtraction, and fires on ``>``: vThMant = ⌈V·dilation·4096/iDecay⌉ − 1.

Reset to zero loses each spike's overshoot: 15-50 % fewer spikes per layer than a subtracting IF fed the same
input on the zoo VGG with an unfiltered current (:func:`ann2snn.backends.loihi.export.reset_loss`), and a
constant input current only gets rates 1/n. Two knobs shrink the overshoot. ``time_dilation`` (default 1.5)
multiplies every IF threshold (and the worth of its spikes): fewer input spikes coincide per step and the rate
staircase is finer, at the price of fewer spikes per T. ``current_decay`` (iDecay, default 2048) makes ``u``
a low-pass filter of the synaptic input (each input unit reaches V over about two steps; thresholds and
biases ×2): a burst of coincident input spikes is spread out, so the step that crosses the threshold
overshoots by less. Agreement with the float SNN at T=128 on the zoo VGG, test images 0-999 / 6,000-7,999
(fixed-point minus float SNN accuracy): dilation 2 unfiltered 95.7 / 95.7 % (-0.7 / -2.2 pt); dilation 1.5
with iDecay 2048 96.7 / 96.0 % (-0.3 / -1.3 pt); iDecay 1024 95.9 / 95.2 % (+0.4 / -2.0); on images 0-999
unfiltered dilation 1, 1.25 and 1.5 reach 91.8, 95.5 and 95.5 %, and iDecay 512 is too slow for T=64 (-5.9 pt).
On all 10,000 test images the defaults lose 0.84 pt (89.34 vs 90.18 %; dilation 2 unfiltered lost 1.29 pt
on 8,000). Lowering thresholds by the measured per-channel loss (a compensation path since removed) matched mean
rates but lowered agreement (92.7 % vs 96.7 % on 150 images at T=128), and raising each channel's bias until its mean fixed-point rate matched the ANN
(a light calibration run on the fixed-point model) lost 7-17 points: both drive the quiet neurons, which the
overshoot loss does not touch.

The input layer (``input_layer="current"``, default) is the first Conv/Gemm + IF itself, driven by its
constant analog input current as bias: ``bias_mant = clip(round((W·x + b)·4095), ±4095)``, vThMant =
⌈4095·dilation⌉ − 1 (``input_dilation``, by default the time dilation; 1 cost 1 pt and 3 was no better on
images 0-999; its current is constant, so it is not filtered), computed on the host (the float simulator
also computes that current once per image). With ``input_layer="pixels"`` one IF neuron per input value is
driven by ``round(x·S_in)``; a constant bias with reset to zero only gives rates 1/n (every x in (0.5, 1] fires at 1/2), which cost 3-5 points on the VGG.
The readout is a dense layer without neuron (netx's non-spiking integrator): ``v/64 = Σ_t W·s_t + bias``;
its S is bounded so the 24-bit ``u`` never wraps within ``max_timesteps`` (|Σ_t W·s_t| + |bias| < 2^17):
without calibration data from the absolute row sums (every rate ≤ 1), with it from 2.5x the largest T·|W·y|
on the calibration images (a 2.6x finer scale on the zoo VGG; the overflow check then runs those images through the
fixed-point model and shrinks the scale if the sum would still wrap). The host adds the exact float bias
T times.

**SDNN** (graded sigma-delta, exact ReLU) works in ANN units (λ = 1). Lava's Delta input gets
``a_in = round(x·S_in)`` every step and sends ``a_in << spike_exp``; a SigmaDelta layer accumulates
``Σ += W·msg``, computes ``A = max(Σ + bias << (spike_exp+6), 0)`` and sends the change of A (above
vThMant << (spike_exp+6)) shifted right by 6; a Sigma output sends its running sum. With m_i the message
units per unit of input channel i and K_o the accumulator units per unit of output channel o:
``W_oi = Q(w_oi·K_o/m_i)``, ``bias_o = round(b_o·K_o / 2^(spike_exp+6))``, and channel o sends
``M_o = K_o/64`` units. K_o is the weight-optimal scale of row o, capped so that the 24-bit conv (32-bit
dense) register holds ``K_o·max|W·y|``, the outgoing messages ``M_o·max y`` fit 16 bits (netx's
num_message_bits; max y includes the zero-input state the deltas start from), and the next layer can still
give half its rows ``sdnn_weight_target`` (64) integer levels (a backward planning pass; pools, whose exact
kernel 2·j can take any j in 1..127, rescale messages in between). ``spike_exp`` is a netx ``Network``
argument: the default here is 0 (load with ``spike_exp=0``); netx's own default 6 multiplies the input
messages by 64 and coarsens biases 64×, which the 24-bit conv register cannot afford at 8-bit weights.
vThMant = ⌊sdnn_threshold·min_o M_o / 2^spike_exp⌋ (a residue below sdnn_threshold of an activation unit is
never sent). The output is the Sigma sum decoded as ``logits = Σ_o/K_o + b_o`` (bias on the host).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
)
from ann2snn.backends.loihi.profile import LOIHI2, LoihiProfile
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph
from ann2snn.ir.reference import forward
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d

log = logging.getLogger(__name__)

__all__ = [
    "NEURON_KINDS",
    "QuantizationOptions",
    "Stage",
    "LayerQuantization",
    "QuantizedNetwork",
    "lower_graph",
    "search_scale",
    "quantize",
]

NEURON_KINDS = ("cuba", "sdnn")
Violation = tuple[str, str, str]

_U_LIMIT = 1 << 17  # |a| (per step, hidden) and |Σ a| (readout) must stay below this: u = a << 6 is 24-bit
_MESSAGE_MAX = (1 << 15) - 1  # SDNN graded spikes: netx's num_message_bits = 16 (signed)
_INT32 = (1 << 31) - 1
_NIR_WAY_OUT = "export to NIR instead (--target nir)"


@dataclass(frozen=True)
class QuantizationOptions:
    """Knobs of :func:`quantize` (the defaults are what ``export_loihi`` uses).

    neuron: ``cuba`` (binary spikes, IF as CUBA iDecay=4096 vDecay=0) or ``sdnn`` (graded sigma-delta).
    max_timesteps: CUBA: the readout accumulator is sized so that T up to this never overflows.
    input_layer: CUBA: ``current`` (default) makes the first Conv/Gemm + IF the netx input layer, driven by
        its analog input current ``round((W·x + b)·S)`` as bias (the host computes that first linear op, as
        the float simulator does); ``pixels`` adds one IF input neuron per input value, driven by
        ``round(x·S_in)`` (rates are then limited to 1/n by the reset to zero, which costs accuracy).
        SDNN always uses a Delta input layer of the input's shape.
    input_rate: CUBA ``pixels``: firing rate of an input neuron at the largest input value (1 = every step).
    scale_tolerance: S search: the largest S whose error is within (1 + tolerance) of the minimum.
    sdnn_threshold: SDNN: delta threshold in normalized units (a fraction of each layer's λ).
    sdnn_activation_max: SDNN: assumed largest normalized activation when no calibration data is given.
    sdnn_spike_exp: SDNN: netx's ``spike_exp`` the file is made for (load it with
        ``netx.hdf5.Network(net_config=..., spike_exp=...)``): the input message is ``a_in << spike_exp``
        and biases/thresholds are applied ``<< (spike_exp + 6)``. netx's default 6 costs 6 bits of bias
        resolution and of input range in the 24-bit conv registers; 0 (the default here) keeps them.
    sdnn_weight_target: SDNN: integer weight magnitude every row should reach (128 = 7 bits); message units
        are planned so that the 24-bit conv registers leave room for it in all rows but the
        ``sdnn_row_quantile`` fraction with the smallest weights (see ``_plan_sdnn``).
    threshold_percentile, threshold_max: CUBA per-channel scales (see the module docstring): the layer's
        threshold scale V is this percentile of the channels' weight-optimal scales S*_c, and a channel uses
        S_c = clip(S*_c, V/threshold_max, V), i.e. its threshold V/S_c is between 1 and threshold_max
        (unbounded by default: a capped threshold clips the weights instead).
    time_dilation: CUBA: every IF threshold ×this (spikes worth as much more, rates that much lower): fewer
        coincident input spikes per step, so less overshoot lost to the reset to zero, and a finer rate
        staircase for constant inputs, at the price of fewer spikes per T.
    input_dilation: CUBA ``current`` input layer: its own time dilation (default: ``time_dilation``). Its
        constant bias with reset to zero gives rates 1/n only (n >= the dilation), so dilation trades the
        coarseness of that staircase against the number of spikes.
    current_decay: CUBA hidden neurons' ``iDecay`` (1..4096). 4096 makes ``u`` each step's synaptic input
        alone; below it ``u`` low-pass filters the input over about 4096/iDecay steps and every input unit
        delivers 4096/iDecay units to ``v`` in all, so vThMant and biases are scaled by that (same
        normalized thresholds). The smoother per-step input leaves less overshoot for the reset to zero.
    """

    input_layer: str = "current"
    input_rate: float = 1.0
    scale_tolerance: float = 0.01
    threshold_percentile: float = 50.0
    threshold_max: float = 1e9
    time_dilation: float = 1.5
    input_dilation: float | None = None
    current_decay: int = 2048
    sdnn_threshold: float = 1.0 / 256
    sdnn_activation_max: float = 4.0
    sdnn_weight_target: float = 64.0
    sdnn_spike_exp: int = 0
    sdnn_row_quantile: float = 0.5

    def __post_init__(self) -> None:
        if self.input_layer not in ("current", "pixels"):
            raise ValueError(f"input_layer must be 'current' or 'pixels', got {self.input_layer!r}")
        if not 0 < self.input_rate <= 1:
            raise ValueError(f"input_rate must be in (0, 1], got {self.input_rate}")
        if self.scale_tolerance < 0 or self.sdnn_threshold < 0 or self.sdnn_activation_max <= 0:
            raise ValueError("scale_tolerance and sdnn_threshold must be >= 0, sdnn_activation_max > 0")
        if not 0 <= int(self.sdnn_spike_exp) <= 16:
            raise ValueError(f"sdnn_spike_exp must be in 0..16, got {self.sdnn_spike_exp}")
        if self.time_dilation < 1 or (self.input_dilation is not None and self.input_dilation < 1):
            raise ValueError(f"time_dilation and input_dilation must be >= 1, got {self.time_dilation}, "
                             f"{self.input_dilation}")
        if not isinstance(self.current_decay, (int, np.integer)) or not 1 <= self.current_decay <= 4096:
            raise ValueError(f"current_decay must be an integer iDecay in 1..4096, got {self.current_decay!r}")
        if not 0 <= self.threshold_percentile <= 100 or self.threshold_max < 1:
            raise ValueError("threshold_percentile must be in [0, 100] and threshold_max >= 1")


# ----------------------------------------------------------------------------------------------------------
# Lowering: converted graph -> chain of stages
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One netx layer to be, with float (normalized) parameters.

    kind: ``conv`` (Conv2d + IF), ``pool`` (average pool as depthwise conv + IF), ``flatten``, ``dense``
    (Dense + IF) or ``readout`` (the folded linear tail, no neuron). ``name`` is the IR tensor whose value
    the layer's neurons represent (the IF name; the tail's output for the readout). ``nodes`` lists the IR
    nodes folded into it. ``unit``: ANN value of one spike per step (per channel) for spiking stages.
    """

    kind: str
    name: str
    nodes: tuple[str, ...]
    out_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def spiking(self) -> bool:
        return self.kind in ("conv", "pool", "dense")


_MAX_WAY = "replace MaxPool by AvgPool and retrain (netx has no max pooling, and NIR has no max either)"
_OP_WAYS: dict[type, tuple[str, str]] = {
    ir.MaxPool2d: ("max pooling has no netx layer", _MAX_WAY),
    ir.GlobalMaxPool: ("global max pooling has no netx layer", _MAX_WAY),
    CumulativeMaxPool2d: ("the spiking (cumulative) max pool has no netx layer", _MAX_WAY),
    CumulativeGlobalMaxPool: ("the spiking (cumulative) global max pool has no netx layer", _MAX_WAY),
    ir.Add: ("residual Add: netx is a chain of layers and cannot express skip connections",
             f"{_NIR_WAY_OUT}, or use a model without residual connections"),
    ir.Concat: ("Concat: netx cannot express branches (its concat layer is not implemented)",
                f"{_NIR_WAY_OUT}, or use a model without branches"),
    ir.ScaleShift: ("ScaleShift (BatchNorm/affine) between layers has no netx layer",
                    f"fold it into the neighbouring Conv/Gemm before export (place BatchNorm right after a "
                    f"conv), or {_NIR_WAY_OUT}"),
    ir.Transpose: ("Transpose has no netx layer", f"remove the transpose from the model, or {_NIR_WAY_OUT}"),
    ir.Softmax: ("Softmax inside the network has no netx layer", "keep Softmax only at the output"),
}


def _fail(out: list[Violation], node: ir.Node, problem: str, way_out: str) -> None:
    out.append((node.name, f"{type(node).__name__}: {problem}", way_out))


def _pool_as_conv(node: ir.Node, in_shape, out_shape, out: list[Violation]) -> Stage | None:
    """An average pool as a depthwise conv with a constant kernel, or None (violation recorded)."""
    c, h, w = in_shape
    if isinstance(node, ir.GlobalAvgPool):
        kernel, stride, pads = (h, w), (h, w), (0, 0, 0, 0)
    else:
        kernel, stride, pads = tuple(node.kernel), tuple(node.stride), tuple(node.padding)
        t, l, b, r = pads
        if (t, l) != (b, r):
            _fail(out, node, f"asymmetric padding {list(pads)}: netx conv padding is symmetric",
                  "use symmetric pooling padding, or no padding")
            return None
        if any(pads) and not node.count_include_pad:
            _fail(out, node, "padding with count_include_pad=0 divides border windows by fewer cells, which a "
                  "constant depthwise kernel cannot express", "use pooling without padding")
            return None
        floor_hw = tuple((size + 2 * p - k) // s + 1 for size, p, k, s in zip((h, w), (t, l), kernel, stride))
        if tuple(out_shape[1:]) != floor_hw:
            _fail(out, node, "ceil_mode changes the output size; netx convolutions use floor",
                  "use ceil_mode=0 or an input size divisible by the stride")
            return None
        pads = (t, l, b, r)
    weight = np.full((c, 1) + tuple(kernel), 1.0 / (kernel[0] * kernel[1]))
    return Stage("pool", node.name, (node.name,), tuple(out_shape), weight=weight, stride=stride,
                 padding=(pads[0], pads[1]), groups=c)


def _linear_stage(kind: str, node: ir.Node, name: str, out_shape, out: list[Violation]) -> Stage | None:
    if isinstance(node, ir.Conv2d):
        t, l, b, r = node.padding
        if (t, l) != (b, r):
            _fail(out, node, f"asymmetric padding {list(node.padding)}: netx conv padding is symmetric (H, W)",
                  "use symmetric padding in the model")
            return None
        return Stage(kind, name, (node.name,), tuple(out_shape), weight=np.asarray(node.weight, np.float64),
                     bias=None if node.bias is None else np.asarray(node.bias, np.float64),
                     stride=tuple(node.stride), padding=(t, l), dilation=tuple(node.dilation), groups=node.groups)
    return Stage(kind, name, (node.name,), tuple(out_shape), weight=np.asarray(node.weight, np.float64),
                 bias=None if node.bias is None else np.asarray(node.bias, np.float64))


def _fold_tail(graph: Graph, tail: list[ir.Node], in_name: str, out: list[Violation]) -> Stage | None:
    """All linear ops after the last spiking stage as ONE dense (weight, bias), by probing with a basis."""
    shapes = graph.shapes
    in_shape = tuple(shapes[in_name])
    out_name = tail[-1].name
    names = tuple(n.name for n in tail)
    weighted = [n for n in tail if isinstance(n, (ir.Dense, ir.Conv2d))]
    if not weighted:
        _fail(out, tail[-1], "the network must end in a linear (Gemm/Conv) readout layer after the last ReLU",
              "end the model with a Linear/Gemm layer producing the logits")
        return None
    layout_only = all(isinstance(n, (ir.Flatten, ir.Reshape)) for n in tail if n is not weighted[0])
    if len(weighted) == 1 and isinstance(weighted[0], ir.Dense) and tail[-1] is weighted[0] and layout_only:
        d = weighted[0]
        bias = None if d.bias is None else np.asarray(d.bias, np.float64)
        return Stage("readout", out_name, names, tuple(shapes[out_name]), weight=np.asarray(d.weight, np.float64),
                     bias=bias)
    n_in = int(np.prod(in_shape))
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, n_in, dtype=torch.float64), torch.eye(n_in, dtype=torch.float64)])
        x = basis.reshape((n_in + 1,) + in_shape)
        for n in tail:
            x = forward(_as_float64(n), x)
        y = x.reshape(n_in + 1, -1).numpy()
    bias = y[0]
    weight = (y[1:] - bias[None, :]).T
    return Stage("readout", out_name, names, tuple(shapes[out_name]), weight=weight,
                 bias=bias if np.any(bias) else None)


def _as_float64(node: ir.Node) -> ir.Node:
    """The node with float64 arrays (the probe runs in float64)."""
    changes = {f.name: np.asarray(getattr(node, f.name), np.float64) for f in fields(node)
               if isinstance(getattr(node, f.name), np.ndarray)}
    return replace(node, **changes) if changes else node


# a spiking graph's IF neurons, or the exact ReLUs of the SDNN graph (export.sdnn_graph)
_NEURONS = (IF, ir.ReLU)


def lower_graph(graph: Graph) -> tuple[list[Stage], list[Violation]]:
    """The converted graph as netx stages, and every reason it cannot be one (all of them).

    Neurons are IF nodes (CUBA) or plain ReLU nodes (the SDNN graph in ANN units, see ``sdnn_graph``).
    """
    violations: list[Violation] = []
    shapes = graph.shapes
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        violations.append(("graph", f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs: netx "
                                    "networks have exactly one input and one output", _NIR_WAY_OUT))
    input_shape = tuple(graph.inputs[0].shape)
    if len(input_shape) not in (1, 3):
        violations.append(("input", f"input shape {input_shape}: netx inputs are (C, H, W) or (N,)",
                           "reshape the model input to (C, H, W)"))
    nodes = list(graph.nodes)
    users = graph.consumers
    # 1. op kinds, and branching (with one input per node and no fan-out, topological order is a chain)
    for n in nodes:
        name = n.name.removesuffix("/current_max")  # the converter's pre-neuron max pool keeps the ONNX name
        consumers = users.get(n.name, [])
        if isinstance(n, ir.ScaleShift) and consumers and all(isinstance(u, ir.Add) for u in consumers):
            continue  # inserted by the converter to rescale a residual branch: the Add is reported
        for kind, (problem, way) in _OP_WAYS.items():
            if type(n) is kind:
                if isinstance(n, ir.Transpose) and tuple(n.perm) == tuple(range(len(n.perm))):
                    break
                if isinstance(n, ir.ScaleShift) and n is nodes[-1]:
                    break  # a trailing ScaleShift is linear and folds into the readout
                violations.append((name, f"{type(n).__name__}: {problem}", way))
                break
        else:
            if isinstance(n, IF) and n.signed:
                _fail(violations, n, "signed IF neurons emit -1 spikes, which Loihi's CUBA neurons cannot",
                      "convert without --signed")
            elif isinstance(n, ir.ReLU) and n.ceiling is not None:
                _fail(violations, n, f"clipped ReLU (ceiling {n.ceiling:g}): SDNN neurons compute an unbounded "
                      "ReLU", "use --loihi-neuron cuba, whose spike rate saturates, or retrain with plain ReLU")
            elif not isinstance(n, _NEURONS + (ir.Conv2d, ir.Dense, ir.AvgPool2d, ir.GlobalAvgPool, ir.Flatten,
                                               ir.Reshape, ir.Transpose, ir.ScaleShift)):
                _fail(violations, n, "no netx layer for this op", _NIR_WAY_OUT)
    for tensor, consumers in users.items():
        merged = any(isinstance(u, (ir.Add, ir.Concat)) or (
            isinstance(u, ir.ScaleShift) and any(isinstance(v, ir.Add) for v in users.get(u.name, [])))
            for u in consumers)
        if len(consumers) > 1 and not merged:  # a branch that no Add/Concat entry already explains
            violations.append((tensor, f"feeds {len(consumers)} layers: netx is a chain and cannot branch",
                               _NIR_WAY_OUT))
    if violations:
        return [], _dedupe(violations)
    # 2. grouping
    if_positions = [i for i, n in enumerate(nodes) if isinstance(n, _NEURONS)]
    if not if_positions:
        return [], [("graph", "no spiking neurons (IF) in the network", "convert a model with ReLU layers")]
    last_if = if_positions[-1]
    stages: list[Stage] = []
    pending: ir.Node | None = None
    for n in nodes[: last_if + 1]:
        if isinstance(n, (ir.Conv2d, ir.Dense)):
            if pending is not None:
                _fail(violations, n, f"follows '{pending.name}' with no neuron in between (two linear layers)",
                      "merge the two linear layers into one before export")
            pending = n
        elif isinstance(n, _NEURONS):
            if pending is None:
                _fail(violations, n, "the neuron does not follow a Conv/Gemm layer", _NIR_WAY_OUT)
                continue
            kind = "conv" if isinstance(pending, ir.Conv2d) else "dense"
            stage = _linear_stage(kind, pending, n.name, shapes[n.name], violations)
            if stage is not None:
                stage.nodes = (pending.name, n.name)
                stages.append(stage)
            pending = None
        elif pending is not None:
            _fail(violations, n, f"sits between '{pending.name}' and its neuron: netx has no such layer",
                  _NIR_WAY_OUT)
        elif isinstance(n, (ir.AvgPool2d, ir.GlobalAvgPool)):
            stage = _pool_as_conv(n, shapes[n.inputs[0]], shapes[n.name], violations)
            if stage is not None:
                stages.append(stage)
        elif isinstance(n, (ir.Flatten, ir.Reshape)):
            _add_flatten(n, shapes, stages, violations)
        else:
            _fail(violations, n, "no netx layer for this op between neurons", _NIR_WAY_OUT)
    tail = nodes[last_if + 1:]
    while tail and isinstance(tail[0], (ir.AvgPool2d, ir.GlobalAvgPool)) and any(
            isinstance(t, (ir.Dense, ir.Conv2d)) for t in tail[1:]):
        stage = _pool_as_conv(tail[0], shapes[tail[0].inputs[0]], shapes[tail[0].name], violations)
        if stage is not None:
            stages.append(stage)
        tail = tail[1:]
    if not tail:
        violations.append((nodes[-1].name, "the network ends in a neuron: a readout Gemm/Linear layer is needed",
                           "end the model with a Linear/Gemm layer producing the logits"))
        return stages, _dedupe(violations)
    readout_in = tail[0].inputs[0]
    readout = _fold_tail(graph, tail, readout_in, violations)
    if readout is not None:
        if len(shapes[readout_in]) == 3:
            stages.append(Stage("flatten", f"{readout_in}/flatten", (), (int(np.prod(shapes[readout_in])),)))
        stages.append(readout)
    return stages, _dedupe(violations)


def _add_flatten(n: ir.Node, shapes, stages: list[Stage], out: list[Violation]) -> None:
    in_shape, out_shape = tuple(shapes[n.inputs[0]]), tuple(shapes[n.name])
    if in_shape == out_shape:
        return  # identity
    if len(out_shape) != 1:
        _fail(out, n, f"reshape {in_shape} -> {out_shape}: netx only flattens (C, H, W) to (N,)", _NIR_WAY_OUT)
        return
    if len(in_shape) == 3:
        stages.append(Stage("flatten", n.name, (n.name,), out_shape))


def _dedupe(violations: list[Violation]) -> list[Violation]:
    seen, out = set(), []
    for v in violations:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


# ----------------------------------------------------------------------------------------------------------
# Scale search
# ----------------------------------------------------------------------------------------------------------


def _q_weight(w: np.ndarray, s: float) -> np.ndarray:
    return np.clip(2.0 * np.round(w * s / 2.0), -256, 254)


def _q_bias(b: np.ndarray, s: float, bias_unit: float, limit: int) -> np.ndarray:
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
    err = np.sum(((_q_weight(w[None, :], c) / c - w[None, :]) * unit[None, :]) ** 2, axis=1)
    if b is not None:
        qb = _q_bias(b[None, :], c, bias_unit, bias_limit) / (c * bias_unit)
        err = err + np.sum((qb - b[None, :]) ** 2, axis=1)
    err = err / norm
    ok = np.nonzero(err <= err.min() * (1.0 + tolerance) + 1e-18)[0]
    return float(cands[ok.max()])


@dataclass(frozen=True)
class LayerQuantization:
    """What quantization did to one netx layer (the per-layer report).

    scale: the layer's reference scale (CUBA: the threshold scale V+1, i.e. vThMant+1 per unit threshold;
    SDNN: the median per-channel weight scale). scale_min/scale_max: range of the per-output-channel weight
    scales. weight_error / bias_error: relative L2 error ‖Q/S − x‖/‖x‖. threshold_min/max: CUBA effective
    thresholds per channel in normalized units ((vThMant+1)/S_c; 1 = the converted graph's); SDNN: the
    delta threshold per channel. message_unit_min: SDNN: smallest message units per normalized unit.
    """

    index: int
    type: str
    name: str
    nodes: tuple[str, ...]
    scale: float
    vth_mant: int | None
    weight_max: int | None
    weight_error: float | None
    bias_error: float | None
    weights_clipped: int = 0
    biases_clipped: int = 0
    scale_min: float | None = None
    scale_max: float | None = None
    threshold_min: float | None = None
    threshold_max: float | None = None
    message_unit_min: float | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class HostLayer:
    """The first linear op, computed on the host when the netx input layer is driven by its current.

    ``bias_mant = clip(round((W·x + b)·scale), -limit, limit)`` with W, b in the units of the raw input x
    (PyTorch layouts); the result has the netx input layer's (C, H, W) or (N,) shape.
    """

    kind: str  # "conv" or "dense"
    weight: np.ndarray
    bias: np.ndarray | None
    in_shape: tuple[int, ...]
    scale: float | np.ndarray  # scalar or per output channel
    limit: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def current(self, x: np.ndarray) -> np.ndarray:
        """Float input current (W·x + b) for x (N, *in_shape), float64."""
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        w = torch.from_numpy(np.asarray(self.weight, np.float64))
        with torch.no_grad():
            if self.kind == "conv":
                y = torch.nn.functional.conv2d(xt, w, stride=self.stride, padding=self.padding,
                                               dilation=self.dilation, groups=self.groups)
            else:
                y = xt.reshape(len(xt), -1) @ w.T
        y = y.numpy()
        if self.bias is not None:
            y = y + np.asarray(self.bias, np.float64).reshape((-1,) + (1,) * (y.ndim - 2))
        return y

    def bias_mant(self, x: np.ndarray) -> np.ndarray:
        cur = self.current(x)
        scale = np.asarray(self.scale, np.float64)
        scale = scale.reshape((-1,) + (1,) * (cur.ndim - 2)) if scale.ndim else scale
        return np.clip(np.rint(cur * scale), -self.limit, self.limit).astype(np.int64)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "weight": np.asarray(self.weight).tolist(),
                "bias": None if self.bias is None else np.asarray(self.bias).tolist(),
                "in_shape": list(self.in_shape), "scale": np.asarray(self.scale).tolist(), "limit": self.limit,
                "stride": list(self.stride), "padding": list(self.padding), "dilation": list(self.dilation),
                "groups": self.groups}

    @classmethod
    def from_dict(cls, d: dict) -> "HostLayer":
        return cls(kind=str(d["kind"]), weight=np.asarray(d["weight"], np.float64),
                   bias=None if d["bias"] is None else np.asarray(d["bias"], np.float64),
                   in_shape=tuple(int(v) for v in d["in_shape"]), scale=_scalar_or_array(d["scale"]),
                   limit=int(d["limit"]),
                   stride=tuple(d["stride"]), padding=tuple(d["padding"]), dilation=tuple(d["dilation"]),
                   groups=int(d["groups"]))


@dataclass(frozen=True)
class QuantizedNetwork:
    """A netx network plus what is needed to drive and decode it.

    input_scale: integer input per unit of x (CUBA ``pixels``: bias_mant = round(x·input_scale); SDNN: a_in);
        with ``host_layer`` the input layer's bias comes from it instead.
    readout_scale: integer readout units per ANN output unit, scalar or per output (CUBA: per step; SDNN:
        Sigma units).
    readout_bias: float readout bias in ANN output units, added exactly on the host when decoding (CUBA also
        holds it, quantized, as the readout layer's bias).
    output_unit: ANN value of one readout unit (the converted graph's output unit, per output).
    """

    network: NetxNetwork
    neuron: str
    layers: tuple[LayerQuantization, ...]
    input_scale: int
    readout_scale: float | np.ndarray
    readout_bias: np.ndarray | None
    output_unit: np.ndarray
    options: QuantizationOptions
    warnings: tuple[str, ...] = ()
    host_layer: HostLayer | None = None
    max_timesteps: int = 128

    @property
    def latency(self) -> int:
        """Lava layer index of the readout = steps from the input neuron to the readout."""
        return sum(1 for layer in self.network.layers if not isinstance(layer, FlattenLayer)) - 1


def _scalar_or_array(v):
    a = np.asarray(v, np.float64)
    return float(a) if a.ndim == 0 else a


def _rowwise(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0], -1)


def _broadcast_in(w: np.ndarray, per_input: np.ndarray, groups: int = 1) -> np.ndarray:
    """``w`` with each input channel/feature i multiplied by ``per_input[i]`` (conv groups honoured)."""
    per_input = np.asarray(per_input, np.float64)
    if w.ndim == 2:
        return w * per_input[None, :]
    return w * per_input[ir.conv_input_channels(*w.shape[:2], groups)][:, :, None, None]


def _per_row(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A per-output-channel vector shaped to broadcast against ``w``."""
    return np.asarray(values, np.float64).reshape((-1,) + (1,) * (w.ndim - 1))


def _layer_report(index: int, ltype: str, stage: Stage, scale: float, vth: int | None, w: np.ndarray,
                  w_int: np.ndarray, s_rows: np.ndarray, b: np.ndarray | None, b_int: np.ndarray | None,
                  b_div: np.ndarray | None, **extra) -> LayerQuantization:
    """Errors of a layer quantized with per-row scales ``s_rows`` (bias_int = b·b_div)."""
    sr = _per_row(s_rows, w)
    werr = float(np.linalg.norm(w_int / sr - w) / max(np.linalg.norm(w), 1e-300))
    wclip = int(np.count_nonzero(np.abs(w * sr - w_int) > 1.0 + 1e-9))
    berr, bclip = None, 0
    if b is not None and np.any(b):
        qb = (np.zeros_like(b) if b_int is None else b_int) / b_div
        berr = float(np.linalg.norm(qb - b) / np.linalg.norm(b))
        bclip = int(np.count_nonzero(np.abs(b * b_div - (0 if b_int is None else b_int)) > 0.5 + 1e-9))
    return LayerQuantization(
        index=index, type=ltype, name=stage.name, nodes=stage.nodes, scale=float(scale), vth_mant=vth,
        weight_max=int(np.abs(w_int).max()), weight_error=werr, bias_error=berr, weights_clipped=wclip,
        biases_clipped=bclip, scale_min=float(np.min(s_rows)), scale_max=float(np.max(s_rows)), **extra)


def _add_flatten_layer(stage: Stage, layers: list, reports: list, per_channel: np.ndarray) -> np.ndarray:
    """Append a netx flatten layer and its report; returns the per-channel vector expanded per feature."""
    layers.append(FlattenLayer())
    reports.append(LayerQuantization(len(layers) - 1, "flatten", stage.name, stage.nodes, 1.0, None, None, None, None))
    return _flatten_vector(per_channel, stage)


def _netx_layer(stage: Stage, w_int: np.ndarray, b_int: np.ndarray | None, neuron: NeuronParams | None):
    if stage.kind in ("conv", "pool"):
        return ConvLayer(weight=w_int, shape=stage.out_shape, neuron=neuron, stride=stage.stride,
                         padding=stage.padding, dilation=stage.dilation, groups=stage.groups, bias=b_int)
    return DenseLayer(weight=w_int, neuron=neuron, bias=b_int)


def _nonzero_int_bias(b: np.ndarray | None) -> np.ndarray | None:
    return None if b is None or not np.any(b) else b.astype(np.int64)


def layer_kind(stage: Stage) -> str:
    return {"conv": "conv", "pool": "conv", "dense": "dense", "readout": "dense", "flatten": "flatten"}[stage.kind]


def _flatten_vector(vec: np.ndarray, stage: Stage) -> np.ndarray:
    """A per-channel vector expanded to the C·H·W features of a flatten."""
    vec = np.asarray(vec, np.float64).reshape(-1)
    n = int(np.prod(stage.out_shape))
    return np.repeat(vec, n // len(vec)) if len(vec) != n else vec


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
        q = _quantize_cuba(stages, input_shape, input_max, input_unit, output_unit, options, profile, caps,
                           activation_max or {}, int(max_timesteps))
    else:
        q = _quantize_sdnn(stages, input_shape, input_max, input_unit, output_unit, options, profile,
                           activation_max or {}, caps)
    return replace(q, max_timesteps=int(max_timesteps))


# ----------------------------------------------------------------------------------------------------------
# CUBA
# ----------------------------------------------------------------------------------------------------------


# CUBA readout: the accumulated Σ_t W·s_t tracks T·(W·y); sized for this many times the calibration maximum
# as export_loihi passes it (which already carries its 1.25 margin: 2.5x the measured maximum in all)
_READOUT_MARGIN = 2.0


def _quantize_cuba(stages, input_shape, input_max, input_unit, output_unit, options, profile, caps, act_max,
                   t_max: int):
    warnings: list[str] = []
    x_max = float(input_max) if input_max > 0 else 1.0
    host = None
    first = stages[0] if stages else None
    if options.input_layer == "current" and first is not None and first.kind in ("conv", "dense"):
        # the first IF layer becomes the input layer, driven by its constant analog current as bias:
        # current 1 (= threshold per step) maps to the largest bias, so rates up to 1 are resolved to 1/4095
        s1 = float(profile.bias_max)
        dil = float(options.time_dilation if options.input_dilation is None else options.input_dilation)
        vth1 = int(math.ceil(s1 * dil)) - 1
        host = HostLayer(kind=first.kind, weight=first.weight / input_unit, bias=first.bias,
                         in_shape=tuple(input_shape), scale=s1,
                         limit=profile.bias_max, stride=first.stride,
                         padding=first.padding, dilation=first.dilation, groups=first.groups)
        layers: list = [InputLayer(tuple(first.out_shape), NeuronParams.cuba(vth1), transform_weight=int(s1))]
        reports = [LayerQuantization(0, "input", first.name, first.nodes, s1, vth1, None, None, None,
                                     threshold_min=(vth1 + 1) / s1, threshold_max=(vth1 + 1) / s1,
                                     notes=(f"host computes bias_mant = clip(round(({first.kind}(x) + b)*{s1:g}), "
                                            f"+-{profile.bias_max}) (the first layer's analog current)",))]
        stages = stages[1:]
        theta = np.full(first.out_shape[0], dil)
        s_in = int(s1)
    else:
        s_in = int(min(profile.bias_max, _U_LIMIT - 1) // x_max)
        if s_in < 1:
            raise ValueError(f"input values up to {x_max} cannot be represented by a 13-bit bias")
        vth_in = int(math.ceil(s_in * x_max / options.input_rate)) - 1
        # one input spike stands for x_max / input_rate units of x; the graph's weights assume input_unit
        carry = (x_max / options.input_rate) / input_unit
        layers = [InputLayer(tuple(input_shape), NeuronParams.cuba(vth_in), transform_weight=s_in)]
        reports = [LayerQuantization(0, "input", "input", (), float(s_in), vth_in, None, None, None,
                                     threshold_min=(vth_in + 1) / (s_in * x_max),
                                     threshold_max=(vth_in + 1) / (s_in * x_max),
                                     notes=(f"bias_mant = round(x*{s_in}); fires every "
                                            f"{1 / options.input_rate:g} step(s) at x = {x_max:g}",))]
        theta = np.full(input_shape[0], carry)
    readout_scale, readout_bias = 1.0, None
    # hidden neurons: u decays by iDecay/4096 per step, so one unit of synaptic input delivers `charge` units
    # to v in all (a low-pass filtered current); thresholds and biases are in units of v
    i_decay = int(options.current_decay)
    charge = 4096.0 / i_decay
    for stage in stages:
        index = len(layers)
        if stage.kind == "flatten":
            theta = _add_flatten_layer(stage, layers, reports, theta)
            continue
        if stage.kind == "pool":  # weight 2 per tap and threshold 2·k: exact; spike values θ pass through
            # weight 2·j per tap and threshold 2·j·k: exact (j = 8: the threshold's resolution in v units)
            k = int(np.prod(stage.weight.shape[2:]))
            j = 8
            w_int = np.full(stage.weight.shape, 2 * j, dtype=np.int64)
            vth = max(int(math.ceil(2 * j * k * charge)) - 1, 0)
            layers.append(_netx_layer(stage, w_int, None, NeuronParams.cuba(vth, i_decay, 0)))
            reports.append(_layer_report(index, "conv", stage, 2.0 * j * k, vth, stage.weight, w_int,
                                         np.full(w_int.shape[0], 2.0 * j * k), None, None, None,
                                         threshold_min=float(theta.min()), threshold_max=float(theta.max())))
            continue
        w = _broadcast_in(stage.weight, theta, stage.groups)
        b = stage.bias
        cap = caps.get(stage.name, 1.0)
        if stage.kind == "readout":
            # Σ_t |W·s_t| <= T · max row Σ|W| because every rate is <= 1: the 24-bit u never wraps. That
            # bound assumes every input fires every step; with calibration data the sum is sized for
            # _READOUT_MARGIN x its largest T·|W·y| instead (a 2.6x finer scale on the zoo VGG: 39 weight
            # levels cost 0.3 pt and 1.4 % agreement at T=128), and the overflow check verifies it.
            row = float(np.abs(_rowwise(w)).sum(axis=1).max())
            b_abs = 0.0 if b is None else float(np.abs(b).max())
            s_cap = cap * 0.98 * _U_LIMIT / max(t_max * row + b_abs, 1e-12)
            if stage.name in act_max:
                z_max = float(np.max(act_max[stage.name][1]))
                s_cap = max(s_cap, cap * 0.98 * _U_LIMIT / max(t_max * z_max * _READOUT_MARGIN + b_abs, 1e-12))
            s = search_scale(w, b, s_max=s_cap, bias_limit=profile.bias_max, tolerance=options.scale_tolerance)
            w_int = _q_weight(w, s)
            b_int = None if b is None else _q_bias(b, s, 1.0, profile.bias_max)
            if not np.any(w_int):
                raise ValueError(f"readout '{stage.name}' quantizes to all-zero weights (scale {s:.3g})")
            layers.append(_netx_layer(stage, w_int, _nonzero_int_bias(b_int), None))
            reports.append(_layer_report(index, "dense", stage, s, None, w, w_int, np.full(w.shape[0], s), b, b_int,
                                         s, notes=(f"readout: v/64 = sum_t W s_t + bias; sized for T <= {t_max}"
                                               + (" (calibrated)" if stage.name in act_max else ""),)))
            readout_scale, readout_bias = s, b
            continue
        # per output channel c: S_c; shared threshold V = vThMant + 1; the channel fires at Σ w·s >= V/S_c
        rows = _rowwise(w)
        dil = float(options.time_dilation)
        v_limit = min(profile.vth_max, _U_LIMIT - 1) + 1
        s_max = v_limit / (dil * charge)
        s_star = np.array([search_scale(rows[o], None if b is None else b[o:o + 1], s_max=s_max,
                                        bias_unit=charge, bias_limit=profile.bias_max,
                                        tolerance=options.scale_tolerance)
                           for o in range(rows.shape[0])])
        v1 = float(min(np.percentile(s_star, options.threshold_percentile), s_max))
        s_rows = np.clip(s_star, v1 / options.threshold_max, v1)
        v1, s_rows = v1 * cap, s_rows * cap  # overflow repair: every scale and the threshold together
        # time dilation: thresholds ×dil, spikes worth ×dil; in v units a weight unit is worth `charge`
        vth = max(int(math.ceil(v1 * dil * charge)) - 1, 0)
        theta_next = (vth + 1) / (charge * s_rows)  # what one spike of each channel is worth (in its λ)
        w_int = _q_weight(w, _per_row(s_rows, w))
        if not np.any(w_int):
            raise ValueError(f"layer '{stage.name}' quantizes to all-zero weights (scale {v1:.3g})")
        b_int = None if b is None else _q_bias(b, s_rows, charge, profile.bias_max)
        theta = theta_next
        layers.append(_netx_layer(stage, w_int, _nonzero_int_bias(b_int), NeuronParams.cuba(vth, i_decay, 0)))
        reports.append(_layer_report(index, layer_kind(stage), stage, float(vth + 1), vth, w, w_int, s_rows, b, b_int,
                                     s_rows * charge, threshold_min=float(theta_next.min()),
                                     threshold_max=float(theta_next.max())))
    net = NetxNetwork(tuple(layers))
    return QuantizedNetwork(net, "cuba", tuple(reports), s_in, float(readout_scale), readout_bias,
                            np.asarray(output_unit, np.float64), options, tuple(warnings), host)


# ----------------------------------------------------------------------------------------------------------
# SDNN
# ----------------------------------------------------------------------------------------------------------

_REGISTER_USE = 0.8  # use at most this fraction of a synapse register (24-bit conv, 32-bit dense/Sigma)


def _stats(stage: Stage, w_eff: np.ndarray, prev_max: np.ndarray, options, act_max) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (largest activation, largest |W·y|): calibrated, else bounded from the inputs."""
    n_out = w_eff.shape[0]
    guaranteed = np.abs(_rowwise(_broadcast_in(w_eff, prev_max, stage.groups))).sum(axis=1)
    y, syn = act_max.get(stage.name, (None, None))
    y = np.full(n_out, options.sdnn_activation_max) if y is None else np.broadcast_to(np.asarray(y, np.float64), (n_out,))
    syn = guaranteed if syn is None else np.minimum(np.broadcast_to(np.asarray(syn, np.float64), (n_out,)), guaranteed)
    return np.maximum(y, 1e-6), np.maximum(syn, 1e-6)


def _quantize_sdnn(stages, input_shape, input_max, input_unit, output_unit, options, profile, act_max, caps):
    """SDNN layers with per-output-channel scales (exact by ReLU homogeneity).

    m (per input channel/feature) is the message units per normalized unit arriving at a layer. A layer's
    row o has weights r_o = w_o / m per message unit; its accumulator scale K_o (Σ units per normalized
    unit) is chosen by :func:`search_scale`, capped so that K_o·max|W·y|_o fits the synapse register (80% of
    2^23 for conv, of 2^31 for dense/Sigma), the outgoing messages K_o/64·max y_o fit 16 bits, and the next
    layer can still afford its own weight resolution (:func:`_plan_sdnn`). Then W = Q(r·K),
    bias = round(b·K/4096), and the layer sends messages in units M_o = K_o/64.
    """
    warnings: list[str] = []
    x_max = float(input_max) if input_max > 0 else 1.0
    x_snn_max = x_max / input_unit  # the graph's input value is x / input_unit
    e = int(options.sdnn_spike_exp)
    unit = float(1 << (e + 6))  # bias and vThMant are applied as value << (spike_exp + 6)
    s_in_max = int(_MESSAGE_MAX // ((1 << e) * x_max))  # Delta input: a_in = round(x·S_in) sends a_in << spike_exp
    if s_in_max < 1:
        raise ValueError(f"input values up to {x_max} do not fit a 16-bit SDNN message")
    plan = _plan_sdnn(stages, input_shape, x_snn_max, options, act_max, caps)
    first_cap = plan["m_in_cap"]
    floor_in = max(1, min(s_in_max, int(16 // max(x_max, 1e-12))))  # at least 4 bits of input resolution
    s_in = int(min(s_in_max, max(floor_in, first_cap // ((1 << e) * input_unit))))
    c_in = input_shape[0]
    m = np.full(c_in, float(1 << e) * s_in * input_unit)  # message units per unit of the graph's input value
    vth_in = int(math.floor(options.sdnn_threshold * s_in * input_unit))
    layers: list = [InputLayer(tuple(input_shape), NeuronParams.sdnn(vth_mant=vth_in), transform_weight=s_in)]
    reports = [LayerQuantization(0, "input", "input", (), float(s_in), vth_in, None, None, None,
                                 message_unit_min=float(1 << e) * s_in,
                                 notes=(f"a_in = round(x*{s_in}) every step (Delta input)",))]
    readout_scale, readout_bias = 1.0, None
    for stage in stages:
        index = len(layers)
        if stage.kind == "flatten":
            m = _add_flatten_layer(stage, layers, reports, m)
            continue
        out_cap = plan["out_cap"][stage.name]  # largest message unit the next layer can take
        y_max, syn_max = plan["stats"][stage.name]
        if stage.kind == "pool":  # constant kernel 2·j (S = 2·k·j): exact; the largest j the next layer allows
            k = int(np.prod(stage.weight.shape[2:]))
            s_lim = min(64.0 * out_cap, float(np.min(64.0 * _MESSAGE_MAX / y_max)),
                        float(np.min(_REGISTER_USE * (1 << 23) / syn_max))) / float(np.max(m))
            j = max(1, min(127, int(math.floor(caps.get(stage.name, 1.0) * s_lim / (2 * k)))))
            w_int = np.full(stage.weight.shape, 2 * j, dtype=np.int64)
            m_out = m * (2.0 * k * j) / 64.0
            vth = int(math.floor(options.sdnn_threshold * float(m_out.min()) * 64.0 / unit))
            layers.append(_netx_layer(stage, w_int, None, NeuronParams.sdnn(vth_mant=vth)))
            reports.append(_layer_report(index, "conv", stage, 2.0 * k * j, vth, stage.weight, w_int,
                                         np.full(w_int.shape[0], 2.0 * k * j), None, None, None,
                                         threshold_min=float(vth * unit / 64.0 / m_out.max()),
                                         threshold_max=float(vth * unit / 64.0 / m_out.min()),
                                         message_unit_min=float(m_out.min())))
            m = m_out
            continue
        w, b = stage.weight, stage.bias
        r = _broadcast_in(w, 1.0 / m, stage.groups)  # weights per message unit
        k_cap = _register_cap(stage, syn_max)
        if stage.kind != "readout":
            k_cap = np.minimum(k_cap, np.minimum(64.0 * _MESSAGE_MAX / y_max, 64.0 * out_cap))
        k_cap = caps.get(stage.name, 1.0) * k_cap
        rows = _rowwise(r)
        units = _rowwise(_broadcast_in(np.ones_like(w), m, stage.groups))  # message units of each weight's input
        k_rows = np.array([search_scale(rows[o], None if b is None or stage.kind == "readout" else b[o:o + 1],
                                        s_max=float(k_cap[o]), bias_unit=1.0 / unit, bias_limit=profile.bias_max,
                                        tolerance=options.scale_tolerance, weight_unit=units[o])
                           for o in range(rows.shape[0])])
        w_int = _q_weight(r, _per_row(k_rows, r))
        if not np.any(w_int):
            raise ValueError(f"layer '{stage.name}' quantizes to all-zero weights")
        # per-row weight scale in normalized terms (integer units per normalized weight unit)
        eff = k_rows / float(np.median(m))
        if stage.kind == "readout":
            layers.append(_netx_layer(stage, w_int, None, NeuronParams.sdnn(sigma_output=True)))
            reports.append(_layer_report(
                index, "dense", stage, float(np.median(eff)), None, r, w_int, k_rows, None, None, None,
                notes=("Sigma output: logits = sigma / readout_scale + bias (bias added on the host)",)))
            readout_scale, readout_bias = k_rows, b
            continue
        b_int = None if b is None else _q_bias(b, k_rows, 1.0 / unit, profile.bias_max)
        if b is not None and np.any(np.abs(b * k_rows / unit) > profile.bias_max + 0.5):
            warnings.append(f"{stage.name}: biases clipped to 13 bits")
        m_out = k_rows / 64.0
        vth = int(math.floor(options.sdnn_threshold * float(m_out.min()) * 64.0 / unit))
        layers.append(_netx_layer(stage, w_int, _nonzero_int_bias(b_int), NeuronParams.sdnn(vth_mant=vth)))
        reports.append(_layer_report(index, layer_kind(stage), stage, float(np.median(eff)), vth, r, w_int,
                                     k_rows, b, b_int, k_rows / unit,
                                     threshold_min=float(vth * unit / 64.0 / m_out.max()),
                                     threshold_max=float(vth * unit / 64.0 / m_out.min()),
                                     message_unit_min=float(m_out.min())))
        m = m_out
    net = NetxNetwork(tuple(layers))
    return QuantizedNetwork(net, "sdnn", tuple(reports), s_in, np.asarray(readout_scale, np.float64), readout_bias,
                            np.asarray(output_unit, np.float64), options, tuple(warnings))


def _register_cap(stage: Stage, syn_max: np.ndarray) -> np.ndarray:
    reg = (1 << 23) if stage.kind in ("conv", "pool") else (1 << 31)
    return _REGISTER_USE * reg / syn_max


def _plan_sdnn(stages, input_shape, x_max, options, act_max, caps) -> dict:
    """Statistics per stage, and how large the message units reaching each stage may be.

    Forward: per output channel (largest activation, largest |W·y|). Backward: ``m_in_cap`` of a weighted
    layer is the largest (uniform) input message unit with which every row can still reach
    ``sdnn_weight_target`` integer levels (K_o = S_o·m within its register/message caps and within 64× what
    the next layer accepts); a pool passes 64/(2k) times its successor's (its kernel 2·j can shrink messages
    by up to 2k/64). Returns ``stats``, ``out_cap`` (per stage: the next stage's ``m_in_cap``) and
    ``m_in_cap`` of the first stage.
    """
    prev = np.full(input_shape[0], x_max)
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    chain = []
    for st in stages:
        if st.kind == "flatten":
            prev = _flatten_vector(prev, st)
            continue
        if st.kind == "pool":
            stats[st.name] = (prev.copy(), prev.copy())
        else:
            stats[st.name] = _stats(st, st.weight, prev, options, act_max)
            prev = stats[st.name][0]
        chain.append(st)
    out_cap: dict[str, float] = {}
    nxt = math.inf
    for st in reversed(chain):
        out_cap[st.name] = nxt
        y, syn = stats[st.name]
        if st.kind == "pool":
            k = int(np.prod(st.weight.shape[2:]))
            nxt = 64.0 * nxt / (2 * k)
            continue
        k_cap = _register_cap(st, syn)
        if st.kind != "readout":
            k_cap = np.minimum(k_cap, np.minimum(64.0 * _MESSAGE_MAX / y, 64.0 * out_cap[st.name]))
        k_cap = caps.get(st.name, 1.0) * k_cap
        peak = np.abs(_rowwise(st.weight)).max(axis=1)
        s_target = options.sdnn_weight_target / np.maximum(peak, 1e-300)
        # most rows (all but the ``sdnn_row_quantile`` with the smallest weights) should reach the target
        nxt = float(np.quantile(k_cap / s_target, options.sdnn_row_quantile))
    return {"stats": stats, "out_cap": out_cap, "m_in_cap": nxt}
