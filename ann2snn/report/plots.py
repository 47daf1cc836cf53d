"""Report plots (optional extra ``plots``: matplotlib). Object-oriented Agg figures: no pyplot, no global
backend change in the caller's session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

HINT = "matplotlib is not installed; get the plots with `pip install ann2snn[plots]`"
DPI = 120


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _log2_axis(ax, ts) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts)
    ax.set_xticklabels([str(t) for t in ts])
    ax.minorticks_off()
    ax.set_xlim(ts[0] / 1.25, ts[-1] * 1.25)
    ax.set_xlabel("timesteps T (log scale)")
    ax.grid(True, alpha=0.3)


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_accuracy(doc: dict, path: Path) -> Path:
    ts = doc["timesteps"]
    ann = 100 * doc["ann_accuracy"]
    snn = [100 * doc["snn_accuracy"][str(t)] for t in ts]
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    tol = 100 * doc["t_star_tolerance"]
    ax.axhspan(ann - tol, ann, color="tab:gray", alpha=0.12, lw=0, label=f"within {tol:.1f} pt of the ANN")
    ax.axhline(ann, color="black", ls="--", lw=1.5, label=f"ANN {ann:.2f}%")
    ax.plot(ts, snn, "o-", color="tab:blue", lw=2, label="SNN (float)")
    lows = list(snn)
    fixed = doc.get("fixed_point_accuracy")
    if fixed:
        fts = [t for t in ts if str(t) in fixed]
        fv = [100 * fixed[str(t)] for t in fts]
        ax.plot(fts, fv, "s-", color="tab:orange", lw=2, label="SNN (fixed point)")
        lows += fv
    for t, v in zip(ts, snn):  # value labels away from the ANN line, on a white patch
        ax.annotate(f"{v:.1f}", (t, v), textcoords="offset points", xytext=(0, 8 if v >= ann else -15),
                    ha="center", fontsize=8, color="tab:blue",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    if doc["t_star"] is not None:
        ax.axvline(doc["t_star"], color="tab:green", ls=":", lw=1.5, label=f"T* = {doc['t_star']}")
    lo = min(lows + [ann])
    ax.set_ylim(max(0.0, lo - max(2.0, 0.1 * (ann - lo))), min(100.0, ann + max(1.5, 0.1 * (ann - lo))))
    _log2_axis(ax, ts)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{Path(str(doc['model'])).parent.name or doc['model']}: accuracy vs T "
                 f"({doc['samples']} images)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return path


def plot_layers(doc: dict, path: Path) -> Path:
    ts = doc["timesteps"]
    names = doc["layer_order"]
    layers = doc["layers"]
    colors = _colors(len(names))
    fig = _figure(10.5, 4.2)
    ax_r, ax_f = fig.subplots(1, 2)
    rmin = 1.0
    for c, name in zip(colors, names):
        lay = layers[name]
        label = f"{lay['label']} {lay['kind']}"
        r = [lay["pearson_r"][str(t)] for t in ts]
        rr = [np.nan if v is None else v for v in r]
        rmin = min([rmin] + [v for v in rr if v == v])
        ax_r.plot(ts, rr, "o-", color=c, lw=1.5, ms=4, label=label)
        ax_f.plot(ts, [lay["firing_rate"][str(t)] for t in ts], "o-", color=c, lw=1.5, ms=4, label=label)
    td = doc["diagnosis"]["timesteps"]
    for ax in (ax_r, ax_f):
        _log2_axis(ax, ts)
        ax.axvline(td, color="gray", ls=":", lw=1)
    ax_r.set_ylim(max(-1.0, rmin - 0.05 * (1 - rmin) - 0.005), 1.0 + 0.02 * (1 - rmin) + 0.001)
    ax_r.set_ylabel("Pearson r, SNN rate×λ vs ANN activation")
    ax_r.set_title("correlation with the ANN, per layer", fontsize=10)
    ax_f.set_ylabel("firing rate (spikes per neuron per step)")
    ax_f.set_title("firing rate, per layer", fontsize=10)
    ax_f.set_ylim(bottom=0)
    ax_f.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.savefig(path)
    return path


def plot_scatter(doc: dict, scatter: dict, path: Path) -> Path:
    a, s = np.asarray(scatter["ann"], np.float64), np.asarray(scatter["snn"], np.float64)
    t = scatter["T"]
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    hi = max(1.1, float(np.quantile(a, 0.999)) * 1.05 if a.size else 1.1)
    ax.scatter(np.clip(a, None, hi), s, s=4, alpha=0.15, color="tab:blue", lw=0, rasterized=True,
               label=f"neurons ({a.size} samples)")
    xs = np.linspace(min(0.0, float(a.min()) if a.size else 0.0), hi, 200)
    ax.plot(xs, np.clip(xs, 0, 1), color="black", lw=1.2, label="ideal: clip(ANN/λ, 0, 1)")
    ax.axvline(1.0, color="tab:red", ls="--", lw=1, label="threshold λ (saturation)")
    if a.size:  # binned mean: shows a systematic over- or under-firing at a glance
        edges = np.linspace(0.0, hi, 31)
        idx = np.digitize(a, edges) - 1
        mids, means = [], []
        for k in range(len(edges) - 1):
            sel = idx == k
            if sel.sum() >= 5:
                mids.append(0.5 * (edges[k] + edges[k + 1]))
                means.append(float(s[sel].mean()))
        if mids:
            ax.plot(mids, means, color="tab:orange", lw=2, label="SNN rate, mean per bin")
    sat = float(np.mean(a > 1.0)) if a.size else 0.0
    r = scatter.get("pearson_r")
    ax.set_xlim(xs[0] - 0.02, hi)
    ax.set_ylim(-0.03 if s.min(initial=0) >= 0 else float(s.min()) - 0.03, max(1.05, float(s.max(initial=0)) + 0.03))
    ax.set_xlabel("ANN activation / λ")
    ax.set_ylabel(f"SNN rate at T={t} (spikes per step)")
    ax.set_title(f"layer adding the most error: {scatter.get('label', '')} {scatter.get('kind', '')} at T={t}\n"
                 f"{scatter['layer']}" + (f"  (r = {r:.3f}" if r is not None else "  (")
                 + f", {100 * sat:.1f}% of samples above λ)", fontsize=9)
    ax.grid(True, alpha=0.3)
    leg = ax.legend(loc="upper left", fontsize=8, markerscale=3)
    for h in getattr(leg, "legend_handles", getattr(leg, "legendHandles", [])):
        h.set_alpha(1.0)
    fig.savefig(path)
    return path


def draw_all(doc: dict, scatter: dict | None, out_dir) -> dict[str, Path]:
    """Draw every plot the data allows into ``out_dir``; returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"accuracy": plot_accuracy(doc, out / "accuracy_vs_t.png")}
    if doc["layer_order"]:
        files["layers"] = plot_layers(doc, out / "layers_vs_t.png")
    if scatter is not None:
        files["scatter"] = plot_scatter(doc, scatter, out / "worst_layer_scatter.png")
    return files
