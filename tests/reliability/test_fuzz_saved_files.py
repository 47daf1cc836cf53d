"""Property-based fuzzing of saved files: a saved SpikingNetwork (network.json + weights.npz) and a netx ``.net``
(HDF5) file, mutated structurally (JSON values, arrays, HDF5 datasets) and byte-wise. The only allowed outcomes:
the file loads (and a loaded network simulates) or an Ann2SnnError. 100 + 100 derandomized examples."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_helpers import bounded, pool_residual_net, tiny_data
from test_broken_saved_files import _netx_net

import ann2snn
from ann2snn import Ann2SnnError
from ann2snn.backends.loihi.netx import read_netx, write_netx

FUZZ = dict(deadline=None, derandomize=True, database=None, print_blob=True,
            suppress_health_check=list(HealthCheck))
OUTCOMES: Counter = Counter()

X, _ = tiny_data(6, shape=(1, 8, 8))
JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.sampled_from([0, -1, 10**9, 2**63, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.lists(st.integers(-2, 10), max_size=5), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A saved network with Conv, ScaleShift, MaxPool, Add, AvgPool, Concat, GAP, Dense and a Softmax readout."""
    cfg = ann2snn.ConversionConfig(v_init=0.5, bias_correction=False, maxpool="cumulative")
    net = ann2snn.convert(pool_residual_net(), X, cfg)
    return net.save(tmp_path_factory.mktemp("fuzz_saved") / "base")


def _paths(obj, prefix=()):
    """Every (path to a value) in a JSON tree."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _mutate_json(doc, index: int, op: str, value):
    paths = [p for p in _paths(doc) if p]
    path = paths[index % len(paths)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, parent[key])


ARRAY_OPS = ["random_shape", "dtype", "flatten", "transpose", "nan", "drop", "scale", "empty"]
DTYPES = [np.float64, np.float16, np.int8, np.int64, np.bool_, np.complex64, "U2", np.uint8]


def _mutate_array(arrays: dict, index: int, op: str, n: int):
    key = sorted(arrays)[index % len(arrays)]
    a = arrays[key]
    if op == "random_shape":
        arrays[key] = np.random.default_rng(n).standard_normal(tuple(1 + (n >> (3 * i)) % 4 for i in range(n % 4)))
    elif op == "dtype":
        arrays[key] = a.astype(DTYPES[n % len(DTYPES)])
    elif op == "flatten":
        arrays[key] = a.reshape(-1)
    elif op == "transpose":
        arrays[key] = a.T.copy()
    elif op == "nan" and a.size and a.dtype.kind == "f":
        b = a.copy()
        b.reshape(-1)[n % a.size] = [np.nan, np.inf, -np.inf, 0.0, -1.0][n % 5]
        arrays[key] = b
    elif op == "drop":
        del arrays[key]
    elif op == "scale":
        arrays[key] = a * [0, -1, 1e30, 1e-30][n % 4]
    elif op == "empty":
        arrays[key] = a[:0]


@settings(max_examples=100, **FUZZ)
@given(json_edits=st.lists(st.tuples(st.integers(0, 2**16), st.sampled_from(["replace", "delete", "duplicate"]),
                                     JSON_VALUES), max_size=3),
       array_edits=st.lists(st.tuples(st.integers(0, 2**16), st.sampled_from(ARRAY_OPS), st.integers(0, 2**16)),
                            max_size=2),
       byte_edits=st.lists(st.tuples(st.booleans(), st.integers(0, 2**20), st.integers(0, 255)), max_size=2))
def test_fuzz_saved_network(saved, tmp_path_factory, json_edits, array_edits, byte_edits):
    d = tmp_path_factory.getbasetemp() / "fuzz_saved_case"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(saved, d)
    if json_edits:
        doc = json.loads((saved / "network.json").read_text())
        for index, op, value in json_edits:
            _mutate_json(doc, index, op, value)
        (d / "network.json").write_text(json.dumps(doc))
    if array_edits:
        with np.load(saved / "weights.npz") as z:
            arrays = {k: z[k] for k in z.files}
        for index, op, n in array_edits:
            if arrays:
                _mutate_array(arrays, index, op, n)
        np.savez(d / "weights.npz", **arrays)
    for in_json, pos, byte in byte_edits:
        f = d / ("network.json" if in_json else "weights.npz")
        b = bytearray(f.read_bytes())
        b[pos % len(b)] = byte
        f.write_bytes(bytes(b))
    try:
        net = bounded(ann2snn.load, d, timeout=30)
    except Ann2SnnError as e:
        OUTCOMES["saved " + type(e).__name__] += 1
        return
    OUTCOMES["saved loaded"] += 1
    if tuple(net.graph.inputs[0].shape) == X.shape[1:]:
        try:
            res = bounded(net.simulate, X, [1, 3], timeout=30)
        except Ann2SnnError as e:
            OUTCOMES["simulate " + type(e).__name__] += 1
            return
        assert res.outputs[3].shape[0] == len(X)


@pytest.fixture(scope="module")
def netx_file(tmp_path_factory) -> Path:
    return write_netx(_netx_net(), tmp_path_factory.mktemp("fuzz_netx") / "base.net")


def _datasets(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path, "r") as h:
        h.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


H5_VALUES = st.one_of(
    st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=12),
    st.lists(st.integers(-5, 300), min_size=0, max_size=6),
    st.sampled_from(["input", "conv", "dense", "flatten", "pool", "concat", "CUBA", "SDNN", "RF", "LOIHI", ""]),
)
H5_OPS = ["replace", "delete", "reshape", "dtype", "group"]


def _mutate_h5(h: h5py.File, names: list[str], index: int, op: str, value) -> None:
    name = names[index % len(names)]
    if name not in h:
        return
    old = h[name]
    if op == "replace":
        del h[name]
        h.create_dataset(name, data=np.array(value.encode() if isinstance(value, str) else value))
    elif op == "delete":
        del h[name]
    elif op == "reshape" and isinstance(old, h5py.Dataset) and old.shape:
        data = old[()]
        del h[name]
        h.create_dataset(name, data=np.asarray(data).reshape(-1)[: max(0, len(np.asarray(data).reshape(-1)) - 1)])
    elif op == "dtype" and isinstance(old, h5py.Dataset) and old.dtype.kind in "iuf":
        data = old[()]
        del h[name]
        h.create_dataset(name, data=np.asarray(data).astype([np.float16, np.int8, np.float64, np.uint8][
            len(name) % 4]))
    elif op == "group":
        del h[name]
        h.create_group(name)


NETX_NAMES: list[str] = []


@settings(max_examples=100, **FUZZ)
@given(edits=st.lists(st.tuples(st.integers(0, 2**16), st.sampled_from(H5_OPS), H5_VALUES), min_size=0, max_size=3),
       flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), max_size=2))
def test_fuzz_netx_file(netx_file, tmp_path_factory, edits, flips):
    if not NETX_NAMES:
        NETX_NAMES.extend(_datasets(netx_file))
    path = tmp_path_factory.getbasetemp() / "fuzz_case.net"
    shutil.copy(netx_file, path)
    if edits:
        with h5py.File(path, "r+") as h:
            for index, op, value in edits:
                try:
                    _mutate_h5(h, NETX_NAMES, index, op, value)
                except (TypeError, ValueError, OverflowError):  # a value h5py cannot store: skip that edit
                    continue
    if flips:
        b = bytearray(path.read_bytes())
        for pos, byte in flips:
            b[pos % len(b)] = byte
        path.write_bytes(bytes(b))
    try:
        bounded(read_netx, path, timeout=30)
        OUTCOMES["netx loaded"] += 1
    except Ann2SnnError as e:
        OUTCOMES["netx " + type(e).__name__] += 1


def test_fuzz_saved_outcomes_were_varied():
    if not OUTCOMES:
        pytest.skip("run together with the fuzz tests")
    print("saved-file fuzz outcomes:", dict(OUTCOMES))
    assert OUTCOMES["saved loaded"] > 0 and OUTCOMES["netx loaded"] > 0, OUTCOMES
