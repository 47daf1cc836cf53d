"""``convert``: ONNX model (or IR graph) + calibration data -> SpikingNetwork.

Steps: import -> simplify passes -> plan spiking points -> calibrate thresholds -> build the spiking
graph -> bias correction (optional) -> choice of initial potential and bias correction (``auto``,
scored on a held-out part of the calibration data against the ANN, never on evaluation data).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np
import onnx

from ann2snn.config import ConversionConfig
from ann2snn.convert.bias_correction import bias_correct
from ann2snn.convert.converter import ConversionPlan, convert_graph, plan_conversion
from ann2snn.errors import DataError
from ann2snn.ir.graph import Graph
from ann2snn.ir.reference import check_input
from ann2snn.network import SpikingNetwork

log = logging.getLogger(__name__)


def as_graph(model) -> Graph:
    """A path, an onnx.ModelProto or an IR Graph -> simplified IR Graph."""
    from ann2snn.frontend import load_onnx
    from ann2snn.passes import simplify

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


def compute_scales(plan: ConversionPlan, x: np.ndarray, config: ConversionConfig, progress=False):
    """Thresholds (lambda per channel) of every spiking tensor from activation statistics."""
    from ann2snn.calibration import choose_thresholds, collect_activation_stats

    stats = collect_activation_stats(plan.ann, list(plan.spiking), x, batch_size=config.calibration_batch_size,
                                     progress=progress)
    return choose_thresholds(stats, method=config.norm, granularity=config.granularity,
                             timesteps=config.calibration_timesteps)


def build_network(plan: ConversionPlan, scales, config: ConversionConfig, v_init: float,
                  input_unit: float = 1.0, info: dict | None = None) -> SpikingNetwork:
    cfg = config.replace(v_init=v_init)
    graph, out_units = convert_graph(plan, scales, cfg, input_unit=input_unit)
    sm = next(iter(plan.output_softmax.values()), None)
    return SpikingNetwork(graph=graph, ann=plan.ann, output_units=out_units,
                          scales={k: np.asarray(v, np.float32) for k, v in scales.items()},
                          config=cfg, output_softmax=sm, input_unit=input_unit, info=dict(info or {}))


def convert(model, calibration=None, config: ConversionConfig | None = None, *, scales=None,
            progress: bool = False) -> SpikingNetwork:
    """Convert a trained ANN into a SpikingNetwork.

    model: path to an .onnx file, an onnx.ModelProto, or an ann2snn IR Graph.
    calibration: (N, *input shape) float array of real, preprocessed training images.
    scales: optional thresholds {spiking tensor: per-channel array} (e.g. from load_scales) instead of
        calibrating; they are checked against the model.
    """
    config = config or ConversionConfig()
    graph = as_graph(model)
    tuning = None
    if config.auto:
        if scales is not None:
            raise DataError("ConversionConfig(auto=True) searches the thresholds itself: do not pass scales")
        from ann2snn.tune import tune

        tuning = tune(graph, calibration, target_timesteps=config.calibration_timesteps,
                      base_config=config.replace(auto=False), progress=progress)
        config = tuning.config
        log.info("auto: tuned config %s (agreement %.4f on %d held-out images)", config.to_dict(),
                 tuning.best["agreement"], tuning.holdout_samples)
        net = convert(graph, calibration, config, progress=progress)
        return replace(net, info=dict(net.info, tuning={k: v for k, v in tuning.to_dict().items()
                                                        if k not in ("holdout_indices",)}))
    plan = plan_conversion(graph, config)
    x = calibration_array(plan.ann, calibration)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(x))
    auto = config.v_init == "auto" or config.bias_correction == "auto"
    n_hold = int(round(len(x) * config.holdout_fraction)) if auto else 0
    if auto and (n_hold < 1 or len(x) - n_hold < 1):
        raise DataError(f"{len(x)} calibration samples are too few to hold some out for the 'auto' choices")
    hold, fit = x[order[:n_hold]], x[order[n_hold:]]
    if scales is None:
        scales = compute_scales(plan, fit, config, progress=progress)
    else:
        from ann2snn.calibration import check_scales_match

        check_scales_match(scales, plan.spiking)
    input_unit = float(np.abs(fit).max()) if config.input_encoding == "poisson" else 1.0
    input_unit = input_unit if input_unit > 0 else 1.0
    bc_x = fit[: config.bias_correction_samples]
    v_options = [0.0, 0.5] if config.v_init == "auto" else [float(config.v_init)]
    bc_options = [False, True] if config.bias_correction == "auto" else [bool(config.bias_correction)]
    candidates = []
    for v0 in v_options:
        base = build_network(plan, scales, config, v0, input_unit)
        for bc in bc_options:
            net = bias_correct(base, bc_x, config.calibration_timesteps,
                               config.bias_correction_memory_mb) if bc else base
            candidates.append(((v0, bc), net))
    if len(candidates) == 1:
        (v0, bc), net = candidates[0]
        return replace(net, config=net.config.replace(bias_correction=bc),
                       info=dict(net.info, v_init=v0, bias_correction=bc))
    from ann2snn.ir.reference import run_graph
    from ann2snn.report.scoring import score_network

    ann_out = run_graph(plan.ann, hold)
    tc = config.calibration_timesteps
    # from T/4 to 4T: blind to T/4, the choice between two candidates within one hold-out image of each
    # other fell to float noise (the zoo ResNet: v_init 0 or 0.5, 80 or 86 % at T=8, same at T >= 32)
    score_ts = sorted({max(1, tc // 4), max(1, tc // 2), tc, 2 * tc, 4 * tc})
    table = []
    for (v0, bc), net in candidates:
        s = score_network(net, hold, ann_out, score_ts)
        table.append({"v_init": v0, "bias_correction": bc, **s})
        log.info("auto: v_init=%.1f bias_correction=%s agreement=%.4f rel_err=%.4f", v0, bc,
                 s["agreement"], s["relative_error"])
    best = max(range(len(candidates)), key=lambda i: (table[i]["agreement"], -table[i]["relative_error"]))
    (v0, bc), net = candidates[best]
    return replace(net, config=net.config.replace(bias_correction=bc),
                   info=dict(net.info, v_init=v0, bias_correction=bc, auto_table=table,
                             auto_holdout_samples=n_hold, auto_timesteps=score_ts))
