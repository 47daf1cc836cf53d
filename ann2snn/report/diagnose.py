"""Plain-language diagnosis: which layers lose the most, why, and which fix gives the largest gain.

1. Findings (from the simulator's per-layer statistics at one T). The relative error of a layer
   includes what it inherits; the error it *adds* is its relative error minus the largest relative error
   of the IF layers that feed it. Layers are ranked by added error and classified:
   - clipping: >= 2% of neurons saturated (fire every step): activations above the threshold are lost;
   - quantization: fewer than 4 spikes per neuron on average: the rate code's step lambda/T dominates;
   - unevenness: neither, but the layer adds error (spike timing, the residual membrane);
   - inherited: the layer adds little error of its own; ok: small error.
2. What-if (measured): for the top layers, the threshold of that one layer is moved one notch up and
   one notch down a ladder of calibration statistics (percentile 99 / 99.9 / 99.99 / max, per channel
   or per layer as configured), the network is rebuilt and simulated on a few calibration images
   (never evaluation labels), and agreement with the ANN and output error are compared with the
   unchanged network. A change counts as a gain when it lowers the output error by >= 1% without
   lowering agreement; the largest gain names the layer to fix first, and a measurement overrides the
   heuristic suggestion of step 1 in that layer's sentence.
"""

from __future__ import annotations

import logging

import numpy as np

from ann2snn.ir import nodes as ir
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d
from ann2snn.convert.converter import build_network, plan_conversion
from ann2snn.convert.scoring import score_network

log = logging.getLogger(__name__)

SATURATION_LIMIT = 0.02
FEW_SPIKES = 4.0
OK_ERROR = 0.05
LADDER = ("percentile:99", "percentile:99.9", "percentile:99.99", "max")


# ---------------------------------------------------------------------------------------- topology


def layer_kinds(graph) -> dict[str, str]:
    """Short description of what drives each IF layer: conv, dense, conv+maxpool, residual add, ..."""
    def kind_of(tensor: str, depth: int = 0) -> str:
        n = graph.node_by_name.get(tensor)
        if n is None:
            return "input"
        if isinstance(n, IF):
            return "spikes"
        if isinstance(n, ir.Conv2d):
            return "depthwise conv" if n.groups > 1 and n.groups == n.weight.shape[0] else "conv"
        if isinstance(n, ir.Dense):
            return "dense"
        if isinstance(n, ir.Add):
            return "residual add"
        if isinstance(n, ir.Concat):
            return "concat"
        if isinstance(n, (CumulativeMaxPool2d, CumulativeGlobalMaxPool, ir.MaxPool2d, ir.GlobalMaxPool)):
            inner = kind_of(n.inputs[0], depth + 1) if depth < 4 else "?"
            return f"{inner}+maxpool" if inner not in ("spikes", "input") else "maxpool"
        if isinstance(n, (ir.AvgPool2d, ir.GlobalAvgPool)):
            inner = kind_of(n.inputs[0], depth + 1) if depth < 4 else "?"
            return f"{inner}+avgpool" if inner not in ("spikes", "input") else "avgpool"
        if isinstance(n, ir.ScaleShift):
            return kind_of(n.inputs[0], depth + 1) if depth < 4 else "scale"
        if n.is_layout:
            return kind_of(n.inputs[0], depth + 1) if depth < 4 else type(n).__name__.lower()
        return type(n).__name__.lower()

    return {n.name: kind_of(n.inputs[0]) for n in graph.nodes if isinstance(n, IF)}


def upstream_layers(graph) -> dict[str, list[str]]:
    """For each IF layer, the nearest IF layers upstream (through any non-IF ops)."""
    out = {}
    for n in graph.nodes:
        if not isinstance(n, IF):
            continue
        found, frontier, seen = [], list(n.inputs), set()
        while frontier:
            t = frontier.pop()
            if t in seen:
                continue
            seen.add(t)
            m = graph.node_by_name.get(t)
            if m is None:
                continue
            if isinstance(m, IF):
                found.append(t)
            else:
                frontier.extend(m.inputs)
        out[n.name] = sorted(found)
    return out


# ---------------------------------------------------------------------------------------- findings


SUGGESTED_SCALES = "suggested_scales.json"  # written beside report.json when a best fix was measured


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 else f"{100 * x:.1f}%"


def findings(layers: dict[str, dict], order: list[str], upstream: dict[str, list[str]], t: int) -> list[dict]:
    """Per-layer problems at T=t, ranked by the error each layer adds (largest first)."""
    key = str(t)
    rows = []
    for name in order:
        lay = layers[name]
        err = lay["relative_error"][key]
        err_in = max((layers[u]["relative_error"][key] or 0.0 for u in upstream.get(name, []) if u in layers),
                     default=0.0)
        added = None if err is None else float(err - err_in)
        sat, sil = float(lay["saturated_fraction"][key]), float(lay["silent_fraction"][key])
        rate = float(lay["firing_rate"][key])
        spikes = rate * t
        label, kind = lay["label"], lay["kind"]
        ups = ", ".join(layers[u]["label"] for u in upstream.get(name, []) if u in layers) or "the input"
        if sat >= SATURATION_LIMIT:
            problem = "clipping"
            suggestion = "raise its threshold percentile (e.g. percentile:99.99 or max)"
            why = f"{_pct(sat)} of neurons saturated at T={t}"
        elif err is None or err < OK_ERROR:
            problem = "ok"
            suggestion = "nothing to do"
            why = f"small error at T={t}"
        elif added is not None and added < max(0.02, 0.25 * err):
            problem = "inherited"
            suggestion = f"its error comes from upstream ({ups}): fix those first"
            why = f"adds little error of its own at T={t}"
        elif spikes < FEW_SPIKES:
            problem = "quantization"
            suggestion = ("lower its threshold percentile (e.g. percentile:99) or use a larger T; "
                          "v_init=0.5 halves the rounding error")
            why = f"only {spikes:.1f} spikes per neuron on average at T={t} ({_pct(sil)} silent)"
        else:
            problem = "unevenness"
            suggestion = "turn on bias correction, or use signed neurons (--signed)"
            why = f"spike-timing error at T={t} ({spikes:.1f} spikes per neuron, {_pct(sat)} saturated)"
        err_txt = "n/a" if err is None else f"{err:.3f}"
        added_txt = "" if added is None else f", {added:+.3f} over {ups}"
        sentence = (f"layer {label} {kind} ({name}): {why} (relative error {err_txt}{added_txt}); {suggestion}.")
        rows.append({"layer": name, "label": label, "kind": kind, "problem": problem, "added_error": added,
                     "relative_error": err, "pearson_r": lay["pearson_r"][key], "saturated_fraction": sat,
                     "silent_fraction": sil, "firing_rate": rate, "spikes_per_neuron": float(spikes),
                     "suggestion": suggestion, "sentence": sentence, "measured": None})
    rows.sort(key=lambda r: -(r["added_error"] if r["added_error"] is not None else -1.0))
    return rows


# ---------------------------------------------------------------------------------------- what-if


def _rebuild_context(snn):
    # a built network's config holds the v_init it was built with (``auto`` is resolved before building)
    return plan_conversion(snn.ann, snn.config), float(snn.config.v_init)


def _build(plan, snn, scales, v0):
    return build_network(plan, scales, snn.config, v0, snn.input_unit, record=snn.record)


def _ladder(snn, layers: list[str], x: np.ndarray, t: int) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {method: thresholds}} from ANN activation statistics of ``layers`` on ``x``."""
    from ann2snn.calibration import choose_thresholds, collect_activation_stats

    stats = collect_activation_stats(snn.ann, list(layers), x, batch_size=snn.config.calibration_batch_size)
    gran = snn.config.granularity
    out = {name: {} for name in layers}
    for m in LADDER:
        th = choose_thresholds(stats, m, granularity=gran, timesteps=t)
        for name in layers:
            out[name][m] = th[name]
    return out


def _variants(current: np.ndarray, ladder: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """One notch up and one notch down from the current threshold: {"raise"|"lower": (method, values)}."""
    cur = float(np.mean(current))
    options = sorted(((float(np.mean(v)), m, v) for m, v in ladder.items()), key=lambda o: o[0])
    up = [o for o in options if o[0] > 1.1 * cur]
    down = [o for o in options if o[0] < cur / 1.1]
    raise_ = (up[0][1], up[0][2]) if up else ("x1.5", np.asarray(current) * 1.5)
    lower = (down[-1][1], down[-1][2]) if down else ("x0.67", np.asarray(current) / 1.5)
    shape = np.asarray(current).shape
    fit = (lambda v: np.broadcast_to(np.asarray(v, np.float32).reshape(-1), shape).astype(np.float32)
           if np.asarray(v).size in (1, int(np.prod(shape))) else np.full(shape, float(np.mean(v)), np.float32))
    return {"raise": (raise_[0], fit(raise_[1])), "lower": (lower[0], fit(lower[1]))}


def what_if(snn, ranked: list[dict], x: np.ndarray, t: int, *, top: int = 3, ladder_x: np.ndarray | None = None,
            progress: bool = False) -> tuple[list[dict], str, dict | None, list[dict]]:
    """Measure one-layer threshold changes for the ``top`` ranked layers on ``x`` at T=t.

    Returns (experiments, note, baseline score, thresholds): ``thresholds[i]`` is the whole scales mapping
    experiment i was built with (what a user passes back to ``convert`` to apply that fix).
    ``x``: a few calibration images (no labels used);
    ``ladder_x``: the calibration images whose statistics give the candidate thresholds (default ``x``).
    """
    from tqdm.auto import tqdm

    from ann2snn.ir.reference import run_graph

    chosen = [f for f in ranked if f["problem"] not in ("ok", "inherited")][:top]
    if not chosen:
        chosen = ranked[:min(top, 1)]
    if not chosen or len(x) == 0:
        return [], "no what-if experiments were run", None, []
    plan, v0 = _rebuild_context(snn)
    rebuilt = snn.record.bias_correction or snn.config.bias_correction is True
    base_net = _build(plan, snn, snn.scales, v0) if rebuilt else snn
    ann_out = run_graph(snn.ann, x)
    ladder = _ladder(snn, [f["layer"] for f in chosen], x if ladder_x is None else ladder_x, t)
    bar = tqdm(total=1 + 2 * len(chosen), disable=not progress, desc="what-if", leave=False)
    base = score_network(base_net, x, ann_out, t)
    bar.update(1)
    experiments, tried = [], []
    for f in chosen:
        name = f["layer"]
        current = np.asarray(snn.scales[name], np.float32)
        for change, (method, values) in _variants(current, ladder[name]).items():
            scales = dict(snn.scales)
            scales[name] = values
            s = score_network(_build(plan, snn, scales, v0), x, ann_out, t)
            bar.update(1)
            tried.append(scales)
            experiments.append({
                "layer": name, "label": f["label"], "change": change,
                "threshold_before": float(current.mean()), "threshold_after": float(np.mean(values)),
                "method": method, "score": s,
                "gain_agreement": s["agreement"] - base["agreement"],
                "gain_relative_error": base["relative_error"] - s["relative_error"],
            })
    bar.close()
    note = (f"measured on {len(x)} calibration images at T={t}: agreement of the SNN's prediction with the "
            f"ANN's and relative output error, one layer's threshold changed at a time "
            f"(baseline: agreement {100 * base['agreement']:.1f}%, error {base['relative_error']:.3f}")
    note += "; bias correction off in these rebuilt networks)" if rebuilt else ")"
    return experiments, note, base, tried


def best_fix(experiments: list[dict], min_error_reduction: float = 0.01) -> dict | None:
    """The experiment that reduces the output error the most without lowering agreement with the ANN.

    The relative output error is measured over every sample and class, so it is far less noisy on a few
    hundred images than agreement (one image = 0.5 point on 200); a fix counts only if it lowers the
    error by at least ``min_error_reduction`` of the baseline error and keeps agreement >= baseline.
    """
    best = None
    for e in experiments:
        if not dg_gain(e, min_error_reduction):
            continue
        if best is None or (e["gain_relative_error"], e["gain_agreement"]) > (best["gain_relative_error"],
                                                                               best["gain_agreement"]):
            best = e
    return best


def annotate(ranked: list[dict], experiments: list[dict], fix: dict | None) -> None:
    """Add what was measured to each tested finding; a measurement overrides the heuristic suggestion."""
    by_layer: dict[str, list[dict]] = {}
    for e in experiments:
        by_layer.setdefault(e["layer"], []).append(e)
    for f in ranked:
        exps = by_layer.get(f["layer"])
        if not exps:
            f["measured"] = None
            continue
        parts = [f"{'raising' if e['change'] == 'raise' else 'lowering'} its threshold to {e['threshold_after']:.3g} "
                 f"({e['method']}): agreement {100 * e['gain_agreement']:+.1f} points, output error "
                 f"{-e['gain_relative_error']:+.3f}" for e in exps]
        good = [e for e in exps if dg_gain(e)]
        if good:
            b = max(good, key=lambda e: (e["gain_relative_error"], e["gain_agreement"]))
            verdict = f"measured: {'raising' if b['change'] == 'raise' else 'lowering'} its threshold helps"
            if fix is not None and fix is b:
                verdict += " (the largest gain of all layers tested)"
        else:
            verdict = "measured: no threshold change helps this layer"
        f["measured"] = f"{verdict} [{'; '.join(parts)}]"
        if not good and f["problem"] not in ("clipping", "quantization"):
            verdict += f"; {f['suggestion']}"  # the heuristic is not about thresholds: keep it
        tail = f"; {f['suggestion']}."
        head = f["sentence"][:-len(tail)] if f["sentence"].endswith(tail) else f["sentence"][:-1]
        f["sentence"] = f"{head}; {verdict}."


def dg_gain(e: dict, min_error_reduction: float = 0.01) -> bool:
    """Does experiment ``e`` count as a gain (see ``best_fix``)?"""
    base_err = e["score"]["relative_error"] + e["gain_relative_error"]
    return e["gain_agreement"] >= 0 and e["gain_relative_error"] > min_error_reduction * base_err


def summary(doc: dict, ranked: list[dict], experiments: list[dict], fix: dict | None, base: dict | None,
            t: int, what_if_samples: int) -> list[str]:
    """Plain-language sentences for the top of report.md."""
    key = str(t)
    lines = []
    ann, snn_acc = doc["ann_accuracy"], doc["snn_accuracy"].get(key)
    ts = doc["t_star"]
    t_star_txt = (f"T* = {ts} (the smallest T within {100 * doc['t_star_tolerance']:.1f} point of the ANN)"
                  if ts is not None else f"no T up to {max(doc['timesteps'])} comes within "
                                         f"{100 * doc['t_star_tolerance']:.1f} point of the ANN")
    if snn_acc is not None:
        d = 100 * (snn_acc - ann)
        verdict = "matches it" if abs(d) < 0.005 else ("loses" if d < 0 else "gains") + f" {abs(d):.2f} points"
        lines.append(f"At T={t} the SNN reaches {100 * snn_acc:.2f}% against {100 * ann:.2f}% for the ANN: it "
                     f"{verdict}; {t_star_txt}.")
    else:
        lines.append(t_star_txt[0].upper() + t_star_txt[1:] + ".")
    worst = [f for f in ranked if f["problem"] not in ("ok", "inherited")][:3]
    if worst:
        lines.append(f"Layers that lose the most at T={t} (ranked by the error each adds): "
                     + " ".join(f["sentence"] for f in worst))
    elif ranked:
        top = ranked[0]
        worst_err = max((f["relative_error"] or 0.0) for f in ranked)
        lines.append(f"No layer has a problem of its own at T={t}: the largest relative error is {worst_err:.3f}, "
                     f"and the layer adding the most is {top['label']} {top['kind']} ({top['layer']}, "
                     f"{top['added_error']:+.3f}, {_pct(top['saturated_fraction'])} saturated, "
                     f"{top['spikes_per_neuron']:.1f} spikes per neuron).")
    if fix is not None and base is not None:
        verb = "raising" if fix["change"] == "raise" else "lowering"
        lines.append(
            f"Largest measured gain: {verb} the threshold of layer {fix['label']} ({fix['layer']}) from "
            f"{fix['threshold_before']:.3g} to {fix['threshold_after']:.3g} ({fix['method']}) moves agreement "
            f"with the ANN from {100 * base['agreement']:.1f}% to {100 * fix['score']['agreement']:.1f}% "
            f"({100 * fix['gain_agreement']:+.1f} points) and lowers the output error from "
            f"{base['relative_error']:.3f} to {fix['score']['relative_error']:.3f} "
            f"({100 * fix['gain_relative_error'] / max(base['relative_error'], 1e-12):.0f}% less), "
            f"on {what_if_samples} calibration images at T={t}. "
            f"Fix this layer first: the report's {SUGGESTED_SCALES} holds every threshold with this one changed "
            f"(`--scales {SUGGESTED_SCALES}` on `ann2snn convert` or `evaluate`), or run `ann2snn tune`.")
    elif experiments:
        lines.append(f"No single-layer threshold change (one notch up or down, {len(experiments)} measured) lowered "
                     f"the output error without losing agreement with the ANN on {what_if_samples} calibration "
                     f"images at T={t}: the thresholds are already near their best at this T; for more accuracy "
                     f"use a larger T, or try `ann2snn tune` (bias correction, v_init, max-pool mode).")
    en = doc["energy"]
    r32, r8 = en["fp32"]["ratio"].get(key), en["int8"]["ratio"].get(key)
    if r32 is not None:
        lines.append(
            f"Estimated energy at T={t}: E_SNN/E_ANN = {r32:.2f} with fp32 figures (E_AC 0.9 pJ, E_MAC 4.6 pJ) and "
            f"{r8:.2f} with 8-bit integer figures (0.03 / 0.23 pJ): {en['sops_per_sample'][key]:.3g} SOPs + "
            f"{en['first_layer_macs']:.3g} first-layer MACs vs {en['ann_macs']:.3g} ANN MACs per image"
            + (" (the SNN costs more than the ANN at this T)." if r32 > 1 else "."))
    return lines
