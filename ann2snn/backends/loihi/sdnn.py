"""SDNN (graded sigma-delta, exact ReLU) layers from lowered stages; works in ANN units (λ = 1).

Lava's Delta input gets ``a_in = round(x·S_in)`` every step and sends ``a_in << spike_exp``; a SigmaDelta layer
accumulates ``Σ += W·msg``, computes ``A = max(Σ + bias << (spike_exp+6), 0)`` and sends the change of A
(above vThMant << (spike_exp+6)) shifted right by 6; a Sigma output sends its running sum. With m_i the
message units per unit of input channel i and K_o the accumulator units per unit of output channel o:
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

import math

import numpy as np

from ann2snn.backends.loihi.lowering import Stage
from ann2snn.backends.loihi.netx import InputLayer, NetxNetwork, NeuronParams
from ann2snn.backends.loihi.quantized import (
    MESSAGE_MAX, LayerQuantization, QuantizedNetwork, add_flatten_layer, broadcast_in, flatten_vector,
    layer_kind, layer_report, netx_layer, nonzero_int_bias, per_row, rowwise,
)
from ann2snn.backends.loihi.scale_search import q_bias, q_weight, search_scale

_REGISTER_USE = 0.8  # use at most this fraction of a synapse register (24-bit conv, 32-bit dense/Sigma)


def _stats(stage: Stage, w_eff: np.ndarray, prev_max: np.ndarray, options, act_max) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (largest activation, largest |W·y|): calibrated, else bounded from the inputs."""
    n_out = w_eff.shape[0]
    guaranteed = np.abs(rowwise(broadcast_in(w_eff, prev_max, stage.groups))).sum(axis=1)
    y, syn = act_max.get(stage.name, (None, None))
    y = np.full(n_out, options.sdnn_activation_max) if y is None else np.broadcast_to(np.asarray(y, np.float64), (n_out,))
    syn = guaranteed if syn is None else np.minimum(np.broadcast_to(np.asarray(syn, np.float64), (n_out,)), guaranteed)
    return np.maximum(y, 1e-6), np.maximum(syn, 1e-6)


def quantize_sdnn(stages, input_shape, input_max, input_unit, output_unit, options, profile, act_max, caps):
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
    s_in_max = int(MESSAGE_MAX // ((1 << e) * x_max))  # Delta input: a_in = round(x·S_in) sends a_in << spike_exp
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
            m = add_flatten_layer(stage, layers, reports, m)
            continue
        out_cap = plan["out_cap"][stage.name]  # largest message unit the next layer can take
        y_max, syn_max = plan["stats"][stage.name]
        if stage.kind == "pool":  # constant kernel 2·j (S = 2·k·j): exact; the largest j the next layer allows
            k = int(np.prod(stage.weight.shape[2:]))
            s_lim = min(64.0 * out_cap, float(np.min(64.0 * MESSAGE_MAX / y_max)),
                        float(np.min(_REGISTER_USE * (1 << 23) / syn_max))) / float(np.max(m))
            j = max(1, min(127, int(math.floor(caps.get(stage.name, 1.0) * s_lim / (2 * k)))))
            w_int = np.full(stage.weight.shape, 2 * j, dtype=np.int64)
            m_out = m * (2.0 * k * j) / 64.0
            vth = int(math.floor(options.sdnn_threshold * float(m_out.min()) * 64.0 / unit))
            layers.append(netx_layer(stage, w_int, None, NeuronParams.sdnn(vth_mant=vth)))
            reports.append(layer_report(index, "conv", stage, 2.0 * k * j, vth, stage.weight, w_int,
                                         np.full(w_int.shape[0], 2.0 * k * j), None, None, None,
                                         threshold_min=float(vth * unit / 64.0 / m_out.max()),
                                         threshold_max=float(vth * unit / 64.0 / m_out.min()),
                                         message_unit_min=float(m_out.min())))
            m = m_out
            continue
        w, b = stage.weight, stage.bias
        r = broadcast_in(w, 1.0 / m, stage.groups)  # weights per message unit
        k_cap = _register_cap(stage, syn_max)
        if stage.kind != "readout":
            k_cap = np.minimum(k_cap, np.minimum(64.0 * MESSAGE_MAX / y_max, 64.0 * out_cap))
        k_cap = caps.get(stage.name, 1.0) * k_cap
        rows = rowwise(r)
        units = rowwise(broadcast_in(np.ones_like(w), m, stage.groups))  # message units of each weight's input
        k_rows = np.array([search_scale(rows[o], None if b is None or stage.kind == "readout" else b[o:o + 1],
                                        s_max=float(k_cap[o]), bias_unit=1.0 / unit, bias_limit=profile.bias_max,
                                        tolerance=options.scale_tolerance, weight_unit=units[o])
                           for o in range(rows.shape[0])])
        w_int = q_weight(r, per_row(k_rows, r))
        if not np.any(w_int):
            raise ValueError(f"layer '{stage.name}' quantizes to all-zero weights")
        # per-row weight scale in normalized terms (integer units per normalized weight unit)
        eff = k_rows / float(np.median(m))
        if stage.kind == "readout":
            layers.append(netx_layer(stage, w_int, None, NeuronParams.sdnn(sigma_output=True)))
            reports.append(layer_report(
                index, "dense", stage, float(np.median(eff)), None, r, w_int, k_rows, None, None, None,
                notes=("Sigma output: logits = sigma / readout_scale + bias (bias added on the host)",)))
            readout_scale, readout_bias = k_rows, b
            continue
        b_int = None if b is None else q_bias(b, k_rows, 1.0 / unit, profile.bias_max)
        if b is not None and np.any(np.abs(b * k_rows / unit) > profile.bias_max + 0.5):
            warnings.append(f"{stage.name}: biases clipped to 13 bits")
        m_out = k_rows / 64.0
        vth = int(math.floor(options.sdnn_threshold * float(m_out.min()) * 64.0 / unit))
        layers.append(netx_layer(stage, w_int, nonzero_int_bias(b_int), NeuronParams.sdnn(vth_mant=vth)))
        reports.append(layer_report(index, layer_kind(stage), stage, float(np.median(eff)), vth, r, w_int,
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
            prev = flatten_vector(prev, st)
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
            k_cap = np.minimum(k_cap, np.minimum(64.0 * MESSAGE_MAX / y, 64.0 * out_cap[st.name]))
        k_cap = caps.get(st.name, 1.0) * k_cap
        peak = np.abs(rowwise(st.weight)).max(axis=1)
        s_target = options.sdnn_weight_target / np.maximum(peak, 1e-300)
        # most rows (all but the ``sdnn_row_quantile`` with the smallest weights) should reach the target
        nxt = float(np.quantile(k_cap / s_target, options.sdnn_row_quantile))
    return {"stats": stats, "out_cap": out_cap, "m_in_cap": nxt}
