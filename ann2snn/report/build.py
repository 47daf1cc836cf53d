"""Build, validate and write the conversion report (report.json, report.md, plots/)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ann2snn.fileio import json_default
from ann2snn.report import diagnose as dg
from ann2snn.report.energy import downstream_macs, energy_estimate, first_layer_macs
from ann2snn.report.schema import validate_report

log = logging.getLogger(__name__)

FORMAT = "ann2snn-report"
DEFAULT_DIAGNOSIS_T = 32


@dataclass
class Report:
    """A validated report document plus the per-neuron samples behind the scatter plot."""

    doc: dict
    scatter: dict | None = None
    suggested_scales: dict | None = None  # every threshold, with the diagnosis's best fix applied

    def to_dict(self) -> dict:
        return self.doc

    def markdown(self) -> str:
        from ann2snn.report.markdown import render

        return render(self.doc)

    def write(self, out_dir, *, plots: bool = True) -> dict[str, Path]:
        """Write report.json, report.md and (when matplotlib is installed) plots/*.png into ``out_dir``."""
        from ann2snn.report import plots as pl

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        files: dict[str, str] = {}
        if plots and pl.available():
            files = pl.draw_all(self.doc, self.scatter, out / "plots")
            files = {k: f"plots/{Path(v).name}" for k, v in files.items()}
            self.doc["plots"] = {"available": True, "files": files, "hint": None}
        elif plots:
            self.doc["plots"] = {"available": False, "files": {}, "hint": pl.HINT}
        else:
            self.doc["plots"] = {"available": pl.available(), "files": {}, "hint": "plots were not requested"}
        validate_report(self.doc)
        (out / "report.json").write_text(json.dumps(self.doc, indent=1, default=json_default))
        (out / "report.md").write_text(self.markdown())
        written["report.json"] = out / "report.json"
        written["report.md"] = out / "report.md"
        if self.suggested_scales is not None:
            from ann2snn.calibration import save_scales

            fix = self.doc["diagnosis"]["best_fix"]
            written[dg.SUGGESTED_SCALES] = save_scales(
                out / dg.SUGGESTED_SCALES, self.suggested_scales,
                {"model": self.doc.get("model"), "config": self.doc.get("config"),
                 "change": f"{fix['change']} the threshold of {fix['layer']} ({fix['label']}) to {fix['method']}"})
        for k, v in files.items():
            written[k] = out / v
        return written


def _clean(v):
    """JSON-safe copy: numpy scalars to Python, NaN/Inf to None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def choose_diagnosis_t(timesteps, preferred: int | None = None) -> int:
    """``preferred`` if simulated, else 32 if simulated, else the simulated T closest to 32 (log scale)."""
    ts = sorted(int(t) for t in timesteps)
    for want in (preferred, DEFAULT_DIAGNOSIS_T):
        if want is not None and int(want) in ts:
            return int(want)
    return min(ts, key=lambda t: (abs(math.log2(t) - math.log2(preferred or DEFAULT_DIAGNOSIS_T)), t))


def build_report(evaluation, snn, *, calibration: np.ndarray | None = None, probe_data: np.ndarray | None = None,
                 fixed_point_accuracy: dict | None = None, diagnosis_t: int | None = None,
                 what_if_samples: int = 200, what_if_layers: int = 3, scatter_samples: int = 16, seed: int = 0,
                 progress: bool = False) -> Report:
    """The full report of an ``EvaluationReport`` on the network ``snn`` it evaluated.

    calibration: calibration images; a seeded subset of ``what_if_samples`` of them is simulated to
        measure one-layer threshold fixes, all of them give the candidate thresholds. Without it,
        ``probe_data`` (e.g. evaluation *images*; labels are never used) serves both purposes.
    fixed_point_accuracy: optional {T: accuracy} of the quantized (Loihi) simulation, for the table and
        the accuracy plot (the hook for a fixed-point target).
    diagnosis_t: the T the diagnosis looks at (default 32 if simulated, else the closest simulated T).
    what_if_samples=0 skips the what-if experiments; scatter_samples=0 skips the per-neuron probe.
    """
    from ann2snn.evaluation import T_STAR_TOLERANCE

    base = _clean(evaluation.to_dict())
    ts = [int(t) for t in base["timesteps"]]
    t_d = choose_diagnosis_t(ts, diagnosis_t)
    graph = snn.graph
    order = [n for n in snn.spiking_layers if n in base["layers"]]
    kinds = dg.layer_kinds(graph)
    ups = dg.upstream_layers(graph)
    down = downstream_macs(graph)
    layers = {}
    for i, name in enumerate(order, 1):
        lay = dict(base["layers"][name])
        lam = np.asarray(snn.scales.get(name, [lay.get("threshold_mean", 1.0)]), np.float64).reshape(-1)
        lay.update(index=i, label=f"L{i}", kind=kinds.get(name, "?"), threshold_min=float(lam.min()),
                   threshold_max=float(lam.max()), downstream_macs=int(down.get(name, 0)))
        lay["sops_vs_macs"] = {str(t): (lay["sops_per_sample"][str(t)] / lay["downstream_macs"]
                                        if lay["downstream_macs"] else None) for t in ts}
        layers[name] = lay
    fixed = None
    if fixed_point_accuracy:
        fixed = {str(int(k)): float(v) for k, v in fixed_point_accuracy.items()}
    table = [{"T": t, "ann": base["ann_accuracy"], "snn": base["snn_accuracy"][str(t)],
              "delta": base["snn_accuracy"][str(t)] - base["ann_accuracy"], "agreement": base["agreement"][str(t)],
              "fixed_point": None if fixed is None else fixed.get(str(t))} for t in ts]
    ann_macs = int(base.get("conversion", {}).get("ann_macs_total") or sum(snn.ann.macs().values()))
    energy = energy_estimate(layers, ts, first_layer_macs(snn), ann_macs)
    doc = {"format": FORMAT, "version": 1, **base, "layers": layers, "layer_order": order,
           "t_star_tolerance": float(T_STAR_TOLERANCE), "fixed_point_accuracy": fixed, "accuracy_table": table,
           "energy": energy, "plots": {"available": False, "files": {}, "hint": None}}
    doc["conversion"] = _clean(doc.get("conversion", {}))

    ranked = dg.findings(layers, order, ups, t_d)
    pool = calibration if calibration is not None else probe_data
    experiments, note, base_score, n_wi, tried = [], "what-if experiments were skipped", None, 0, []
    if pool is not None and len(pool) and what_if_samples > 0 and ranked:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.permutation(len(pool))[:what_if_samples])
        xs = np.asarray(pool[idx], np.float32)
        n_wi = len(xs)
        experiments, note, base_score, tried = dg.what_if(snn, ranked, xs, t_d, top=what_if_layers,
                                                          ladder_x=np.asarray(pool, np.float32),
                                                          progress=progress)
        if calibration is None:
            note = note.replace("calibration images", "evaluation images (labels unused)")
    fix = dg.best_fix(experiments)
    dg.annotate(ranked, experiments, fix)
    doc["diagnosis"] = {
        "timesteps": t_d, "accuracy_loss": float(base["ann_accuracy"] - base["snn_accuracy"][str(t_d)]),
        "findings": ranked, "what_if": experiments, "what_if_note": note, "best_fix": fix,
        "summary": dg.summary(doc, ranked, experiments, fix, base_score, t_d, n_wi),
    }
    lossy = [t for t in ts if t < t_d and base["snn_accuracy"][str(t)] < base["ann_accuracy"] - T_STAR_TOLERANCE]
    if base["snn_accuracy"][str(t_d)] >= base["ann_accuracy"] - T_STAR_TOLERANCE and lossy and order:
        t_low = max(lossy)  # lossless at the diagnosed T: say what goes wrong just below it
        low = dg.findings(layers, order, ups, t_low)[0]
        loss = 100 * (base["ann_accuracy"] - base["snn_accuracy"][str(t_low)])
        doc["diagnosis"]["summary"].insert(2, f"Below that, at T={t_low}, the SNN loses {loss:.2f} points; there the "
                                              f"most error is added by {low['sentence'][len('layer '):]}")
    if calibration is None and fix is not None:
        doc["diagnosis"]["summary"] = [s.replace("calibration images", "evaluation images (labels unused)")
                                       for s in doc["diagnosis"]["summary"]]
    scatter = None
    if pool is not None and len(pool) and scatter_samples > 0 and order:
        from ann2snn.report.probe import layer_samples

        worst = next((f["layer"] for f in ranked if f["problem"] != "ok"), ranked[0]["layer"] if ranked else order[0])
        xs = np.asarray(pool[:scatter_samples], np.float32)
        try:
            scatter = layer_samples(snn, worst, xs, t_d, seed=seed)
            scatter["label"], scatter["kind"] = layers[worst]["label"], layers[worst]["kind"]
            scatter["pearson_r"] = layers[worst]["pearson_r"][str(t_d)]
        except Exception as e:  # a probe failure must not lose the report
            log.warning("per-neuron probe of %s failed: %s", worst, e)
    doc = _clean(doc)
    validate_report(doc)
    suggested = next((tried[i] for i, e in enumerate(experiments) if e is fix), None)
    return Report(doc, scatter, suggested)


def report_from_evaluation(evaluation, snn, out_dir=None, **kw) -> Report:
    """``build_report`` and, if ``out_dir`` is given, ``Report.write(out_dir)``."""
    rep = build_report(evaluation, snn, **kw)
    if out_dir is not None:
        rep.write(out_dir)
    return rep
