"""The fused IF kernels (``ann2snn.sim.native``) against the reference step functions of ``sim/neurons.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ann2snn
from ann2snn.data import load_zoo_sample
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph, TensorSpec
from ann2snn.sim import native
from ann2snn.sim import simulate as simulate_module
from ann2snn.sim.int8 import int8_available
from ann2snn.sim.neurons import if_step, if_zero_step, signed_if_step

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"

needs_kernels = pytest.mark.skipif(native.library() is None,
                                   reason="no C compiler here (or ANN2SNN_NATIVE=0): the eager IF update runs")

STEPS = 6
SHAPES = {"conv": (3, 5, 4, 6), "dense": (7, 33)}


def _layer(shape, layout, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(shape, generator=g) * 2 - 0.5
    # currents on a 1/8 grid hit m == 1 and m == threshold exactly; the others are arbitrary floats
    cur = torch.cat([torch.randint(-8, 12, (STEPS // 2,) + shape, generator=g) / 8.0,
                     torch.randn((STEPS - STEPS // 2,) + shape, generator=g) * 0.7])
    if layout == "channels_last":
        v = v.contiguous(memory_format=torch.channels_last)
        cur = torch.stack([c.contiguous(memory_format=torch.channels_last) for c in cur])
    return v, cur


def _reference(kind, v, cur, threshold, constant):
    """Step by step with the pure functions: spikes (STEPS, ...) and the final state."""
    count = torch.zeros_like(v)
    spikes = []
    for t in range(STEPS):
        i = cur[0] if constant else cur[t]
        if kind == "subtract":
            s, v = if_step(v, i)
        elif kind == "zero":
            s, v = if_zero_step(v, i, threshold)
        else:
            s, v, count = signed_if_step(v, count, i)
        spikes.append(s)
    return torch.stack(spikes), v, count


CASES = [(kind, layout, src, dst, constant)
         for kind in ("subtract", "zero", "zero_scalar", "signed")
         for layout in ("contiguous", "channels_last", "dense")
         for src in (torch.float32, torch.bfloat16)
         for dst in (torch.float32, torch.bfloat16)
         for constant in (False, True)]


@needs_kernels
@pytest.mark.parametrize("kind,layout,src,dst,constant", CASES)
def test_fused_chunk_equals_the_step_functions(kind, layout, src, dst, constant):
    shape = SHAPES["dense" if layout == "dense" else "conv"]
    v0, cur = _layer(shape, layout, seed=len(shape) + STEPS)
    cur = cur.to(src)  # the simulator's bfloat16 currents: v stays float32, the current is upcast exactly
    channels = shape[1]
    threshold = 0.75 if kind == "zero_scalar" else 1.0  # one threshold for the layer
    if kind == "zero":  # per-channel thresholds, as bias correction sets them
        threshold = torch.arange(channels, dtype=torch.float32) / channels + 0.5
        threshold = threshold.reshape((-1,) + (1,) * (len(shape) - 2))
    kind = "zero" if kind == "zero_scalar" else kind
    spikes, v_ref, count_ref = _reference(kind, v0, cur.float(), threshold, constant)

    v = v0.clone()
    count = torch.zeros_like(v0) if kind == "signed" else None
    out = torch.stack([torch.empty_like(v0, dtype=dst)] * STEPS) if layout != "channels_last" else \
        torch.empty_like(cur, dtype=dst)
    current = cur[0] if constant else cur
    if isinstance(threshold, torch.Tensor):
        threshold = native.expand_threshold(threshold, v)
    assert native.run_if_chunk(v, current, STEPS, out, count, constant, "zero" if kind == "zero" else "subtract",
                               threshold)
    assert torch.equal(out.float(), spikes) and out.dtype == dst
    assert torch.equal(v, v_ref)
    if kind == "signed":
        assert torch.equal(count, count_ref)
        assert (out == -1).any() and (out == 1).any()  # both spike signs were exercised
    assert out.float().sum() > 0


@needs_kernels
@pytest.mark.parametrize("kind", ["subtract", "zero"])
def test_byte_spikes_equal_the_float_ones(kind):
    v0, cur = _layer(SHAPES["conv"], "channels_last", seed=5)
    outs, states = {}, {}
    for dtype in (torch.float32, torch.uint8):
        v, out = v0.clone(), torch.empty_like(cur, dtype=dtype)
        assert native.run_if_chunk(v, cur, STEPS, out, None, False, kind, 0.75 if kind == "zero" else 1.0)
        outs[dtype], states[dtype] = out, v
    assert torch.equal(outs[torch.uint8].float(), outs[torch.float32]) and outs[torch.uint8].any()
    assert torch.equal(states[torch.uint8], states[torch.float32])
    v = v0.clone()  # a signed neuron's -1 has no byte
    assert not native.run_if_chunk(v, cur, STEPS, torch.empty_like(cur, dtype=torch.uint8), torch.zeros_like(v),
                                   False, "subtract", 1.0)


@needs_kernels
def test_layouts_the_kernels_cannot_read_are_left_to_the_eager_path():
    v0, cur = _layer(SHAPES["conv"], "contiguous", seed=1)
    out = torch.empty_like(cur)
    v = v0.clone()
    # a current in another memory layout than the state
    mixed = torch.stack([c.contiguous(memory_format=torch.channels_last) for c in cur])
    assert not native.run_if_chunk(v, mixed, STEPS, out, None, False, "subtract", 1.0)
    assert not native.run_if_chunk(v, cur.double(), STEPS, out, None, False, "subtract", 1.0)  # other dtype
    assert not native.run_if_chunk(v, cur[:, :, :2], STEPS, out[:, :, :2], None, False, "subtract", 1.0)
    assert torch.equal(v, v0)  # untouched


@needs_kernels
@pytest.mark.parametrize("name,config", [("vgg_avgpool", {}), ("resnet_small", {"signed": True}),
                                         ("inception_concat", {"reset": "zero", "v_init": 0.0})])
def test_simulator_results_do_not_depend_on_the_kernels(name, config, monkeypatch):
    if not (ZOO / name / "model.onnx").is_file():
        pytest.skip(f"zoo model {name} is absent")
    sample = load_zoo_sample(name)
    net = ann2snn.convert(str(ZOO / name / "model.onnx"), sample.calib_x[:100], ann2snn.ConversionConfig(
        **{"v_init": 0.5, "bias_correction": config.get("reset") == "zero", **config}))
    x = sample.test_x[:60]
    for dtype in ("float32", "bfloat16") + (("int8",) if int8_available("cpu") else ()):  # int8: uint8 spikes
        fused = net.simulate(x, [5, 16], synaptic_dtype=dtype, batch_size=25, time_chunk=3)
        with monkeypatch.context() as m:
            m.setattr(native, "library", lambda: None)
            eager = net.simulate(x, [5, 16], synaptic_dtype=dtype, batch_size=25, time_chunk=3)
        for t in (5, 16):
            np.testing.assert_array_equal(fused.outputs[t], eager.outputs[t])


@needs_kernels
def test_kernels_are_built_once_into_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("ANN2SNN_CACHE_DIR", str(tmp_path))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        built = list((tmp_path / "kernels").glob("if_kernels-*.so"))
        assert len(built) == 1 and not list((tmp_path / "kernels").glob("tmp*"))  # no half-built leftovers
        native.library.cache_clear()
        stamp = built[0].stat().st_mtime_ns
        assert native.library() is not None and built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    finally:
        native.library.cache_clear()


def test_without_a_compiler_the_eager_path_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("ANN2SNN_CACHE_DIR", str(tmp_path / "cache"))
    native.library.cache_clear()
    try:
        assert native.library() is None
        v0, cur = _layer(SHAPES["dense"], "dense", seed=3)
        assert not native.run_if_chunk(v0.clone(), cur, STEPS, torch.empty_like(cur), None, False, "subtract", 1.0)
    finally:
        native.library.cache_clear()


def _branchy_ann():
    """Two spiking branches concatenated before a conv, then flattened into a dense layer (SqueezeNet's fire
    modules in small): every spike tensor here reaches an int8 synapse directly or through Concat / Flatten."""
    rng = np.random.default_rng(4)

    def conv(name, src, cin, cout):
        return ir.Conv2d(name, (src,), weight=rng.normal(0, 0.4, (cout, cin, 3, 3)).astype(np.float32),
                         bias=rng.normal(0.05, 0.05, cout).astype(np.float32), padding=(1, 1, 1, 1))

    nodes = [conv("c0", "x", 2, 4), ir.ReLU("r0", ("c0",)),
             conv("a", "r0", 4, 4), ir.ReLU("ra", ("a",)), conv("b", "r0", 4, 4), ir.ReLU("rb", ("b",)),
             ir.Concat("cat", ("ra", "rb"), axis=0), conv("c1", "cat", 8, 4), ir.ReLU("r1", ("c1",)),
             ir.Flatten("flat", ("r1",)),
             ir.Dense("fc", ("flat",), weight=rng.normal(0, 0.1, (5, 4 * 10 * 10)).astype(np.float32))]
    return Graph.from_unordered([TensorSpec("x", (2, 10, 10))], nodes, ["fc"]).validate()


@needs_kernels
@pytest.mark.skipif(not int8_available("cpu"), reason="this torch has no oneDNN int8 ops")
def test_uint8_spikes_pass_through_concat_and_flatten_unchanged(monkeypatch):
    x = np.random.default_rng(5).random((40, 2, 10, 10)).astype(np.float32)
    net = ann2snn.convert(_branchy_ann(), x[:30], ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    seen = []
    layers = simulate_module._BatchRun._byte_spike_layers
    monkeypatch.setattr(simulate_module._BatchRun, "_byte_spike_layers",
                        lambda self: seen.append(layers(self)) or seen[-1])
    as_bytes = net.simulate(x[30:], [3, 12], synaptic_dtype="int8", time_chunk=3)
    moved = {n.name for n in net.graph.nodes if isinstance(n, (ir.Concat, ir.Flatten))} & seen[0]
    assert len(moved) == 2, seen[0]  # the Concat and the Flatten carry bytes
    monkeypatch.setattr(simulate_module._BatchRun, "_byte_spike_layers", lambda self: set())
    as_floats = net.simulate(x[30:], [3, 12], synaptic_dtype="int8", time_chunk=3)
    for t in (3, 12):
        np.testing.assert_array_equal(as_bytes.outputs[t], as_floats.outputs[t])
    assert np.abs(as_bytes.outputs[12]).sum() > 0
