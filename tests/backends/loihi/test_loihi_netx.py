"""netx HDF5 model, reader and writer: round trips, the written schema, and malformed files."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from ann2snn.errors import InvalidModelError, UnsupportedModelError
from ann2snn.backends.loihi import netx
from ann2snn.backends.loihi.netx import (
    DEFAULT_DENSE_NEURON,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
    chw_to_lava,
    lava_to_chw,
    read_netx,
    write_netx,
)

RNG = np.random.default_rng(42)


def even(shape: tuple[int, ...], lo: int = -20, hi: int = 20) -> np.ndarray:
    return 2 * RNG.integers(lo // 2, hi // 2 + 1, shape)


def feature_net() -> NetxNetwork:
    """Every feature the model holds: transforms, grouped/dilated asymmetric conv, per-neuron bias, delays."""
    lif = NeuronParams.cuba(vth_mant=40, i_decay=1024, v_decay=128)
    conv1 = ConvLayer(weight=even((4, 3, 3, 2)), shape=(4, 4, 6), neuron=lif, stride=(2, 1), padding=(1, 0),
                      bias=RNG.integers(-5, 5, 4))
    conv2 = ConvLayer(weight=even((4, 2, 2, 3)), shape=(4, 3, 2), neuron=NeuronParams("LOIHI", 30, 4096, 0),
                      stride=(1, 2), dilation=(1, 1), groups=2, bias=RNG.integers(-5, 5, (4, 3, 2)))
    dense1 = DenseLayer(weight=even((6, 24)), neuron=lif, bias=RNG.integers(-3, 3, 6),
                        delay=RNG.integers(0, 4, 6))
    readout = DenseLayer(weight=even((2, 6)))
    return NetxNetwork((InputLayer((3, 8, 7), lif, transform_weight=64, transform_bias=0),
                        conv1, conv2, FlattenLayer(), dense1, readout))


def test_round_trip_is_identical(tmp_path: Path) -> None:
    net = feature_net()
    assert net.shapes == ((3, 8, 7), (4, 4, 6), (4, 3, 2), (24,), (6,), (2,))
    again = read_netx(write_netx(net, tmp_path / "net.net"))
    assert again == net
    assert again.layers[5].neuron is None and again.layers[5].effective_neuron == DEFAULT_DENSE_NEURON
    # a second write of the read-back network gives the same model again
    assert read_netx(write_netx(again, tmp_path / "net2.net")) == net


def test_round_trip_sdnn(tmp_path: Path) -> None:
    net = NetxNetwork((
        InputLayer((2, 5, 5), NeuronParams.sdnn(0)),
        ConvLayer(weight=even((3, 2, 3, 3)), shape=(3, 3, 3), neuron=NeuronParams.sdnn(4)),
        FlattenLayer(),
        DenseLayer(weight=even((1, 27)), neuron=NeuronParams.sdnn(2, sigma_output=True)),
    ))
    assert read_netx(write_netx(net, tmp_path / "sdnn.net")) == net


def test_written_schema(tmp_path: Path) -> None:
    path = write_netx(feature_net(), tmp_path / "net.net")
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == ["layer"] and dict(f.attrs) == {}
        assert sorted(f["layer"].keys(), key=int) == [str(i) for i in range(6)]
        types = []
        for i in range(6):
            g = f[f"layer/{i}"]
            t = g["type"]
            assert t.shape == (1,) and t.dtype == np.dtype("S10")
            types.append(t[0].decode())
            for name, ds in g.items():
                if isinstance(ds, h5py.Dataset) and name in ("weight", "bias"):
                    assert ds.dtype == np.float32 and np.array_equal(ds[()], np.trunc(ds[()]))
            if "neuron" in g:
                n = g["neuron"]
                assert "messageBits" not in n
                assert n["type"].shape == () and h5py.check_string_dtype(n["type"].dtype) is not None
                assert n["vThMant"].dtype == np.int64
        assert types == ["input", "conv", "conv", "flatten", "dense", "dense"]
        assert set(f["layer/1"].keys()) >= {"shape", "weight", "stride", "padding", "dilation", "groups", "neuron"}
        assert f["layer/1/stride"][()].tolist() == [2, 1] and f["layer/1/padding"][()].tolist() == [1, 0]
        assert f["layer/1/shape"].dtype == np.int64 and f["layer/1/shape"][()].tolist() == [4, 4, 6]
        assert set(f["layer/1/neuron"].keys()) == {"type", "vThMant", "iDecay", "vDecay", "refDelay", "gradedSpike"}
        assert f["layer/2/bias"].shape == (2, 3, 4)  # a per-neuron conv bias is stored in Lava's (W, H, C)
        assert f["layer/3/shape"][()].tolist() == [24, 1, 1]
        assert "neuron" not in f["layer/5"]


def test_netx_reading_rules(tmp_path: Path) -> None:
    """Float truncation, scalar stride, trailing kernel axis, 1-D dense weight, scalar dense bias."""
    path = tmp_path / "hand.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"input"])
        g.create_dataset("shape", data=np.array([1, 4, 4]))
        g = f.create_group("layer/1")
        g.create_dataset("type", data=b"conv")  # scalar string: also accepted by netx
        g.create_dataset("shape", data=np.array([2, 2, 2]))
        g.create_dataset("weight", data=np.full((2, 1, 3, 3, 1), 2.7, dtype=np.float32))
        g.create_dataset("bias", data=np.array([-1.9, 1.9], dtype=np.float32))
        for key, value in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
            g.create_dataset(key, data=np.int64(value))
        n = g.create_group("neuron")
        n.create_dataset("type", data="CUBA")
        for key, value in (("vThMant", 10), ("iDecay", 4096), ("vDecay", 0)):
            n.create_dataset(key, data=np.int64(value))
        f.create_group("layer/2").create_dataset("type", (1,), "S10", [b"flatten"])
        g = f.create_group("layer/3")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([1, 1, 1]))
        g.create_dataset("weight", data=np.arange(8, dtype=np.float32))
        g.create_dataset("bias", data=np.array([3.0]))
    net = read_netx(path)
    conv, dense = net.layers[1], net.layers[3]
    assert conv.weight.shape == (2, 1, 3, 3) and np.all(conv.weight == 2)
    assert conv.bias.tolist() == [-1, 1]  # astype(int) truncates toward zero
    assert (conv.stride, conv.padding, conv.dilation) == ((1, 1), (0, 0), (1, 1))
    assert dense.weight.shape == (1, 8) and dense.bias.tolist() == [3] and dense.neuron is None


def test_layout_helpers() -> None:
    whc = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (W, H, C)
    chw = lava_to_chw(whc)
    assert chw.shape == (4, 3, 2) and chw[3, 2, 1] == whc[1, 2, 3]
    np.testing.assert_array_equal(chw_to_lava(chw), whc)
    batched = np.stack([whc, whc + 1])
    assert lava_to_chw(batched).shape == (2, 4, 3, 2)


# --- malformed files ------------------------------------------------------------------------------------


def _good_file(tmp_path: Path) -> Path:
    return write_netx(feature_net(), tmp_path / "good.net")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="nothere.net"):
        read_netx(tmp_path / "nothere.net")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.net"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidModelError, match="noise.net"):
        read_netx(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_file(tmp_path: Path, fraction: float) -> None:
    data = _good_file(tmp_path).read_bytes()
    path = tmp_path / "cut.net"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InvalidModelError, match="cut.net"):
        read_netx(path)


def test_missing_type(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["layer/2/type"]
    with pytest.raises(InvalidModelError, match=r"good.net: layer 2"):
        read_netx(path)


def test_wrong_weight_shape(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["layer/4/weight"]
        f["layer/4"].create_dataset("weight", data=np.zeros((6, 25), dtype=np.float32) + 2)
    with pytest.raises(InvalidModelError, match=r"good.net: layer 4 \(dense\).*24"):
        read_netx(path)


def test_conv_shape_disagrees_with_formula(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f["layer/1/shape"][...] = [4, 5, 7]
    with pytest.raises(InvalidModelError, match=r"layer 1 \(conv\).*conv formula"):
        read_netx(path)


def test_missing_neuron_key_and_bad_layer_names(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["layer/1/neuron/vThMant"]
    with pytest.raises(InvalidModelError, match="layer 1"):
        read_netx(path)
    path = _good_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f.move("layer/5", "layer/7")
    with pytest.raises(InvalidModelError, match="named 0..5"):
        read_netx(path)
    with h5py.File(tmp_path / "empty.net", "w") as f:
        f.create_group("simulation")
    with pytest.raises(InvalidModelError, match="no 'layer' group"):
        read_netx(tmp_path / "empty.net")


def test_unsupported_layers_reported_together(tmp_path: Path) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f["layer/2/type"][0] = b"pool"
        f["layer/4/type"][0] = b"concat"
        del f["layer/1/neuron/type"]
        f["layer/1/neuron"].create_dataset("type", data="RF_IZ")
        f["layer/5"].create_group("neuron").create_dataset("messageBits", data=np.int64(8))
        f["layer/5/neuron"].create_dataset("type", data="CUBA")
    with pytest.raises(UnsupportedModelError) as info:
        read_netx(path)
    problems = {(op, where) for op, where, _ in info.value.problems}
    assert problems == {("neuron", "layer 1"), ("pool", "layer 2"), ("concat", "layer 4"), ("neuron", "layer 5")}
    assert "messageBits" in str(info.value) and "RF_IZ" in str(info.value)


# --- in-memory validation and atomic writes -------------------------------------------------------------


def test_model_validation() -> None:
    lif = NeuronParams.cuba(10)
    with pytest.raises(InvalidModelError, match="conv weight"):
        ConvLayer(weight=np.zeros((2, 3, 3)), shape=(2, 1, 1), neuron=lif)
    with pytest.raises(InvalidModelError, match="integer-valued"):
        DenseLayer(weight=np.array([[0.5, 1.0]]))
    with pytest.raises(InvalidModelError, match="i_decay"):
        NeuronParams("CUBA", 10)
    with pytest.raises(InvalidModelError, match="neuron type"):
        NeuronParams("RF", 10)
    dense = DenseLayer(weight=even((2, 4)))
    with pytest.raises(InvalidModelError, match="layer 1 \\(input\\)"):
        NetxNetwork((dense, InputLayer((2,))))
    with pytest.raises(InvalidModelError, match="flatten"):
        NetxNetwork((InputLayer((1, 2, 2)), dense))
    with pytest.raises(InvalidModelError, match="conv layer needs"):
        NetxNetwork((ConvLayer(weight=even((2, 1, 1, 1)), shape=(2, 2, 2), neuron=lif),))
    frozen = dense.weight
    with pytest.raises(ValueError):
        frozen[0, 0] = 1  # arrays in the model are read-only


def test_atomic_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _good_file(tmp_path)
    before = path.read_bytes()
    calls = []

    def failing(group, layer, in_shape):
        calls.append(layer)
        if len(calls) % 3 == 0:  # the third layer of every write fails
            raise RuntimeError("disk on fire")
        return original(group, layer, in_shape)

    original = netx._write_layer
    monkeypatch.setattr(netx, "_write_layer", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_netx(feature_net(), path)
    with pytest.raises(RuntimeError):
        write_netx(feature_net(), tmp_path / "new.net")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["good.net"]  # no partial target, no temporary left behind
