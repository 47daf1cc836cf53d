"""``ConversionSession``: what every candidate network of one conversion shares, computed once.

One model, one calibration set and one base config give:
- the simplified graph and, per max-pool mode, the conversion plan;
- the seeded fit / held-out split of the calibration images (the fit part calibrates thresholds and
  bias correction; the held-out part scores candidates against the ANN, never labels or test data);
- the activation statistics of each set of spiking tensors, and the thresholds chosen from them;
- the ANN's outputs on the held-out images;
- ``build(config)``: a SpikingNetwork for concrete v_init / bias correction; ``score(net, T)``.

``convert``'s ``auto`` choices and ``tune``'s search are both loops over ``build`` and ``score`` of
one session, so the split, the thresholds and the scoring are the same code for both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np
import onnx
from tqdm.auto import tqdm

from ann2snn.calibration import check_scales_match, choose_thresholds, collect_activation_stats
from ann2snn.config import THRESHOLD_SCALES_AUTO, ConversionConfig, bias_correction_text
from ann2snn.convert.bias_correction import bias_correct
from ann2snn.convert.converter import ConversionPlan, build_network, plan_conversion
from ann2snn.convert.scoring import score_network
from ann2snn.errors import DataError
from ann2snn.frontend import load_onnx
from ann2snn.ir.graph import Graph
from ann2snn.ir.reference import check_input, run_graph
from ann2snn.network import SpikingNetwork
from ann2snn.passes import simplify

log = logging.getLogger(__name__)


def as_graph(model) -> Graph:
    """A path, an onnx.ModelProto or an IR Graph -> simplified IR Graph."""
    if isinstance(model, Graph):
        graph = model
    elif isinstance(model, (str, os.PathLike, onnx.ModelProto)):
        graph = load_onnx(model)
    else:
        raise TypeError(f"expected a model path, onnx.ModelProto or ann2snn Graph, got {type(model).__name__}")
    return simplify(graph)


def calibration_array(graph: Graph, calibration) -> np.ndarray:
    """Validate calibration data (a (N, *input shape) array) and return it as float32."""
    if calibration is None:
        raise DataError("calibration data is required (a few hundred real training images)")
    x = check_input(graph, calibration)[graph.inputs[0].name]
    if len(x) < 2:
        raise DataError(f"calibration data has {len(x)} sample(s); at least 2 are needed (a few hundred advised)")
    return x


class ConversionSession:
    """See the module docstring.

    holdout: hold out ``config.holdout_fraction`` of the calibration images for scoring (needed by the
        ``auto`` choices and by tuning); ``holdout_samples`` caps how many. Without it every image fits.
    """

    def __init__(self, model, calibration, config: ConversionConfig | None = None, *, holdout: bool = False,
                 holdout_samples: int | None = None, progress: bool = False):
        self.config = config or ConversionConfig()
        self.graph = as_graph(model)
        self.progress = progress
        self._plans: dict[str, ConversionPlan] = {}
        self._stats: dict[tuple, object] = {}
        self._scales: dict[tuple, dict] = {}
        self._hold_ann_out: np.ndarray | None = None
        x = calibration_array(self.plan().ann, calibration)
        order = np.random.default_rng(self.config.seed).permutation(len(x))
        n_hold = int(round(len(x) * self.config.holdout_fraction)) if holdout else 0
        if holdout_samples is not None:
            n_hold = min(n_hold, int(holdout_samples))
        if holdout and (n_hold < 1 or len(x) - n_hold < 1):
            raise DataError(f"{len(x)} calibration samples are too few to hold some out for scoring")
        self.hold_indices = np.sort(order[:n_hold])
        self.hold, self.fit = x[order[:n_hold]], x[order[n_hold:]]
        unit = float(np.abs(self.fit).max()) if self.config.input_encoding == "poisson" else 1.0
        self.input_unit = unit if unit > 0 else 1.0  # the Poisson encoder's rate 1 (see the simulator)

    # ------------------------------------------------------------------ cached building blocks

    def plan(self, maxpool: str | None = None) -> ConversionPlan:
        maxpool = maxpool or self.config.maxpool
        if maxpool not in self._plans:
            self._plans[maxpool] = plan_conversion(self.graph, self.config.replace(maxpool=maxpool))
        return self._plans[maxpool]

    def scales(self, config: ConversionConfig) -> dict[str, np.ndarray]:
        """Thresholds (lambda per channel) of every spiking tensor, from statistics of the fit images."""
        plan = self.plan(config.maxpool)
        tensors = tuple(plan.spiking)
        if tensors not in self._stats:
            self._stats[tensors] = collect_activation_stats(plan.ann, list(tensors), self.fit,
                                                            batch_size=config.calibration_batch_size,
                                                            progress=self.progress)
        key = (tensors, config.norm, config.granularity, config.calibration_timesteps)
        if key not in self._scales:
            self._scales[key] = choose_thresholds(self._stats[tensors], method=config.norm,
                                                  granularity=config.granularity,
                                                  timesteps=config.calibration_timesteps)
        return self._scales[key]

    def hold_ann_outputs(self) -> np.ndarray:
        if self._hold_ann_out is None:
            self._hold_ann_out = run_graph(self.plan().ann, self.hold)
        return self._hold_ann_out

    # ------------------------------------------------------------------ networks

    def build(self, config: ConversionConfig, scales=None) -> SpikingNetwork:
        """The SpikingNetwork of ``config`` (concrete v_init and bias_correction, not ``auto``).

        scales: thresholds to use instead of the calibrated ones (checked against the model).
        """
        if "auto" in (config.v_init, config.bias_correction, config.threshold_scale):
            raise ValueError("build() needs a concrete v_init, bias_correction and threshold_scale; choose() "
                             "picks them")
        plan = self.plan(config.maxpool)
        if scales is None:
            scales = self.scales(config)
        else:
            check_scales_match(scales, plan.spiking)
        if config.threshold_scale != 1:
            scales = {k: np.asarray(v, np.float32) * np.float32(config.threshold_scale) for k, v in scales.items()}
        cfg = config.replace(bias_correction=bool(config.bias_correction))
        net = build_network(plan, scales, cfg, float(config.v_init), self.input_unit)
        if cfg.bias_correction:
            net = bias_correct(net, self.fit[: cfg.bias_correction_samples], cfg.calibration_timesteps,
                               cfg.bias_correction_memory_mb)
        return net

    def score(self, net: SpikingNetwork, timesteps) -> dict:
        """Agreement with the ANN and relative output error on the held-out images (``score_network``)."""
        if len(self.hold) == 0:
            raise ValueError("this session holds no images out: create it with holdout=True to score")
        return score_network(net, self.hold, self.hold_ann_outputs(), timesteps)

    def choose(self, config: ConversionConfig, scales=None) -> SpikingNetwork:
        """Resolve ``v_init``/``bias_correction``/``threshold_scale`` = ``auto`` by scoring every combination on
        the held-out images.

        Scored from T/4 to 4T (T = ``calibration_timesteps``): blind to T/4, the choice between two
        candidates within one held-out image of each other fell to float noise (the zoo ResNet: v_init 0
        or 0.5, 80 or 86 % at T=8, the same at T >= 32). Best agreement wins, then the lower error.
        """
        v_options = [0.0, 0.5] if config.v_init == "auto" else [float(config.v_init)]
        bc_options = [False, True] if config.bias_correction == "auto" else [bool(config.bias_correction)]
        d_options = THRESHOLD_SCALES_AUTO if config.threshold_scale == "auto" else [config.threshold_scale]
        candidates = [config.replace(v_init=v0, bias_correction=bc, threshold_scale=d)
                      for d in d_options for v0 in v_options for bc in bc_options]
        if len(candidates) == 1:
            return self.build(candidates[0], scales)
        if scales is None:
            self.scales(config)  # calibrate before the candidates' progress bar starts
        tc = config.calibration_timesteps
        score_ts = sorted({max(1, tc // 4), max(1, tc // 2), tc, 2 * tc, 4 * tc})
        table, best_net, best_key = [], None, None
        bar = tqdm(candidates, disable=not self.progress, desc="auto v_init/bias correction", unit="candidate",
                   leave=False)
        for cand in bar:
            bar.set_postfix_str(f"v_init={cand.v_init} bias_correction={bias_correction_text(cand.bias_correction)}"
                                + (f" threshold_scale={cand.threshold_scale:g}" if len(d_options) > 1 else ""))
            net = self.build(cand, scales)
            s = self.score(net, score_ts)
            table.append({"v_init": cand.v_init, "bias_correction": cand.bias_correction,
                          "threshold_scale": cand.threshold_scale, **s})
            log.info("auto: v_init=%.1f bias_correction=%s threshold_scale=%g agreement=%.4f rel_err=%.4f",
                     cand.v_init, cand.bias_correction, cand.threshold_scale, s["agreement"], s["relative_error"])
            key = (s["agreement"], -s["relative_error"])
            if best_key is None or key > best_key:  # only the best network is kept
                best_net, best_key = net, key
        net = best_net
        record = net.record.replace(auto_table=tuple(table), auto_holdout_samples=len(self.hold),
                                    auto_timesteps=tuple(score_ts))
        return replace(net, record=record)
