"""choose_thresholds: max / percentile / mmse, per channel and per layer, fallbacks, option checks."""

from __future__ import annotations

import numpy as np
import pytest

from ann2snn.calibration import (
    DEAD_CHANNEL_FRACTION,
    CalibrationConfigError,
    ThresholdMethod,
    choose_thresholds,
    collect_activation_stats,
    mmse_errors,
    parse_method,
)

# a plain helper module next to the tests (tests/calibration is on sys.path under pytest)
from calib_helpers import conv_input, heavy_tail, make_conv_net, make_relu_net, per_channel

K = np.arange(95)


def cf(a: np.ndarray, T: int, theta: float, rounding: str) -> np.ndarray:
    """The rate-coded value of a for T steps, written out as in CONVERSION_LITERATURE §2.2."""
    x = np.clip(a * T / theta, 0, T)
    return theta / T * np.floor(x + 0.5 if rounding == "round" else x)


def brute_force(values: np.ndarray, weights: np.ndarray, top: float, T: int, rounding: str):
    """Weighted mean squared rate-quantisation error of every candidate θ_k = top·(1 − 0.01k)."""
    thetas = top * (1 - 0.01 * K)
    errs = np.array([np.sum(weights * (values - cf(values, T, t, rounding)) ** 2) for t in thetas]) / weights.sum()
    return thetas, errs


def test_max_is_exact():
    conv_net = make_conv_net()
    conv_data = conv_input()
    stats = collect_activation_stats(conv_net, ["relu", "fc"], conv_data)
    acts = conv_net.run(conv_data, outputs=["relu", "fc"])
    by_channel = choose_thresholds(stats, "max")
    per_layer = choose_thresholds(stats, "max", granularity="layer")
    for name in ("relu", "fc"):
        v = per_channel(acts[name])
        assert by_channel[name].dtype == np.float32 and by_channel[name].shape == (v.shape[0],)
        np.testing.assert_array_equal(by_channel[name], v.max(axis=1))
        np.testing.assert_array_equal(per_layer[name], np.array([v.max()], np.float32))


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_thresholds_within_one_bin(p):
    heavy_tail_data = heavy_tail()
    stats = collect_activation_stats(make_relu_net(3), ["relu"], heavy_tail_data)
    v = heavy_tail_data.T
    for gran, true in (("channel", np.percentile(v, p, axis=1)), ("layer", [np.percentile(v, p)])):
        th = choose_thresholds(stats, f"percentile:{p}", granularity=gran)["relu"]
        assert th.dtype == np.float32 and th.shape == np.shape(true)
        assert np.all(np.abs(th - true) <= stats["relu"].bin_width(gran) * 1.0001)
        assert np.all(th < stats["relu"].max.max())  # heavy tail: well below the max


@pytest.mark.parametrize("rounding", ["floor", "round"])
@pytest.mark.parametrize("T", [8, 32])
def test_mmse_errors_equal_brute_force_on_histograms(rounding, T):
    rng = np.random.default_rng(6)
    bins = 300
    hist = rng.integers(0, 50, size=(4, bins)) * (rng.random((4, bins)) < 0.3)
    top = np.array([1.0, 7.5, 0.01, 123.0])
    nonpos = np.array([0, 10, 1000, 3])
    theta, err = mmse_errors(hist, top, T, rounding, nonpos)
    assert theta.shape == err.shape == (4, 95)
    for r in range(4):
        centres = (np.arange(bins) + 0.5) * top[r] / bins
        values = np.concatenate([centres, [0.0]])
        weights = np.concatenate([hist[r], [nonpos[r]]]).astype(np.float64)
        bt, be = brute_force(values, weights, top[r], T, rounding)
        np.testing.assert_allclose(theta[r], bt, rtol=1e-12)
        np.testing.assert_allclose(err[r], be, rtol=1e-9, atol=1e-12 * top[r] ** 2)
        assert np.argmin(err[r]) == np.argmin(be)


@pytest.mark.parametrize("rounding", ["floor", "round"])
def test_mmse_heavy_tail_picks_brute_force_optimum_below_max(rounding):
    heavy_tail_data = heavy_tail()
    T = 32
    st = collect_activation_stats(make_relu_net(3), ["relu"], heavy_tail_data)["relu"]
    chosen = choose_thresholds({"relu": st}, "mmse", timesteps=T, rounding=rounding)["relu"]
    chosen_layer = choose_thresholds({"relu": st}, "mmse", "layer", timesteps=T, rounding=rounding)["relu"]
    for c in range(3):
        assert chosen[c] < 0.7 * st.max[c]  # the tail is not worth covering
        # exactly the optimum of the same objective on the same candidates (values at bin centres)
        centres = (np.arange(st.bins) + 0.5) * st.max[c] / st.bins
        bt, be = brute_force(centres, st.hist[c].astype(np.float64), st.max[c], T, rounding)
        assert chosen[c] == np.float32(bt[np.argmin(be)])
        # and, on the raw activations, as good as the raw brute-force optimum up to the binning
        raw = heavy_tail_data[:, c].astype(np.float64)
        _, raw_err = brute_force(raw, np.ones_like(raw), float(raw.max()), T, rounding)
        mine = np.mean((raw - cf(raw, T, float(chosen[c]), rounding)) ** 2)
        assert mine <= raw_err.min() * 1.01
        assert mine < raw_err[0]  # strictly better than using the max
    pooled = st.layer_hist.astype(np.float64)
    centres = (np.arange(st.bins) + 0.5) * st.layer_max / st.bins
    bt, be = brute_force(centres, pooled, st.layer_max, T, rounding)
    assert chosen_layer.shape == (1,) and chosen_layer[0] == np.float32(bt[np.argmin(be)])


def test_round_variant_prefers_larger_threshold():
    heavy_tail_data = heavy_tail()
    # v0 = θ/2 halves the floor bias, so clipping less (a larger θ) becomes affordable
    stats = collect_activation_stats(make_relu_net(3), ["relu"], heavy_tail_data)
    floor = choose_thresholds(stats, "mmse", timesteps=16)["relu"]
    rnd = choose_thresholds(stats, "mmse", timesteps=16, rounding="round")["relu"]
    assert np.all(rnd >= floor) and np.any(rnd > floor)


def test_fallbacks_keep_every_threshold_positive():
    rng = np.random.default_rng(7)
    x = rng.random((5000, 4)).astype(np.float32) * np.array([2.0, 1.0, 1.0, 1.0], np.float32)
    x[:, 1] = -1.0  # channel 1 never activates
    x[:, 2] = -1.0
    x[0, 2] = 0.5  # channel 2 activates once: its 99th percentile is 0
    x[:, 3] = -x[:, 3]  # channel 3 never activates either
    stats = collect_activation_stats(make_relu_net(4), ["relu", "x"], x)
    for method in ("max", "percentile:99", "percentile:99.99", "mmse"):
        for gran in ("channel", "layer"):
            th = choose_thresholds(stats, method, gran)
            for name, arr in th.items():
                assert arr.dtype == np.float32 and np.all(np.isfinite(arr)) and np.all(arr > 0), (method, name)
    th = choose_thresholds(stats, "percentile:99")["relu"]
    layer = choose_thresholds(stats, "percentile:99", "layer")["relu"][0]
    assert th[2] == np.float32(0.5)  # sparse channel: falls back to its max
    np.testing.assert_allclose(th[[1, 3]], DEAD_CHANNEL_FRACTION * layer, rtol=1e-6)
    assert 1.9 < th[0] <= 2.0


def test_layer_that_never_activates_gets_one(caplog):
    stats = collect_activation_stats(make_relu_net(2), ["relu"], -np.ones((10, 2), np.float32))
    for method in ("max", "percentile:99.9", "mmse"):
        with caplog.at_level("WARNING"):
            np.testing.assert_array_equal(choose_thresholds(stats, method)["relu"], np.float32([0.01, 0.01]))
            np.testing.assert_array_equal(choose_thresholds(stats, method, "layer")["relu"], [1.0])
        assert "never activates" in caplog.text


def test_parse_method_forms():
    assert parse_method("max") == ThresholdMethod("max")
    assert parse_method(" MMSE ") == ThresholdMethod("mmse")
    assert parse_method("percentile:99.9") == ThresholdMethod("percentile", 99.9)
    assert parse_method("percentile:100").percentile == 100.0
    assert str(parse_method("percentile:99.90")) == "percentile:99.9"
    m = ThresholdMethod("mmse")
    assert parse_method(m) is m


@pytest.mark.parametrize(
    "method",
    ["", "foo", "percentile", "percentile:", "percentile:0", "percentile:-1", "percentile:100.1",
     "percentile:abc", "percentile:nan", "percentile:inf", "max:3", "mmse:2", "p99", None, 99.9],
)
def test_invalid_method_lists_allowed_forms(method):
    conv_net = make_conv_net()
    conv_data = conv_input()
    stats = collect_activation_stats(conv_net, ["relu"], conv_data[:4])
    with pytest.raises(CalibrationConfigError, match="'max', 'percentile:P'.*'mmse'") as e:
        choose_thresholds(stats, method)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(granularity="tensor"), "granularity"),
        (dict(timesteps=0), "timesteps"),
        (dict(timesteps=2.0), "timesteps"),
        (dict(timesteps=True), "timesteps"),
        (dict(rounding="ceil"), "rounding"),
    ],
)
def test_invalid_options(kwargs, match):
    conv_net = make_conv_net()
    conv_data = conv_input()
    stats = collect_activation_stats(conv_net, ["relu"], conv_data[:4])
    with pytest.raises(CalibrationConfigError, match=match):
        choose_thresholds(stats, "mmse", **kwargs)


def test_empty_stats_give_empty_scales():
    assert choose_thresholds({}, "mmse") == {}
