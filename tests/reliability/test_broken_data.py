"""Calibration and evaluation data that cannot be used: wrong shape, dtype, NaN/Inf, no samples, ragged,
mismatched labels. Every case is a DataError naming the problem, raised before any long computation."""

from __future__ import annotations

import numpy as np
import pytest
from rel_helpers import expect_error, tiny_cnn, tiny_data

import ann2snn
from ann2snn import DataError
from ann2snn.data import load_dataset, load_npz

CFG = ann2snn.ConversionConfig(v_init=0.5, bias_correction=False)
X, Y = tiny_data(16)


@pytest.fixture(scope="module")
def net():
    return ann2snn.convert(tiny_cnn(), X, CFG)


BAD_ARRAYS = {
    "none": (None, "required"),
    "wrong_sample_shape": (X[:, :, :5], "expected shape (batch, 1, 6, 6)"),
    "missing_channel_axis": (X[:, 0], "expected shape (batch, 1, 6, 6)"),
    "one_sample_no_batch": (X[0], "expected shape (batch, 1, 6, 6)"),
    "scalar": (np.float32(1.0), "expected shape"),
    "nan": (np.where(X > 0.5, np.nan, X).astype(np.float32), "NaN or Inf"),
    "inf": (np.full_like(X, np.inf), "NaN or Inf"),
    "no_samples": (X[:0], "no samples"),
    "strings": (np.full(X.shape, "a"), "numeric"),
    "objects": (np.array([None, 1], dtype=object), "numeric"),
    "complex": (X.astype(np.complex64), "numeric"),
    "bool": (X > 0.5, "numeric"),
    "ragged_lists": ([[1.0, 2.0], [3.0]], "not an array"),
    "dict_wrong_input_name": ({"nope": X}, "no data given for graph input 'x'"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_calibration_data(case):
    x, fragment = BAD_ARRAYS[case]
    expect_error(DataError, lambda: ann2snn.convert(tiny_cnn(), x, CFG), fragment, timeout=30)


def test_one_calibration_sample_is_too_few():
    expect_error(DataError, lambda: ann2snn.convert(tiny_cnn(), X[:1], CFG), "1 sample")


def test_too_few_samples_for_the_auto_holdout():
    expect_error(DataError, lambda: ann2snn.convert(tiny_cnn(), X[:2], ann2snn.ConversionConfig()), "too few")


def test_calibration_overflowing_float32_names_the_tensor():
    expect_error(DataError, lambda: ann2snn.convert(tiny_cnn(), np.full_like(X, 1e38), CFG), "overflow", "'r'")


@pytest.mark.parametrize("case", [c for c in BAD_ARRAYS if c not in ("none", "dict_wrong_input_name")])
def test_bad_simulation_input(net, case):
    x, fragment = BAD_ARRAYS[case]
    expect_error(DataError, lambda: net.simulate(x, [4]), timeout=30)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"timesteps": [0]}, "positive"), ({"timesteps": []}, "positive"), ({"timesteps": [-3]}, "positive"),
    ({"batch_size": 0}, ">= 1"), ({"time_chunk": 0}, ">= 1"),
    ({"device": "nodevice"}, "'nodevice'"), ({"device": "cuda:999"}, "'cuda:999'"),
])
def test_bad_simulation_arguments(net, kwargs, fragment):
    kw = {"timesteps": [4], **kwargs}
    expect_error(DataError, lambda: net.simulate(X, kw.pop("timesteps"), **kw), fragment)


EVAL_CASES = {
    "not_a_pair": (X, "pair"),
    "no_samples": ((X[:0], Y[:0]), "no samples"),
    "fewer_labels": ((X, Y[:3]), "16 images but 3 labels"),
    "float_labels": ((X, Y.astype(float)), "integer"),
    "2d_labels": ((X, Y[:, None]), "1-D"),
    "uint8_images": (((X * 255).astype(np.uint8), Y), "preprocessed floats"),
    "nan_images": ((np.where(X > 0.5, np.nan, X), Y), "NaN or Inf"),
    "wrong_sample_shape": ((X[:, :, :5], Y), "sample shape"),
    "scalar_images": ((np.float32(3), Y), "sample axis"),
    "ragged_images": (([[1.0, 2.0], [3.0]], Y[:2]), "must be arrays"),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_bad_evaluation_data(net, case):
    data, fragment = EVAL_CASES[case]
    expect_error(DataError, lambda: ann2snn.evaluate(tiny_cnn(), data, snn=net, timesteps=[4]), fragment)


# ------------------------------------------------------------------------------------------- data files


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


FILE_CASES = {
    "missing": (lambda p: p, "not found"),
    "empty": (lambda p: (p.write_bytes(b""), p)[1], "unrecognized"),
    "random_bytes": (lambda p: (p.write_bytes(np.random.default_rng(3).bytes(512)), p)[1], "unrecognized"),
    "zip_garbage": (lambda p: (p.write_bytes(b"PK\x03\x04" + bytes(200)), p)[1], "not a readable .npz"),
    "truncated_npz": (lambda p: (p.write_bytes(_npz(p, x=X, y=Y).read_bytes()[:300]), p)[1], "npz"),
    "no_images_key": (lambda p: _npz(p, foo=X), "no images array"),
    "no_labels": (lambda p: _npz(p, x=X), "no labels"),
    "object_array": (lambda p: _npz(p, x=np.array([None] * 3, dtype=object), y=Y[:3]), "pickle"),
    "string_images": (lambda p: _npz(p, x=np.full((4, 6, 6), "a"), y=Y[:4]), "integer or float"),
    "rank_5_images": (lambda p: _npz(p, x=X[..., None], y=Y), "rank"),
    "empty_images": (lambda p: _npz(p, x=X[:0], y=Y[:0]), "empty"),
    "nan_images": (lambda p: _npz(p, x=np.full_like(X, np.nan), y=Y), "NaN"),
    "float_labels": (lambda p: _npz(p, x=X, y=Y.astype(float)), "labels must be integers"),
    "label_count_mismatch": (lambda p: _npz(p, x=X, y=Y[:5]), "16 images but 5 labels"),
    "negative_labels": (lambda p: _npz(p, x=X, y=-Y - 1), "negative label"),
    "idx_truncated": (lambda p: (p.write_bytes(b"\x00\x00\x08\x03" + (1000).to_bytes(4, "big") * 3 + b"\x00" * 10),
                                 p)[1], "labels file"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_data_file(case, tmp_path):
    make, fragment = FILE_CASES[case]
    path = make(tmp_path / "data.npz")
    err = expect_error(DataError, lambda: load_dataset(path), fragment)
    assert "data.npz" in str(err)


def test_idx_declaring_more_than_the_file_holds_is_refused_without_allocating(tmp_path):
    """An IDX header declaring 1000^3 images reads at most the file, never allocates the declared size."""
    images = tmp_path / "t-images-idx3-ubyte"
    images.write_bytes(b"\x00\x00\x08\x03" + (1000).to_bytes(4, "big") * 3 + b"\x00" * 10)
    labels = tmp_path / "t-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x01" + (1000).to_bytes(4, "big") + b"\x00" * 1000)
    expect_error(DataError, lambda: load_dataset(images), "truncated", "t-images-idx3-ubyte")


def test_npz_without_labels_loads_for_calibration(tmp_path):
    x, y = load_npz(_npz(tmp_path / "c.npz", x=X), require_labels=False)
    assert y is None and x.shape == X.shape
