"""ann2snn convert: ONNX model(s) -> saved spiking network + accuracy report per model."""

from __future__ import annotations

import logging
from pathlib import Path

from ann2snn import distributed
from ann2snn.calibration import save_scales
from ann2snn.cli.common import (
    add_config_arguments, add_data_arguments, add_simulation_arguments, calibration_and_data, config_from_args,
    output_dir, resolve_model, scales_from_args, show_progress, timesteps_arg, write_json,
)
from ann2snn.cli.report_args import add_report_arguments, write_report
from ann2snn.convert.pipeline import convert
from ann2snn.convert.session import as_graph
from ann2snn.errors import DataError
from ann2snn.evaluation import evaluate

COMMAND = "convert"
HELP = "convert ONNX model(s) (or zoo model names) into spiking networks, with an accuracy report"
log = logging.getLogger("ann2snn.cli")


def add_arguments(p):
    p.add_argument("models", nargs="+", metavar="MODEL", help="ONNX file(s) or zoo model name(s)")
    p.add_argument("--out", default="ann2snn_out", help="output folder; one sub-folder per model (default ann2snn_out)")
    p.add_argument("--timesteps", type=timesteps_arg, default=None,
                   help="comma-separated T values for the report (default 8,16,32,64,128,256; "
                        "8,16,32,64,128 with --target loihi)")
    p.add_argument("--no-eval", action="store_true", help="skip the accuracy report")
    add_simulation_arguments(p)
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    add_config_arguments(p)
    add_data_arguments(p, data=True)
    add_target_arguments(p)
    add_report_arguments(p, flag="no-report")


def run(args) -> int:
    config = config_from_args(args, target_conversion_defaults(args))
    scales = scales_from_args(args)
    args.loihi_quantization = loihi_options(args)  # bad options fail here, before the (slow) conversion
    progress = show_progress(args)
    group = distributed.current()
    if args.timesteps is None:
        args.timesteps = [8, 16, 32, 64, 128] if args.target == "loihi" else [8, 16, 32, 64, 128, 256]
    for model in args.models:
        path, manifest = resolve_model(model)
        graph = as_graph(path)
        refuse_unsupported_target(args, graph, config)  # before the calibration data is even read
        calib, data = calibration_and_data(args, manifest, graph.inputs[0].shape, need_data=not args.no_eval)
        name = manifest["name"] if manifest else Path(path).stem
        target = Path(args.out) / name
        if not group.is_main:  # other ranks share the calibration and the evaluation, and write nothing
            snn = convert(graph, calib, config, scales=scales, progress=False)
            if data is not None:
                evaluate(path, data, snn=snn, timesteps=args.timesteps, device=args.device,
                         synaptic_dtype=args.synaptic_dtype, batch_size=args.batch_size, workers=args.workers,
                         checkpoint=args.checkpoint and Path(args.checkpoint) / name,
                         checkpoint_every=args.checkpoint_every)
            continue
        with output_dir(target, args.force) as tmp:
            snn = convert(graph, calib, config, scales=scales, progress=progress)
            snn.save(tmp / "snn")
            save_scales(tmp / "scales.json", snn.scales, {"model": path, "config": snn.config.to_dict()})
            with distributed.local():  # rank 0 alone from here until the evaluation
                if args.target != "snn":  # checked and written before the (slow) evaluation
                    exported = export_target(args, snn, tmp, name, calib, manifest)
                report, fixed, arrays = None, None, None
                if args.target == "loihi" and data is not None:  # Lava-exact accuracy, for both reports
                    arrays = data.read_all(args.batch_size)
                    fixed = fixed_point_accuracy(exported, arrays, args.timesteps, progress)
            if data is not None:
                report = evaluate(path, data, snn=snn, timesteps=args.timesteps, device=args.device,
                                  synaptic_dtype=args.synaptic_dtype, batch_size=args.batch_size, progress=progress,
                                  workers=args.workers, checkpoint=args.checkpoint and Path(args.checkpoint) / name,
                                  checkpoint_every=args.checkpoint_every)
                print(report.table())
                with distributed.local():
                    if args.no_report:
                        write_json(tmp / "report.json", report.to_dict())
                    else:  # report.json (a superset of the accuracy JSON), report.md, plots/
                        write_report(tmp, report, snn, calib, args, fixed_point_accuracy=fixed)
            else:
                print(f"{name}: no evaluation data: accuracy report skipped")
            if args.target == "loihi":
                write_loihi_report(args, exported, report, fixed, arrays, tmp / "loihi_report.json")
        print(f"{name}: wrote {target}")
    return 0


# ------------------------------------------------------------------------------------------------------
# --target loihi / nir


def add_target_arguments(p) -> None:
    g = p.add_argument_group("export target")
    g.add_argument("--target", choices=("snn", "loihi", "nir"), default="snn",
                   help="snn: the saved spiking network only (default); loihi: also a Lava netx <name>.net with a "
                        "fixed-point accuracy report (loihi_report.json); nir: also a NIR graph <name>.nir")
    g.add_argument("--nir-semantics", choices=("nir", "annotated"), default="nir",
                   help="nir: the file's primitives alone mean what ann2snn simulates, in the node types snnTorch, "
                        "Norse and Sinabs implement (converts with --reset zero --v-init 0 --threshold-scale auto "
                        "unless told otherwise); annotated: any conversion, exact only for a consumer that reads the "
                        "node metadata (default nir)")
    g.add_argument("--nir-readout", choices=("current", "integrator"), default=None,
                   help="current: the output is the per-step output current, summed over time by the user (default "
                        "with --nir-semantics nir); integrator: an I node accumulates it (default with annotated)")
    g.add_argument("--loihi-neuron", choices=("cuba", "sdnn"), default="cuba",
                   help="cuba: binary-spike integrate-and-fire (Loihi 1 and 2); sdnn: graded sigma-delta ReLU "
                        "(Loihi 2, exact ANN arithmetic) (default cuba)")
    g.add_argument("--loihi-profile", choices=("loihi2", "loihi1"), default="loihi2",
                   help="hardware limits the network is checked against (default loihi2)")
    g.add_argument("--loihi-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a Loihi quantization option (repeatable), e.g. time_dilation=2 or current_decay=4096 "
                        "(CUBA); the keys are the fields of ann2snn.loihi.QuantizationOptions")


def target_conversion_defaults(args) -> dict:
    """ConversionConfig fields the target needs, used unless the command line or --config says otherwise."""
    if args.target == "nir" and args.nir_semantics == "nir":
        from ann2snn.backends.nir import NIR_CONVERSION

        return dict(NIR_CONVERSION)
    return {}


def refuse_unsupported_target(args, graph, config) -> None:
    """Check the export target's constraints on the network's structure, before any calibration: an
    unsupported op or setting fails in a second, not after minutes of calibration and bias correction."""
    if args.target == "snn":
        return
    from ann2snn.convert.converter import structural_network
    from ann2snn.errors import BackendConstraintError

    net = structural_network(graph, config)
    if args.target == "nir":
        from ann2snn.backends.nir import check_nir, check_nir_config

        violations = check_nir_config(config, semantics=args.nir_semantics) + check_nir(
            net, semantics=args.nir_semantics, readout=args.nir_readout)
        backend = "nir"
    else:
        from ann2snn.loihi import check

        violations = check(net, neuron=args.loihi_neuron, profile=args.loihi_profile)
        backend = f"netx/{args.loihi_profile}"
    if violations:
        raise BackendConstraintError(violations, backend=backend)


def _loihi_option_keys() -> tuple[str, ...]:
    from dataclasses import fields

    from ann2snn.backends.loihi.quantized import QuantizationOptions

    return tuple(f.name for f in fields(QuantizationOptions))


def loihi_options(args):
    """QuantizationOptions from ``--loihi-option KEY=VALUE`` flags (values read as JSON, else as text)."""
    import json

    from ann2snn.backends.loihi.quantized import QuantizationOptions

    pairs = args.loihi_option
    if pairs and args.target != "loihi":
        raise DataError("--loihi-option applies to --target loihi only")
    keys = _loihi_option_keys()
    fields = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in keys:
            raise DataError(f"--loihi-option {pair!r}: expected KEY=VALUE with KEY one of {', '.join(keys)}")
        try:
            fields[key] = json.loads(text)
        except ValueError:
            fields[key] = text
    try:
        return QuantizationOptions(**fields)
    except (ValueError, TypeError) as e:
        raise DataError(f"--loihi-option: {e}") from None


def export_target(args, snn, tmp: Path, name: str, calib, manifest):
    """Write the --target file into the output folder; constraint violations abort before anything lands."""
    if args.target == "nir":
        from ann2snn.backends.nir import export_nir

        pre = manifest["preprocessing_obj"].to_dict() if manifest else None
        return export_nir(snn, tmp / f"{name}.nir", semantics=args.nir_semantics, readout=args.nir_readout,
                          preprocessing=pre)
    from ann2snn.loihi import export  # h5py and the Loihi backend load only for --target loihi

    pre = manifest["preprocessing_obj"].to_dict() if manifest else None
    exported = export(snn, tmp / f"{name}.net", neuron=args.loihi_neuron, profile=args.loihi_profile,
                      calibration=calib, max_timesteps=max(args.timesteps), preprocessing=pre,
                      options=args.loihi_quantization)
    print(exported.table())
    return exported


def fixed_point_accuracy(exported, data, timesteps, progress: bool) -> dict[str, float]:
    """{T: accuracy} of the bit-exact fixed-point (Lava fixed_pt) simulation of the exported network."""
    import numpy as np

    from ann2snn.loihi import simulate_loihi

    x, y = data
    res = simulate_loihi(exported, x, timesteps, progress=progress)
    return {t: float(np.mean(res.predictions(t) == y)) for t in res.timesteps}


def write_loihi_report(args, exported, report, fixed, data, path: Path) -> None:
    """loihi_report.json: ANN, float SNN and fixed-point (Lava-exact) accuracy per T, quantization, resources."""
    doc = {"model": args.models, "neuron": exported.neuron, "profile": exported.profile,
           "file": exported.path.name if exported.path else None, "timesteps": list(args.timesteps),
           "latency_steps": exported.latency, "export": exported.to_dict()}
    if fixed is not None:
        doc.update(samples=int(len(data[1])), fixed_point_accuracy=fixed)
        if report is not None:
            doc.update(ann_accuracy=report.ann_accuracy, ann_source=report.ann_source,
                       snn_accuracy={t: report.snn_accuracy[t] for t in args.timesteps})
        print(f"{'T':>6}  {'ANN %':>6}  {'float SNN %':>11}  {'Loihi fixed-point %':>19}")
        for t in args.timesteps:
            ann = "" if report is None else f"{100 * report.ann_accuracy:6.2f}"
            snn = "" if report is None else f"{100 * report.snn_accuracy[t]:11.2f}"
            print(f"{t:>6}  {ann:>6}  {snn:>11}  {100 * fixed[t]:19.2f}")
    write_json(path, doc)
