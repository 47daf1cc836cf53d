"""``ann2snn.tune``: search conversion settings for a target T on calibration data only.

    result = ann2snn.tune("model.onnx", calib_x, target_timesteps=32, budget=24)
    snn = ann2snn.convert("model.onnx", calib_x, config=result.config)
    result.save("tuned/")          # config.json (loadable with --config), tune.json, tune.md

Search space: threshold statistic (max, percentile 99 / 99.9 / 99.99, mmse) x granularity (channel,
layer) x bias correction (off, on) x v_init (0, 0.5) x max-pool mode (pre_neuron, cumulative, spike;
only when the model has a MaxPool).

Data: the calibration images are split once, with a seeded permutation, into a fit part (thresholds,
bias correction) and a held-out part (scoring): the split, thresholds and scoring of a
``ConversionSession``, the same as for ``convert``'s ``auto`` choices.
Nothing else is read: there is no argument for evaluation data. The score of a candidate is the
agreement of the SNN's prediction with the ANN's on the held-out images at T=``target_timesteps``
(labels are not needed), then the relative output error; agreements within one held-out image of the
best are treated as ties and decided by the output error (less noisy on a few hundred images). The
defaults are kept (``result.config`` is ``base_config`` itself, ``result.kept_defaults`` is True, and
converting with it reproduces the default conversion, v_init and bias correction included) unless a
candidate agrees with the ANN on at least ``DEFAULT_MARGIN_IMAGES`` (2) more held-out images than the best
default-family candidate (stage 1): on a few hundred images a smaller win is noise. Measured on 2,000 test
images before this rule, such choices lost 0.15 to 0.35 pt to the default on two zoo models at T=32.

Order (coordinate descent from the defaults, so a small budget spends itself on the likeliest gains):
1. the default statistic/granularity/max-pool with the 4 v_init x bias-correction pairs (what
   ``convert``'s ``auto`` compares);
2. every other statistic x granularity with the best pair so far;
3. the 4 pairs again on the new best statistic/granularity, if it changed;
4. the other max-pool modes;
5. the runner-up statistics/granularities with the final settings;
then, when ``budget`` allows more candidates, the rest of the full grid, most promising first.
``budget`` caps the number of candidates (reproducible: same seed, same data, same result);
``time_limit`` stops starting new candidates after that many seconds (results then depend on speed).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ann2snn.config import GRANULARITIES, MAXPOOL_MODES, ConversionConfig, bias_correction_text
from ann2snn.convert.session import ConversionSession
from ann2snn.errors import DataError
from ann2snn.fileio import json_default
from ann2snn.ir import nodes as ir

log = logging.getLogger(__name__)

NORMS = ("max", "percentile:99", "percentile:99.9", "percentile:99.99", "mmse")
V_INITS = (0.5, 0.0)
BIAS_CORRECTIONS = (False, True)
SEARCHED_FIELDS = ("norm", "granularity", "v_init", "bias_correction", "maxpool")


@dataclass
class TuneResult:
    """The chosen ConversionConfig and the search table (one row per candidate scored)."""

    config: ConversionConfig
    best: dict
    baseline: dict | None
    table: list[dict]
    target_timesteps: int
    holdout_samples: int
    fit_samples: int
    seed: int
    budget: int | None
    time_limit: float | None
    stopped_by: str | None
    seconds: float
    holdout_indices: list[int] = field(default_factory=list, repr=False)
    model: str = ""
    kept_defaults: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["config"] = self.config.to_dict()
        d["format"], d["version"] = "ann2snn-tune", 1
        return d

    def markdown(self) -> str:
        t = self.target_timesteps
        lines = [f"# ann2snn tune: `{self.model}` at T={t}", "",
                 f"Scored on {self.holdout_samples} held-out calibration images (fit on {self.fit_samples}; "
                 f"seed {self.seed}); score: agreement of the SNN's prediction with the ANN's at T={t}, then "
                 f"relative output error. {len(self.table)} candidate(s) in {self.seconds:.0f} s"
                 + (f"; stopped by the {self.stopped_by}." if self.stopped_by else "."), ""]
        if self.baseline is not None:
            lines += [f"Defaults (best v_init/bias correction): agreement {100 * self.baseline['agreement']:.2f}%, "
                      f"error {self.baseline['relative_error']:.4f}. Chosen: agreement "
                      f"{100 * self.best['agreement']:.2f}%, error {self.best['relative_error']:.4f}.", ""]
        if self.kept_defaults:
            lines += [f"No candidate beat the defaults by {DEFAULT_MARGIN_IMAGES} held-out images: the defaults are "
                      "kept (convert then makes its own v_init/bias-correction choice, as without tuning).", ""]
        lines += ["Chosen config (`--config config.json`):", "", "```json",
                  json.dumps(self.config.to_dict(), indent=1), "```", "",
                  "| # | stage | norm | granularity | v_init | bias corr. | maxpool | agreement % | rel. error | s |",
                  "| ---: | :--- | :--- | :--- | ---: | :--- | :--- | ---: | ---: | ---: |"]
        for r in self.table:
            mark = " **chosen**" if r["id"] == self.best["id"] else ""
            lines.append(f"| {r['id']}{mark} | {r['stage']} | {r['norm']} | {r['granularity']} | {r['v_init']} | "
                         f"{bias_correction_text(r['bias_correction'])} | {r['maxpool']} | "
                         f"{100 * r['agreement']:.2f} | "
                         f"{r['relative_error']:.4f} | {r['seconds']:.1f} |")
        return "\n".join(lines) + "\n"

    def command_flags(self) -> str:
        """The same settings as explicit ``ann2snn convert/evaluate`` flags."""
        c = self.config
        return (f"--norm {c.norm} --granularity {c.granularity} --v-init {c.v_init} "
                f"--bias-correction {bias_correction_text(c.bias_correction)} --maxpool {c.maxpool} "
                f"--calibration-timesteps {c.calibration_timesteps} --seed {c.seed}"
                + (" --signed" if c.signed else "") + f" --reset {c.reset} --threshold-scale {c.threshold_scale:g}"
                + f" --input-encoding {c.input_encoding}")

    def save(self, out_dir) -> dict[str, Path]:
        """Write config.json (ConversionConfig fields only: loadable with ``--config``), tune.json, tune.md."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"config": out / "config.json", "tune": out / "tune.json", "markdown": out / "tune.md"}
        paths["config"].write_text(json.dumps(self.config.to_dict(), indent=1) + "\n")
        paths["tune"].write_text(json.dumps(self.to_dict(), indent=1, default=json_default) + "\n")
        paths["markdown"].write_text(self.markdown())
        return paths


DEFAULT_MARGIN_IMAGES = 2  # held-out images a non-default candidate must win by (see the module docstring)


def _pick(rows: list[dict], n_hold: int) -> dict:
    """Highest agreement; candidates within one held-out image of it are tied and decided by error."""
    top = max(r["agreement"] for r in rows)
    tie = 1.0 / max(n_hold, 1) + 1e-9
    close = [r for r in rows if r["agreement"] >= top - tie]
    return min(close, key=lambda r: (r["relative_error"], -r["agreement"], r["id"]))


class _Search:
    def __init__(self, session: ConversionSession, target_timesteps, budget, time_limit, progress):
        self.t = int(target_timesteps)
        if self.t < 1:
            raise DataError(f"target_timesteps must be a positive integer, got {target_timesteps!r}")
        self.session = session
        self.base = session.config.replace(calibration_timesteps=self.t)
        if self.base.threshold_scale == "auto":  # not searched here: every candidate keeps the calibrated scale
            self.base = self.base.replace(threshold_scale=1.0)
        self.has_maxpool = any(isinstance(n, (ir.MaxPool2d, ir.GlobalMaxPool)) for n in session.graph.nodes)
        self.hold, self.fit = session.hold, session.fit
        self.budget, self.time_limit = budget, time_limit
        self.progress = progress
        self.rows: list[dict] = []
        self.done: dict[tuple, dict] = {}
        self.start = time.perf_counter()
        self.stopped_by: str | None = None
        self.bar = None

    def config_of(self, c: dict) -> ConversionConfig:
        return self.base.replace(**{f: c[f] for f in SEARCHED_FIELDS})

    # ------------------------------------------------------------------ search

    def out_of_budget(self) -> bool:
        if self.budget is not None and len(self.rows) >= self.budget:
            self.stopped_by = self.stopped_by or "candidate budget"
            return True
        if self.time_limit is not None and time.perf_counter() - self.start >= self.time_limit:
            self.stopped_by = self.stopped_by or "time limit"
            return True
        return False

    def evaluate(self, c: dict, stage: str) -> dict | None:
        key = tuple(c[f] for f in SEARCHED_FIELDS)
        if key in self.done:
            return self.done[key]
        if self.out_of_budget():
            return None
        t0 = time.perf_counter()
        s = self.session.score(self.session.build(self.config_of(c)), self.t)
        row = {"id": len(self.rows) + 1, "stage": stage, **{f: c[f] for f in SEARCHED_FIELDS}, **s,
               "seconds": time.perf_counter() - t0}
        self.rows.append(row)
        self.done[key] = row
        log.info("tune #%d %s: %s agreement=%.4f rel_err=%.4f", row["id"], stage,
                 " ".join(f"{f}={c[f]}" for f in SEARCHED_FIELDS), s["agreement"], s["relative_error"])
        if self.bar is not None:
            self.bar.update(1)
            best = self.best()
            self.bar.set_postfix_str(f"best {100 * best['agreement']:.1f}% err {best['relative_error']:.3f}")
        return row

    def best(self, rows=None) -> dict:
        return _pick(rows if rows is not None else self.rows, len(self.hold))

    def run(self, strategy: str) -> None:
        modes = MAXPOOL_MODES if self.has_maxpool else (self.base.maxpool,)
        grid = [dict(zip(SEARCHED_FIELDS, v)) for v in
                itertools.product(NORMS, GRANULARITIES, V_INITS, BIAS_CORRECTIONS, modes)]
        staged = 4 + (len(NORMS) * len(GRANULARITIES) - 1) + 3 + (len(modes) - 1) + 2
        planned = min(self.budget, len(grid)) if self.budget is not None else (
            len(grid) if strategy == "grid" else staged)
        self.bar = tqdm(total=planned, disable=not self.progress, desc="tune", unit="candidate", leave=False)
        try:
            if strategy == "grid":
                for c in grid:
                    self.evaluate(c, "grid")
                return
            self._staged(modes)
            if self.budget is not None:  # spend what is left on the rest of the grid, most promising first
                self._rest(grid)
        finally:
            self.bar.close()

    def _staged(self, modes) -> None:
        b = self.base
        norm0 = b.norm if b.norm in NORMS else NORMS[2]
        cur = {"norm": norm0, "granularity": b.granularity, "maxpool": b.maxpool}
        pairs = list(itertools.product(V_INITS, BIAS_CORRECTIONS))

        def with_(**kw):
            return {**cur, **kw}

        # 1. defaults with every v_init x bias-correction pair
        for v, bc in pairs:
            self.evaluate(with_(v_init=v, bias_correction=bc), "v_init/bias")
        if not self.rows:
            return
        best = self.best()
        cur.update(v_init=best["v_init"], bias_correction=best["bias_correction"])
        # 2. statistic x granularity
        for norm, gran in itertools.product(NORMS, GRANULARITIES):
            self.evaluate(with_(norm=norm, granularity=gran), "norm")
        best = self.best()
        changed = (best["norm"], best["granularity"]) != (norm0, b.granularity)
        cur.update(norm=best["norm"], granularity=best["granularity"])
        # 3. pairs again on the new statistic
        if changed:
            for v, bc in pairs:
                self.evaluate(with_(v_init=v, bias_correction=bc), "v_init/bias")
            best = self.best()
            cur.update(v_init=best["v_init"], bias_correction=best["bias_correction"])
        # 4. max-pool modes
        for mode in modes:
            self.evaluate(with_(maxpool=mode), "maxpool")
        best = self.best()
        cur.update(maxpool=best["maxpool"])
        # 5. runner-up statistics with the final settings
        norm_rows = [r for r in self.rows if r["stage"] == "norm"]
        ranked = sorted(norm_rows, key=lambda r: (-r["agreement"], r["relative_error"], r["id"]))
        for r in [r for r in ranked if (r["norm"], r["granularity"]) != (cur["norm"], cur["granularity"])][:2]:
            self.evaluate(with_(norm=r["norm"], granularity=r["granularity"]), "refine")

    def _rest(self, grid) -> None:
        norm_rank = {}
        for r in sorted(self.rows, key=lambda r: (-r["agreement"], r["relative_error"], r["id"])):
            norm_rank.setdefault((r["norm"], r["granularity"]), len(norm_rank))
        rest = sorted(grid, key=lambda c: (norm_rank.get((c["norm"], c["granularity"]), 99),
                                           MAXPOOL_MODES.index(c["maxpool"]), V_INITS.index(c["v_init"]),
                                           c["bias_correction"]))
        for c in rest:
            if self.out_of_budget():
                return
            self.evaluate(c, "grid")


def tune(model, calibration=None, target_timesteps: int = 32, budget: int | None = None, *,
         time_limit: float | None = None, base_config: ConversionConfig | None = None,
         strategy: str = "staged", holdout_samples: int | None = None, progress: bool = False) -> TuneResult:
    """Search conversion settings for T=``target_timesteps``; see the module docstring.

    model: ONNX path, onnx.ModelProto or IR Graph, or a ``ConversionSession`` with held-out images (then
        ``calibration``, ``base_config`` and ``holdout_samples`` are the session's). calibration: (N, *input
        shape) float images (the only data read; a seeded part is held out for scoring). budget: the most
        candidates to score (None: the staged search, 20 candidates or fewer). time_limit: seconds after
        which no candidate starts.
    base_config: the fields not searched (seed, signed, input encoding, holdout_fraction, ...).
    strategy: ``staged`` (default) or ``grid`` (every combination, in a fixed order, up to the budget).
    holdout_samples: cap on the held-out images (fewer is faster and noisier).
    Returns a TuneResult; ``convert(model, calibration, config=result.config)`` builds the tuned SNN.
    """
    if strategy not in ("staged", "grid"):
        raise ValueError(f"strategy must be 'staged' or 'grid', got {strategy!r}")
    if budget is not None and (isinstance(budget, bool) or int(budget) < 1):
        raise ValueError(f"budget must be a positive number of candidates, got {budget!r}")
    t0 = time.perf_counter()
    if isinstance(model, ConversionSession):
        if calibration is not None or base_config is not None or holdout_samples is not None:
            raise ValueError("a ConversionSession brings its own calibration, config and held-out images")
        session = model
    else:
        base = (base_config or ConversionConfig()).replace(auto=False)  # the chosen config must not re-tune
        try:
            session = ConversionSession(model, calibration, base, holdout=True, holdout_samples=holdout_samples)
        except DataError as e:
            raise DataError(f"{e} (tuning)") from None
    if session.config.auto:
        raise ValueError("tune() searches from a config with auto=False")
    base = session.config
    s = _Search(session, target_timesteps, None if budget is None else int(budget), time_limit, progress)
    s.run(strategy)
    if not s.rows:
        raise DataError("tuning scored no candidate (time limit too short?)")
    best = s.best()
    stage1 = [r for r in s.rows if r["stage"] == "v_init/bias"
              and (r["norm"], r["granularity"], r["maxpool"]) == (s.rows[0]["norm"], s.rows[0]["granularity"],
                                                                  s.rows[0]["maxpool"])]
    baseline = s.best(stage1) if stage1 and strategy == "staged" else None
    margin = DEFAULT_MARGIN_IMAGES / len(s.hold) - 1e-9
    kept = baseline is not None and best["agreement"] < baseline["agreement"] + margin
    if kept:  # not clearly better than the defaults on the held-out images: keep them as they are
        best = baseline
    return TuneResult(config=s.base if kept else s.config_of(best), best=dict(best), kept_defaults=kept,
                      baseline=None if baseline is None else dict(baseline),
                      table=s.rows, target_timesteps=s.t, holdout_samples=len(s.hold), fit_samples=len(s.fit),
                      seed=base.seed, budget=None if budget is None else int(budget), time_limit=time_limit,
                      stopped_by=s.stopped_by, seconds=time.perf_counter() - t0,
                      holdout_indices=[int(i) for i in session.hold_indices],
                      model=str(getattr(session.graph, "name", model)))
