"""ann2snn convert: ONNX model(s) -> saved spiking network + accuracy report per model."""

from __future__ import annotations

import logging
from pathlib import Path

from ann2snn.cli.common import (
    add_config_arguments, add_data_arguments, calibration_and_data, config_from_args, output_dir,
    resolve_model, timesteps_arg, write_json,
)

COMMAND = "convert"
HELP = "convert ONNX model(s) (or zoo model names) into spiking networks, with an accuracy report"
log = logging.getLogger("ann2snn.cli")


def add_arguments(p):
    p.add_argument("models", nargs="+", metavar="MODEL", help="ONNX file(s) or zoo model name(s)")
    p.add_argument("--out", default="ann2snn_out", help="output folder; one sub-folder per model (default ann2snn_out)")
    p.add_argument("--timesteps", type=timesteps_arg, default=[8, 16, 32, 64, 128, 256],
                   help="comma-separated T values for the report (default 8,16,32,64,128,256)")
    p.add_argument("--no-eval", action="store_true", help="skip the accuracy report")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    add_config_arguments(p)
    add_data_arguments(p, data=True)
    from ann2snn.report.cli import add_report_arguments

    add_report_arguments(p, flag="no-report")


def run(args) -> int:
    from ann2snn.convert.pipeline import as_graph, convert
    from ann2snn.calibration import save_scales
    from ann2snn.evaluate import evaluate

    config = config_from_args(args)
    progress = not args.quiet
    for model in args.models:
        path, manifest = resolve_model(model)
        graph = as_graph(path)
        calib, data = calibration_and_data(args, manifest, graph.inputs[0].shape, need_data=not args.no_eval)
        name = manifest["name"] if manifest else Path(path).stem
        target = Path(args.out) / name
        with output_dir(target, args.force) as tmp:
            snn = convert(graph, calib, config, progress=progress)
            snn.save(tmp / "snn")
            save_scales(tmp / "scales.json", snn.scales, {"model": path, "config": snn.config.to_dict()})
            if data is not None:
                report = evaluate(path, data, snn=snn, timesteps=args.timesteps, device=args.device,
                                  progress=progress)
                print(report.table())
                if args.no_report:
                    write_json(tmp / "report.json", report.to_dict())
                else:  # report.json (a superset of the accuracy JSON), report.md, plots/
                    from ann2snn.report.cli import write_report

                    write_report(tmp, report, snn, calib, args)
            else:
                log.info("no evaluation data: report skipped")
        print(f"{name}: wrote {target}")
    return 0
