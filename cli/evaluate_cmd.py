"""ann2snn evaluate: ANN (onnxruntime) vs SNN accuracy at each T on a data set."""

from __future__ import annotations

from pathlib import Path

from ann2snn.cli.common import (
    add_config_arguments, add_data_arguments, calibration_and_data, config_from_args, resolve_model,
    timesteps_arg, write_json,
)
from ann2snn.errors import DataError

COMMAND = "evaluate"
HELP = "measure converted accuracy vs T against the source ANN on a data set"


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="ONNX file or zoo model name")
    p.add_argument("--timesteps", type=timesteps_arg, default=[8, 16, 32, 64, 128, 256],
                   help="comma-separated T values (default 8,16,32,64,128,256)")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=100, help="simulation batch size (default 100)")
    p.add_argument("--force", action="store_true", help="replace an existing --json file or --report folder")
    add_config_arguments(p)
    add_data_arguments(p, data=True)
    from ann2snn.report.cli import add_report_arguments

    add_report_arguments(p, flag="report")


def run(args) -> int:
    from ann2snn.cli.common import OutputExistsError
    from ann2snn.convert.pipeline import as_graph
    from ann2snn.evaluate import evaluate

    if args.json and Path(args.json).exists() and not args.force:
        raise OutputExistsError(f"{args.json} exists; pass --force to replace it")
    if args.report and Path(args.report).exists() and not args.force:
        raise OutputExistsError(f"{args.report} exists; pass --force to replace it")
    path, manifest = resolve_model(args.model)
    graph = as_graph(path)
    calib, data = calibration_and_data(args, manifest, graph.inputs[0].shape, need_data=True)
    if data is None:
        raise DataError("--data is required for models outside the zoo")
    snn, t_convert = None, None
    if args.report:  # the report needs the network itself: convert here, then evaluate it
        import time

        from ann2snn.convert.pipeline import convert

        t0 = time.perf_counter()
        snn = convert(graph, calib, config_from_args(args), progress=not args.quiet)
        t_convert = time.perf_counter() - t0
    report = evaluate(path, data, calib, args.timesteps, config=config_from_args(args), device=args.device,
                      batch_size=args.batch_size, progress=not args.quiet, snn=snn)
    if t_convert is not None:
        report.seconds["convert"] = t_convert
    print(report.table())
    if args.report:
        from ann2snn.cli.common import output_dir
        from ann2snn.report.cli import write_report

        with output_dir(Path(args.report), args.force) as tmp:
            write_report(tmp, report, snn, calib, args)
        print(f"wrote {args.report}/report.md and report.json")
    if args.json:
        tmp = Path(args.json).with_name(f".{Path(args.json).name}.tmp")
        try:
            write_json(tmp, report.to_dict())
            tmp.replace(args.json)
        finally:  # a failed or interrupted write leaves no half-written temporary file behind
            tmp.unlink(missing_ok=True)
    return 0
