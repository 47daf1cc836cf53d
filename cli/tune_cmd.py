"""ann2snn tune: search conversion settings for a target T on calibration data (never evaluation data)."""

from __future__ import annotations

import logging
from pathlib import Path

from ann2snn.cli.common import (
    add_config_arguments, add_data_arguments, calibration_from_args, config_from_args, output_dir, resolve_model,
)
from ann2snn.config import ConversionConfig
from ann2snn.convert.session import as_graph
from ann2snn.convert.tuning import SEARCHED_FIELDS, tune
from ann2snn.errors import DataError

COMMAND = "tune"
HELP = ("search threshold statistic, granularity, bias correction, v_init and max-pool mode for a target T, "
        "scored on held-out calibration data; writes a config loadable with --config")
log = logging.getLogger("ann2snn.cli")


def add_arguments(p):
    d = ConversionConfig()
    p.add_argument("model", metavar="MODEL", help="ONNX file or zoo model name")
    p.add_argument("--target-timesteps", type=int, default=32, metavar="T",
                   help="the T the conversion is tuned for (default 32)")
    p.add_argument("--budget", type=int, metavar="N",
                   help="the most candidates to score (default: the staged search, at most 20; more continues "
                        "over the full grid)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="start no candidate after this many seconds (results then depend on machine speed)")
    p.add_argument("--strategy", choices=("staged", "grid"), default="staged",
                   help="staged coordinate search from the defaults (default) or the full grid in a fixed order")
    p.add_argument("--holdout-samples", type=int, metavar="N",
                   help=f"cap on the held-out calibration images used for scoring (default: "
                        f"{d.holdout_fraction:.0%} of the calibration data)")
    p.add_argument("--out", help="output folder (default ann2snn_tune/<model name>)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_config_arguments(p, exclude=SEARCHED_FIELDS + ("auto", "calibration_timesteps", "scales"),
                         title="fixed settings (not searched)")
    add_data_arguments(p, data=False)


def run(args) -> int:
    if args.target_timesteps < 1:
        raise DataError(f"--target-timesteps must be a positive integer, got {args.target_timesteps}")
    path, manifest = resolve_model(args.model)
    graph = as_graph(path)
    calib = calibration_from_args(args, manifest, graph.inputs[0].shape)
    name = manifest["name"] if manifest else Path(path).stem
    target = Path(args.out) if args.out else Path("ann2snn_tune") / name
    base = config_from_args(args)
    with output_dir(target, args.force) as tmp:
        result = tune(graph, calib, args.target_timesteps, args.budget, time_limit=args.time_limit,
                      base_config=base, strategy=args.strategy, holdout_samples=args.holdout_samples,
                      progress=not args.quiet)
        result.model = path
        result.save(tmp)
    b = result.best
    print(f"{name}: {len(result.table)} candidate(s) scored on {result.holdout_samples} held-out calibration "
          f"images at T={result.target_timesteps}"
          + (f" (stopped by the {result.stopped_by})" if result.stopped_by else ""))
    if result.baseline is not None:
        print(f"  defaults: agreement with the ANN {100 * result.baseline['agreement']:.2f}%, "
              f"output error {result.baseline['relative_error']:.4f}")
    print(f"  chosen:   agreement with the ANN {100 * b['agreement']:.2f}%, output error {b['relative_error']:.4f}: "
          + ", ".join(f"{k}={b[k]}" for k in ("norm", "granularity", "v_init", "bias_correction", "maxpool")))
    print(f"wrote {target / 'config.json'}, {target / 'tune.json'}, {target / 'tune.md'}")
    print(f"use it:  ann2snn convert {args.model} --config {target / 'config.json'}")
    print(f"   or:   ann2snn convert {args.model} {result.command_flags()}")
    return 0
