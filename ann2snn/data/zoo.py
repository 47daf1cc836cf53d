"""The bundled model zoo: manifests (model file, preprocessing, classes) and the shared image sample."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ann2snn.data.arrays import PathLike, _check_images, _check_labels, _npz_array, _open_npz
from ann2snn.data.preprocessing import Preprocessing
from ann2snn.errors import DataError

__all__ = ["ZooSample", "load_zoo_manifest", "load_zoo_sample", "zoo_model_dir"]


_ZOO_ENV = "ANN2SNN_MODEL_ZOO"
_MANIFEST_REQUIRED = {
    "name": str, "description": str, "input_name": str, "input_shape": list, "preprocessing": dict,
    "classes": list, "ann_accuracy": float, "model_file": str, "sample_file": str,
}
_SAMPLE_KEYS = ("calib_x", "calib_y", "test_x", "test_y")


class ZooSample(NamedTuple):
    """What :func:`load_zoo_sample` returns; unpacks as a 5-tuple."""

    calib_x: np.ndarray
    calib_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    preprocessing: Preprocessing


def _default_zoo_root() -> Path:
    env = os.environ.get(_ZOO_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "model_zoo"


def zoo_model_dir(name_or_dir: PathLike, zoo_root: PathLike | None = None) -> Path:
    """Resolve a zoo model: a directory holding ``manifest.json``, or a model name looked up in
    ``zoo_root`` (default: ``$ANN2SNN_MODEL_ZOO``, else ``model_zoo/`` of the source checkout)."""
    cand = Path(name_or_dir)
    if (cand / "manifest.json").is_file():
        return cand
    name = str(name_or_dir)
    root = Path(zoo_root) if zoo_root is not None else _default_zoo_root()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"{cand}: no manifest.json there, and it is not a plain model name")
    d = root / name
    if not (d / "manifest.json").is_file():
        known = sorted(q.parent.name for q in root.glob("*/manifest.json")) if root.is_dir() else []
        raise DataError(f"{d / 'manifest.json'}: no such zoo model {name!r} (known in {root}: {known})")
    return d


def _safe_sibling(base: Path, rel: str, manifest: Path, key: str) -> Path:
    if not rel or Path(rel).is_absolute() or "/" in rel or "\\" in rel or rel in (".", ".."):
        raise DataError(f"{manifest}: '{key}' must be a plain file name, got {rel!r}")
    return base / rel


def load_zoo_manifest(name_or_dir: PathLike, zoo_root: PathLike | None = None) -> dict[str, Any]:
    """Read and validate a zoo model's ``manifest.json``.

    Returns the manifest dict plus three resolved entries: ``model_path`` (str, in the model's
    directory), ``sample_path`` (str: the model's directory, else the zoo root -- the sample file is
    shared by every model) and ``preprocessing_obj`` (the validated :class:`Preprocessing`).
    """
    d = zoo_model_dir(name_or_dir, zoo_root)
    mpath = d / "manifest.json"
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise DataError(f"{mpath}: expected a JSON object, got {type(m).__name__}")
    problems = []
    for key, typ in _MANIFEST_REQUIRED.items():
        if key not in m:
            problems.append(f"missing '{key}'")
        elif isinstance(m[key], bool) or not isinstance(m[key], (int, float) if typ is float else typ):
            problems.append(f"'{key}' should be {typ.__name__}, got {type(m[key]).__name__}")
    if problems:
        raise DataError(f"{mpath}: invalid manifest: " + "; ".join(problems))
    if not 0.0 <= float(m["ann_accuracy"]) <= 1.0:
        raise DataError(f"{mpath}: 'ann_accuracy' must be a fraction in [0, 1], got {m['ann_accuracy']}")
    m["preprocessing_obj"] = Preprocessing.from_dict(m["preprocessing"], source=f"{mpath} ['preprocessing']")
    model = _safe_sibling(d, m["model_file"], mpath, "model_file")
    sample = _safe_sibling(d, m["sample_file"], mpath, "sample_file")
    if not sample.is_file():
        sample = _safe_sibling(d.parent, m["sample_file"], mpath, "sample_file")
    m["model_path"] = str(model)
    m["sample_path"] = str(sample)
    return m


def load_zoo_sample(name_or_dir: PathLike, zoo_root: PathLike | None = None, *, raw: bool = False) -> ZooSample:
    """The bundled calibration/test sample of a zoo model, ready to feed to it.

    Returns ``ZooSample(calib_x, calib_y, test_x, test_y, preprocessing)``; the ``*_x`` arrays are
    already passed through the manifest's :class:`Preprocessing` (float32, model layout) unless
    ``raw=True`` (then the stored uint8 images). Labels are int64.
    """
    m = load_zoo_manifest(name_or_dir, zoo_root)
    pre: Preprocessing = m["preprocessing_obj"]
    sp = Path(m["sample_path"])
    npz = _open_npz(sp)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{sp}: expected an .npz archive with keys {list(_SAMPLE_KEYS)}")
    with npz:
        missing = [k for k in _SAMPLE_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{sp}: missing key(s) {missing}; found {sorted(npz.files)}")
        arrs = {k: _npz_array(npz, k, sp) for k in _SAMPLE_KEYS}
    out = []
    for split in ("calib", "test"):
        x, y = arrs[f"{split}_x"], arrs[f"{split}_y"]
        _check_images(x, f"{sp} ['{split}_x']")
        y = _check_labels(y, len(x), f"{sp} ['{split}_y']")
        if not raw:
            x = pre.apply(x, name=f"{sp} ['{split}_x']")
        out += [x, y]
    return ZooSample(out[0], out[1], out[2], out[3], pre)
