"""Scales (thresholds) as a versioned JSON file a user can read, edit and hand back.

Format, version 1::

    {
      "format": "ann2snn-scales",
      "version": 1,
      "meta": {...free-form, e.g. method, timesteps, model...},
      "scales": {"<tensor name>": [positive floats, one per channel, or one for the layer], ...}
    }

Files are written atomically (a temporary file in the same directory, then ``os.replace``), so a crash
never leaves a half-written file. Floats are written as the shortest decimal that reads back as the
same float32, so ``load_scales(save_scales(...))`` returns the same float32 arrays bit for bit.
On reading, a bare number is accepted for a one-element list (hand-written layer-wise scales).
Every problem with a file raises ``DataError`` naming the file and the bad entry.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ann2snn.errors import DataError
from ann2snn.fileio import json_default

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "VERSION", "ScalesFile", "check_scales_match", "load_scales", "read_scales", "save_scales"]

FORMAT = "ann2snn-scales"
VERSION = 1


@dataclass(frozen=True)
class ScalesFile:
    """A parsed scales file: the scales, the free-form ``meta`` and the format version."""

    scales: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION


def _check_values(name: str, values, where: str) -> np.ndarray:
    """One entry as a float32 (C,) array of finite positive numbers, or DataError naming it."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else values
    if not isinstance(values, (list, tuple)):
        raise DataError(f"{where}: scale '{name}' must be a list of numbers, got {type(values).__name__}")
    if not values:
        raise DataError(f"{where}: scale '{name}' is empty")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise DataError(f"{where}: scale '{name}'[{i}] is not a number: {v!r}")
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise DataError(f"{where}: scale '{name}'[{i}] = {v!r} must be a finite positive number")
    with np.errstate(over="ignore"):  # overflow is reported below, naming the entry
        arr = np.asarray(values, dtype=np.float64).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where}: scale '{name}'[{i}] = {values[i]!r} is outside the float32 range")
    return arr


def save_scales(path: str | os.PathLike, scales: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``scales`` ({tensor: 1-D positive array}) and ``meta`` to ``path`` atomically; return the path.

    Raises DataError (and writes nothing) if a scale is not a non-empty 1-D array of finite positive
    numbers or ``meta`` is not JSON-serialisable.
    """
    path = Path(path)
    where = f"scales for '{path}'"
    checked = {}
    for name, values in scales.items():
        if not isinstance(name, str):
            raise DataError(f"{where}: tensor names must be strings, got {name!r}")
        a = np.asarray(values)
        if a.ndim != 1:
            raise DataError(f"{where}: scale '{name}' must be 1-D, got shape {a.shape}")
        checked[name] = _check_values(name, a, where)
    try:
        meta_text = json.dumps(dict(meta or {}), indent=2, sort_keys=True, allow_nan=False, default=json_default)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: meta is not JSON-serialisable: {e}") from None
    # one line per tensor keeps the file readable and diffable; str(np.float32) is the shortest
    # decimal that reads back as the same float32 (3.1, not 3.0999999046325684)
    lines = [f"    {json.dumps(name)}: [{', '.join(str(v) for v in arr)}]" for name, arr in checked.items()]
    text = (
        "{\n"
        f'  "format": {json.dumps(FORMAT)},\n'
        f'  "version": {VERSION},\n'
        f'  "meta": {meta_text.replace(chr(10), chr(10) + "  ")},\n'
        '  "scales": {' + ("\n" + ",\n".join(lines) + "\n  }" if lines else "}") + "\n}\n"
    )
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    log.info("wrote %d scale(s) to %s", len(checked), path)
    return path


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise _Duplicate(k)
        obj[k] = v
    return obj


class _Duplicate(Exception):
    pass


def read_scales(path: str | os.PathLike) -> ScalesFile:
    """Read and validate a scales file (format, version, entries); DataError names the file and entry."""
    path = Path(path)
    where = f"scales file '{path}'"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{where} cannot be read: {e}") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as e:
        raise DataError(f"{where}: key '{e.args[0]}' appears twice") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise DataError(f"{where} is nested too deeply to be a scales file") from None
    if not isinstance(doc, dict):
        raise DataError(f"{where}: expected a JSON object at the top level, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise DataError(f"{where}: 'format' must be {FORMAT!r}, got {doc.get('format')!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise DataError(f"{where}: 'version' must be an integer, got {version!r}")
    if version != VERSION:
        raise DataError(f"{where}: version {version} is not supported (this ann2snn reads version {VERSION})")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise DataError(f"{where}: 'meta' must be an object, got {type(meta).__name__}")
    raw = doc.get("scales")
    if not isinstance(raw, dict):
        got = "nothing" if raw is None else type(raw).__name__
        raise DataError(f"{where}: 'scales' must be an object {{tensor name: [numbers]}}, got {got}")
    scales = {name: _check_values(name, values, where) for name, values in raw.items()}
    return ScalesFile(scales=scales, meta=meta, version=version)


def load_scales(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{tensor name: float32 (C,) array} from a scales file; DataError names the file and bad entry."""
    return read_scales(path).scales


def check_scales_match(scales: Mapping[str, Any], required: Mapping[str, int], *, source: str = "scales") -> None:
    """Check that ``scales`` covers every tensor in ``required`` ({name: channel count}).

    An entry must have either C values (per channel) or 1 (one for the layer), all finite and positive.
    Raises one DataError listing every missing tensor and wrong entry; extra entries are named in it
    (a likely typo) but are not errors on their own. ``source`` names the origin in messages.
    """
    problems = []
    for name, channels in required.items():
        if name not in scales:
            problems.append(f"missing tensor '{name}' ({channels} channel(s))")
            continue
        a = np.asarray(scales[name])
        if a.ndim != 1 or a.size not in (1, int(channels)):
            problems.append(f"tensor '{name}': {a.size if a.ndim == 1 else a.shape} value(s), expected {channels} or 1")
            continue
        try:
            _check_values(name, a, source)
        except DataError as e:
            problems.append(str(e).removeprefix(f"{source}: "))
    extra = [name for name in scales if name not in required]
    if problems:
        if extra:
            problems.append(f"entries for unknown tensor(s) (typo?): {extra}")
        raise DataError(f"{source} do not match the model ({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    if extra:
        log.warning("%s: ignoring entries for tensor(s) the model does not calibrate: %s", source, extra)
