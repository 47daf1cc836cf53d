"""How raw images become model inputs, in torchvision's order, and the named presets for the usual conventions.

Order of operations (torchvision's ``Resize -> CenterCrop -> ToTensor -> Normalize``, plus the channel order
Caffe-trained models need): resize of the shorter side, center crop, channel order (RGB / BGR), scale, mean,
std, layout. The geometric steps act on one image at a time (images of different sizes are fine); the rest on
a whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ann2snn.errors import DataError

__all__ = ["PRESETS", "Preprocessing", "preset"]


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


def _as_crop(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in vals):
        raise DataError(f"preprocessing crop must be a positive integer or a pair (height, width), got {value!r}")
    return int(vals[0]), int(vals[1])


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model inputs (float32), step by step in this order:

    - ``resize``: the shorter side is resized to this many pixels, the aspect ratio kept (torchvision's
      ``Resize(int)``: bilinear, the longer side truncated to an integer); ``None`` keeps the size.
    - ``crop``: center crop to ``(height, width)`` (an int means a square); a smaller image is padded with
      zeros, as torchvision's ``CenterCrop`` does; ``None`` keeps the whole image.
    - ``channel_order``: ``"RGB"`` (as decoded) or ``"BGR"`` (Caffe-trained models).
    - ``scale``: multiplies the raw values (``1/255`` maps uint8 to [0, 1]); then ``- mean``, then ``/ std``:
      a scalar, or one value per channel (in the model's channel order; ``channels`` must match).
    - ``layout``: the layout the model expects, ``"NCHW"`` (ONNX/PyTorch) or ``"NHWC"``.
    - ``channels``: the channel count the model expects, or ``None`` to keep the input's. Single-channel
      images are repeated to ``channels`` (grayscale -> RGB); image files are decoded to grayscale for a
      one-channel model; any other mismatch is a :class:`DataError`.

    Construct from a manifest with :meth:`from_dict`; :meth:`to_dict` gives JSON-ready values; the named
    conventions are in :data:`PRESETS` (``preset("imagenet")``).
    """

    scale: float = 1.0
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channels: int | None = None
    resize: int | None = None
    crop: tuple[int, int] | None = None
    channel_order: Literal["RGB", "BGR"] = "RGB"

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
        rs = self.resize
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, (int, np.integer)) or rs < 1):
            raise DataError(f"preprocessing resize must be a positive integer (the shorter side) or None, got {rs!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise DataError(f"preprocessing channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "channels", None if ch is None else int(ch))
        object.__setattr__(self, "resize", None if rs is None else int(rs))
        object.__setattr__(self, "crop", _as_crop(self.crop))

    # -- (de)serialization ---------------------------------------------------------------------
    _KEYS = ("scale", "mean", "std", "layout", "channels", "resize", "crop", "channel_order")
    _GEOMETRY_KEYS = ("resize", "crop", "channel_order")

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
        except TypeError as e:  # e.g. crop given as a mapping
            raise DataError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; per-channel stats become lists. ``from_dict(to_dict())`` round-trips.

        The geometric keys appear only when they are not the defaults, so files written before they
        existed (zoo manifests, Loihi sidecars) read and write the same."""

        def j(v):
            return list(v) if isinstance(v, tuple) else v

        d = {"scale": self.scale, "mean": j(self.mean), "std": j(self.std), "layout": self.layout,
             "channels": self.channels}
        defaults = Preprocessing()
        for key in self._GEOMETRY_KEYS:
            if getattr(self, key) != getattr(defaults, key):
                d[key] = j(getattr(self, key))
        return d

    @property
    def has_geometry(self) -> bool:
        return self.resize is not None or self.crop is not None

    # -- one image -----------------------------------------------------------------------------
    def image_mode(self) -> str | None:
        """The Pillow mode images are decoded to: ``L`` for a one-channel model, ``RGB`` for three, else None."""
        return {1: "L", 3: "RGB"}.get(self.channels) if self.channels is not None else None

    def fit_image(self, image, name: str = "image") -> np.ndarray:
        """Resize and center-crop one image (a Pillow image, or an (H, W) / (H, W, C) array) -> numpy HWC/HW.

        uint8 images (and every Pillow image) are resized by Pillow, exactly as torchvision resizes a PIL
        image; float arrays by torch's antialiased bilinear interpolation (torchvision's tensor path).
        """
        from PIL import Image

        if isinstance(image, Image.Image):
            mode = self.image_mode()
            if mode is not None and image.mode != mode:
                image = image.convert(mode)
            elif mode is None and image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            if self.resize is not None:
                w, h = image.size
                size = _resized(h, w, self.resize)
                if size != (h, w):
                    image = image.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(image)
        else:
            a = np.asarray(image)
            if a.ndim not in (2, 3):
                raise DataError(f"{name}: an image must have rank 2 (H, W) or 3 (H, W, C), got shape {a.shape}")
            if self.resize is not None:
                size = _resized(a.shape[0], a.shape[1], self.resize)
                if size != a.shape[:2]:
                    if a.dtype == np.uint8:
                        squeeze = a.ndim == 3 and a.shape[2] == 1
                        img = Image.fromarray(a[:, :, 0] if squeeze else a)
                        a = np.asarray(img.resize((size[1], size[0]), Image.BILINEAR))
                        a = a[:, :, None] if squeeze else a
                    else:
                        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
                        t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
                        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
                        a = t[0, 0].numpy() if a.ndim == 2 else t[0].permute(1, 2, 0).numpy()
        return _center_crop(a, self.crop) if self.crop is not None else a

    # -- a batch -------------------------------------------------------------------------------
    def apply(self, images: np.ndarray, *, input_layout: Literal["NHWC", "NCHW"] = "NHWC",
              name: str = "images", geometry: bool = True) -> np.ndarray:
        """Turn raw images into model input: float32, C-contiguous, in ``self.layout``.

        ``images``: integer (e.g. uint8) or finite float array of rank 3 ``(N, H, W)`` (one channel)
        or rank 4 in ``input_layout`` (``"NHWC"``, the storage order of most image files, or
        ``"NCHW"``). ``geometry=False`` skips resize and crop (done already, image by image, by
        :meth:`fit_image`). ``name`` only labels error messages.
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
        if geometry and self.has_geometry:
            hwc = a if a.ndim == 3 or input_layout == "NHWC" else a.transpose(0, 2, 3, 1)
            a = np.stack([self.fit_image(img, name) for img in hwc])
            input_layout = "NHWC"
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
        if self.channel_order == "BGR":
            x = x[:, ::-1]
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


def _resized(h: int, w: int, short: int) -> tuple[int, int]:
    """torchvision's output size for ``Resize(short)``: the shorter side to ``short``, the longer truncated."""
    if h <= w:
        return short, int(short * w / h)
    return int(short * h / w), short


def _center_crop(a: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """torchvision's ``CenterCrop``: pad with zeros to at least the crop, then take the centre."""
    ch, cw = crop
    h, w = a.shape[:2]
    if h < ch or w < cw:
        top, left = (ch - h) // 2 if h < ch else 0, (cw - w) // 2 if w < cw else 0
        pad = [(top, max(0, ch - h) - top), (left, max(0, cw - w) - left)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad)
        h, w = a.shape[:2]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return a[top:top + ch, left:left + cw]


# The common conventions. ``channels`` is left to the model (grayscale data is repeated to RGB when needed).
PRESETS: dict[str, Preprocessing] = {
    # torchvision's ImageNet models: Resize(256), CenterCrop(224), ToTensor, Normalize(mean, std)
    "imagenet": Preprocessing(resize=256, crop=224, scale=1 / 255, mean=(0.485, 0.456, 0.406),
                              std=(0.229, 0.224, 0.225)),
    # BVLC Caffe models (SqueezeNet, AlexNet, GoogLeNet...): BGR, 0..255, minus the per-channel mean
    "caffe": Preprocessing(resize=256, crop=224, channel_order="BGR", mean=(104.0, 117.0, 123.0)),
    # the CIFAR-10 statistics most PyTorch CIFAR models were trained with
    "cifar10": Preprocessing(scale=1 / 255, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
    "mnist": Preprocessing(scale=1 / 255, mean=0.1307, std=0.3081),
}


def preset(name: str) -> Preprocessing:
    """The named preprocessing convention (see :data:`PRESETS`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise DataError(f"unknown preprocessing preset {name!r}: expected one of {sorted(PRESETS)}") from None
