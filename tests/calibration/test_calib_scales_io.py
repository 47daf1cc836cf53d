"""Scales files: versioned JSON, atomic writes, strict validation with errors naming file and entry."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from ann2snn.calibration import (
    check_scales_match,
    choose_thresholds,
    collect_activation_stats,
    load_scales,
    read_scales,
    save_scales,
)
from ann2snn.errors import DataError

# a plain helper module next to the tests (tests/calibration is on sys.path under pytest)
from calib_helpers import conv_input, make_conv_net


def doc(scales, **top):
    return {"format": "ann2snn-scales", "version": 1, "meta": {}, "scales": scales} | top


def write_json(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def test_round_trip_is_bit_exact(tmp_path):
    conv_net = make_conv_net()
    conv_data = conv_input()
    stats = collect_activation_stats(conv_net, ["relu", "fc"], conv_data)
    scales = choose_thresholds(stats, "mmse") | {"odd \"name\"/é": np.float32([0.1, 1e-30, 3e38])}
    meta = {"method": "mmse", "timesteps": np.int64(32), "percentile": np.float32(99.5), "tensors": ["relu"]}
    path = save_scales(tmp_path / "scales.json", scales, meta)
    assert path == tmp_path / "scales.json"
    loaded = read_scales(path)
    assert list(loaded.scales) == list(scales)
    for name, arr in scales.items():
        assert loaded.scales[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.scales[name], arr)
    assert loaded.meta == {"method": "mmse", "timesteps": 32, "percentile": 99.5, "tensors": ["relu"]}
    assert loaded.version == 1
    raw = json.loads(path.read_text())
    assert raw["format"] == "ann2snn-scales" and raw["version"] == 1
    assert set(raw) == {"format", "version", "meta", "scales"}
    assert list(load_scales(path)) == list(scales)
    # readable: one line per tensor
    assert sum(line.strip().startswith('"relu": [') for line in path.read_text().splitlines()) == 1


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "s.json"
    save_scales(path, {"a": [1.0]}, {})
    save_scales(path, {"a": [2.0, 3.0]}, None)  # overwrite
    np.testing.assert_array_equal(load_scales(path)["a"], [2.0, 3.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's owner-only mode
    # a failed save (bad meta, bad scale) raises before touching the existing file
    with pytest.raises(DataError, match="meta"):
        save_scales(path, {"a": [5.0]}, {"obj": object()})
    with pytest.raises(DataError, match=r"'a'\[1\]"):
        save_scales(path, {"a": [5.0, -1.0]}, {})
    with pytest.raises(DataError, match="1-D"):
        save_scales(path, {"a": [[5.0]]}, {})
    np.testing.assert_array_equal(load_scales(path)["a"], [2.0, 3.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_empty_scales_round_trip(tmp_path):
    path = save_scales(tmp_path / "e.json", {}, {"note": "nothing"})
    assert read_scales(path).scales == {} and read_scales(path).meta == {"note": "nothing"}


def test_bare_number_is_a_layer_scale(tmp_path):
    path = write_json(tmp_path / "s.json", doc({"relu": 2.5}))
    np.testing.assert_array_equal(load_scales(path)["relu"], np.float32([2.5]))


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"format": "ann2snn-scales", "version": 1, "scales": {"a": [1.0', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "top level"),
        (doc({"a": [1.0]}, format="other"), "'format'"),
        ({"version": 1, "scales": {}}, "'format'"),
        (doc({"a": [1.0]}, version=2), "version 2 is not supported"),
        (doc({"a": [1.0]}, version="1"), "'version' must be an integer"),
        (doc({"a": [1.0]}, version=True), "'version' must be an integer"),
        (doc({"a": [1.0]}, meta=[1]), "'meta' must be an object"),
        ({"format": "ann2snn-scales", "version": 1}, "'scales' must be an object"),
        (doc([1.0]), "'scales' must be an object"),
        (doc({"relu": "1.0"}), "scale 'relu' must be a list"),
        (doc({"relu": {"x": 1}}), "scale 'relu' must be a list"),
        (doc({"relu": []}), "scale 'relu' is empty"),
        (doc({"relu": [1.0, "2"]}), r"'relu'\[1\] is not a number"),
        (doc({"relu": [1.0, [2.0]]}), r"'relu'\[1\] is not a number"),
        (doc({"relu": [True]}), r"'relu'\[0\] is not a number"),
        (doc({"relu": [1.0, None]}), r"'relu'\[1\] is not a number"),
        (doc({"relu": [1.0, -2.0]}), r"'relu'\[1\] = -2.0 must be a finite positive"),
        (doc({"relu": [0]}), r"'relu'\[0\] = 0 must be a finite positive"),
        ('{"format": "ann2snn-scales", "version": 1, "scales": {"relu": [NaN]}}', r"'relu'\[0\]"),
        ('{"format": "ann2snn-scales", "version": 1, "scales": {"relu": [Infinity]}}', r"'relu'\[0\]"),
        (doc({"relu": [1e39]}), r"'relu'\[0\] = 1e\+39 is outside the float32 range"),
        (doc({"relu": [1e-50]}), r"'relu'\[0\] = 1e-50 is outside the float32 range"),
        ('{"format": "ann2snn-scales", "version": 1, "scales": {"relu": [1], "relu": [2]}}', "'relu' appears twice"),
        ("[" * 100000, "nested too deeply|not valid JSON"),
    ],
)
def test_bad_files_raise_data_error_naming_file_and_entry(tmp_path, content, match):
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=match) as e:
        load_scales(path)
    assert str(path) in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_scales(tmp_path / "missing.json")
    with pytest.raises(DataError, match="cannot be read"):
        load_scales(tmp_path)  # a directory
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="bin.json"):
        load_scales(tmp_path / "bin.json")


def test_check_scales_match():
    required = {"conv": 4, "fc": 5, "relu": 4}
    good = {"conv": np.ones(4, np.float32), "fc": np.ones(5), "relu": [2.0]}  # (1,) is a layer-wise scale
    check_scales_match(good, required)
    check_scales_match(good | {"other": [1.0]}, required)  # extras alone: logged, not an error
    bad = {"conv": np.ones(3), "relu": [1.0, -1.0, 1.0, 1.0], "rleu": [1.0], "x": np.ones((2, 2))}
    with pytest.raises(DataError) as e:
        check_scales_match(bad | {"fc": np.ones((5, 1))}, required | {"x": 2}, source="scales file 'my.json'")
    msg = str(e.value)
    assert msg.startswith("scales file 'my.json' do not match the model (5 problem(s))")
    assert "tensor 'conv': 3 value(s), expected 4 or 1" in msg
    assert "tensor 'fc': (5, 1) value(s), expected 5 or 1" in msg
    assert "scale 'relu'[1] = -1.0 must be a finite positive number" in msg
    assert "tensor 'x': (2, 2) value(s), expected 2 or 1" in msg
    assert "unknown tensor(s) (typo?): ['rleu']" in msg
    with pytest.raises(DataError, match="missing tensor 'fc' \\(5 channel"):
        check_scales_match({"conv": [1.0], "relu": [1.0]}, required)
