"""Image arrays from files: IDX (MNIST-style), ``.npz`` and ``.npy``.

Everything here returns plain numpy arrays. Every problem with a data file or an array raises
:class:`~ann2snn.errors.DataError`, naming the file (or the array) and what is wrong with it.

Public API
----------
- :func:`load_idx` -- an IDX images file + an IDX labels file (gzipped or raw) -> ``(x, y)``
- :func:`load_npz` -- an ``.npz`` with keys ``x``/``y`` or ``images``/``labels`` -> ``(x, y)``
- :func:`load_dataset` -- dispatch on what a path (or a pair of paths) contains
- :func:`load_fashion_mnist` -- the Debian ``dataset-fashion-mnist`` copy, ``split`` = train | test
- :func:`load_npy` -- a ``.npy`` images array, memory-mapped (labels come from elsewhere)
- :func:`iter_batches` -- stream ``(x, y)`` in fixed-size batches
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from ann2snn.errors import DataError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ROOT",
    "iter_batches",
    "load_dataset",
    "load_fashion_mnist",
    "load_idx",
    "load_npy",
    "load_npz",
    "read_idx",
]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


def _open_maybe_gzip(path: Path):
    """Open ``path`` for binary reading, transparently gunzipping it if it starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return gzip.open(path, "rb") if head == _GZIP_MAGIC else open(path, "rb")


def _read_exact(f, n: int, path: Path, what: str) -> bytes:
    try:
        data = f.read(n)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated gzip stream while reading {what} ({e})") from None
    if len(data) != n:
        raise DataError(f"{path}: truncated: {what} needs {n} bytes, file has only {len(data)}")
    return data


def _read_upto(f, limit: int, path: Path, chunk: int = 1 << 22) -> bytes:
    """Read at most ``limit`` bytes in chunks, so a forged size never allocates more than the file holds."""
    parts, got = [], 0
    try:
        while got < limit:
            block = f.read(min(chunk, limit - got))
            if not block:
                break
            parts.append(block)
            got += len(block)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated gzip stream in the IDX data ({e})") from None
    return b"".join(parts)


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a native-endian numpy array.

    Validates the magic number (two zero bytes, a known type byte, 1..4 dimensions), that no dimension
    is zero, and that the payload is exactly ``prod(dims) * itemsize`` bytes (no truncation, no
    trailing garbage). The file is never read past that size + 1 byte, so a forged header cannot
    make it allocate more than the file holds.
    """
    p = Path(path)
    with _open_maybe_gzip(p) as f:
        magic = _read_exact(f, 4, p, "the 4-byte IDX magic number")
        if magic[0] != 0 or magic[1] != 0:
            raise DataError(
                f"{p}: not an IDX file: magic number 0x{magic.hex()} does not start with two zero bytes"
            )
        type_byte, ndim = magic[2], magic[3]
        if type_byte not in _IDX_DTYPES:
            raise DataError(f"{p}: bad IDX magic number 0x{magic.hex()}: unknown type byte 0x{type_byte:02x}")
        if not 1 <= ndim <= 4:
            raise DataError(f"{p}: bad IDX magic number 0x{magic.hex()}: {ndim} dimensions (expected 1 to 4)")
        dims = tuple(int(d) for d in np.frombuffer(_read_exact(f, 4 * ndim, p, "the IDX dimensions"), ">u4"))
        if any(d == 0 for d in dims):
            raise DataError(f"{p}: IDX header declares an empty array, dimensions {dims}")
        dtype = _IDX_DTYPES[type_byte]
        nbytes = math.prod(dims) * dtype.itemsize
        payload = _read_upto(f, nbytes + 1, p)
    if len(payload) < nbytes:
        raise DataError(
            f"{p}: truncated: IDX header declares dimensions {dims} of {dtype.name} = {nbytes} bytes, "
            f"file holds {len(payload)}"
        )
    if len(payload) > nbytes:
        raise DataError(f"{p}: trailing data after the {nbytes} bytes declared by the IDX header {dims}")
    arr = np.frombuffer(payload, dtype=dtype, count=math.prod(dims)).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def load_idx(images_path: PathLike, labels_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load an IDX images file and its IDX labels file (each gzipped or raw).

    Returns ``(x, y)``: ``x`` of shape ``(N, H, W)`` (or ``(N, H, W, C)`` for 4-D IDX) and the IDX
    element type (``uint8`` for MNIST-style files); ``y`` int64 of shape ``(N,)``.
    """
    ip, lp = Path(images_path), Path(labels_path)
    x = read_idx(ip)
    y = read_idx(lp)
    if x.ndim not in (3, 4):
        raise DataError(f"{ip}: IDX images must have 3 dimensions (N, H, W) or 4 (N, H, W, C), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{lp}: IDX labels must have 1 dimension (N,), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{lp}: IDX labels must be integers, got {y.dtype}")
    if len(x) != len(y):
        raise DataError(f"{ip} holds {len(x)} images but {lp} holds {len(y)} labels")
    if y.min() < 0:
        raise DataError(f"{lp}: negative label {int(y.min())}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{ip}: images contain NaN or Inf")
    log.debug("loaded IDX %s (%s %s) + %s", ip, x.shape, x.dtype, lp)
    return x, y.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------

_NPZ_KEY_PAIRS = (("x", "y"), ("images", "labels"))


def _check_images(x: np.ndarray, where: str) -> None:
    if x.dtype.kind not in "uif":
        raise DataError(f"{where}: images must be integer or float, got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise DataError(f"{where}: images must have rank 3 (N, H, W) or 4, got shape {x.shape}")
    if x.size == 0:
        raise DataError(f"{where}: images array is empty, shape {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise DataError(f"{where}: images contain {bad} NaN/Inf value(s)")


def _check_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.dtype.kind not in "ui":
        raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if y.ndim != 1:
        raise DataError(f"{where}: labels must have rank 1 (N,), got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"{where}: {n} images but {len(y)} labels")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: negative label {int(y.min())}")
    return y.astype(np.int64)


def _open_npz(p: Path):
    try:
        return np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a .npz file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a readable .npz file ({e})") from None


def _npz_array(npz, key: str, p: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as e:  # object arrays need pickle, which is refused
        raise DataError(f"{p}: array '{key}' cannot be loaded without pickle ({e})") from None
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError on damaged members
        raise DataError(f"{p}: array '{key}' is corrupt ({type(e).__name__}: {e})") from None


def load_npz(path: PathLike, *, require_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Load ``(x, y)`` from an ``.npz`` holding ``x``/``y`` or ``images``/``labels`` (no pickle).

    ``x``: rank 3 ``(N, H, W)`` or rank 4, integer or finite float. ``y``: int64 ``(N,)``.
    With ``require_labels=False`` a file holding only ``x`` (or ``images``) returns ``y = None``.
    """
    p = Path(path)
    npz = _open_npz(p)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{p}: is a single .npy array, expected an .npz archive with keys x/y or images/labels")
    with npz:
        keys = set(npz.files)
        for xk, yk in _NPZ_KEY_PAIRS:
            if xk in keys:
                break
        else:
            raise DataError(
                f"{p}: no images array: expected key 'x' (with 'y') or 'images' (with 'labels'), "
                f"found {sorted(keys)}"
            )
        x = _npz_array(npz, xk, p)
        _check_images(x, f"{p} ['{xk}']")
        if yk not in keys:
            if require_labels:
                raise DataError(f"{p}: has '{xk}' but no labels array '{yk}' (found {sorted(keys)})")
            log.debug("loaded npz %s: %s %s, no labels", p, x.shape, x.dtype)
            return x, None
        y = _check_labels(_npz_array(npz, yk, p), len(x), f"{p} ['{yk}']")
    log.debug("loaded npz %s: %s %s", p, x.shape, x.dtype)
    return x, y


def load_npy(path: PathLike) -> np.ndarray:
    """A ``.npy`` images array (rank 3 or 4, integer or float), memory-mapped: nothing is read until used.

    No pickle: object arrays are refused. Finiteness is checked batch by batch where the images are read.
    """
    p = Path(path)
    try:
        x = np.load(p, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a .npy file") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{p}: not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise DataError(f"{p}: expected one .npy array, got an archive")
    if x.dtype.kind not in "uif":
        raise DataError(f"{p}: images must be integer or float, got dtype {x.dtype}")
    if x.ndim not in (3, 4) or x.size == 0:
        raise DataError(f"{p}: images must be a non-empty array of rank 3 (N, H, W) or 4, got shape {x.shape}")
    return x


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def _sniff(p: Path) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(4)
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise DataError(
            f"{p}: is a directory; pass an .npz file, an IDX images file, or a pair (images, labels)"
        ) from None
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e})") from None


def _idx_labels_sibling(p: Path) -> Path | None:
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"), ("images", "labels")):
        if a in p.name:
            cand = p.with_name(p.name.replace(a, b, 1))
            if cand.exists():
                return cand
    return None


def load_dataset(path_or_pair: PathLike | Sequence[PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(x, y)`` from any supported source, deciding by file content (not only the name).

    - a pair ``(images_path, labels_path)`` -> :func:`load_idx`;
    - an ``.npz`` (zip) file -> :func:`load_npz`;
    - an IDX images file (gzipped or raw) whose labels file sits beside it under the MNIST naming
      (``*-images-idx3-ubyte[.gz]`` -> ``*-labels-idx1-ubyte[.gz]``) -> :func:`load_idx`.
    """
    if isinstance(path_or_pair, (list, tuple)):
        if len(path_or_pair) != 2:
            raise DataError(f"expected a pair (images_path, labels_path), got {len(path_or_pair)} paths")
        return load_idx(path_or_pair[0], path_or_pair[1])
    p = Path(path_or_pair)
    head = _sniff(p)
    if head in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        x, y = load_npz(p)
        return x, y  # type: ignore[return-value]
    if head[:2] == _GZIP_MAGIC or head[:2] == b"\x00\x00":
        labels = _idx_labels_sibling(p)
        if labels is None:
            raise DataError(
                f"{p}: looks like an IDX (or gzip) file but no labels file was found beside it "
                "(expected '...-labels-idx1-ubyte[.gz]'); pass the pair (images_path, labels_path)"
            )
        return load_idx(p, labels)
    raise DataError(
        f"{p}: unrecognized data file (starts with 0x{head.hex()}): expected an .npz archive "
        "or an IDX images file (raw or gzipped)"
    )


def load_fashion_mnist(split: str = "test", root: PathLike = FASHION_MNIST_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST from the Debian ``dataset-fashion-mnist`` layout (gzipped or raw IDX).

    ``split``: ``"train"`` (60,000) or ``"test"`` / ``"t10k"`` (10,000). Returns ``x`` uint8
    ``(N, 28, 28)`` and ``y`` int64 ``(N,)`` with classes :data:`FASHION_MNIST_CLASSES`.
    """
    prefix = {"train": "train", "test": "t10k", "t10k": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"unknown Fashion-MNIST split {split!r}: expected 'train' or 'test'")
    r = Path(root)
    paths = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        gz, raw = r / f"{prefix}-{kind}.gz", r / f"{prefix}-{kind}"
        if gz.exists():
            paths.append(gz)
        elif raw.exists():
            paths.append(raw)
        else:
            raise DataError(
                f"{gz}: Fashion-MNIST file not found (install the Debian package dataset-fashion-mnist "
                "or pass root=)"
            )
    x, y = load_idx(paths[0], paths[1])
    if x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise DataError(f"{paths[0]}: expected uint8 images of 28x28, got {x.dtype} {x.shape}")
    if y.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{paths[1]}: label {int(y.max())} out of range 0..9")
    return x, y


# ---------------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------------


def iter_batches(x: np.ndarray, y: np.ndarray | None, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(x[i:i+b], y[i:i+b])`` views in order; the last batch may be smaller. ``y`` may be None."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(x)
    if y is not None and len(y) != n:
        raise DataError(f"iter_batches: {n} inputs but {len(y)} labels")
    for i in range(0, n, int(batch_size)):
        yield x[i:i + batch_size], (None if y is None else y[i:i + batch_size])
