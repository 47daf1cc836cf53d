"""collect_activation_stats: exact moments, streaming, histogram percentiles, bounded memory, data checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ann2snn.calibration import ActivationStats, CalibrationConfigError, channel_count, collect_activation_stats
from ann2snn.errors import DataError
from ann2snn.ir import Add, Dense, Graph, ReLU, TensorSpec

# a plain helper module next to the tests (tests/calibration is on sys.path under pytest)
from calib_helpers import conv_input, heavy_tail, make_conv_net, make_relu_net, per_channel

TENSORS = ["conv", "relu", "flat", "fc"]


def test_moments_match_numpy():
    conv_net = make_conv_net()
    conv_data = conv_input()
    stats = collect_activation_stats(conv_net, TENSORS, conv_data, batch_size=32)
    acts = conv_net.run(conv_data, outputs=TENSORS)
    assert list(stats) == TENSORS
    for name in TENSORS:
        st, v = stats[name], per_channel(acts[name])
        assert isinstance(st, ActivationStats)
        assert st.shape == conv_net.shapes[name]
        assert st.channels == channel_count(st.shape) == v.shape[0]
        assert st.samples == len(conv_data)
        np.testing.assert_array_equal(st.count, np.full(v.shape[0], v.shape[1]))
        np.testing.assert_array_equal(st.max, v.max(axis=1))  # exact, not approximate
        np.testing.assert_array_equal(st.min, v.min(axis=1))
        np.testing.assert_allclose(st.sum, v.sum(axis=1, dtype=np.float64), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(st.sumsq, (v.astype(np.float64) ** 2).sum(axis=1), rtol=1e-5)
        np.testing.assert_allclose(st.mean, v.mean(axis=1, dtype=np.float64), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(st.std, v.astype(np.float64).std(axis=1), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(st.nonpos, (v <= 0).sum(axis=1))
        np.testing.assert_array_equal(st.hist.sum(axis=1), (v > 0).sum(axis=1))
        assert st.layer_hist.sum() == (v > 0).sum()
        assert st.layer_max == v.max()
    # 1-D tensors: every feature is its own channel
    assert stats["flat"].channels == 256 and stats["fc"].channels == 5
    assert stats["conv"].channels == 4


def test_histogram_bins_follow_the_documented_edges():
    # values exactly on bin edges k·w (w = max/bins = 1) must land in bin k-1: bins are (b·w, (b+1)·w]
    x = np.array([[0.0], [-1.0], [1.0], [2.0], [2.5], [4.0], [4.0]], dtype=np.float32)
    st = collect_activation_stats(make_relu_net(1), ["x"], x, bins=4)["x"]
    np.testing.assert_array_equal(st.hist[0], [1, 1, 1, 2])
    assert st.nonpos[0] == 2 and st.min[0] == -1.0


def test_streaming_result_independent_of_batch_size():
    # elementwise graph: identical activations whatever the batch, so the accumulation must be exact
    g = make_relu_net(4, 5, 5)
    data = np.random.default_rng(5).normal(size=(101, 4, 5, 5)).astype(np.float32)
    results = [collect_activation_stats(g, ["x", "relu"], data, batch_size=b, bins=256) for b in (1, 7, 101, 1000)]
    for other in results[1:]:
        for name in ("x", "relu"):
            a, b = results[0][name].arrays(), other[name].arrays()
            for key in ("count", "nonpos", "max", "min", "hist", "layer_hist"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}.{key}")
            np.testing.assert_allclose(a["sum"], b["sum"], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a["sumsq"], b["sumsq"], rtol=1e-12)


def test_streaming_conv_net_independent_of_batch_size():
    conv_net = make_conv_net()
    conv_data = conv_input()
    # a conv may sum in a batch-dependent order (last-bit differences), so compare with tolerances
    data = conv_data[:40]
    results = [collect_activation_stats(conv_net, TENSORS, data, batch_size=b, bins=256) for b in (3, 40)]
    for other in results[1:]:
        for name in TENSORS:
            a, b = results[0][name], other[name]
            np.testing.assert_array_equal(a.count, b.count)
            np.testing.assert_allclose(a.max, b.max, rtol=1e-5)
            np.testing.assert_allclose(a.sum, b.sum, rtol=1e-5, atol=1e-3)
            # a value may cross a bin edge: histograms agree up to a few moved values
            assert np.abs(a.hist - b.hist).sum() <= 1e-3 * a.count.sum()
            assert np.all(np.abs(a.percentile(99) - b.percentile(99)) <= 2 * a.bin_width() + 1e-6)


@pytest.mark.parametrize("bins", [16, 2048])
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_percentile_error_at_most_one_bin(bins, granularity):
    conv_net = make_conv_net()
    conv_data = conv_input()
    heavy_tail_data = heavy_tail()
    cases = [(conv_net, conv_data, ["relu", "fc", "conv"]), (make_relu_net(3), heavy_tail_data, ["relu"])]
    worst = 0.0
    for graph, data, names in cases:
        stats = collect_activation_stats(graph, names, data, bins=bins, batch_size=4096)
        acts = graph.run(data, outputs=names)
        for name in names:
            st = stats[name]
            v = np.maximum(per_channel(acts[name]), 0.0)  # percentiles of max(a, 0), as documented
            if granularity == "layer":
                v = v.reshape(1, -1)
            width = st.bin_width(granularity)
            for p in (0.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
                est = st.percentile(p, granularity)
                true = np.percentile(v, p, axis=1)
                assert est.shape == true.shape == ((st.channels,) if granularity == "channel" else (1,))
                err = np.abs(est - true)
                assert np.all(err <= width + 1e-12), (name, p, err / np.maximum(width, 1e-30))
                worst = max(worst, float(np.max(err / np.where(width > 0, width, 1.0))))
    # the construction gives <= w/2 (bin centres); one bin width is the documented bound
    assert worst <= 0.5 + 1e-3


def test_percentile_100_is_max_and_argument_checked():
    conv_net = make_conv_net()
    conv_data = conv_input()
    st = collect_activation_stats(conv_net, ["relu"], conv_data)["relu"]
    np.testing.assert_array_equal(st.percentile(100), np.maximum(st.max, 0))
    np.testing.assert_array_equal(st.percentile(100, "layer"), [st.layer_max])
    for bad in (-1, 100.5, float("nan")):
        with pytest.raises(CalibrationConfigError):
            st.percentile(bad)
    with pytest.raises(CalibrationConfigError):
        st.percentile(50, "tensor")


def test_memory_independent_of_sample_count():
    conv_net = make_conv_net()
    rng = np.random.default_rng(3)
    small = collect_activation_stats(conv_net, TENSORS, rng.normal(size=(8, 3, 8, 8)).astype(np.float32))
    large = collect_activation_stats(conv_net, TENSORS, rng.normal(size=(400, 3, 8, 8)).astype(np.float32))
    for name in TENSORS:
        assert large[name].count[0] == 50 * small[name].count[0]
        assert small[name].nbytes == large[name].nbytes
        assert {k: v.shape for k, v in small[name].arrays().items()} == {
            k: v.shape for k, v in large[name].arrays().items()
        }
        c, bins = large[name].channels, large[name].bins
        assert large[name].nbytes == 8 * (c * (bins + 6) + bins)  # O(channels x bins), nothing per sample


def test_stats_are_frozen_and_read_only():
    conv_net = make_conv_net()
    conv_data = conv_input()
    st = collect_activation_stats(conv_net, ["relu"], conv_data)["relu"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.name = "other"
    with pytest.raises(ValueError):
        st.hist[0, 0] = 5


def test_dead_channel():
    conv_data = conv_input()
    g = make_conv_net(dead_channel=True)
    st = collect_activation_stats(g, ["relu"], conv_data)["relu"]
    assert st.max[0] == 0 and st.hist[0].sum() == 0 and st.nonpos[0] == st.count[0]
    assert st.percentile(99.9)[0] == 0 and st.percentile(100)[0] == 0
    assert np.all(st.max[1:] > 0)


def test_graph_input_as_tensor_and_integer_data():
    conv_net = make_conv_net()
    raw = np.random.default_rng(4).integers(0, 256, size=(20, 3, 8, 8), dtype=np.uint8)
    a = collect_activation_stats(conv_net, ["x", "relu"], raw)
    b = collect_activation_stats(conv_net, ["x", "relu"], raw.astype(np.float32))
    for name in ("x", "relu"):
        for key, arr in a[name].arrays().items():
            np.testing.assert_array_equal(arr, b[name].arrays()[key])
    assert a["x"].layer_max == raw.max()


def test_multi_input_graph_takes_a_dict():
    g = Graph.from_unordered(
        [TensorSpec("a", (2,)), TensorSpec("b", (2,))], [Add("sum", ("a", "b")), ReLU("r", ("sum",))], ["r"]
    ).validate()
    a, b = np.ones((5, 2), np.float32), np.full((5, 2), 2.0, np.float32)
    st = collect_activation_stats(g, ["r"], {"a": a, "b": b})["r"]
    np.testing.assert_array_equal(st.max, [3.0, 3.0])
    with pytest.raises(DataError, match="different numbers of samples"):
        collect_activation_stats(g, ["r"], {"a": a, "b": b[:3]})
    with pytest.raises(DataError, match="'b'"):
        collect_activation_stats(g, ["r"], {"a": a})
    with pytest.raises(DataError, match="2 inputs"):
        collect_activation_stats(g, ["r"], a)


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros((4, 3, 8), np.float32), r"expected shape \(batch, 3, 8, 8\), got \(4, 3, 8\)"),
        (np.zeros((3, 8, 8), np.float32), r"expected shape \(batch, 3, 8, 8\)"),
        (np.zeros((4, 1, 8, 8), np.float32), "expected shape"),
        (np.zeros((0, 3, 8, 8), np.float32), "no samples"),
        (np.full((4, 3, 8, 8), "a"), "numeric array"),
        (np.zeros((4, 3, 8, 8), bool), "numeric array"),
        (np.zeros((4, 3, 8, 8), complex), "numeric array"),
    ],
)
def test_bad_data_raises_data_error(data, match):
    conv_net = make_conv_net()
    with pytest.raises(DataError, match=match):
        collect_activation_stats(conv_net, ["relu"], data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_names_the_samples(bad):
    conv_net = make_conv_net()
    conv_data = conv_input()
    data = conv_data.copy()
    data[37, 1, 2, 3] = bad
    with pytest.raises(DataError, match=r"samples 32\.\.47: .*NaN or Inf"):
        collect_activation_stats(conv_net, ["relu"], data, batch_size=16)


def test_activation_overflow_raises_data_error():
    g = Graph.from_unordered(
        [TensorSpec("x", (2,))], [Dense("fc", ("x",), weight=np.full((2, 2), 3e38, np.float32))], ["fc"]
    ).validate()
    with pytest.raises(DataError, match="overflow"):
        collect_activation_stats(g, ["fc"], np.full((3, 2), 10.0, np.float32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tensors=["nope"]), "no tensor"),
        (dict(tensors=[]), "no tensors"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(bins=0), "bins"),
        (dict(bins=True), "bins"),
    ],
)
def test_bad_options_raise_config_error(kwargs, match):
    conv_net = make_conv_net()
    conv_data = conv_input()
    args = dict(tensors=["relu"]) | kwargs
    with pytest.raises(CalibrationConfigError, match=match) as e:
        collect_activation_stats(conv_net, args.pop("tensors"), conv_data, **args)
    assert isinstance(e.value, ValueError)


def test_single_name_and_duplicates():
    conv_net = make_conv_net()
    conv_data = conv_input()
    assert list(collect_activation_stats(conv_net, "relu", conv_data)) == ["relu"]
    assert list(collect_activation_stats(conv_net, ["fc", "relu", "fc"], conv_data)) == ["fc", "relu"]


def test_progress_bar(capsys):
    conv_net = make_conv_net()
    conv_data = conv_input()
    collect_activation_stats(conv_net, ["relu"], conv_data, batch_size=32, progress=True)
    assert "calibration" in capsys.readouterr().err
    collect_activation_stats(conv_net, ["relu"], conv_data, batch_size=32)
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    conv_net = make_conv_net()
    conv_data = conv_input()
    cpu = collect_activation_stats(conv_net, TENSORS, conv_data, bins=64)
    gpu = collect_activation_stats(conv_net, TENSORS, conv_data, bins=64, device="cuda")
    for name in TENSORS:
        np.testing.assert_allclose(gpu[name].max, cpu[name].max, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(gpu[name].count, cpu[name].count)
        assert np.abs(gpu[name].hist - cpu[name].hist).sum() <= 1e-3 * cpu[name].count.sum()
