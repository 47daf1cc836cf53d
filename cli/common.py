"""Helpers shared by CLI sub-commands: model and data resolution, config flags, safe output folders."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ann2snn.config import ConversionConfig
from ann2snn.data import Preprocessing, load_dataset, load_zoo_manifest, load_zoo_sample
from ann2snn.errors import Ann2SnnError, DataError, InvalidModelError

EXIT_OUTPUT_EXISTS = 7


class OutputExistsError(Ann2SnnError):
    exit_code = EXIT_OUTPUT_EXISTS


def timesteps_arg(text: str) -> list[int]:
    try:
        ts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"timesteps must be comma-separated integers, got {text!r}") from None
    if not ts or ts[0] < 1:
        raise argparse.ArgumentTypeError(f"timesteps must be positive integers, got {text!r}")
    return ts


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    # flags default to None so that a --config file's values are kept unless a flag is given
    d = ConversionConfig()
    g = p.add_argument_group("conversion")
    g.add_argument("--norm", help=f"threshold statistic: max, percentile:P, mmse (default {d.norm})")
    g.add_argument("--granularity", choices=("channel", "layer"),
                   help=f"one threshold per channel or per layer (default {d.granularity})")
    g.add_argument("--v-init", help="initial membrane potential as a fraction of the threshold (0, 0.5) or auto "
                                    "(default auto)")
    g.add_argument("--bias-correction", choices=("auto", "on", "off"),
                   help="light calibration of biases on calibration data (default auto)")
    g.add_argument("--maxpool", choices=("pre_neuron", "cumulative", "spike"),
                   help=f"spiking max-pool mode (default {d.maxpool})")
    g.add_argument("--signed", action="store_true", default=None,
                   help="signed IF neurons (better at small T, slower)")
    g.add_argument("--input-encoding", choices=("analog", "poisson"),
                   help="analog constant current (default) or seeded Poisson spikes")
    g.add_argument("--calibration-timesteps", type=int,
                   help=f"T used by mmse, bias correction and auto choices (default {d.calibration_timesteps})")
    g.add_argument("--seed", type=int, help=f"seed for every random choice (default {d.seed})")
    g.add_argument("--auto", action="store_true", default=None,
                   help="tune first (what `ann2snn tune` does, for T = --calibration-timesteps) and convert with "
                        "the chosen settings; slower")
    g.add_argument("--config", help="JSON file with ConversionConfig fields (e.g. from `ann2snn tune`); "
                                    "flags given explicitly win")
    g.add_argument("--scales", metavar="FILE",
                   help="thresholds to use instead of calibrating them (a scales.json written by `convert`, or a "
                        "report's suggested_scales.json); calibration data is still used for bias correction")


def add_simulation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--synaptic-dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="dtype of spikes and conv/dense weights in the simulation: auto (default) = bfloat16 where "
                        "the hardware has it natively (faster; within 0.15 pt of float32 on the zoo), else float32")


def scales_from_args(args) -> dict | None:
    """The thresholds of ``--scales FILE`` (checked against the model by ``convert``), or None."""
    path = getattr(args, "scales", None)
    if not path:
        return None
    from ann2snn.calibration import load_scales

    return load_scales(path)


def config_from_args(args) -> ConversionConfig:
    fields = {}
    if getattr(args, "config", None):
        try:
            fields = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{args.config}: cannot read the config JSON: {e}") from None
        if not isinstance(fields, dict):
            raise DataError(f"{args.config}: the config JSON must be an object of ConversionConfig fields")
    flags = {"norm": args.norm, "granularity": args.granularity, "maxpool": args.maxpool, "signed": args.signed,
             "input_encoding": args.input_encoding, "calibration_timesteps": args.calibration_timesteps,
             "seed": args.seed, "auto": getattr(args, "auto", None)}
    if args.v_init is not None:
        flags["v_init"] = "auto" if args.v_init == "auto" else _float(args.v_init, "--v-init")
    if args.bias_correction is not None:
        flags["bias_correction"] = {"auto": "auto", "on": True, "off": False}[args.bias_correction]
    fields.update({k: v for k, v in flags.items() if v is not None})
    try:
        return ConversionConfig.from_dict(fields)
    except (ValueError, TypeError) as e:
        raise DataError(str(e)) from None


def _float(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{flag}: expected a number or 'auto', got {text!r}") from None


def add_data_arguments(p: argparse.ArgumentParser, *, data: bool) -> None:
    g = p.add_argument_group("data (.npz with x/y or images/labels, or an IDX images file beside its labels)")
    if data:
        g.add_argument("--data", help="evaluation data (default for zoo models: the bundled 1,000 test images)")
    g.add_argument("--calib", help="calibration data (default for zoo models: the bundled 1,000 training images)")
    g.add_argument("--scale", type=float, help="multiply raw pixels by this (e.g. 0.00392156862745098 = 1/255)")
    g.add_argument("--mean", help="subtract: a number or comma-separated per-channel values")
    g.add_argument("--std", help="divide: a number or comma-separated per-channel values")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), help="the layout the model expects")
    g.add_argument("--limit", type=positive_int, help="use only the first N evaluation samples (N >= 1)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--limit 0`` used to mean "all" and a negative one dropped samples)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def resolve_model(model: str) -> tuple[str, dict | None]:
    """A model path, or a zoo model name/dir; returns (onnx path, zoo manifest or None)."""
    p = Path(model)
    if p.is_file():
        manifest_path = p.parent / "manifest.json"
        if manifest_path.is_file():
            m = load_zoo_manifest(p.parent)
            if Path(m["model_path"]).resolve() == p.resolve():
                return str(p), m
        return str(p), None
    if p.suffix or "/" in model or "\\" in model:  # meant as a path, not a zoo name
        raise InvalidModelError(f"{model}: no such model file")
    try:
        m = load_zoo_manifest(model)
    except DataError:
        raise InvalidModelError(f"{model}: no such model file or zoo model") from None
    return m["model_path"], m


def _stat(text):
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise DataError(f"--mean/--std: expected a number or comma-separated numbers, got {text!r}") from None
    return vals[0] if len(vals) == 1 else tuple(vals)


def preprocessing_from_args(args, manifest: dict | None, input_shape) -> Preprocessing:
    base = manifest["preprocessing_obj"] if manifest else Preprocessing(channels=None)
    d = base.to_dict()
    for key, val in (("scale", args.scale), ("mean", _stat(args.mean)), ("std", _stat(args.std)),
                     ("layout", args.layout)):
        if val is not None:
            d[key] = val
    if d.get("channels") is None and input_shape is not None:
        layout = d.get("layout", "NCHW")
        d["channels"] = int(input_shape[0] if layout == "NCHW" else input_shape[-1])
    return Preprocessing.from_dict(d)


def load_images(path: str, pre: Preprocessing, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    x, y = load_dataset(path)
    if x.dtype.kind == "f" and pre.scale == 1.0 and pre.mean == 0.0 and pre.std == 1.0 and x.ndim == 4:
        return x.astype(np.float32), y  # already preprocessed
    return pre.apply(x, name=f"{what} {path}"), y


def calibration_and_data(args, manifest, input_shape, *, need_data: bool):
    """(calib_x, (x, y) or None) from flags, falling back to a zoo model's bundled sample."""
    pre = preprocessing_from_args(args, manifest, input_shape)
    sample = load_zoo_sample(Path(manifest["model_path"]).parent) if manifest else None
    if args.calib:
        calib, _ = load_images(args.calib, pre, "calibration data")
    elif sample is not None:
        calib = sample.calib_x
    else:
        raise DataError("--calib is required for models outside the zoo")
    data = None
    if need_data:
        if getattr(args, "data", None):
            x, y = load_images(args.data, pre, "evaluation data")
            if y is None:
                raise DataError(f"{args.data}: evaluation data needs labels")
            data = (x, y)
        elif sample is not None:
            data = (sample.test_x, sample.test_y)
        if data is not None and args.limit:
            data = (data[0][: args.limit], data[1][: args.limit])
    return calib, data


@contextmanager
def output_dir(path: Path, force: bool):
    """Yield a temp folder beside ``path``; on success it replaces ``path`` atomically, else it vanishes."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.old")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if old.exists() and not path.exists():  # stopped between the two renames: put the old output back
            os.replace(old, path)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
