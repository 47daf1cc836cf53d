"""report.md: the human-readable view of report.json."""

from __future__ import annotations

from ann2snn.report.plots import HINT


def _p(x, digits=2):
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _f(x, fmt=".3f"):
    return "–" if x is None else format(x, fmt)


def _si(x):
    if x is None:
        return "–"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or ("l" + "r" * (len(header) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows]


def render(doc: dict) -> str:
    ts = doc["timesteps"]
    dgn = doc["diagnosis"]
    td = dgn["timesteps"]
    layers = [doc["layers"][n] | {"name": n} for n in doc["layer_order"]]
    out = [f"# ann2snn conversion report: `{doc['model']}`", ""]
    out += [f"{doc['samples']} evaluation samples; ANN accuracy **{_p(doc['ann_accuracy'])}%** "
            f"({doc['ann_source']}); T* = **{doc['t_star'] if doc['t_star'] is not None else 'not reached'}** "
            f"(smallest T within {100 * doc['t_star_tolerance']:.1f} point of the ANN).", ""]

    out += ["## Diagnosis", ""]
    out += [f"- {s}" for s in dgn["summary"]]
    out += [""]

    out += ["## Accuracy vs T", ""]
    fixed = doc["fixed_point_accuracy"] is not None
    header = ["T", "ANN %", "SNN (float) %", "Δ points", "agreement with ANN %"]
    header += ["fixed-point SNN %"] if fixed else []
    rows = []
    for r in doc["accuracy_table"]:
        mark = " (T*)" if r["T"] == doc["t_star"] else ""
        row = [f"{r['T']}{mark}", _p(r["ann"]), _p(r["snn"]), f"{100 * r['delta']:+.2f}", _p(r["agreement"])]
        if fixed:
            row.append(_p(r["fixed_point"]))
        rows.append(row)
    out += _table(header, rows) + [""]
    if not fixed:
        out += ["Fixed-point (Loihi) accuracy: not simulated for this report (no Loihi target chosen).", ""]

    out += [f"## Per-layer statistics at T={td}", ""]
    key = str(td)
    header = ["layer", "kind", "neurons", "threshold λ (mean, min–max)", "firing rate", "saturated %", "silent %",
              "Pearson r", "rel. error", "SOPs / sample", "MACs fed", "SOPs / MACs"]
    rows = []
    for lay in layers:
        rows.append([f"{lay['label']} `{lay['name']}`", lay["kind"], str(lay["neurons"]),
                     f"{lay['threshold_mean']:.3g} ({lay['threshold_min']:.3g}–{lay['threshold_max']:.3g})",
                     _f(lay["firing_rate"][key]), _p(lay["saturated_fraction"][key], 1),
                     _p(lay["silent_fraction"][key], 1), _f(lay["pearson_r"][key], ".4f"),
                     _f(lay["relative_error"][key]), _si(lay["sops_per_sample"][key]), _si(lay["downstream_macs"]),
                     _f(lay["sops_vs_macs"][key], ".2f")])
    out += _table(header, rows, "llrlrrrrrrrr") + [""]
    out += ["Firing rate: spikes per neuron per step. Saturated: fires at every step (its activation is clipped "
            "at λ). Silent: no spike up to T. Pearson r and relative error compare the SNN rate × λ with the ANN "
            "activation, neuron by neuron. SOPs: synaptic operations its spikes trigger; MACs fed: the ANN MACs "
            "of the ops it feeds.", ""]

    for title, stat, fmt in (("Pearson r (SNN rate × λ vs ANN activation) per T", "pearson_r", ".4f"),
                             ("Relative error per T", "relative_error", ".3f"),
                             ("Firing rate per T", "firing_rate", ".3f"),
                             ("Saturated % per T", "saturated_fraction", None)):
        out += [f"### {title}", ""]
        rows = []
        for lay in layers:
            vals = [(_p(lay[stat][str(t)], 1) if fmt is None else _f(lay[stat][str(t)], fmt)) for t in ts]
            rows.append([f"{lay['label']} {lay['kind']}"] + vals)
        out += _table(["layer"] + [f"T={t}" for t in ts], rows) + [""]

    out += ["## Findings, ranked by the error each layer adds", ""]
    rows = [[f["label"], f["kind"], f["problem"], _f(f["added_error"], "+.3f"), _f(f["relative_error"]),
             _p(f["saturated_fraction"], 1), f"{f['spikes_per_neuron']:.1f}", f["suggestion"]] for f in dgn["findings"]]
    out += _table(["layer", "kind", "problem", "added error", "rel. error", "saturated %", "spikes / neuron",
                   "suggestion"], rows, "lllrrrrl") + [""]
    measured = [f for f in dgn["findings"] if f.get("measured")]
    out += [f"- {f['label']}: {f['measured']}" for f in measured] + ([""] if measured else [])
    if dgn["what_if"]:
        out += ["### What-if: one layer's threshold changed (measured)", "", dgn["what_if_note"] + ".", ""]
        rows = []
        for e in dgn["what_if"]:
            best = " **best**" if dgn["best_fix"] is not None and e == dgn["best_fix"] else ""
            rows.append([e["label"] + best, e["change"], f"{e['threshold_before']:.3g} → {e['threshold_after']:.3g}",
                         e["method"], _p(e["score"]["agreement"], 1), f"{100 * e['gain_agreement']:+.1f}",
                         _f(e["score"]["relative_error"]), _f(e["gain_relative_error"], "+.3f")])
        out += _table(["layer", "change", "λ mean", "from", "agreement %", "gain (points)", "output error",
                       "error reduction"], rows, "llllrrrr") + [""]
    else:
        out += [f"What-if: {dgn['what_if_note']}.", ""]

    en = doc["energy"]
    out += ["## Estimated energy", "", en["note"], ""]
    rows = [[str(t), _si(en["sops_per_sample"][str(t)]), _si(en["first_layer_macs"]), _si(en["ann_macs"]),
             _f(en["fp32"]["ratio"][str(t)], ".3f"), _f(en["int8"]["ratio"][str(t)], ".3f")] for t in ts]
    out += _table(["T", "SOPs / image", "first-layer MACs", "ANN MACs", "E_SNN/E_ANN fp32", "E_SNN/E_ANN int8"],
                  rows) + [""]

    out += ["## Plots", ""]
    pl = doc["plots"]
    if pl["available"] and pl["files"]:
        titles = {"accuracy": "Accuracy vs T", "layers": "Per-layer correlation and firing rate vs T",
                  "scatter": "ANN activation vs SNN rate, layer adding the most error"}
        for k, path in pl["files"].items():
            out += [f"### {titles.get(k, k)}", "", f"![{titles.get(k, k)}]({path})", ""]
    else:
        out += [f"No plots: {pl['hint'] or HINT}.", ""]

    out += ["## Conversion settings", "", "```json"]
    import json

    out += [json.dumps(doc["config"], indent=1), "```", ""]
    conv = {k: v for k, v in doc["conversion"].items() if k not in ("auto_table",)}
    if conv:
        out += ["Conversion info: " + ", ".join(f"{k}={v}" for k, v in conv.items()), ""]
    return "\n".join(out)
