"""Corrupted saved networks (network.json + weights.npz) and netx ``.net`` (HDF5) files: each load ends in an
InvalidModelError (UnsupportedModelError for layer kinds netx cannot run) naming the file, in bounded time and
memory; a network that loads also runs."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from rel_helpers import expect_error, tiny_cnn, tiny_data

import ann2snn
from ann2snn import InvalidModelError, UnsupportedModelError
from ann2snn.backends.loihi.netx import (
    ConvLayer, DenseLayer, FlattenLayer, InputLayer, NetxNetwork, NeuronParams, read_netx, write_netx,
)

X, _ = tiny_data(8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    net = ann2snn.convert(tiny_cnn(), X, ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    return net.save(tmp_path_factory.mktemp("saved") / "good")


def _variant(saved: Path, tmp_path: Path, doc=None, arrays=None, json_bytes=None, npz_bytes=None) -> Path:
    d = tmp_path / "net"
    shutil.copytree(saved, d)
    if doc is not None:
        dd = json.loads((saved / "network.json").read_text())
        doc(dd)
        (d / "network.json").write_text(json.dumps(dd))
    if json_bytes is not None:
        (d / "network.json").write_bytes(json_bytes((saved / "network.json").read_bytes()))
    if arrays is not None:
        with np.load(saved / "weights.npz") as z:
            arrs = {k: z[k] for k in z.files}
        arrays(arrs)
        np.savez(d / "weights.npz", **arrs)
    if npz_bytes is not None:
        (d / "weights.npz").write_bytes(npz_bytes((saved / "weights.npz").read_bytes()))
    return d


def _flip(i):
    def f(b):
        b = bytearray(b)
        b[i % len(b)] ^= 0xFF
        return bytes(b)
    return f


def _first(arrs, prefix, suffix=""):
    return next(k for k in sorted(arrs) if k.startswith(prefix) and k.endswith(suffix))


def _set(path, value):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return f


SAVED_CASES = {
    # network.json
    "json_truncated": dict(json_bytes=lambda b: b[: len(b) // 2]),
    "json_empty": dict(json_bytes=lambda b: b""),
    "json_binary": dict(json_bytes=lambda b: bytes(range(256))),
    "json_is_a_list": dict(json_bytes=lambda b: b"[]"),
    "json_deeply_nested": dict(json_bytes=lambda b: b"[" * 100_000 + b"]" * 100_000),
    "wrong_format": dict(doc=_set(["format"], "something-else")),
    "future_version": dict(doc=_set(["version"], 2)),
    "graph_missing": dict(doc=lambda d: d.pop("graph")),
    "graph_is_a_list": dict(doc=_set(["graph"], [])),
    "nodes_not_a_list": dict(doc=_set(["graph", "nodes"], 5)),
    "unknown_op": dict(doc=_set(["graph", "nodes", 0, "op"], "Evil")),
    "op_is_a_list": dict(doc=_set(["graph", "nodes", 0, "op"], [])),
    "unknown_attribute": dict(doc=_set(["graph", "nodes", 0, "attrs", "nope"], 1)),
    "stride_string": dict(doc=_set(["graph", "nodes", 0, "attrs", "stride"], "ab")),
    "stride_zero": dict(doc=_set(["graph", "nodes", 0, "attrs", "stride"], [0, 0])),
    "negative_padding": dict(doc=_set(["graph", "nodes", 0, "attrs", "padding"], [-5, -5, -5, -5])),
    "huge_padding": dict(doc=_set(["graph", "nodes", 0, "attrs", "padding"], [10**5] * 4)),
    "groups_zero": dict(doc=_set(["graph", "nodes", 0, "attrs", "groups"], 0)),
    "array_key_missing": dict(doc=_set(["graph", "nodes", 0, "arrays", "weight"], "nope")),
    "dangling_input": dict(doc=_set(["graph", "nodes", 1, "inputs"], ["zz"])),
    "negative_input_shape": dict(doc=_set(["graph", "inputs", 0, "shape"], [-1, 6, 6])),
    "string_input_shape": dict(doc=_set(["graph", "inputs", 0, "shape"], ["a"])),
    "huge_input_shape": dict(doc=_set(["graph", "inputs", 0, "shape"], [1, 10**9, 10**9])),
    "output_not_produced": dict(doc=_set(["graph", "outputs"], ["zz"])),
    "no_outputs": dict(doc=_set(["graph", "outputs"], [])),
    "output_listed_twice": dict(doc=_set(["graph", "outputs"], ["y", "y"])),
    "config_bad_norm": dict(doc=_set(["config", "norm"], 5)),
    "config_bad_batch": dict(doc=_set(["config", "calibration_batch_size"], "x")),
    "config_is_a_list": dict(doc=_set(["config"], [1])),
    "output_units_missing": dict(doc=_set(["output_units"], {})),
    "scales_a_string": dict(doc=_set(["scales"], "abc")),
    "scales_missing": dict(doc=_set(["scales"], {})),
    "input_unit_string": dict(doc=_set(["input_unit"], "abc")),
    "input_unit_nan": dict(doc=_set(["input_unit"], float("nan"))),
    "input_unit_zero": dict(doc=_set(["input_unit"], 0)),
    "softmax_malformed": dict(doc=_set(["output_softmax"], {"axis": "a"})),
    "info_a_string": dict(doc=_set(["info"], "abc")),
    "info_unknown_field": dict(doc=_set(["info", "v_int"], 0.5)),
    "info_v_init_a_string": dict(doc=_set(["info", "v_init"], "half")),
    # weights.npz
    "npz_truncated": dict(npz_bytes=lambda b: b[: len(b) // 2]),
    "npz_random": dict(npz_bytes=lambda b: np.random.default_rng(0).bytes(len(b))),
    "npz_empty": dict(npz_bytes=lambda b: b""),
    "npz_member_name_flipped": dict(npz_bytes=_flip(40)),
    "npz_crc_mismatch": dict(npz_bytes=_flip(100)),
    "nan_weight": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "weight"), a[_first(a, "snn/", "weight")]
                                                       * np.nan)),
    "flat_conv_weight": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "weight"),
                                                             a[_first(a, "snn/", "weight")].reshape(-1))),
    "string_weight": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "weight"),
                                                          a[_first(a, "snn/", "weight")].astype("U3"))),
    "complex_weight": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "weight"),
                                                           a[_first(a, "snn/", "weight")].astype(np.complex64))),
    "array_missing": dict(arrays=lambda a: a.pop(_first(a, "snn/"))),
    "output_unit_wrong_size": dict(arrays=lambda a: a.__setitem__(_first(a, "unit/"), np.ones(7, np.float32))),
    "v_init_wrong_shape": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "v_init"),
                                                               np.ones((7, 5), np.float32))),
    "threshold_wrong_size": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "/scale"),
                                                                 np.ones(9, np.float32))),
    "object_array": dict(arrays=lambda a: a.__setitem__(_first(a, "snn/", "weight"),
                                                          np.array([None, 1], dtype=object))),
}


@pytest.mark.parametrize("case", list(SAVED_CASES))
def test_corrupted_saved_network(saved, tmp_path, case):
    d = _variant(saved, tmp_path, **SAVED_CASES[case])
    err = expect_error(InvalidModelError, lambda: ann2snn.load(d), timeout=30)
    assert str(d) in str(err), f"the message should name the file: {err}"


def test_missing_saved_files(tmp_path):
    expect_error(InvalidModelError, lambda: ann2snn.load(tmp_path / "nowhere"), "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "network.json").write_text("{}")
    expect_error(InvalidModelError, lambda: ann2snn.load(tmp_path / "half"), "weights.npz")


def test_intact_saved_network_loads_and_runs(saved):
    net = ann2snn.load(saved)
    assert net.simulate(X, [4]).outputs[4].shape == (8, 3)


def _zip_bomb(path: Path, nbytes: int) -> None:
    """An npz whose one member inflates to ``nbytes`` zeros (deflate: about 1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("bomb.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (nbytes // 4,)})
            block = bytes(1 << 20)
            for _ in range(nbytes // len(block)):
                f.write(block)


def test_zip_bomb_weights_are_refused_before_inflating(saved, tmp_path, monkeypatch):
    """weights.npz declaring more than the limit (8 GiB by default; 16 MiB here) is refused from its directory,
    before any array is inflated."""
    monkeypatch.setattr(ann2snn.network, "MAX_WEIGHTS_BYTES", 16 * 2**20)
    d = _variant(saved, tmp_path)
    _zip_bomb(d / "weights.npz", 64 * 2**20)
    assert (d / "weights.npz").stat().st_size < 2**20
    tracemalloc.start()
    try:
        expect_error(InvalidModelError, lambda: ann2snn.load(d), "weights.npz", "over the")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak traced allocation {peak / 2**20:.1f} MiB"


def test_forged_npy_header_is_an_error_not_an_allocation(saved, tmp_path):
    """A member whose .npy header declares 10^12 floats backed by 16 bytes."""
    d = _variant(saved, tmp_path)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(d / "weights.npz", "a") as zf:
        zf.writestr("forged.npy", buf.getvalue() + bytes(16))
    expect_error(InvalidModelError, lambda: ann2snn.load(d), str(d))


# ------------------------------------------------------------------------------------------- netx .net


def _netx_net() -> NetxNetwork:
    r = np.random.default_rng(0)
    lif = NeuronParams.cuba(vth_mant=60, i_decay=1500, v_decay=300)
    return NetxNetwork((
        InputLayer((2, 9, 8), NeuronParams.cuba(vth_mant=20, i_decay=4096, v_decay=200)),
        ConvLayer(weight=r.integers(-8, 8, (5, 2, 3, 2)), shape=(5, 4, 9), neuron=lif, stride=(2, 1),
                  padding=(0, 1), bias=r.integers(-4, 8, 5)),
        FlattenLayer(),
        DenseLayer(weight=r.integers(-8, 8, (7, 180)), neuron=NeuronParams.cuba(30, 4096, 0),
                   bias=r.integers(-2, 4, 7)),
        DenseLayer(weight=r.integers(-8, 8, (3, 7))),
    ))


@pytest.fixture(scope="module")
def netx_file(tmp_path_factory) -> Path:
    return write_netx(_netx_net(), tmp_path_factory.mktemp("netx") / "good.net")


def _ds(path, value, **kw):
    def f(h):
        if path in h:
            del h[path]
        h.create_dataset(path, data=value, **kw)
    return f


def _rm(path):
    def f(h):
        del h[path]
    return f


def _bomb(path, shape):
    def f(h):
        del h[path]
        h.create_dataset(path, shape=shape, dtype="f4", chunks=(1,) * (len(shape) - 1) + (1024,),
                         compression="gzip")
    return f


def _external_link(h):
    del h["layer/1/weight"]
    h["layer/1/weight"] = h5py.ExternalLink("/etc/passwd", "/x")


def _external_storage(h):
    del h["layer/1/weight"]
    h.create_dataset("layer/1/weight", shape=(5, 2, 3, 2), dtype="f4", external=[("/etc/passwd", 0, 240)])


def _relative_external_storage(h):
    del h["layer/1/weight"]
    h.create_dataset("layer/1/weight", shape=(5, 2, 3, 2), dtype="f4", external=[("../../etc/passwd", 0, 240)])


def _virtual(h):
    layout = h5py.VirtualLayout(shape=(5, 2, 3, 2), dtype="f4")
    layout[:] = h5py.VirtualSource("/etc/passwd", "data", shape=(5, 2, 3, 2))
    del h["layer/1/weight"]
    h.create_virtual_dataset("layer/1/weight", layout)


def _soft_loop(h):
    del h["layer/1"]
    h["layer/1"] = h5py.SoftLink("/layer")


def _hard_cycle(h):
    h["layer/0/loop"] = h["layer"]


NETX_CASES = {
    "type_not_a_string": (_ds("layer/1/type", 5), InvalidModelError, "layer 1"),
    "type_empty": (_ds("layer/1/type", np.zeros((0,), "S10")), InvalidModelError, "layer 1"),
    "type_not_ascii": (_ds("layer/1/type", np.array([b"\xff\xfe"], "S10")), InvalidModelError, "layer 1"),
    "layer_type_unknown": (_ds("layer/1/type", np.array([b"mystery"], "S10")), UnsupportedModelError, "layer 1"),
    "layer_type_pool": (_ds("layer/1/type", np.array([b"pool"], "S10")), UnsupportedModelError, "layer 1"),
    "weight_strings": (_ds("layer/1/weight", np.array([b"a"] * 4)), InvalidModelError, "numeric"),
    "weight_nan": (_ds("layer/1/weight", np.full((5, 2, 3, 2), np.nan)), InvalidModelError, "non-finite"),
    "weight_2d": (_ds("layer/1/weight", np.ones((5, 2))), InvalidModelError, "conv weight"),
    "weight_scalar": (_ds("layer/1/weight", 3.0), InvalidModelError, "conv weight"),
    "dense_weight_3d": (_ds("layer/3/weight", np.ones((7, 180, 1))), InvalidModelError, "dense weight"),
    "dense_weight_empty": (_ds("layer/3/weight", np.ones((0, 180))), InvalidModelError, "dense weight"),
    "input_shape_negative": (_ds("layer/0/shape", np.array([-2, 9, 8])), InvalidModelError, "positive sizes"),
    "input_shape_zero": (_ds("layer/0/shape", np.array([0, 9, 8])), InvalidModelError, "positive sizes"),
    "input_shape_huge": (_ds("layer/0/shape", np.array([2, 10**9, 10**9])), InvalidModelError, "conv formula"),
    "input_shape_strings": (_ds("layer/0/shape", np.array([b"ab"])), InvalidModelError, "numeric"),
    "conv_shape_huge": (_ds("layer/1/shape", np.array([5, 10**12, 10**12])), InvalidModelError, "conv formula"),
    "stride_zero": (_ds("layer/1/stride", np.array([0, 0])), InvalidModelError, "stride>=1"),
    "stride_three_values": (_ds("layer/1/stride", np.array([1, 1, 1])), InvalidModelError, "stride"),
    "stride_2e62": (_ds("layer/1/stride", np.array([2**62, 2**62])), InvalidModelError, "conv formula"),
    "padding_negative": (_ds("layer/1/padding", np.array([-5, -5])), InvalidModelError, "padding>=0"),
    "padding_1e6": (_ds("layer/1/padding", np.array([10**6, 10**6])), InvalidModelError, "conv formula"),
    "dilation_zero": (_ds("layer/1/dilation", np.array([0, 0])), InvalidModelError, "dilation>=1"),
    "groups_zero": (_ds("layer/1/groups", 0), InvalidModelError, "groups"),
    "groups_fraction": (_ds("layer/1/groups", 1.5), InvalidModelError, "single integer"),
    "groups_nan": (_ds("layer/1/groups", np.nan), InvalidModelError, "layer 1"),
    "groups_inf": (_ds("layer/1/groups", np.inf), InvalidModelError, "layer 1"),
    "threshold_inf": (_ds("layer/1/neuron/vThMant", np.inf), InvalidModelError, "layer 1"),
    "threshold_string": (_ds("layer/1/neuron/vThMant", "abc"), InvalidModelError, "single integer"),
    "neuron_type_unknown": (_ds("layer/1/neuron/type", "FOO"), UnsupportedModelError, "FOO"),
    "neuron_is_a_dataset": (_ds("layer/1/neuron", 3), InvalidModelError, "layer 1"),
    "layer_is_a_dataset": (_ds("layer/1", 3), InvalidModelError, "layer 1"),
    "layer_root_is_a_dataset": (_ds("layer", 3), InvalidModelError, "no 'layer' group"),
    "weight_missing": (_rm("layer/1/weight"), InvalidModelError, "weight"),
    "neuron_missing": (_rm("layer/1/neuron"), InvalidModelError, "neuron"),
    "threshold_missing": (_rm("layer/1/neuron/vThMant"), InvalidModelError, "vThMant"),
    "type_missing": (_rm("layer/2/type"), InvalidModelError, "layer 2"),
    "first_layer_missing": (_rm("layer/0"), InvalidModelError, "named 0.."),
    "extra_layer_name": (_ds("layer/foo", 1), InvalidModelError, "named 0.."),
    "conv_bias_wrong": (_ds("layer/1/bias", np.ones(3)), InvalidModelError, "conv bias"),
    "dense_bias_wrong": (_ds("layer/3/bias", np.ones(4)), InvalidModelError, "dense bias"),
    "delay_wrong_shape": (_ds("layer/3/delay", np.ones((5, 5, 5))), InvalidModelError, "delay"),
    "memory_bomb_dense_weight": (_bomb("layer/3/weight", (7, 10**11)), InvalidModelError, "over the"),
    "memory_bomb_conv_weight": (_bomb("layer/1/weight", (5, 2, 10**5, 10**5)), InvalidModelError, "over the"),
    "external_link_out": (_external_link, InvalidModelError, "/etc/passwd"),
    "external_storage_absolute": (_external_storage, InvalidModelError, "another file"),
    "external_storage_dotdot": (_relative_external_storage, InvalidModelError, "another file"),
    "virtual_dataset_out": (_virtual, InvalidModelError, "another file"),
    "soft_link_loop": (_soft_loop, InvalidModelError, "layer 1"),
}


@pytest.mark.parametrize("case", list(NETX_CASES))
def test_corrupted_netx_file(netx_file, tmp_path, case):
    mutate, cls, fragment = NETX_CASES[case]
    path = tmp_path / f"{case}.net"
    shutil.copy(netx_file, path)
    with h5py.File(path, "r+") as h:
        mutate(h)
    tracemalloc.start()
    try:
        err = expect_error(cls, lambda: read_netx(path), str(path), fragment, timeout=30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(err) is cls
    assert peak < 64 * 2**20, f"{case}: peak traced allocation {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.5, 0.95, 0.999])
def test_truncated_netx_file(netx_file, tmp_path, fraction):
    raw = netx_file.read_bytes()
    path = tmp_path / "t.net"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    expect_error(InvalidModelError, lambda: read_netx(path), str(path))


def test_netx_hard_link_cycle_is_harmless(netx_file, tmp_path):
    path = tmp_path / "cycle.net"
    shutil.copy(netx_file, path)
    with h5py.File(path, "r+") as h:
        _hard_cycle(h)
    assert read_netx(path) == _netx_net()


def test_netx_byte_flips_never_crash(netx_file, tmp_path):
    """A flipped byte anywhere in the file: the network reads (data bytes changed) or InvalidModelError."""
    raw = netx_file.read_bytes()
    path = tmp_path / "flip.net"
    outcomes = {"ok": 0, "error": 0}
    for i in range(0, len(raw), max(1, len(raw) // 60)):
        b = bytearray(raw)
        b[i] ^= 0xA5
        path.write_bytes(bytes(b))
        try:
            read_netx(path)
            outcomes["ok"] += 1
        except (InvalidModelError, UnsupportedModelError):
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and sum(outcomes.values()) >= 60


def test_the_conversion_record_survives_save_and_load(saved):
    net = ann2snn.load(saved)
    assert net.record == ann2snn.ConversionRecord(v_init=0.5, bias_correction=False)
    assert json.loads((saved / "network.json").read_text())["info"] == {"v_init": 0.5, "bias_correction": False}
