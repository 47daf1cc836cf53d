"""Reproduce every lava-dl netx golden fixture (shared/lava_fixtures, README "Test recipes" A-J) exactly.

Lava layouts are (W, H, C[, T]); the simulator works in (C, H, W) with batch and time first, so each test
converts with ``lava_to_chw`` / ``np.moveaxis`` at the boundary. Slayer recordings are (N, C, H, W, T).
The data is found through the ``shared_dir`` fixture of tests/conftest.py, which skips when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ann2snn.backends.loihi.fixed_point import FixedPointConfig, simulate_fixed_point
from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
    lava_to_chw,
    read_netx,
    write_netx,
)
from ann2snn.backends.loihi.profile import check_network, estimate_resources

TINY_LIF = NeuronParams("LOIHI", vth_mant=25, i_decay=4096, v_decay=1024)
NETX = "lava_fixtures/tests/lava/lib/dl/netx"
OXFORD = "lava_fixtures/tutorials/lava/lib/dl/netx/oxford/Trained/network.net"


@pytest.fixture
def netx_dir(shared_dir) -> Path:
    """``tests/lava/lib/dl/netx`` inside the fixtures (holds tiny.net and gts/)."""
    return shared_dir(NETX) / NETX


@pytest.fixture
def gts(netx_dir: Path) -> Path:
    return netx_dir / "gts"


@pytest.fixture
def oxford_net(shared_dir) -> Path:
    return shared_dir(OXFORD) / OXFORD


def time_first(x: np.ndarray) -> np.ndarray:
    """(…, T) -> (1, T, …): a single-sample batch with time after batch."""
    return np.moveaxis(np.asarray(x), -1, 0)[None]


def slayer_to_chw_t(x: np.ndarray) -> np.ndarray:
    """Slayer (1, C, H, W, T) -> (T, C, H, W)."""
    return np.moveaxis(x[0], -1, 0)


def lava_whc_t_to_t_chw(x: np.ndarray) -> np.ndarray:
    """Lava (W, H, C, T) -> (T, C, H, W)."""
    return lava_to_chw(np.moveaxis(x, -1, 0))


def tiny_conv1_from_lava_kernel(gts: Path, neuron: NeuronParams) -> ConvLayer:
    """tiny.net layer 1 rebuilt from the Lava-layout kernel (Cout, kW, kH, Cin) used by test_blocks."""
    kernel = np.load(gts / "tinynet" / "layer1_kernel.npy")
    weight = kernel.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]  # undo netx's flip + transpose
    return ConvLayer(weight=weight, shape=(24, 6, 6), neuron=neuron, stride=(2, 2),
                     bias=np.load(gts / "tinynet" / "layer1_bias.npy"))


# --- A. reader checks on tiny.net -------------------------------------------------------------------------


def test_a_tiny_net_reader(netx_dir: Path, gts: Path) -> None:
    net = read_netx(netx_dir / "tiny.net")
    assert [type(layer) for layer in net.layers] == [InputLayer, ConvLayer, ConvLayer]
    assert net.shapes == ((3, 16, 16), (24, 6, 6), (36, 1, 1))
    assert (net.layers[0].transform_weight, net.layers[0].transform_bias) == (36, 34)
    for layer in net.layers:
        assert layer.neuron == TINY_LIF  # Lava: vth=25, du=iDecay-1=4095, dv=1024, bias_exp=6
    # HDF5 kernels are PyTorch cross-correlation kernels; netx flips and transposes them for Lava
    assert net.layers[1] == tiny_conv1_from_lava_kernel(gts, TINY_LIF)
    assert NetxNetwork(net.layers[:2]).shapes == net.shapes[:2]  # num_layers=2 builds the first two blocks


# --- B. test_tinynet: whole network, 20 steps, periodic resets --------------------------------------------


def test_b_tinynet(netx_dir: Path, gts: Path) -> None:
    net = read_netx(netx_dir / "tiny.net")
    bias = lava_to_chw(np.load(gts / "tinynet" / "input_bias.npy").astype(int))
    res = simulate_fixed_point(net, 20, input_bias=bias, config=FixedPointConfig(reset_interval=17))
    out = res.output[0]  # (20, 36, 1, 1): index t-1 is Lava step t
    gt = slayer_to_chw_t(np.load(gts / "tinynet" / "output.npy"))[1:]  # slayer index 1..15
    assert gt.sum() == 92
    np.testing.assert_array_equal(out[2:17], gt)  # Lava step t <-> slayer index t-2 for layer 2


# --- C. input LIF block alone ----------------------------------------------------------------------------


def test_c_input_lif_block(netx_dir: Path, gts: Path) -> None:
    net = NetxNetwork((read_netx(netx_dir / "tiny.net").layers[0],))
    bias = lava_to_chw(np.load(gts / "tinynet" / "input_bias.npy").astype(int))
    res = simulate_fixed_point(net, 15, input_bias=bias)
    gt = slayer_to_chw_t(np.load(gts / "tinynet" / "input.npy"))
    assert gt[0].sum() == 0 and gt.sum() == 6783
    np.testing.assert_array_equal(res.s[0][0], gt[1:])  # step t <-> reference index t


# --- D. conv LIF block alone: spikes and current ----------------------------------------------------------


def test_d_conv_lif_block(gts: Path) -> None:
    net = NetxNetwork((InputLayer((3, 16, 16)), tiny_conv1_from_lava_kernel(gts, TINY_LIF)))
    spikes = slayer_to_chw_t(np.load(gts / "tinynet" / "input.npy"))[1:]  # 15 steps, sent cyclically
    # zeroing u, v right after step 1 == LIFReset at the start of step 2 for Lava block 0 (no input neuron)
    cfg = FixedPointConfig(reset_interval=16, reset_offset=1)
    res = simulate_fixed_point(net, 16, input_spikes=spikes[None], record=("s", "u"), config=cfg)
    s, u = res.s[1][0].copy(), res.u[1][0]
    s[0] = 0
    np.testing.assert_array_equal(s, slayer_to_chw_t(np.load(gts / "tinynet" / "layer1.npy")))
    current = slayer_to_chw_t(np.load(gts / "tinynet" / "current.npy")) * 64
    np.testing.assert_array_equal(u, current)  # step t <-> reference index t-1


# --- E. dense LIF block, 200 -> 256, 2000 steps ----------------------------------------------------------

def _dense_fixture(gts: Path) -> np.lib.npyio.NpzFile:
    return np.load(gts / "dense" / "dense_in_out_weight.npz")


def test_e_dense_lif_block(gts: Path) -> None:
    z = _dense_fixture(gts)
    layer = DenseLayer(weight=z["weight"], neuron=NeuronParams("CUBA", 6, i_decay=4096, v_decay=415))
    res = simulate_fixed_point(NetxNetwork((layer,)), 2000, input_spikes=time_first(z["in"]))
    assert z["out"].sum() == 1826
    np.testing.assert_array_equal(res.output[0].T, z["out"])


def test_e_dense_from_oxford_net(gts: Path, oxford_net: Path) -> None:
    z = _dense_fixture(gts)
    first = read_netx(oxford_net).layers[0]
    assert first.neuron == NeuronParams("CUBA", 6, i_decay=4096, v_decay=415)
    np.testing.assert_array_equal(first.weight, z["weight"])
    res = simulate_fixed_point(NetxNetwork((first,)), 2000, input_spikes=time_first(z["in"]))
    np.testing.assert_array_equal(res.output[0].T, z["out"])


# --- F. Delta input block (graded) ------------------------------------------------------------------------


def test_f_delta_input_block(gts: Path) -> None:
    bias = np.load(gts / "tinynet_sdnn" / "input_bias.npy")
    wave = np.sin(2 * np.pi * np.arange(15) / 15)
    data = (bias[..., None] * wave).astype(int)  # (16, 16, 3, 15), truncated toward zero
    net = NetxNetwork((InputLayer((3, 16, 16), NeuronParams.sdnn(vth_mant=20)),))
    res = simulate_fixed_point(net, 15, input_a_in=lava_whc_t_to_t_chw(data)[None])
    gt = lava_whc_t_to_t_chw(np.load(gts / "tinynet_sdnn" / "input.npy"))
    np.testing.assert_array_equal(res.s[0][0], gt)


# --- G. SigmaDelta conv block, one step (bias only) -------------------------------------------------------


def test_g_sigma_delta_conv_block(gts: Path) -> None:
    net = NetxNetwork((InputLayer((3, 16, 16)), tiny_conv1_from_lava_kernel(gts, NeuronParams.sdnn(20))))
    graded = lava_whc_t_to_t_chw(np.load(gts / "tinynet_sdnn" / "input.npy").astype(int))
    res = simulate_fixed_point(net, 1, input_spikes=graded[None],
                               config=FixedPointConfig(input_message_bits=16))
    gt = lava_whc_t_to_t_chw(np.load(gts / "tinynet_sdnn" / "layer1.npy"))  # (16, 24, 6, 6)
    np.testing.assert_array_equal(res.s[1][0, 0], gt[0])
    assert not gt[1:].any()  # the sink's other columns were never written
    assert set(np.unique(gt[0])) == {0, 2176, 2432, 3200, 3968}


# --- H. Sigma dense block, binary input -------------------------------------------------------------------


def test_h_sigma_dense_block(gts: Path) -> None:
    weight = np.load(gts / "tinynet_sdnn" / "layer2_weight.npy")
    source = np.load(gts / "tinynet_sdnn" / "layer1.npy").reshape(-1, 16)  # WHC C-order flatten (standalone)
    net = NetxNetwork((DenseLayer(weight=weight, neuron=NeuronParams.sdnn(sigma_output=True)),))
    res = simulate_fixed_point(net, 16, input_spikes=time_first(source))  # binary: no message bits
    np.testing.assert_array_equal(res.output[0].T, np.load(gts / "tinynet_sdnn" / "layer2.npy"))


# --- I. whole PilotNet SDNN -------------------------------------------------------------------------------


def _pilotnet_sdnn(gts: Path, spike_exp: int) -> np.ndarray:
    net = read_netx(gts / "pilotnet_sdnn" / "network.net")
    frame = lava_whc_t_to_t_chw(np.load(gts / "pilotnet_sdnn" / "input.npy"))  # (1, 3, 33, 100)
    res = simulate_fixed_point(net, 9, input_a_in=frame[None], config=FixedPointConfig(spike_exp=spike_exp))
    return res.output[0, :, 0]


def test_i_pilotnet_sdnn(gts: Path) -> None:
    out = _pilotnet_sdnn(gts, spike_exp=6)
    np.testing.assert_array_equal(out, np.load(gts / "pilotnet_sdnn" / "output.npy")[0])


def test_i_pilotnet_sdnn_spike_exp_0(gts: Path) -> None:
    """The one tolerance test upstream: mean |out - gt/64| < 128 (the README's reference gives 76.8)."""
    out = _pilotnet_sdnn(gts, spike_exp=0)
    gt = np.load(gts / "pilotnet_sdnn" / "output.npy")[0]
    assert np.mean(np.abs(out - gt / 64)) < 128
    np.testing.assert_array_equal(out, [0, -60, 70, 5594, 7048, 5328, -4946, -4946, -76])


# --- J. PilotNet LIF recordings (fc-0..fc-2 spikes, u, v) -------------------------------------------------


def test_j_pilotnet_lif(gts: Path) -> None:
    d = gts / "pilotnet_lif"
    net = read_netx(d / "network.net")
    image = lava_to_chw(np.load(d / "image.npy").astype(int))
    res = simulate_fixed_point(net, 24, input_bias=image, record=("s", "u", "v"), record_layers=(7, 8, 9),
                               config=FixedPointConfig(reset_interval=16))
    for k in range(3):
        index, lava_layer = 7 + k, 6 + k  # netx index (flatten counted) vs Lava block index
        cols = min(24, 16 + lava_layer)  # columns j <= 15 + L were recorded with the same resets
        s, u, v = (res.s[index][0].T, res.u[index][0].T, res.v[index][0].T)
        v_file = np.where(s == 1, 128, v)  # the recording holds 128 where Lava resets v to 0
        np.testing.assert_array_equal(s[:, :cols], np.load(d / f"fc-{k}.npy")[:, :cols])
        np.testing.assert_array_equal(u[:, :cols], np.load(d / f"fc-{k}-u.npy")[:, :cols])
        np.testing.assert_array_equal(v_file[:, :cols], np.load(d / f"fc-{k}-v.npy")[:, :cols])
    assert res.u[9][0, 14].tolist() == np.load(d / "fc-2-u.npy")[:, 14].tolist()  # upstream's hardware assert


# --- round trip of every fixture network through the writer ----------------------------------------------


@pytest.mark.parametrize("which", ["tiny", "pilotnet_sdnn", "pilotnet_lif", "oxford"])
def test_fixture_networks_round_trip(which: str, netx_dir: Path, gts: Path, oxford_net: Path,
                                     tmp_path: Path) -> None:
    path = {"tiny": netx_dir / "tiny.net", "pilotnet_sdnn": gts / "pilotnet_sdnn" / "network.net",
            "pilotnet_lif": gts / "pilotnet_lif" / "network.net", "oxford": oxford_net}[which]
    net = read_netx(path)
    again = read_netx(write_netx(net, tmp_path / "copy.net"))
    assert again == net
    rng = np.random.default_rng(0)
    if which == "oxford":
        kwargs = {"input_spikes": rng.integers(0, 2, (1, 12, 200))}
    elif which == "pilotnet_sdnn":
        kwargs = {"input_a_in": rng.integers(-60, 60, (1, 1) + net.input_shape)}
    else:
        kwargs = {"input_bias": rng.integers(0, 60, net.input_shape)}
    a = simulate_fixed_point(net, 12, record=("s", "u", "v", "sigma"), **kwargs)
    b = simulate_fixed_point(again, 12, record=("s", "u", "v", "sigma"), **kwargs)
    for key in ("s", "u", "v", "sigma"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.keys() == y.keys()
        for i in x:
            np.testing.assert_array_equal(x[i], y[i])


def test_fixture_networks_pass_loihi2_checks(netx_dir: Path, gts: Path, oxford_net: Path) -> None:
    for path in (netx_dir / "tiny.net", gts / "pilotnet_sdnn" / "network.net",
                 gts / "pilotnet_lif" / "network.net", oxford_net):
        net = read_netx(path)
        assert check_network(net) == [], path
        assert estimate_resources(net).cores > 0
