"""Data sources behind one interface, and the stream of preprocessed batches that calibration and evaluation read.

A :class:`DataSource` gives raw images (and labels, when it has them) by index, decoding only what is asked
for. :func:`open_source` picks the reader from what a path holds:

- a folder of class folders ``DIR/<class>/**/*.png|jpg|...`` (torchvision ``ImageFolder``: classes sorted by
  name, a class's index is its label) or a flat folder of images (unlabeled), decoded by Pillow;
- a CIFAR-10 / CIFAR-100 copy: the python or binary version, ``.tar.gz`` or extracted (:mod:`.cifar`);
- ``.npy`` (memory-mapped; unlabeled), ``.npz`` and IDX (read whole: compressed files have no random access).

A :class:`DataStream` is a source plus its :class:`Preprocessing` and the images chosen (``limit``, a seeded
``subset``). It yields fixed batches by index, decoded on demand in DataLoader worker processes, so memory is
bounded by the batch (and the prefetch), whatever the number of images.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ann2snn.data.arrays import _GZIP_MAGIC, _ZIP_MAGIC, _EMPTY_ZIP_MAGIC, load_dataset, load_npy, load_npz
from ann2snn.data.cifar import CifarReader, find_cifar
from ann2snn.data.preprocessing import Preprocessing
from ann2snn.errors import DataError

__all__ = ["ArraySource", "CifarSource", "DataSource", "DataStream", "ImageFolderSource", "open_source",
           "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

# torchvision's IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_NPY_MAGIC = b"\x93NUM"


class DataSource:
    """Raw images by index. Subclasses set ``path``, ``kind``, ``classes`` and ``has_labels``.

    ``read(indices, pre)`` returns ``(images, labels)``: images as one array in storage order (``(n, H, W)``
    or ``(n, H, W, C)``, or an already preprocessed float batch when ``preprocessed`` is true), resized and
    cropped by ``pre`` where the source must do it image by image (``fits_images``); labels int64 or None.
    """

    path: str = ""
    kind: str = ""
    classes: tuple[str, ...] | None = None
    has_labels: bool = False
    preprocessed: bool = False  # arrays that are model input already (zoo samples, API arrays)
    fits_images: bool = False  # read() already applied the geometric steps (images of any size)

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, indices: np.ndarray, pre: Preprocessing) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Identifies the data (files, sizes, modification times, or the array bytes) for checkpoints."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.path, "samples": len(self), "labeled": self.has_labels,
                "classes": list(self.classes) if self.classes is not None else None}


class ArraySource(DataSource):
    """Images in an array (in memory or memory-mapped) with optional labels."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, *, path: str = "<array>", kind: str = "array",
                 preprocessed: bool = False, classes: Sequence[str] | None = None):
        if y is not None and len(y) != len(x):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
        self.x, self.y = x, y
        self.path, self.kind, self.preprocessed = path, kind, preprocessed
        self.has_labels = y is not None
        self.classes = tuple(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.x)

    def read(self, indices, pre):
        idx = np.asarray(indices)
        return np.asarray(self.x[idx]), (None if self.y is None else np.asarray(self.y[idx], np.int64))

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.x.shape} {self.x.dtype}".encode())
        for start in range(0, len(self.x), 4096):  # memory-mapped arrays are hashed in bounded blocks
            h.update(np.ascontiguousarray(self.x[start:start + 4096]).tobytes())
        if self.y is not None:
            h.update(np.ascontiguousarray(self.y).tobytes())
        return h.hexdigest()


def _file_fingerprint(paths: Sequence[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root) if root in p.parents else p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class ImageFolderSource(DataSource):
    """``DIR/<class>/**/<image>`` (labeled, torchvision's ImageFolder order) or ``DIR/<image>`` (unlabeled)."""

    def __init__(self, root: Path):
        root = Path(root)
        self.path, self.root = str(root), root
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        files, labels = [], []
        class_files = {d.name: _images_under(d) for d in subdirs}
        classes = [name for name in sorted(class_files) if class_files[name]]
        if classes:
            empty = [name for name in sorted(class_files) if not class_files[name]]
            if empty:
                raise DataError(f"{root}: class folder(s) {empty} hold no image ({', '.join(IMAGE_EXTENSIONS)}); "
                                "remove them or add images (class indices follow the sorted folder names)")
            if flat:
                log.warning("%s: %d image(s) directly in the folder are ignored: with class folders beside "
                            "them, only images inside a class folder are read", root, len(flat))
            for label, name in enumerate(classes):
                files += class_files[name]
                labels += [label] * len(class_files[name])
            self.kind, self.classes, self.has_labels = "image-folder", tuple(classes), True
        elif flat:
            files, self.kind, self.classes, self.has_labels = flat, "image-folder (unlabeled)", None, False
        else:
            raise DataError(f"{root}: no images found (expected class folders of images, or images; extensions "
                            f"{', '.join(IMAGE_EXTENSIONS)})")
        self.files = files
        self.labels = np.asarray(labels, np.int64) if self.has_labels else None
        self.fits_images = True

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices, pre):
        from PIL import Image, UnidentifiedImageError

        images = []
        for i in np.asarray(indices):
            p = self.files[int(i)]
            try:
                with Image.open(p) as img:
                    img.load()  # decode now: a truncated file fails here, not later
                    images.append(pre.fit_image(img, name=str(p)))
            except (UnidentifiedImageError, Image.DecompressionBombError) as e:
                raise DataError(f"{p}: not a readable image ({e})") from None
            except OSError as e:  # truncated or damaged data ("image file is truncated")
                raise DataError(f"{p}: cannot decode the image ({e})") from None
        shapes = {a.shape for a in images}
        if len(shapes) > 1:
            by_shape = {}
            for i, a in zip(np.asarray(indices), images):
                by_shape.setdefault(a.shape, self.files[int(i)])
            example = "; ".join(f"{p.name}: {'x'.join(map(str, s))}" for s, p in list(by_shape.items())[:3])
            raise DataError(f"{self.root}: images of different sizes ({example}); give them one size with "
                            "--resize and --crop, or a --preprocess preset that does")
        labels = None if self.labels is None else self.labels[np.asarray(indices)]
        return np.stack(images), labels

    def fingerprint(self) -> str:
        return _file_fingerprint(self.files, self.root)


def _images_under(d: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
        dirnames.sort()
        out += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return out


class CifarSource(DataSource):
    """One split of a CIFAR-10/100 copy (see :mod:`ann2snn.data.cifar`)."""

    def __init__(self, path: Path, layout, split: str):
        self.path, self.split = str(path), split
        self.reader = CifarReader(layout, str(path))
        self.kind = f"{layout.variant} ({layout.fmt}, {split})"
        self.classes, self.has_labels = self.reader.classes, True
        self._files = [Path(path)] if layout.archive else [layout.root / m for m in layout.members]

    def __len__(self) -> int:
        return len(self.reader)

    def read(self, indices, pre):
        return self.reader.read(np.asarray(indices))

    def fingerprint(self) -> str:
        return _file_fingerprint(self._files, Path(self.path)) + f":{self.split}"


def open_source(path, *, split: str = "test") -> DataSource:
    """The reader for what ``path`` holds (see the module docstring); ``split`` applies to CIFAR copies."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    cifar = find_cifar(p, split) if (p.is_dir() or p.suffix in (".gz", ".tgz", ".tar")) else None
    if cifar is not None:
        return CifarSource(p, cifar, split)
    if p.is_dir():
        return ImageFolderSource(p)
    with open(p, "rb") as f:
        head = f.read(4)
    if head == _NPY_MAGIC:
        return ArraySource(load_npy(p), None, path=str(p), kind="npy")
    if head in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        x, y = load_npz(p, require_labels=False)
        return ArraySource(x, y, path=str(p), kind="npz")
    if head[:2] in (_GZIP_MAGIC, b"\x00\x00"):
        if p.suffix in (".gz", ".tgz") and head[:2] == _GZIP_MAGIC and p.name.endswith((".tar.gz", ".tgz")):
            raise DataError(f"{p}: a .tar.gz archive that is not a CIFAR-10/100 copy (no batches.meta or meta); "
                            "extract image archives into a folder")
        x, y = load_dataset(p)
        return ArraySource(x, y, path=str(p), kind="idx")
    raise DataError(f"{p}: unrecognized data (starts with 0x{head.hex()}): expected an image folder, a CIFAR "
                    "archive or folder, .npy, .npz, or an IDX images file")


@dataclass
class DataStream:
    """A source, its preprocessing and the chosen images, read in fixed batches.

    ``indices``: the source indices used, in order (all, the first ``limit``, or a seeded sorted ``subset``).
    ``preprocessing`` is ignored for sources whose arrays are model input already.
    """

    source: DataSource
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    indices: np.ndarray | None = None
    preset: str | None = None  # the --preprocess name it came from, for the record
    selection: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.indices is None:
            self.indices = np.arange(len(self.source))
        if len(self.indices) == 0:
            raise DataError(f"{self.source.path}: no images selected")

    @classmethod
    def of(cls, source: DataSource, preprocessing: Preprocessing | None = None, *, limit: int | None = None,
           subset: int | None = None, seed: int = 0, preset: str | None = None) -> "DataStream":
        """Choose images without reading any: the first ``limit``, or ``subset`` drawn with ``seed`` (kept in
        index order, so archives are read front to back)."""
        n = len(source)
        idx = np.arange(n)
        selection = {}
        if subset is not None:
            if subset > n:
                raise DataError(f"{source.path}: --subset {subset} is more than the {n} images there")
            idx = np.sort(np.random.default_rng(seed).choice(n, size=subset, replace=False))
            selection = {"subset": int(subset), "seed": int(seed)}
        if limit is not None:
            idx = idx[:limit]
            selection["limit"] = int(limit)
        return cls(source, preprocessing or Preprocessing(), idx, preset, selection)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def has_labels(self) -> bool:
        return self.source.has_labels

    def batches(self, batch_size: int) -> list[np.ndarray]:
        """The positions (into ``indices``) of every batch, in order; the last may be smaller."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = len(self.indices)
        return [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]

    def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Model input (float32) and labels of the images at these positions."""
        src = self.source
        raw, labels = src.read(self.indices[positions], self.preprocessing)
        where = f"{src.path} (images {int(self.indices[positions[0]])}..{int(self.indices[positions[-1]])})"
        if src.preprocessed:
            return np.ascontiguousarray(raw, np.float32), labels
        return self.preprocessing.apply(raw, name=where, geometry=not src.fits_images), labels

    def read_all(self, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Every chosen image at once (what calibration and the fixed-point evaluation hold in memory)."""
        parts = [self.read(b) for b in self.batches(batch_size)]
        x = np.concatenate([p[0] for p in parts])
        y = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        return x, y

    def iter_batches(self, batch_ids: Sequence[int], batch_size: int, *, workers: int | None = None
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """``(batch id, x, y)`` for the given batch ids, in that order, decoded in ``workers`` processes
        (default: 1 for image files, which must be decoded, 0 for arrays)."""
        all_batches = self.batches(batch_size)
        if workers is None:
            workers = 0 if isinstance(self.source, ArraySource) else 1
        if workers == 0 or len(batch_ids) < 2:
            for b in batch_ids:
                x, y = self.read(all_batches[b])
                yield b, x, y
            return
        import torch.utils.data

        loader = torch.utils.data.DataLoader(_Batches(self, [all_batches[b] for b in batch_ids], list(batch_ids)),
                                             batch_size=None, shuffle=False, num_workers=workers,
                                             prefetch_factor=2, persistent_workers=False)
        for b, x, y, error in loader:
            if error is not None:
                raise DataError(error)
            yield int(b), x.numpy() if hasattr(x, "numpy") else x, (None if y is None or len(y) == 0 else
                                                                    (y.numpy() if hasattr(y, "numpy") else y))

    def describe(self) -> dict:
        """What was read and how: recorded in reports and checkpoints so a run can be repeated."""
        return dict(self.source.describe(), selected=int(len(self.indices)), **self.selection,
                    preprocessing=None if self.source.preprocessed else self.preprocessing.to_dict(),
                    preset=self.preset)

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.source.fingerprint().encode())
        h.update(np.ascontiguousarray(self.indices, np.int64).tobytes())
        h.update(repr(sorted(self.preprocessing.to_dict().items())).encode())
        return h.hexdigest()


class _Batches:
    """A map-style dataset whose items are whole batches (decoding errors come back as text, not tracebacks)."""

    def __init__(self, stream: DataStream, positions: list[np.ndarray], ids: list[int]):
        self.stream, self.positions, self.ids = stream, positions, ids

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        try:
            x, y = self.stream.read(self.positions[i])
        except DataError as e:
            return self.ids[i], np.zeros(0, np.float32), None, str(e)
        return self.ids[i], x, (np.zeros(0, np.int64) if y is None else y), None
