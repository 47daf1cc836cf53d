"""Dataset loading (IDX, npz, model-zoo samples) and input preprocessing.

Everything here returns plain numpy arrays. Every problem with a data file or an array raises
:class:`~ann2snn.errors.DataError`, naming the file (or the array) and what is wrong with it.

Public API
----------
- :func:`load_idx` -- an IDX images file + an IDX labels file (gzipped or raw) -> ``(x, y)``
- :func:`load_npz` -- an ``.npz`` with keys ``x``/``y`` or ``images``/``labels`` -> ``(x, y)``
- :func:`load_dataset` -- dispatch on what a path (or a pair of paths) contains
- :func:`load_fashion_mnist` -- the Debian ``dataset-fashion-mnist`` copy, ``split`` = train | test
- :class:`Preprocessing` -- scale / mean / std / layout / channels, ``apply(images) -> float32``
- :func:`load_zoo_manifest`, :func:`load_zoo_sample`, :func:`zoo_model_dir` -- the bundled model zoo
- :func:`iter_batches` -- stream ``(x, y)`` in fixed-size batches
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple, Sequence, Union

import numpy as np

from ann2snn.errors import DataError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ROOT",
    "Preprocessing",
    "ZooSample",
    "iter_batches",
    "load_dataset",
    "load_fashion_mnist",
    "load_idx",
    "load_npz",
    "load_zoo_manifest",
    "load_zoo_sample",
    "read_idx",
    "zoo_model_dir",
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
# preprocessing
# ---------------------------------------------------------------------------------------------

def _as_stat(value: Any, name: str) -> float | tuple[float, ...]:
    if isinstance(value, bool):
        raise DataError(f"preprocessing {name} must be a number or a list of numbers, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            raise DataError(f"preprocessing {name} must be finite, got {value!r}")
        return v
    if isinstance(value, (list, tuple, np.ndarray)):
        vals = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if not vals:
            raise DataError(f"preprocessing {name} is an empty list")
        out = tuple(_as_stat(v, name) for v in vals)
        return out[0] if len(out) == 1 else out  # type: ignore[return-value]
    raise DataError(f"preprocessing {name} must be a number or a list of numbers, got {value!r}")


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model inputs: ``((images * scale) - mean) / std`` in float32.

    - ``scale``: multiplies the raw values first (``1/255`` maps uint8 to [0, 1]).
    - ``mean``, ``std``: a scalar, or one value per channel (then ``channels`` must match).
    - ``layout``: the layout the model expects, ``"NCHW"`` (ONNX/PyTorch) or ``"NHWC"``.
    - ``channels``: the channel count the model expects, or ``None`` to keep the input's. Single-channel
      images are repeated to ``channels`` (grayscale -> RGB); any other mismatch is a :class:`DataError`.

    Construct from a manifest with :meth:`from_dict`; :meth:`to_dict` gives JSON-ready values.
    """

    scale: float = 1.0
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channels: int | None = None

    def __post_init__(self) -> None:
        scale = _as_stat(self.scale, "scale")
        if isinstance(scale, tuple) or scale == 0.0:
            raise DataError(f"preprocessing scale must be a non-zero number, got {self.scale!r}")
        mean = _as_stat(self.mean, "mean")
        std = _as_stat(self.std, "std")
        if any(s <= 0 for s in (std if isinstance(std, tuple) else (std,))):
            raise DataError(f"preprocessing std must be > 0, got {self.std!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise DataError(f"preprocessing layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        ch = self.channels
        if ch is not None and (isinstance(ch, bool) or not isinstance(ch, (int, np.integer)) or ch < 1):
            raise DataError(f"preprocessing channels must be a positive integer or None, got {ch!r}")
        for name, stat in (("mean", mean), ("std", std)):
            if isinstance(stat, tuple) and ch is not None and len(stat) != ch:
                raise DataError(f"preprocessing {name} has {len(stat)} values but channels = {ch}")
        if isinstance(mean, tuple) and isinstance(std, tuple) and len(mean) != len(std):
            raise DataError(f"preprocessing mean has {len(mean)} values but std has {len(std)}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "channels", None if ch is None else int(ch))

    # -- (de)serialization ---------------------------------------------------------------------
    _KEYS = ("scale", "mean", "std", "layout", "channels")

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "preprocessing") -> "Preprocessing":
        """Build from a manifest dict (unknown keys are an error, missing keys take the defaults)."""
        if not isinstance(d, dict):
            raise DataError(f"{source}: expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls._KEYS))
        if unknown:
            raise DataError(f"{source}: unknown preprocessing key(s) {unknown}; allowed: {list(cls._KEYS)}")
        try:
            return cls(**d)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; per-channel stats become lists. ``from_dict(to_dict())`` round-trips."""

        def j(v):
            return list(v) if isinstance(v, tuple) else v

        return {"scale": self.scale, "mean": j(self.mean), "std": j(self.std), "layout": self.layout,
                "channels": self.channels}

    # -- application ---------------------------------------------------------------------------
    def apply(self, images: np.ndarray, *, input_layout: Literal["NHWC", "NCHW"] = "NHWC",
              name: str = "images") -> np.ndarray:
        """Turn raw images into model input: float32, C-contiguous, in ``self.layout``.

        ``images``: integer (e.g. uint8) or finite float array of rank 3 ``(N, H, W)`` (one channel)
        or rank 4 in ``input_layout`` (``"NHWC"``, the storage order of most image files, or
        ``"NCHW"``). ``name`` only labels error messages.
        """
        a = np.asarray(images)
        if input_layout not in ("NHWC", "NCHW"):
            raise DataError(f"{name}: input_layout must be 'NHWC' or 'NCHW', got {input_layout!r}")
        if a.dtype.kind not in "uif":
            raise DataError(f"{name}: images must be an integer or float array, got dtype {a.dtype}")
        if a.ndim not in (3, 4):
            raise DataError(f"{name}: images must have rank 3 (N, H, W) or 4 (N, H, W, C / N, C, H, W), "
                            f"got shape {a.shape}")
        if a.size == 0:
            raise DataError(f"{name}: images array is empty, shape {a.shape}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise DataError(f"{name}: images contain {bad} NaN/Inf value(s)")
        x = a.astype(np.float32)
        if x.ndim == 3:
            x = x[:, None, :, :]
        elif input_layout == "NHWC":
            x = x.transpose(0, 3, 1, 2)
        c = x.shape[1]
        want = self.channels
        if want is None:
            stat_len = [len(s) for s in (self.mean, self.std) if isinstance(s, tuple)]
            want = stat_len[0] if stat_len and c == 1 else c
        if c != want:
            if c != 1:
                raise DataError(f"{name}: images have {c} channels, the model expects {want} (rank-4 images "
                                f"are read as {input_layout}: shape {a.shape})")
            x = np.repeat(x, want, axis=1)
        x = x * np.float32(self.scale)
        for stat, op in ((self.mean, np.subtract), (self.std, np.divide)):
            s = np.asarray(stat, dtype=np.float32)
            if s.ndim == 1:
                if len(s) != x.shape[1]:
                    raise DataError(f"{name}: per-channel statistics have {len(s)} values, images have "
                                    f"{x.shape[1]} channels")
                s = s.reshape(1, -1, 1, 1)
            x = op(x, s, dtype=np.float32)
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# model zoo
# ---------------------------------------------------------------------------------------------

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
    return Path(env) if env else Path(__file__).resolve().parent.parent / "model_zoo"


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
