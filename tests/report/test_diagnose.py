"""Diagnosis logic on synthetic statistics (no simulation)."""

from __future__ import annotations

from ann2snn.report import diagnose as dg


def _layer(label, err, sat=0.0, rate=0.2, kind="conv"):
    per_t = lambda v: {"32": v}  # noqa: E731
    return {"label": label, "kind": kind, "relative_error": per_t(err), "pearson_r": per_t(0.99),
            "saturated_fraction": per_t(sat), "silent_fraction": per_t(0.3), "firing_rate": per_t(rate)}


def test_findings_rank_by_added_error_and_classify():
    layers = {"a": _layer("L1", 0.10, sat=0.2), "b": _layer("L2", 0.30, rate=0.05), "c": _layer("L3", 0.31),
              "d": _layer("L4", 0.02)}
    ups = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    rows = dg.findings(layers, ["a", "b", "c", "d"], ups, 32)
    assert [r["label"] for r in rows] == ["L2", "L1", "L4", "L3"]           # added: .20, .10, .02, .01
    kinds = {r["label"]: r["problem"] for r in rows}
    assert kinds == {"L1": "clipping", "L2": "quantization", "L3": "inherited", "L4": "ok"}
    assert "20% of neurons saturated at T=32" in rows[1]["sentence"]
    assert "1.6 spikes per neuron" in rows[0]["sentence"]


def _exp(layer, change, gain_agree, gain_err, err_after=0.1):
    return {"layer": layer, "label": layer, "change": change, "threshold_before": 1.0, "threshold_after": 1.5,
            "method": "percentile:99.99", "score": {"agreement": 0.9, "relative_error": err_after},
            "gain_agreement": gain_agree, "gain_relative_error": gain_err}


def test_best_fix_needs_less_error_without_losing_agreement_and_overrides_the_heuristic():
    exps = [_exp("a", "raise", 0.02, -0.01),   # more agreement but more error: not a gain
            _exp("a", "lower", 0.0, 0.03),     # the largest error reduction
            _exp("b", "raise", -0.005, 0.05),  # loses agreement: not a gain
            _exp("b", "lower", 0.01, 0.0005)]  # below the 1% noise floor
    fix = dg.best_fix(exps)
    assert fix is exps[1]
    layers = {"a": _layer("a", 0.10, sat=0.2), "b": _layer("b", 0.2)}
    rows = dg.findings(layers, ["a", "b"], {"a": [], "b": ["a"]}, 32)
    dg.annotate(rows, exps, fix)
    a = next(r for r in rows if r["layer"] == "a")
    assert a["sentence"].endswith("measured: lowering its threshold helps (the largest gain of all layers tested).")
    assert "raise its threshold" not in a["sentence"] and "raise its threshold" in a["suggestion"]
    b = next(r for r in rows if r["layer"] == "b")
    assert "no threshold change helps" in b["measured"]
    assert dg.best_fix([_exp("a", "raise", -0.01, 0.05)]) is None
