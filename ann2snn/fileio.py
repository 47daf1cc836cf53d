"""Atomic file output: readers never see a partial file, and a failure leaves any old file untouched."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["atomic_directory", "atomic_path", "json_default", "json_keys", "write_bytes_atomic", "write_json_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, it is synced to disk and
    renamed onto ``path`` (``os.replace``). On any exception the temporary file is removed."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield Path(tmp_name)
        with open(tmp_name, "rb") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; once the block has filled it, it replaces ``path`` (an old
    folder there is moved aside, then removed). On any exception the temporary folder is removed and the
    old ``path``, if any, stays (or is put back, if the run stopped between the two renames)."""
    path = Path(path)
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
        if old.exists() and not path.exists():
            os.replace(old, path)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def json_default(o: Any):
    """The one JSON encoder of ann2snn's files: numpy scalars and arrays, and paths as text. Anything else
    is a bug in what is being written, and raises."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def json_keys(obj: Any) -> Any:
    """A copy with every dict key as a string, the form JSON gives (results are keyed by int T in memory,
    by "T" in files)."""
    if isinstance(obj, dict):
        return {str(k): json_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_keys(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_bytes_atomic(path, json.dumps(obj, indent=1, default=json_default).encode())
