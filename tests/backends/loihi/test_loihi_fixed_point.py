"""Fixed-point simulator semantics (LOIHI_NIR.md §2), checked against hand-computed values and a naive
step-major reference written here from the documented equations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ann2snn.errors import BackendConstraintError, DataError
from ann2snn.backends.loihi.fixed_point import FixedPointConfig, netx_dense_weights, simulate_fixed_point
from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
)

RNG = np.random.default_rng(7)


def even(shape: tuple[int, ...], lo: int = -40, hi: int = 40) -> np.ndarray:
    return 2 * RNG.integers(lo // 2, hi // 2 + 1, shape)


def wrap24(x: np.ndarray) -> np.ndarray:
    return ((x + 2**23) % 2**24) - 2**23


def corr2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """Naive int64 cross-correlation, (Cin, H, W) * (Cout, Cin, kH, kW) -> (Cout, Ho, Wo), groups=1."""
    xp = np.pad(x, ((0, 0), (padding[0],) * 2, (padding[1],) * 2))
    kh, kw = w.shape[2:]
    ho = (xp.shape[1] - kh) // stride[0] + 1
    wo = (xp.shape[2] - kw) // stride[1] + 1
    out = np.zeros((w.shape[0], ho, wo), dtype=np.int64)
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[:, dy: dy + stride[0] * ho: stride[0], dx: dx + stride[1] * wo: stride[1]]
            out += np.einsum("oc,chw->ohw", w[:, :, dy, dx], patch)
    return out


def trunc_decay(x: np.ndarray, decay: int) -> np.ndarray:
    p = x * (4096 - decay)
    return np.sign(p) * (np.abs(p) >> 12)


def reference_cuba(net: NetxNetwork, steps: int, bias: np.ndarray) -> list[np.ndarray]:
    """Step-major reference for an all-CUBA network with an input LIF driven by ``bias``; returns the spikes
    of every layer as (steps, *shape). Each synapse sends last step's result (one step of latency)."""
    state = {i: [np.zeros(s, np.int64), np.zeros(s, np.int64), np.zeros(s, np.int64)]
             for i, s in enumerate(net.shapes)}  # u, v, synaptic buffer
    spikes = [np.zeros((steps,) + s, np.int64) for s in net.shapes]
    for t in range(steps):
        x = None
        for i, layer in enumerate(net.layers):
            if isinstance(layer, FlattenLayer):
                x = x.reshape(-1)
                continue
            u, v, buf = state[i]
            if isinstance(layer, InputLayer):
                a, b, neuron = 0, bias, layer.neuron
            else:
                a, neuron = buf, layer.neuron if layer.neuron is not None else layer.effective_neuron
                b = 0 if layer.bias is None else (
                    layer.bias.reshape(-1, 1, 1) if isinstance(layer, ConvLayer) else layer.bias)
                if isinstance(layer, ConvLayer):
                    state[i][2] = wrap24(corr2d(x, layer.weight, layer.stride, layer.padding))
                else:
                    state[i][2] = layer.weight @ x
            u = trunc_decay(u, neuron.i_decay) + (a << 6)
            u = wrap24(u)
            v = np.clip(trunc_decay(v, neuron.v_decay) + u + (np.asarray(b) << 6), -(2**23 - 1), 2**23 - 1)
            s = v > (neuron.vth_mant << 6)
            v = np.where(s, 0, v)
            state[i][0], state[i][1] = u, v
            spikes[i][t] = s
            x = s.astype(np.int64)
    return spikes


def random_cuba_net() -> NetxNetwork:
    lif = NeuronParams.cuba(vth_mant=60, i_decay=1500, v_decay=300)
    return NetxNetwork((
        InputLayer((2, 9, 8), NeuronParams.cuba(vth_mant=20, i_decay=4096, v_decay=200)),
        ConvLayer(weight=even((5, 2, 3, 2)), shape=(5, 4, 9), neuron=lif, stride=(2, 1), padding=(0, 1),
                  bias=RNG.integers(-4, 8, 5)),
        FlattenLayer(),
        DenseLayer(weight=even((7, 180)), neuron=NeuronParams.cuba(30, 4096, 0), bias=RNG.integers(-2, 4, 7)),
        DenseLayer(weight=even((3, 7))),
    ))


def test_matches_step_major_reference_and_is_chunk_invariant() -> None:
    net = random_cuba_net()
    bias = RNG.integers(0, 40, (2, 9, 8))
    expected = reference_cuba(net, 30, bias)
    for chunk in (1, 7, 64):
        res = simulate_fixed_point(net, 30, input_bias=bias, config=FixedPointConfig(time_chunk=chunk))
        for i in (0, 1, 3, 4):
            np.testing.assert_array_equal(res.s[i][0], expected[i], err_msg=f"layer {i}, chunk {chunk}")
    assert expected[1].sum() > 10 and expected[3].sum() > 0  # the check is not vacuous


def test_batch_matches_single_runs() -> None:
    net = random_cuba_net()
    biases = RNG.integers(0, 40, (3, 2, 9, 8))
    batched = simulate_fixed_point(net, 12, input_bias=biases, record=("s", "v"))
    for b in range(3):
        single = simulate_fixed_point(net, 12, input_bias=biases[b], record=("s", "v"))
        for i in (0, 1, 3):
            np.testing.assert_array_equal(batched.s[i][b], single.s[i][0])
        np.testing.assert_array_equal(batched.readout[b], single.readout[0])


def _one_neuron(weight: list[list[int]], neuron: NeuronParams | None, steps: int, spikes: np.ndarray,
                **kw):
    net = NetxNetwork((DenseLayer(weight=np.array(weight), neuron=neuron),))
    return simulate_fixed_point(net, steps, input_spikes=spikes, record=("s", "u", "v"), **kw)


def test_threshold_is_strict_and_reset_is_to_zero() -> None:
    spikes = np.ones((1, 3, 2), dtype=np.int64)
    if_neuron = NeuronParams.cuba(vth_mant=10, i_decay=4096, v_decay=4096)
    res = _one_neuron([[10, 0]], if_neuron, 3, spikes)
    assert res.s[0].sum() == 0 and res.v[0][0, 1:, 0].tolist() == [640, 640]  # v == vth<<6 does not spike
    res = _one_neuron([[12, -2]], NeuronParams.cuba(vth_mant=20, i_decay=4096, v_decay=0), 4, spikes)
    # step 1: the synapse is still empty; then v grows by (12-2)<<6 = 640 a step and spikes once v > 1280
    assert res.u[0][0, :, 0].tolist() == [0, 640, 640, 640]
    assert res.v[0][0, :, 0].tolist() == [0, 640, 1280, 0]
    assert res.s[0][0, :, 0].tolist() == [0, 0, 0, 1]


def test_u_wraps_and_v_saturates() -> None:
    steps = 600
    spikes = np.array([[[1, 0]]])  # one frame, repeated every step: only input 0 spikes
    res = _one_neuron([[254, -2]], None, steps, spikes)  # netx default integrator: iDecay 0, vDecay 4096
    cum = np.arange(steps) * 254 * 64  # input reaches the neuron from step 2 on
    np.testing.assert_array_equal(res.u[0][0, :, 0], wrap24(cum))
    assert res.u[0].min() < 0  # it did wrap
    np.testing.assert_array_equal(res.readout, res.v[0])
    res = _one_neuron([[-254, 2]], NeuronParams.cuba(100, 4096, 0), 600, spikes)
    assert res.v[0][0, -1, 0] == -(2**23 - 1) and res.s[0].sum() == 0


def test_conv_wraps_to_24_bits_exactly_for_huge_graded_input() -> None:
    weight = even((2, 3, 3, 3), -254, 254)
    x = RNG.integers(-(2**50), 2**50, (3, 5, 5))  # products far beyond float64's exact range
    net = NetxNetwork((InputLayer((3, 5, 5)),
                       ConvLayer(weight=weight, shape=(2, 3, 3), neuron=NeuronParams.sdnn(sigma_output=True))))
    res = simulate_fixed_point(net, 2, input_spikes=x[None, None], config=FixedPointConfig(input_message_bits=16))
    np.testing.assert_array_equal(res.output[0, 1], wrap24(corr2d(x, weight, (1, 1), (0, 0))))
    assert not res.output[0, 0].any()


@pytest.mark.parametrize(
    "weight, expected",
    [
        ([[3, -5, 100], [-128, 7, 0]], None),  # mixed, odd, in range: exact
        ([[254, -256, 1]], None),
        ([[300, -4]], [[254, -4]]),  # mixed beyond 254: clipped by netx
        ([[300, 4]], [[0, 0]]),  # all positive above 255: everything becomes 0
        ([[-2, -2], [-2, -2]], [[0, 0], [0, 0]]),  # all <= 0 with minimum -2**k: Lava clips and truncates
    ],
)
def test_netx_dense_weights(weight, expected) -> None:
    w = np.array(weight)
    lava_w, weight_exp = netx_dense_weights(w)
    s = RNG.integers(0, 3, (w.shape[1], 20))  # graded inputs
    acc = lava_w @ s
    effective = (acc << weight_exp) if weight_exp > 0 else (acc >> -weight_exp)
    want = w if expected is None else np.array(expected)
    np.testing.assert_array_equal(effective, want @ s)


def test_all_zero_dense_cannot_load() -> None:
    with pytest.raises(ValueError, match="OverflowError"):
        netx_dense_weights(np.zeros((2, 2)))
    net = NetxNetwork((DenseLayer(weight=np.zeros((2, 3))),))
    with pytest.raises(BackendConstraintError, match="0 \\(dense\\)"):
        simulate_fixed_point(net, 2, input_spikes=np.ones((1, 1, 3)))


def test_dense_delays() -> None:
    # delay per output: output 0 gets no extra delay, output 1 two extra steps
    layer = DenseLayer(weight=np.array([[4, -2], [6, 2]]), delay=np.array([0, 2]))
    spikes = np.zeros((1, 6, 2), dtype=np.int64)
    spikes[0, 0, 0] = 1  # one spike at step 1
    for chunk in (1, 2, 32):
        res = simulate_fixed_point(NetxNetwork((layer,)), 6, input_spikes=spikes, record=("u",),
                                   config=FixedPointConfig(time_chunk=chunk))
        u = res.u[0][0] >> 6  # the readout integrates a << 6
        assert u[:, 0].tolist() == [0, 4, 4, 4, 4, 4]  # arrives at step 2
        assert u[:, 1].tolist() == [0, 0, 0, 6, 6, 6]  # arrives at step 4


def test_sdnn_steady_input_gives_quantized_relu() -> None:
    """A constant input makes SigmaDelta's cumulative messages equal ReLU(W·x + b) up to the residue."""
    w = even((4, 6), -20, 20)
    b = RNG.integers(-30, 30, 4)
    x = RNG.integers(0, 50, 6)
    net = NetxNetwork((InputLayer((6,), NeuronParams.sdnn(0)),
                       DenseLayer(weight=w, neuron=NeuronParams.sdnn(1), bias=b),
                       DenseLayer(weight=np.eye(4, dtype=int) * 2, neuron=NeuronParams.sdnn(sigma_output=True))))
    res = simulate_fixed_point(net, 6, input_a_in=x[None, None], record=("s", "sigma"))
    # Delta sends x << 6 once; the hidden layer's accumulated messages are ReLU(W x·64 + b·4096) >> 6
    hidden = res.s[1][0].sum(axis=0)
    want = np.maximum(w @ (x << 6) + (b << 12), 0) >> 6
    assert np.all(np.abs(hidden - want) < (1 << 6)), (hidden, want)
    np.testing.assert_array_equal(res.output[0, -1], 2 * hidden)
    np.testing.assert_array_equal(res.sigma[2], res.output)


def test_input_validation() -> None:
    net = random_cuba_net()
    with pytest.raises(DataError, match="CHW"):
        simulate_fixed_point(net, 2, input_bias=np.zeros((8, 9, 2)))
    with pytest.raises(DataError, match="input_spikes"):
        simulate_fixed_point(net, 2, input_spikes=np.zeros((1, 1, 2, 9, 8)))
    with pytest.raises(DataError, match="integers"):
        simulate_fixed_point(net, 2, input_bias=np.full((2, 9, 8), 0.5))
    with pytest.raises(DataError, match="record"):
        simulate_fixed_point(net, 2, record=("w",))
    sdnn = NetxNetwork((InputLayer((3,), NeuronParams.sdnn(0)),))
    with pytest.raises(DataError, match="no bias"):
        simulate_fixed_point(sdnn, 2, input_bias=np.ones(3))


LAVA_DECAY = Path(__file__).parent / "data" / "lava_cuba_decay.json"


@pytest.mark.parametrize("case", range(3))
def test_decaying_current_matches_lava(case: int) -> None:
    """Lava's own fixed_pt LIF with iDecay < 4096 (ann2snn's CUBA default is 2048; every lava-dl fixture has 4096):
    u, v and spikes of every step, recorded by data/make_lava_cuba_decay.py, reproduced exactly."""
    import json

    doc = json.loads(LAVA_DECAY.read_text())["cases"][case]
    weight = np.array(doc["weight"])
    neuron = NeuronParams.cuba(doc["vth"], doc["i_decay"], doc["v_decay"])
    net = NetxNetwork((InputLayer((weight.shape[1],)), DenseLayer(weight=weight, neuron=neuron,
                                                                  bias=np.array(doc["bias"]))))
    res = simulate_fixed_point(net, doc["steps"], input_spikes=np.array(doc["spikes"]).T[None],
                               record=("s", "u", "v"), config=FixedPointConfig(time_chunk=5))
    for key in ("u", "v", "s"):
        np.testing.assert_array_equal(getattr(res, key)[1][0], np.array(doc[key]), err_msg=key)
    assert np.any(np.array(doc["u"]) < 0) and 0 < np.sum(doc["s"])  # truncation toward zero and resets exercised
