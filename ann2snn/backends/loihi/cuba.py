"""CUBA integrate-and-fire layers (binary spikes) from lowered stages.

The IF (threshold 1, reset by subtraction) becomes ``NeuronParams.cuba(vThMant, iDecay, vDecay=0)``: per step
``u = u·(1 − iDecay/4096) + W·s; V += u + bias; spike if V > vThMant; V = 0``. vThMant is shared by a layer,
so a channel with scale S_c fires at ``Σ w·s ≥ (vThMant+1)/S_c`` (times iDecay/4096, below), its threshold
θ_c in units of its λ; the next layer's weights are multiplied by θ_c (a spike of that channel is worth
θ_c·λ_c). The layer's threshold scale V is the ``threshold_percentile`` (50) of the channels'
weight-optimal scales S*_c and S_c = min(S*_c, V): half of the channels keep θ = 1 (their weights at least
as fine as with one scale per layer), the half with the largest weights gets a higher threshold (fewer
spikes) instead of clipped weights. Lava resets to **zero**, not by subtraction, and fires on ``>``:
vThMant = ⌈V·dilation·4096/iDecay⌉ − 1.
A network converted with ``reset="zero", v_init=0`` already simulates that neuron: lowering folds its
per-channel thresholds into the weights (``lowering._fold_threshold``), and with ``time_dilation=1`` and
``current_decay=4096`` the fixed point differs from its float simulation only by quantization and latency.

Reset to zero loses each spike's overshoot, and a constant input current only gets rates 1/n. Two knobs
shrink the overshoot: ``time_dilation`` multiplies every IF threshold (and the worth of its spikes), so fewer
input spikes coincide per step and the rate staircase is finer, at the price of fewer spikes per T;
``current_decay`` (iDecay) makes ``u`` a low-pass filter of the synaptic input (thresholds and biases scaled
to match), so a burst of coincident input spikes is spread out and overshoots by less. What each choice
measured (and the compensation paths that were tried and removed): benchmarks/RESULTS.md, "Loihi
quantization: design measurements".

The input layer (``input_layer="current"``, default) is the first Conv/Gemm + IF itself, driven by its
constant analog input current as bias: ``bias_mant = clip(round((W·x + b)·4095), ±4095)``, vThMant =
⌈4095·dilation⌉ − 1 (``input_dilation``, by default the time dilation; its current is constant, so it is not
filtered), computed on the host (the float simulator also computes that current once per image). With
``input_layer="pixels"`` one IF neuron per input value is driven by ``round(x·S_in)``; a constant bias with
reset to zero only gives rates 1/n. The readout is a dense layer without neuron (netx's non-spiking
integrator): ``v/64 = Σ_t W·s_t + bias``; its S is bounded so the 24-bit ``u`` never wraps within
``max_timesteps`` (|Σ_t W·s_t| + |bias| < 2^17): without calibration data from the absolute row sums (every
rate ≤ 1), with it from 2.5x the largest T·|W·y| on the calibration images (the overflow check then runs
those images through the fixed-point model and shrinks the scale if the sum would still wrap). The host adds
the exact float bias T times.
"""

from __future__ import annotations

import math

import numpy as np

from ann2snn.backends.loihi.netx import InputLayer, NetxNetwork, NeuronParams
from ann2snn.backends.loihi.quantized import (
    U_LIMIT, HostLayer, LayerQuantization, QuantizedNetwork, add_flatten_layer, broadcast_in, layer_kind,
    layer_report, netx_layer, nonzero_int_bias, per_row, rowwise,
)
from ann2snn.backends.loihi.scale_search import q_bias, q_weight, search_scale

# CUBA readout: the accumulated Σ_t W·s_t tracks T·(W·y); sized for this many times the calibration maximum
# as export_loihi passes it (which already carries its 1.25 margin: 2.5x the measured maximum in all)
_READOUT_MARGIN = 2.0


def quantize_cuba(stages, input_shape, input_max, input_unit, output_unit, options, profile, caps, act_max,
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
        s_in = int(min(profile.bias_max, U_LIMIT - 1) // x_max)
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
            theta = add_flatten_layer(stage, layers, reports, theta)
            continue
        if stage.kind == "pool":  # weight 2 per tap and threshold 2·k: exact; spike values θ pass through
            # weight 2·j per tap and threshold 2·j·k: exact (j = 8: the threshold's resolution in v units)
            k = int(np.prod(stage.weight.shape[2:]))
            j = 8
            w_int = np.full(stage.weight.shape, 2 * j, dtype=np.int64)
            vth = max(int(math.ceil(2 * j * k * charge)) - 1, 0)
            layers.append(netx_layer(stage, w_int, None, NeuronParams.cuba(vth, i_decay, 0)))
            reports.append(layer_report(index, "conv", stage, 2.0 * j * k, vth, stage.weight, w_int,
                                         np.full(w_int.shape[0], 2.0 * j * k), None, None, None,
                                         threshold_min=float(theta.min()), threshold_max=float(theta.max())))
            continue
        w = broadcast_in(stage.weight, theta, stage.groups)
        b = stage.bias
        cap = caps.get(stage.name, 1.0)
        if stage.kind == "readout":
            # Σ_t |W·s_t| <= T · max row Σ|W| because every rate is <= 1: the 24-bit u never wraps. That
            # bound assumes every input fires every step; with calibration data the sum is sized for
            # _READOUT_MARGIN x its largest T·|W·y| instead (a 2.6x finer scale on the zoo VGG: 39 weight
            # levels cost 0.3 pt and 1.4 % agreement at T=128), and the overflow check verifies it.
            row = float(np.abs(rowwise(w)).sum(axis=1).max())
            b_abs = 0.0 if b is None else float(np.abs(b).max())
            s_cap = cap * 0.98 * U_LIMIT / max(t_max * row + b_abs, 1e-12)
            if stage.name in act_max:
                z_max = float(np.max(act_max[stage.name][1]))
                s_cap = max(s_cap, cap * 0.98 * U_LIMIT / max(t_max * z_max * _READOUT_MARGIN + b_abs, 1e-12))
            s = search_scale(w, b, s_max=s_cap, bias_limit=profile.bias_max, tolerance=options.scale_tolerance)
            w_int = q_weight(w, s)
            b_int = None if b is None else q_bias(b, s, 1.0, profile.bias_max)
            if not np.any(w_int):
                raise ValueError(f"readout '{stage.name}' quantizes to all-zero weights (scale {s:.3g})")
            layers.append(netx_layer(stage, w_int, nonzero_int_bias(b_int), None))
            reports.append(layer_report(index, "dense", stage, s, None, w, w_int, np.full(w.shape[0], s), b, b_int,
                                         s, notes=(f"readout: v/64 = sum_t W s_t + bias; sized for T <= {t_max}"
                                               + (" (calibrated)" if stage.name in act_max else ""),)))
            readout_scale, readout_bias = s, b
            continue
        # per output channel c: S_c; shared threshold V = vThMant + 1; the channel fires at Σ w·s >= V/S_c
        rows = rowwise(w)
        dil = float(options.time_dilation)
        v_limit = min(profile.vth_max, U_LIMIT - 1) + 1
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
        w_int = q_weight(w, per_row(s_rows, w))
        if not np.any(w_int):
            raise ValueError(f"layer '{stage.name}' quantizes to all-zero weights (scale {v1:.3g})")
        b_int = None if b is None else q_bias(b, s_rows, charge, profile.bias_max)
        theta = theta_next
        layers.append(netx_layer(stage, w_int, nonzero_int_bias(b_int), NeuronParams.cuba(vth, i_decay, 0)))
        reports.append(layer_report(index, layer_kind(stage), stage, float(vth + 1), vth, w, w_int, s_rows, b, b_int,
                                     s_rows * charge, threshold_min=float(theta_next.min()),
                                     threshold_max=float(theta_next.max())))
    net = NetxNetwork(tuple(layers))
    return QuantizedNetwork(net, "cuba", tuple(reports), s_in, float(readout_scale), readout_bias,
                            np.asarray(output_unit, np.float64), options, tuple(warnings), host)
