"""CIFAR-10 / CIFAR-100 as their authors distribute them: the python version (pickles) and the binary version,
as the downloaded ``.tar.gz`` or extracted into a folder.

The python version is a pickle. A pickle can run any function it names, so it is read by
:class:`RestrictedUnpickler`, which admits only what those files hold (a dict of lists, strings, bytes and one
uint8 numpy array): any other global is refused before anything is called.

Memory: an extracted binary file is read record by record (seek + read), so a batch costs only its images;
a python batch file, or any member of a ``.tar.gz`` (no random access), is decoded whole and kept until
another member is needed: memory is bounded by one member (10,000 images of CIFAR-10, 50,000 of CIFAR-100's
``train``), never by the archive.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ann2snn.errors import DataError

__all__ = ["CifarLayout", "RestrictedUnpickler", "find_cifar", "restricted_loads"]

_IMAGE_BYTES = 3 * 32 * 32


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _codecs_encode(text, encoding="latin1"):
    # how Python 3's protocol-2 pickles spell a bytes object
    import codecs

    return codecs.encode(text, encoding)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that knows only the globals a CIFAR pickle contains; any other name is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _codecs_encode,
    }

    def __init__(self, file, *, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise DataError(f"{self.source}: the pickle refers to {module}.{name}, which a CIFAR file never "
                            "contains: refused, nothing in it was run")
        return factory()

    def persistent_load(self, pid):
        raise DataError(f"{self.source}: the pickle uses persistent ids, which a CIFAR file never does: refused")


def restricted_loads(data: bytes, source: str) -> dict:
    """Unpickle a CIFAR python batch: a dict with str keys (bytes keys are decoded)."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except Exception as e:  # a damaged pickle raises anything from UnpicklingError to ValueError
        raise DataError(f"{source}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{source}: a CIFAR pickle holds a dict, this one a {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


@dataclass(frozen=True)
class CifarLayout:
    """Where the files of one split are: ``members`` are paths inside ``archive`` (or inside ``root``)."""

    variant: str  # "cifar10" | "cifar100"
    fmt: str  # "python" | "binary"
    members: tuple[str, ...]  # batch files of the split, in order
    meta: str | None  # the class-name file
    archive: Path | None  # the .tar.gz, or None for a folder
    root: Path | None  # the folder holding the members


_SPLITS = {
    ("cifar10", "python"): {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                            "meta": "batches.meta"},
    ("cifar10", "binary"): {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"],
                            "meta": "batches.meta.txt"},
    ("cifar100", "python"): {"train": ["train"], "test": ["test"], "meta": "meta"},
    ("cifar100", "binary"): {"train": ["train.bin"], "test": ["test.bin"], "meta": "fine_label_names.txt"},
}


def _identify(names: set[str]) -> tuple[str, str] | None:
    """(variant, format) from the base names found, or None."""
    for (variant, fmt), spec in _SPLITS.items():
        if set(spec["test"]) <= names and spec["meta"] in names:
            return variant, fmt
    return None


def find_cifar(path: Path, split: str) -> CifarLayout | None:
    """The CIFAR layout of ``path`` (a folder or a .tar.gz), or None when it is not a CIFAR copy."""
    if split not in ("train", "test"):
        raise DataError(f"{path}: CIFAR split must be 'train' or 'test', got {split!r}")
    if path.is_dir():
        candidates = [path] + sorted(p for p in path.iterdir() if p.is_dir())
        for root in candidates:
            names = {p.name for p in root.iterdir() if p.is_file()}
            found = _identify(names)
            if found:
                spec = _SPLITS[found]
                missing = [m for m in spec[split] if m not in names]
                if missing:
                    raise DataError(f"{root}: CIFAR {split} split is incomplete: missing {missing}")
                return CifarLayout(found[0], found[1], tuple(spec[split]), spec["meta"], None, root)
        return None
    if not tarfile.is_tarfile(path):
        return None
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {os.path.basename(m.name): m.name for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: damaged archive ({e})") from None
    found = _identify(set(members))
    if not found:
        return None
    spec = _SPLITS[found]
    missing = [m for m in spec[split] if m not in members]
    if missing:
        raise DataError(f"{path}: CIFAR {split} split is incomplete: missing {missing}")
    return CifarLayout(found[0], found[1], tuple(members[m] for m in spec[split]), members[spec["meta"]], path, None)


class CifarReader:
    """Images and labels of one split by index (uint8 HWC), reading as little as the format allows."""

    def __init__(self, layout: CifarLayout, where: str):
        self.layout, self.where = layout, where
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None  # (member index, images, labels)
        self.classes = self._class_names()
        self.member_sizes = [self._member_size(i) for i in range(len(layout.members))]
        self.offsets = np.cumsum([0] + self.member_sizes)

    # -- files -------------------------------------------------------------------------------------
    def _read_member(self, name: str) -> bytes:
        lay = self.layout
        try:
            if lay.archive is None:
                return (lay.root / name).read_bytes()
            with tarfile.open(lay.archive, "r:*") as tar:
                f = tar.extractfile(name)
                if f is None:
                    raise DataError(f"{lay.archive}: {name} is not a regular file")
                return f.read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{self.where}: cannot read {name} ({e})") from None

    @property
    def _record_bytes(self) -> int:
        return _IMAGE_BYTES + (1 if self.layout.variant == "cifar10" else 2)

    def _member_size(self, i: int) -> int:
        lay, name = self.layout, self.layout.members[i]
        if lay.fmt == "binary":
            if lay.archive is None:
                size = (lay.root / name).stat().st_size
            else:
                with tarfile.open(lay.archive, "r:*") as tar:
                    size = tar.getmember(name).size
            if size == 0 or size % self._record_bytes:
                raise DataError(f"{self.where}: {name} holds {size} bytes, not a whole number of "
                                f"{self._record_bytes}-byte CIFAR records (truncated?)")
            return size // self._record_bytes
        return len(self._decode_member(i)[1])

    def _class_names(self) -> tuple[str, ...]:
        raw = self._read_member(self.layout.meta)
        if self.layout.fmt == "binary":
            names = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
        else:
            meta = restricted_loads(raw, f"{self.where} ({self.layout.meta})")
            key = "label_names" if self.layout.variant == "cifar10" else "fine_label_names"
            names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in meta.get(key, [])]
        if not names:
            raise DataError(f"{self.where}: {self.layout.meta} holds no class names")
        return tuple(names)

    def _decode_member(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is not None and self._cached[0] == i:
            return self._cached[1], self._cached[2]
        name = self.layout.members[i]
        raw = self._read_member(name)
        where = f"{self.where} ({name})"
        if self.layout.fmt == "binary":
            rec = np.frombuffer(raw, np.uint8).reshape(-1, self._record_bytes)
            labels, flat = rec[:, self._record_bytes - _IMAGE_BYTES - 1], rec[:, -_IMAGE_BYTES:]
        else:
            d = restricted_loads(raw, where)
            key = "labels" if self.layout.variant == "cifar10" else "fine_labels"
            if "data" not in d or key not in d:
                raise DataError(f"{where}: a CIFAR batch holds 'data' and '{key}', found {sorted(d)}")
            flat, labels = np.asarray(d["data"]), np.asarray(d[key])
            if flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != _IMAGE_BYTES or len(labels) != len(flat):
                raise DataError(f"{where}: 'data' must be uint8 of shape (N, {_IMAGE_BYTES}) with N labels, got "
                                f"{flat.dtype} {flat.shape} and {len(labels)} labels")
        images = flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self._cached = (i, images, labels.astype(np.int64))
        return images, self._cached[2]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (n, 32, 32, 3) images and int64 labels of ``indices`` (global indices of the split)."""
        out = np.empty((len(indices), 32, 32, 3), np.uint8)
        labels = np.empty(len(indices), np.int64)
        members = np.searchsorted(self.offsets, indices, side="right") - 1
        for m in np.unique(members):
            sel = np.nonzero(members == m)[0]
            local = np.asarray(indices)[sel] - self.offsets[m]
            lay = self.layout
            if lay.fmt == "binary" and lay.archive is None:  # random access: only these records are read
                with open(lay.root / lay.members[m], "rb") as f:
                    for j, k in zip(sel, local):
                        f.seek(int(k) * self._record_bytes)
                        rec = np.frombuffer(f.read(self._record_bytes), np.uint8)
                        labels[j] = rec[self._record_bytes - _IMAGE_BYTES - 1]
                        out[j] = rec[-_IMAGE_BYTES:].reshape(3, 32, 32).transpose(1, 2, 0)
            else:
                images, lab = self._decode_member(int(m))
                out[sel], labels[sel] = images[local], lab[local]
        if labels.size and labels.max() >= len(self.classes):
            raise DataError(f"{self.where}: label {int(labels.max())} out of range for {len(self.classes)} classes")
        return out, labels
