"""Helpers shared by CLI sub-commands: model and data resolution, config flags, safe output folders."""

from __future__ import annotations

import argparse
import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ann2snn import distributed
from ann2snn.config import GRANULARITIES, INPUT_ENCODINGS, MAXPOOL_MODES, RESETS, ConversionConfig
from ann2snn.data import (
    PRESETS, ArraySource, DataStream, Preprocessing, load_zoo_manifest, load_zoo_sample, open_source, preset,
)
from ann2snn.errors import Ann2SnnError, DataError, InvalidModelError
from ann2snn.fileio import atomic_directory, write_json_atomic
from ann2snn.sim.simulate import SYNAPTIC_DTYPES

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


def _number_or_text(text: str) -> float | str:
    # a number, else the text: ConversionConfig names what is wrong, with the other invalid values
    try:
        return float(text)
    except ValueError:
        return text


def _bias_correction_arg(text: str) -> bool | str:
    values = {"auto": "auto", "on": True, "off": False}
    if text not in values:
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return values[text]


def _config_flags() -> dict[str, dict]:
    """argparse options of every ConversionConfig field (``--field-name``); ``add_config_arguments`` refuses
    to build a parser when this table and the dataclass disagree, so the two cannot drift. Ranges are
    checked by ConversionConfig (one error listing every invalid value), types here."""
    d = ConversionConfig()
    return {
        "norm": dict(help=f"threshold statistic: max, percentile:P, mmse (default {d.norm})"),
        "granularity": dict(choices=GRANULARITIES, help=f"one threshold per channel or per layer (default {d.granularity})"),
        "v_init": dict(type=_number_or_text, metavar="{auto,FRACTION}",
                       help="initial membrane potential as a fraction of the threshold (0, 0.5) or auto (default auto)"),
        "bias_correction": dict(type=_bias_correction_arg, metavar="{auto,on,off}",
                                help="light calibration of biases on calibration data (per-channel thresholds with "
                                     "--reset zero) (default auto)"),
        "calibration_timesteps": dict(type=int, metavar="T",
                                      help=f"T used by mmse, bias correction and auto choices (default "
                                           f"{d.calibration_timesteps})"),
        "holdout_fraction": dict(type=float, metavar="F",
                                 help=f"fraction of the calibration images held out to score the auto choices "
                                      f"(default {d.holdout_fraction})"),
        "maxpool": dict(choices=MAXPOOL_MODES, help=f"spiking max-pool mode (default {d.maxpool})"),
        "signed": dict(action="store_true", help="signed IF neurons (better at small T, slower)"),
        "reset": dict(choices=RESETS, help="after a spike, subtract the threshold (default) or reset to zero (NIR's "
                                           "and Lava's IF)"),
        "threshold_scale": dict(type=_number_or_text, metavar="{auto,F}",
                                help=f"multiply every calibrated threshold by F (time dilation), or auto: chosen "
                                     f"on held-out calibration data (default {d.threshold_scale:g})"),
        "input_encoding": dict(choices=INPUT_ENCODINGS, help="analog constant current (default) or seeded Poisson spikes"),
        "seed": dict(type=int, help=f"seed for every random choice (default {d.seed})"),
        "calibration_batch_size": dict(type=int, metavar="N",
                                       help=f"images per batch of the calibration statistics (default "
                                            f"{d.calibration_batch_size})"),
        "bias_correction_samples": dict(type=int, metavar="N",
                                        help=f"calibration images bias correction simulates, at most (default "
                                             f"{d.bias_correction_samples})"),
        "bias_correction_memory_mb": dict(type=int, metavar="MB",
                                          help=f"memory for the spikes bias correction records; fewer samples are used "
                                               f"beyond it (default {d.bias_correction_memory_mb})"),
        "auto": dict(action="store_true", help="tune first (what `ann2snn tune` does, for T = "
                                               "--calibration-timesteps) and convert with the chosen settings; slower"),
    }


def add_config_arguments(p: argparse.ArgumentParser, *, exclude=(), title: str = "conversion") -> None:
    """One flag per ConversionConfig field (but ``exclude``), plus --config and --scales."""
    flags = _config_flags()
    names = [f.name for f in dataclasses.fields(ConversionConfig)]
    if set(flags) != set(names):
        raise RuntimeError(f"the CLI's config flags and ConversionConfig disagree on {sorted(set(flags) ^ set(names))}")
    g = p.add_argument_group(title)
    for name in names:
        if name not in exclude:
            # default None: a --config file's value is kept unless the flag is given
            g.add_argument("--" + name.replace("_", "-"), default=None, **flags[name])
    g.add_argument("--config", help="JSON file with ConversionConfig fields (e.g. from `ann2snn tune`); "
                                    "flags given explicitly win")
    if "scales" not in exclude:
        g.add_argument("--scales", metavar="FILE",
                       help="thresholds to use instead of calibrating them (a scales.json written by `convert`, or a "
                            "report's suggested_scales.json); calibration data is still used for bias correction")


def add_simulation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--synaptic-dtype", choices=("auto",) + tuple(SYNAPTIC_DTYPES), default="auto",
                   help="arithmetic of the synaptic ops (conv/dense on spikes) in the simulation: auto (default) = "
                        "int8 on CPUs with VNNI/AMX, else bfloat16 where the hardware has it natively, else float32 "
                        "(int8 and bfloat16 are faster and lose at most 0.1 pt of float32's accuracy on the zoo at T=32 and 64)")
    p.add_argument("--batch-size", type=int, default=100, help="simulation batch size (default 100)")
    g = p.add_argument_group("long runs (resumable; sharded with torchrun)")
    g.add_argument("--checkpoint", metavar="DIR",
                   help="keep partial evaluation results here; the same command run again resumes from them "
                        f"(default for evaluations of over {LONG_RUN_IMAGE_STEPS:,} image-steps with --json F: "
                        "F.checkpoint/, removed when the run completes)")
    g.add_argument("--checkpoint-every", type=positive_int, default=10, metavar="K",
                   help="batches between two checkpoint writes (default 10)")
    g.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others at a synchronization point before "
                        "the run stops with an error (default 1800)")


# an evaluation longer than this (images x max T) gets a checkpoint folder by default
LONG_RUN_IMAGE_STEPS = 1_000_000


def show_progress(args) -> bool:
    """Progress bars: not with --quiet, and under torchrun on rank 0 only (one bar, not one per rank)."""
    return not args.quiet and distributed.current().is_main


def scales_from_args(args) -> dict | None:
    """The thresholds of ``--scales FILE`` (checked against the model by ``convert``), or None."""
    path = getattr(args, "scales", None)
    if not path:
        return None
    from ann2snn.calibration import load_scales

    return load_scales(path)


def config_from_args(args, defaults: dict | None = None) -> ConversionConfig:
    """The ConversionConfig of the command line: ConversionConfig's defaults, then ``defaults`` (a
    target's own, e.g. the NIR conversion), then the --config file, then the flags given."""
    fields = dict(defaults or {})
    if getattr(args, "config", None):
        try:
            doc = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{args.config}: cannot read the config JSON: {e}") from None
        if not isinstance(doc, dict):
            raise DataError(f"{args.config}: the config JSON must be an object of ConversionConfig fields")
        fields.update(doc)
    flags = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(ConversionConfig)}
    given = {k: v for k, v in flags.items() if v is not None}
    fields.update(given)
    try:
        return ConversionConfig.from_dict(fields)
    except (ValueError, TypeError) as e:
        named = [f"--{k.replace('_', '-')}" for k in given if f"{k}=" in str(e)]
        raise DataError(str(e) + (f" (given as {', '.join(named)})" if named else "")) from None


_DATA_FORMATS = ("an image folder (class folders, or unlabeled images for --calib), a CIFAR-10/100 archive or "
                 "folder (python or binary version), .npy, .npz (x/y or images/labels), or an IDX images file "
                 "beside its labels")


def add_data_arguments(p: argparse.ArgumentParser, *, data: bool) -> None:
    g = p.add_argument_group(f"data: {_DATA_FORMATS}")
    if data:
        g.add_argument("--data", help="evaluation data, labeled (default for zoo models: the bundled 1,000 test images)")
        g.add_argument("--data-split", choices=("train", "test"), default="test",
                       help="the split of a CIFAR archive --data reads (default test)")
        g.add_argument("--limit", type=positive_int, help="use only the first N evaluation images (N >= 1)")
        g.add_argument("--subset", type=positive_int, metavar="N",
                       help="use N evaluation images drawn at random with --seed (kept in file order)")
    g.add_argument("--calib", help="calibration data, labels not needed (default for zoo models: the bundled 1,000 "
                                   "training images)")
    g.add_argument("--calib-split", choices=("train", "test"), default="train",
                   help="the split of a CIFAR archive --calib reads (default train)")
    g.add_argument("--calib-limit", type=positive_int, metavar="N", help="use only the first N calibration images")
    g.add_argument("--calib-subset", type=positive_int, metavar="N",
                   help="use N calibration images drawn at random with --seed")
    g.add_argument("--workers", type=non_negative_int, metavar="N",
                   help="processes decoding images while the network runs (default 1 for image folders and "
                        "CIFAR archives, 0 for arrays)")
    g = p.add_argument_group("preprocessing (applied in this order; zoo models carry theirs)")
    g.add_argument("--preprocess", choices=sorted(PRESETS),
                   help="a named convention: imagenet (resize 256, crop 224, /255, torchvision mean/std), caffe "
                        "(resize 256, crop 224, BGR, 0..255 minus the mean), cifar10, mnist; the flags below "
                        "override single steps")
    g.add_argument("--resize", type=positive_int, metavar="N", help="resize the shorter side to N pixels")
    g.add_argument("--crop", type=crop_arg, metavar="N|HxW", help="center crop to N x N (or H x W) pixels")
    g.add_argument("--channel-order", choices=("RGB", "BGR"), help="channel order the model expects (default RGB)")
    g.add_argument("--scale", type=float, help="multiply raw pixels by this (e.g. 0.00392156862745098 = 1/255)")
    g.add_argument("--mean", help="subtract: a number or comma-separated per-channel values")
    g.add_argument("--std", help="divide: a number or comma-separated per-channel values")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), help="the layout the model expects")


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def crop_arg(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        vals = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW (positive integers), got {text!r}") from None
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW (positive integers), got {text!r}")
    return (vals[0], vals[-1])


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
    """The preprocessing of ``--preprocess`` (else the zoo manifest's, else none), with single flags on top."""
    name = getattr(args, "preprocess", None)
    if name:
        base = preset(name)
    else:
        base = manifest["preprocessing_obj"] if manifest else Preprocessing(channels=None)
    d = base.to_dict()
    for key, val in (("scale", args.scale), ("mean", _stat(args.mean)), ("std", _stat(args.std)),
                     ("layout", args.layout), ("resize", getattr(args, "resize", None)),
                     ("crop", getattr(args, "crop", None)), ("channel_order", getattr(args, "channel_order", None))):
        if val is not None:
            d[key] = val
    if d.get("channels") is None and input_shape is not None:
        layout = d.get("layout", "NCHW")
        d["channels"] = int(input_shape[0] if layout == "NCHW" else input_shape[-1])
    return Preprocessing.from_dict(d)


def data_stream(path: str, pre: Preprocessing, *, split: str, limit=None, subset=None, seed: int = 0,
                preset_name: str | None = None) -> DataStream:
    """A stream over the data at ``path``. A float array of the model's rank with identity preprocessing
    is taken as model input already (what ``convert``'s sample files and users' preprocessed .npz hold)."""
    source = open_source(path, split=split)
    if isinstance(source, ArraySource) and source.x.dtype.kind == "f" and source.x.ndim == 4 and pre.scale == 1.0 \
            and pre.mean == 0.0 and pre.std == 1.0 and not pre.has_geometry:
        source.preprocessed = True
    return DataStream.of(source, pre, limit=limit, subset=subset, seed=seed, preset=preset_name)


def calibration_from_args(args, manifest, input_shape) -> np.ndarray:
    """The calibration images (held in memory: conversion passes over them several times); labels unused."""
    pre = preprocessing_from_args(args, manifest, input_shape)
    if args.calib:
        stream = data_stream(args.calib, pre, split=args.calib_split, limit=args.calib_limit,
                             subset=args.calib_subset, seed=_seed(args), preset_name=getattr(args, "preprocess", None))
        return stream.read_all()[0]
    if manifest is None:
        raise DataError("--calib is required for models outside the zoo")
    if args.calib_limit or args.calib_subset:
        raise DataError("--calib-limit/--calib-subset apply to --calib data")
    return load_zoo_sample(Path(manifest["model_path"]).parent).calib_x


def _seed(args) -> int:
    return int(getattr(args, "seed", None) or 0)


def calibration_and_data(args, manifest, input_shape, *, need_data: bool):
    """(calibration array, evaluation DataStream or None) from flags, falling back to a zoo model's sample."""
    calib = calibration_from_args(args, manifest, input_shape)
    data = None
    if need_data:
        if getattr(args, "data", None):
            pre = preprocessing_from_args(args, manifest, input_shape)
            data = data_stream(args.data, pre, split=args.data_split, limit=args.limit, subset=args.subset,
                               seed=_seed(args), preset_name=getattr(args, "preprocess", None))
            if not data.has_labels:
                raise DataError(f"{args.data}: evaluation data needs labels (class folders, a CIFAR archive, or "
                                "an .npz/IDX file with labels)")
        elif manifest is not None:
            sample = load_zoo_sample(Path(manifest["model_path"]).parent)
            source = ArraySource(sample.test_x, sample.test_y, path=f"{manifest['sample_path']} (test_x, test_y)",
                                 kind="zoo sample", preprocessed=True, classes=manifest.get("classes"))
            data = DataStream.of(source, limit=args.limit, subset=args.subset, seed=_seed(args))
    return calib, data


@contextmanager
def output_dir(path: Path, force: bool):
    """Yield a temp folder beside ``path``; on success it replaces ``path`` atomically, else it vanishes."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to replace it")
    with atomic_directory(path) as tmp:
        yield tmp


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically: an interrupted run leaves the old file (or none), never half a file."""
    write_json_atomic(path, obj)
