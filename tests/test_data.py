"""ann2snn.data: IDX / npz loading, dispatch, preprocessing, batching. Small files written to tmp_path."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from ann2snn.data import (
    FASHION_MNIST_ROOT,
    Preprocessing,
    iter_batches,
    load_dataset,
    load_fashion_mnist,
    load_idx,
    load_npz,
    read_idx,
)
from ann2snn.errors import DataError


def idx_bytes(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def images_labels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 5, 4), dtype=np.uint8), rng.integers(0, 10, 7).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_round_trip(tmp_path, images_labels, gz):
    x, y = images_labels
    suffix = ".gz" if gz else ""
    ip = write(tmp_path / f"t-images-idx3-ubyte{suffix}", idx_bytes(x), gz)
    lp = write(tmp_path / f"t-labels-idx1-ubyte{suffix}", idx_bytes(y), gz)
    gx, gy = load_idx(ip, lp)
    assert gx.dtype == np.uint8 and gx.shape == (7, 5, 4)
    np.testing.assert_array_equal(gx, x)
    assert gy.dtype == np.int64
    np.testing.assert_array_equal(gy, y)
    # load_dataset: the pair, and the images file alone (labels found beside it)
    for src in ((ip, lp), ip, str(ip)):
        dx, dy = load_dataset(src)
        np.testing.assert_array_equal(dx, x)
        np.testing.assert_array_equal(dy, y)


def test_idx_gzip_detected_by_content_not_name(tmp_path, images_labels):
    x, _ = images_labels
    p = write(tmp_path / "no_suffix", idx_bytes(x), gz=True)
    np.testing.assert_array_equal(read_idx(p), x)


def test_idx_other_element_types(tmp_path):
    f = np.arange(12, dtype=np.float32).reshape(3, 2, 2) / 3
    p = write(tmp_path / "f.idx", idx_bytes(f, 0x0D), gz=False)
    got = read_idx(p)
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, f)


def test_idx_bad_magic(tmp_path, images_labels):
    x, y = images_labels
    lp = write(tmp_path / "l", idx_bytes(y), gz=False)
    cases = {
        "notzero": b"\x01\x02" + idx_bytes(x)[2:],
        "badtype": bytes([0, 0, 0x07, 3]) + idx_bytes(x)[4:],
        "badndim": bytes([0, 0, 0x08, 9]) + idx_bytes(x)[4:],
    }
    for name, data in cases.items():
        p = write(tmp_path / name, data, gz=False)
        with pytest.raises(DataError, match="magic") as ei:
            load_idx(p, lp)
        assert str(p) in str(ei.value)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_truncated(tmp_path, images_labels, gz):
    x, y = images_labels
    lp = write(tmp_path / "l", idx_bytes(y), gz=False)
    p = write(tmp_path / "short", idx_bytes(x)[:-5], gz)
    with pytest.raises(DataError, match="truncated") as ei:
        load_idx(p, lp)
    assert str(p) in str(ei.value)
    # header itself cut short
    p2 = write(tmp_path / "short_header", idx_bytes(x)[:6], gz)
    with pytest.raises(DataError, match="truncated") as ei:
        read_idx(p2)
    assert str(p2) in str(ei.value)


def test_idx_truncated_gzip_stream(tmp_path, images_labels):
    x, _ = images_labels
    full = tmp_path / "full.gz"
    write(full, idx_bytes(x), gz=True)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(full.read_bytes()[:-12])  # chops the gzip trailer (CRC + size)
    with pytest.raises(DataError) as ei:
        read_idx(cut)
    assert str(cut) in str(ei.value)


def test_idx_trailing_data(tmp_path, images_labels):
    x, _ = images_labels
    p = write(tmp_path / "long", idx_bytes(x) + b"\x00\x01", gz=False)
    with pytest.raises(DataError, match="trailing") as ei:
        read_idx(p)
    assert str(p) in str(ei.value)


def test_idx_forged_huge_header_does_not_allocate(tmp_path):
    data = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**16, 2**16) + b"\x00" * 10
    p = write(tmp_path / "forged", data, gz=False)
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)


def test_idx_wrong_dims_and_count_mismatch(tmp_path, images_labels):
    x, y = images_labels
    ip = write(tmp_path / "i", idx_bytes(x), gz=False)
    lp = write(tmp_path / "l", idx_bytes(y), gz=False)
    flat = write(tmp_path / "flat_images", idx_bytes(x.reshape(7, 20)), gz=False)
    with pytest.raises(DataError, match="3 dimensions") as ei:
        load_idx(flat, lp)
    assert str(flat) in str(ei.value)
    lab2d = write(tmp_path / "lab2d", idx_bytes(y.reshape(7, 1)), gz=False)
    with pytest.raises(DataError, match="1 dimension") as ei:
        load_idx(ip, lab2d)
    assert str(lab2d) in str(ei.value)
    short = write(tmp_path / "l6", idx_bytes(y[:6]), gz=False)
    with pytest.raises(DataError, match="7 images but .* 6 labels"):
        load_idx(ip, short)
    zero = write(tmp_path / "zero", bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 5, 4), gz=False)
    with pytest.raises(DataError, match="empty") as ei:
        load_idx(zero, lp)
    assert str(zero) in str(ei.value)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as ei:
        read_idx(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(ei.value)


# ---------------------------------------------------------------------------------------------- npz


@pytest.mark.parametrize("keys", [("x", "y"), ("images", "labels")])
def test_npz_keys(tmp_path, images_labels, keys):
    x, y = images_labels
    p = tmp_path / "d.npz"
    np.savez(p, **{keys[0]: x, keys[1]: y})
    gx, gy = load_npz(p)
    np.testing.assert_array_equal(gx, x)
    assert gy.dtype == np.int64
    np.testing.assert_array_equal(gy, y)
    dx, dy = load_dataset(p)
    np.testing.assert_array_equal(dx, x)
    # content sniffing: a compressed npz under a different name still loads
    q = tmp_path / "data.bin"
    np.savez_compressed(q.with_suffix(".npz"), **{keys[0]: x, keys[1]: y})
    q.with_suffix(".npz").rename(q)
    np.testing.assert_array_equal(load_dataset(q)[1], y)


def test_npz_labels_optional_only_when_asked(tmp_path, images_labels):
    x, _ = images_labels
    p = tmp_path / "x_only.npz"
    np.savez(p, x=x)
    with pytest.raises(DataError, match="no labels") as ei:
        load_npz(p)
    assert str(p) in str(ei.value)
    gx, gy = load_npz(p, require_labels=False)
    assert gy is None and gx.shape == x.shape


def test_npz_bad_contents(tmp_path, images_labels):
    x, y = images_labels
    cases = {
        "wrong_keys": dict(a=x, b=y),
        "nan": dict(x=np.where(x > 128, np.nan, x / 255.0), y=y),
        "inf": dict(x=np.full((2, 3, 3), np.inf, np.float32), y=np.zeros(2, np.int64)),
        "empty": dict(x=np.zeros((0, 5, 4), np.uint8), y=np.zeros(0, np.int64)),
        "rank2": dict(x=x.reshape(7, 20), y=y),
        "rank5": dict(x=x.reshape(7, 5, 4, 1, 1), y=y),
        "bool": dict(x=x > 3, y=y),
        "float_labels": dict(x=x, y=y.astype(np.float32)),
        "count": dict(x=x, y=y[:3]),
        "negative_label": dict(x=x, y=-y.astype(np.int64) - 1),
    }
    for name, arrays in cases.items():
        p = tmp_path / f"{name}.npz"
        np.savez(p, **arrays)
        with pytest.raises(DataError) as ei:
            load_npz(p)
        assert str(p) in str(ei.value), name


def test_npz_object_array_refused_without_pickle(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([None, 1], dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="pickle") as ei:
        load_npz(p)
    assert str(p) in str(ei.value)


def test_npz_garbage_and_unknown_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError) as ei:
        load_npz(garbage)
    assert str(garbage) in str(ei.value)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="unrecognized") as ei:
        load_dataset(text)
    assert str(text) in str(ei.value)
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="directory"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="pair"):
        load_dataset([text])


def test_idx_without_labels_sibling(tmp_path, images_labels):
    x, _ = images_labels
    p = write(tmp_path / "lonely-images-idx3-ubyte", idx_bytes(x), gz=False)
    with pytest.raises(DataError, match="labels") as ei:
        load_dataset(p)
    assert str(p) in str(ei.value)


# ---------------------------------------------------------------------------------------- preprocessing


def test_preprocessing_nchw_scale():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = Preprocessing(scale=1 / 255).apply(x)
    assert out.dtype == np.float32 and out.shape == (2, 1, 3, 4) and out.flags.c_contiguous
    np.testing.assert_allclose(out[:, 0], x / 255.0, rtol=1e-6)


def test_preprocessing_nhwc_output_and_input_layouts():
    rng = np.random.default_rng(1)
    x_nhwc = rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    pre = Preprocessing(scale=1.0, layout="NCHW")
    out = pre.apply(x_nhwc)  # default input_layout NHWC
    assert out.shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(out, x_nhwc.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(pre.apply(x_nhwc.transpose(0, 3, 1, 2), input_layout="NCHW"), out)
    nhwc = Preprocessing(layout="NHWC").apply(x_nhwc)
    assert nhwc.shape == (2, 5, 4, 3) and nhwc.flags.c_contiguous
    np.testing.assert_array_equal(nhwc, x_nhwc)
    assert Preprocessing(layout="NHWC").apply(x_nhwc[..., 0]).shape == (2, 5, 4, 1)


def test_preprocessing_scalar_and_per_channel_mean_std():
    x = np.full((1, 2, 2, 3), 255, dtype=np.uint8)
    scalar = Preprocessing(scale=1 / 255, mean=0.5, std=0.25).apply(x)
    np.testing.assert_allclose(scalar, 2.0, rtol=1e-6)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    per = Preprocessing(scale=1 / 255, mean=mean, std=std).apply(x)
    for c in range(3):
        np.testing.assert_allclose(per[0, c], (1.0 - mean[c]) / std[c], rtol=1e-6)
    # float input is scaled the same way as integer input
    np.testing.assert_allclose(Preprocessing(scale=1 / 255, mean=mean, std=std).apply(x.astype(np.float64)), per)


def test_preprocessing_channel_repeat_and_mismatch():
    gray = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    out = Preprocessing(channels=3).apply(gray)
    assert out.shape == (2, 3, 2, 2)
    for c in range(3):
        np.testing.assert_array_equal(out[:, c], gray)
    # per-channel stats imply the channel count
    assert Preprocessing(mean=(0.1, 0.2, 0.3)).apply(gray).shape == (2, 3, 2, 2)
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(DataError, match="3 channels, the model expects 2"):
        Preprocessing(channels=2).apply(rgb)
    with pytest.raises(DataError, match="per-channel"):
        Preprocessing(mean=(0.1, 0.2)).apply(rgb)


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.array([[[np.nan]]], np.float32), "NaN"),
        (np.array([[[np.inf]]], np.float64), "NaN/Inf"),
        (np.zeros((0, 28, 28), np.uint8), "empty"),
        (np.zeros((28, 28), np.uint8), "rank"),
        (np.zeros((1, 1, 1, 1, 1), np.uint8), "rank"),
        (np.zeros((1, 2, 2), bool), "dtype"),
        (np.array([[["a"]]]), "dtype"),
        (np.zeros((1, 2, 2), np.complex64), "dtype"),
    ],
)
def test_preprocessing_rejects_bad_arrays(arr, match):
    with pytest.raises(DataError, match=match) as ei:
        Preprocessing().apply(arr, name="calib.npz")
    assert "calib.npz" in str(ei.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scale=0), "scale"),
        (dict(scale=float("nan")), "scale"),
        (dict(std=0.0), "std"),
        (dict(std=(1.0, -1.0)), "std"),
        (dict(mean=float("inf")), "mean"),
        (dict(mean="zero"), "mean"),
        (dict(layout="HWC"), "layout"),
        (dict(channels=0), "channels"),
        (dict(channels=3, mean=(0.1, 0.2)), "mean has 2 values"),
        (dict(mean=(0.1, 0.2), std=(1.0, 1.0, 1.0)), "std has 3"),
    ],
)
def test_preprocessing_validates_config(kwargs, match):
    with pytest.raises(DataError, match=match):
        Preprocessing(**kwargs)


def test_preprocessing_dict_round_trip_and_frozen():
    pre = Preprocessing(scale=1 / 255, mean=[0.1, 0.2, 0.3], std=[1, 2, 3], layout="NHWC", channels=3)
    assert pre.mean == (0.1, 0.2, 0.3) and pre.std == (1.0, 2.0, 3.0)
    d = pre.to_dict()
    assert d == {"scale": 1 / 255, "mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 3.0], "layout": "NHWC",
                 "channels": 3}
    assert Preprocessing.from_dict(d) == pre
    assert Preprocessing.from_dict({}) == Preprocessing()
    with pytest.raises(DataError, match="unknown preprocessing key"):
        Preprocessing.from_dict({"scale": 1.0, "colour": "red"})
    with pytest.raises(DataError, match="manifest.json"):
        Preprocessing.from_dict({"std": -1}, source="manifest.json")
    with pytest.raises(AttributeError):
        pre.scale = 2.0  # type: ignore[misc]


# -------------------------------------------------------------------------------------------- batches


def test_iter_batches():
    x, y = np.arange(10), np.arange(10) * 2
    batches = list(iter_batches(x, y, 4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert all(b[1] is None for b in iter_batches(x, None, 3))
    with pytest.raises(DataError, match="batch_size"):
        list(iter_batches(x, y, 0))
    with pytest.raises(DataError, match="labels"):
        list(iter_batches(x, y[:3], 2))


# ----------------------------------------------------------------------------------- Fashion-MNIST


needs_fmnist = pytest.mark.skipif(
    not (Path(FASHION_MNIST_ROOT) / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (Debian package dataset-fashion-mnist)",
)


@needs_fmnist
def test_load_fashion_mnist_test_split():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [1000] * 10


def test_load_fashion_mnist_errors(tmp_path):
    with pytest.raises(DataError, match="split"):
        load_fashion_mnist("validation", tmp_path)
    with pytest.raises(DataError, match="dataset-fashion-mnist") as ei:
        load_fashion_mnist("test", tmp_path)
    assert str(tmp_path) in str(ei.value)
