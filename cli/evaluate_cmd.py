"""ann2snn evaluate: ANN (onnxruntime) vs SNN accuracy at each T on a data set."""

from __future__ import annotations

from pathlib import Path

import shutil
import time

import numpy as np

from ann2snn import distributed
from ann2snn.cli.common import (
    LONG_RUN_IMAGE_STEPS, OutputExistsError, add_config_arguments, add_data_arguments, add_simulation_arguments,
    calibration_and_data, config_from_args, data_stream, output_dir, preprocessing_from_args, resolve_model,
    scales_from_args, show_progress, timesteps_arg, write_json,
)
from ann2snn.cli.report_args import add_report_arguments, write_report
from ann2snn.convert.pipeline import convert
from ann2snn.convert.session import as_graph
from ann2snn.data import Preprocessing
from ann2snn.errors import DataError
from ann2snn.evaluation import evaluate
from ann2snn.loihi import load, simulate_loihi

COMMAND = "evaluate"
HELP = "measure converted accuracy vs T against the source ANN on a data set"


def add_arguments(p):
    p.add_argument("model", metavar="MODEL",
                   help="ONNX file or zoo model name, or a Lava netx .net file (fixed-point simulation)")
    p.add_argument("--timesteps", type=timesteps_arg, default=[8, 16, 32, 64, 128, 256],
                   help="comma-separated T values (default 8,16,32,64,128,256)")
    p.add_argument("--json", help="write the report as JSON to this file")
    add_simulation_arguments(p)
    p.add_argument("--force", action="store_true", help="replace an existing --json file or --report folder")
    add_config_arguments(p)
    add_data_arguments(p, data=True)
    add_report_arguments(p, flag="report")


def run(args) -> int:
    group = distributed.current()
    if args.json and Path(args.json).exists() and not args.force:
        raise OutputExistsError(f"{args.json} exists; pass --force to replace it")
    if str(args.model).endswith(".net"):
        return run_netx(args)
    if args.report and Path(args.report).exists() and not args.force:
        raise OutputExistsError(f"{args.report} exists; pass --force to replace it")
    path, manifest = resolve_model(args.model)
    graph = as_graph(path)
    calib, data = calibration_and_data(args, manifest, graph.inputs[0].shape, need_data=True)
    if data is None:
        raise DataError("--data is required for models outside the zoo")
    checkpoint, temporary = checkpoint_dir(args, len(data) * max(args.timesteps))
    snn, t_convert = None, None
    scales = scales_from_args(args)
    if args.report or scales is not None:  # the report needs the network itself: convert here, then evaluate it
        t0 = time.perf_counter()
        snn = convert(graph, calib, config_from_args(args), scales=scales, progress=show_progress(args))
        t_convert = time.perf_counter() - t0
    report = evaluate(path, data, calib, args.timesteps, config=config_from_args(args), device=args.device,
                      synaptic_dtype=args.synaptic_dtype, batch_size=args.batch_size, progress=show_progress(args),
                      snn=snn, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every, workers=args.workers)
    if t_convert is not None:
        report.seconds["convert"] = t_convert
    if not group.is_main:  # rank 0 alone prints and writes
        return 0
    print(report.table())
    if args.report:
        with output_dir(Path(args.report), args.force) as tmp, distributed.local():
            write_report(tmp, report, snn, calib, args)
        print(f"wrote {args.report}/report.md and report.json")
    if args.json:
        write_json(Path(args.json), report.to_dict())
    if temporary:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return 0


def checkpoint_dir(args, image_steps: int) -> tuple[Path | None, bool]:
    """(the checkpoint folder, whether it is ours to remove at the end): ``--checkpoint``, else for a long
    run with ``--json F`` the folder ``F.checkpoint``, else none."""
    if args.checkpoint:
        return Path(args.checkpoint), False
    if args.json and image_steps >= LONG_RUN_IMAGE_STEPS:
        return Path(f"{args.json}.checkpoint"), True
    return None, False


def run_netx(args) -> int:
    """``evaluate MODEL.net``: accuracy of the bit-exact fixed-point (Lava fixed_pt) simulation per T.

    With the ann2snn sidecar (``<name>.loihi.json``) the inputs are encoded and the readout decoded as the
    export did, and raw data gets the exported model's preprocessing unless flags override it. A lava-dl
    network without one is driven by ``round(x)`` of the preprocessed data (use ``--scale`` to reach its
    integer range) and predicts the argmax of its readout ``v`` (a final dense layer without neuron), of its
    Sigma output, or of its output spike counts.
    """
    if not args.data:
        raise DataError("--data is required to evaluate a .net file")
    exported = load(args.model)
    base = {"preprocessing_obj": Preprocessing.from_dict(exported.preprocessing)} if exported.preprocessing else None
    pre = preprocessing_from_args(args, base, exported.input_shape)
    x, y = data_stream(args.data, pre, split=args.data_split, limit=args.limit, subset=args.subset,
                       seed=int(args.seed or 0), preset_name=args.preprocess).read_all()
    if y is None:
        raise DataError(f"{args.data}: evaluation data needs labels")
    if tuple(x.shape[1:]) != tuple(exported.input_shape):
        raise DataError(f"data has sample shape {tuple(x.shape[1:])}, {args.model} expects {tuple(exported.input_shape)}")
    res = simulate_loihi(exported, x, args.timesteps, progress=show_progress(args))
    acc = {t: float(np.mean(res.predictions(t) == y)) for t in res.timesteps}
    kind = exported.neuron or "lava-dl (no ann2snn sidecar)"
    print(f"{args.model}: {len(y)} samples, {kind}, readout after T + {exported.latency} steps")
    print(f"{'T':>6}  {'fixed-point acc %':>17}")
    for t in res.timesteps:
        print(f"{t:>6}  {100 * acc[t]:17.2f}")
    if args.json:
        write_json(Path(args.json), {"model": str(args.model), "neuron": exported.neuron, "samples": int(len(y)),
                                     "latency_steps": exported.latency, "fixed_point_accuracy": acc})
    return 0
