"""Bias correction (Li et al. 2021, light calibration), layer by layer in one layer-major simulation.

Every IF layer is corrected seeing the corrected layers upstream of it (each correction is measured on
the network its downstream layers will actually receive input from). Layers are visited in topological
order; each one is simulated once over all T steps of all samples from the recorded spikes of the IF layers
that feed it, corrected, simulated again to record its own spikes (1 bit per spike, 2 for signed neurons),
and the recordings are dropped once their last reader is done. Cost: about two simulations of the network,
linear in depth (re-simulating the prefix of every layer was quadratic: days for a ResNet-50). Memory: the
recordings alive at once, bounded by ``ConversionConfig.bias_correction_memory_mb`` (fewer samples are
used where a network is too large for all of them).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph
from ann2snn.ir.reference import run_graph
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d
from ann2snn.network import SpikingNetwork
from ann2snn.sim.heap import release_freed_memory
from ann2snn.sim.simulate import channel_sum, partial_sums, run_batch

log = logging.getLogger(__name__)

# the correction is fitted from the mean rates at T and at this many times T (see bias_correct)
BIAS_CORRECTION_HORIZON = 4
_THRESHOLD_RANGE = (0.5, 2.0)  # of a reset-to-zero IF: a lower one fires on noise, a higher one barely
_V0_RANGE = (-1.0, 0.99)  # initial potentials outside it would fire (or stay silent) regardless of the input
_BATCH = 100  # samples simulated together (the simulator's default batch)
_TIME_CHUNK = 4


def bias_correct(net: SpikingNetwork, x: np.ndarray, timesteps: int, memory_mb: float = 1024) -> SpikingNetwork:
    """Correct every IF layer's bias and initial potential so its mean rate per channel matches the ANN.

    Per IF layer and channel, the SNN's mean rate (normalized) at T is modelled as ``phi(T) = r - D/T``: a
    steady-state rate r and a charge deficit D (threshold units) lost while the layer waits for its inputs
    to start firing. Measured at T1 = ``timesteps`` and T2 = 4·T1 on ``x``, r and D follow; the bias is
    shifted by ``mean ANN activation - r`` (a per-step error) and the initial potential raised by D (a
    one-off charge, clipped to [-1, 0.99]). A bias shift alone (Li'21's light calibration) also pays the
    transient back every step, so it over-corrects as T grows: on the zoo ResNet it helped at T=32 but left
    the SNN 1.35 pt below the ANN at T=256 (10k test images). Each layer sees the corrected layers upstream
    (correcting all layers from one simulation instead over-corrects deep ones: a layer's correction also
    absorbs its upstream layers' errors, which they then fix themselves; measured on the zoo ResNet, hold-out
    agreement with the ANN fell from 98.1 % to 87.4 % after two such passes).

    A reset-to-zero layer (NIR's and Lava's IF) instead gets per-channel thresholds that pay back the residue
    each reset loses (:func:`_zero_reset_thresholds`), and no initial charge: NIR cannot express one. A bias
    shift alone was measured and rejected there (vgg_avgpool 77 % instead of 88 % at T=32, 2,000 test
    images): the loss grows with the input, which a per-step bias cannot follow.
    """
    t1, t2 = int(timesteps), BIAS_CORRECTION_HORIZON * int(timesteps)
    graph = net.graph
    layers = net.spiking_layers
    # which IF layers' spikes each layer is simulated from (the same for the corrected graphs: only
    # biases and initial potentials change)
    feeders = {name: _replayed(graph, name) for name in layers}
    readers = {name: [r for r in layers if name in feeders[r]] for name in layers}
    per_sample = _peak_recording_bytes(graph, layers, readers, t2)
    n = min(len(x), max(1, int(memory_mb * 2**20 // max(per_sample, 1))))
    if n < len(x):
        log.info("bias correction: %d of %d samples (%.0f MB of spike recordings per sample, budget %.0f MB)",
                 n, len(x), per_sample / 2**20, memory_mb)
    x = x[:n]
    batches = [torch.from_numpy(np.ascontiguousarray(x[i:i + _BATCH])) for i in range(0, n, _BATCH)]
    ann_means = _ann_channel_means(net, batches)
    shapes = graph.shapes
    recordings: dict[str, list[list[tuple]]] = {}  # IF layer -> per batch, its packed chunks
    left = {name: len(r) for name, r in readers.items()}
    for name in layers:
        node = graph.node(name)
        src = _bias_source(graph, node.inputs[0])
        zero_reset = node.reset == "zero"
        if zero_reset or (src is not None and ann_means[name].size == src.weight.shape[0]):
            counts = _run_layer(net, graph, name, feeders[name], batches, recordings, t2, count_at=(t1, t2))
            positions = n * (int(np.prod(shapes[name][1:])) if len(shapes[name]) > 1 else 1)
            phi1, phi2 = counts[t1] / (positions * t1), counts[t2] / (positions * t2)  # rates: lambda is 1
            rate = (t2 * phi2 - t1 * phi1) / (t2 - t1)
            target = ann_means[name] / np.asarray(net.scales[name], np.float64).reshape(-1)
            if zero_reset:
                fixed = {name: replace(node, threshold=_zero_reset_thresholds(node, rate, target))}
            else:
                deficit = t1 * t2 * (phi2 - phi1) / (t2 - t1)
                c_out = src.weight.shape[0]
                bias = (src.bias if src.bias is not None else np.zeros(c_out, np.float32)) - (rate - target).astype(
                    np.float32)
                v0 = np.broadcast_to(np.asarray(node.v_init, np.float64).reshape(-1), (c_out,))
                fixed = {src.name: replace(src, bias=bias),
                         name: replace(node, v_init=np.clip(v0 + deficit, *_V0_RANGE).astype(np.float32))}
            graph = replace(graph, nodes=tuple(fixed.get(m.name, m) for m in graph.nodes))  # same order
        else:
            log.debug("bias correction: no biased linear op with one output per channel feeds %s; skipped", name)
        if readers[name]:
            recordings[name] = _run_layer(net, graph, name, feeders[name], batches, recordings, t2, record=True)
        for upstream in feeders[name]:
            left[upstream] -= 1
            if left[upstream] == 0:
                del recordings[upstream]
    release_freed_memory()
    return replace(net, graph=graph, record=net.record.replace(bias_correction=True, bias_correction_samples=n))


def _zero_reset_thresholds(node, rate: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-channel thresholds that give a reset-to-zero IF layer its ANN mean rate ``target``.

    A reset to zero loses the residue above the threshold, on average half a step's input x: the rate is
    about x / (theta + x/2). The measured ``rate`` gives each channel's mean x; the new theta solves
    x / (theta + x/2) = target. Channels that are silent (or whose target is 0) keep their threshold.
    """
    theta = np.broadcast_to(np.asarray(node.threshold, np.float64).reshape(-1), rate.shape)
    x = rate * theta / np.maximum(1.0 - rate / 2, 1e-6)
    ok = (rate > 0) & (target > 0)
    new = np.where(ok, x / np.where(ok, target, 1.0) - x / 2, theta)
    return np.clip(new, *_THRESHOLD_RANGE).astype(np.float32)


def _ann_channel_means(net: SpikingNetwork, batches) -> dict[str, np.ndarray]:
    """Mean ANN activation per channel of every IF layer, clipped at its threshold (what a rate can reach)."""
    sums, n = {}, 0
    for xb in batches:
        acts = run_graph(net.ann, xb.numpy(), outputs=net.spiking_layers)
        for name, a in acts.items():
            lam = net.scales[name].reshape((-1,) + (1,) * (a.ndim - 2))
            sums[name] = sums.get(name, 0.0) + _channel_mean(np.minimum(a, lam) if a.ndim > 1 else a) * len(a)
        n += len(xb)
    return {name: s / n for name, s in sums.items()}


def _run_layer(net, graph: Graph, name: str, replayed, batches, recordings, steps: int, *, count_at=(),
               record=False):
    """Simulate IF layer ``name`` from the recordings of the IF layers feeding it, over all batches.

    Returns its per-channel spike counts summed over samples and positions at each step in ``count_at``
    ({T: float64 array}), or, with ``record``, its spikes packed per batch and chunk.
    """
    part = replace(net, graph=_segment(graph, name))
    counts = {t: 0.0 for t in count_at}
    packed = []
    for b, xb in enumerate(batches):
        readers = {u: _unpacker(recordings[u][b]) for u in replayed}
        total, done, chunks = None, 0, []
        for vals in run_batch(part, xb, b, steps, time_chunk=_TIME_CHUNK, keep={name}, replay=readers):
            spikes = vals[name]
            if record:
                chunks.append(_pack(spikes))
            if count_at:
                ends = {t: t - done - 1 for t in count_at if done < t <= done + len(spikes)}
                sums = partial_sums(spikes, 0.0 if total is None else total, list(ends.values()), whole=True)
                for t, k in ends.items():
                    counts[t] = counts[t] + channel_sum(sums[k])
                total = sums[-1]
            done += len(spikes)
        packed.append(chunks)
    return packed if record else counts


def _segment(graph: Graph, name: str) -> Graph:
    """The nodes that compute IF layer ``name`` from the graph input and the other IF layers' spikes."""
    return graph.prefix(name, stop=lambda m: isinstance(m, IF) and m.name != name)


def _replayed(graph: Graph, name: str) -> list[str]:
    return [m.name for m in _segment(graph, name).nodes if isinstance(m, IF) and m.name != name]


def _peak_recording_bytes(graph: Graph, layers, readers, steps: int) -> int:
    """Most bytes of recordings alive at once, per sample."""
    shapes = graph.shapes
    size = {n: int(np.prod(shapes[n])) * steps // 8 * (2 if graph.node(n).signed else 1) for n in layers}
    alive, peak, done = set(), 0, set()
    for name in layers:
        done.add(name)
        if readers[name]:
            alive.add(name)
        peak = max(peak, sum(size[a] for a in alive))
        alive = {a for a in alive if not all(r in done for r in readers[a])}
    return peak


def _pack(spikes: torch.Tensor) -> tuple:
    """Spikes in {0, 1} (or {-1, 0, 1}), (tc, B, C, ...) -> bit planes in the tensor's memory order.

    A channels-last tensor (what convolutions give) is packed as (tc, B, H, W, C) and replayed as the same
    channels-last view, so the next convolution reads it without a layout copy.
    """
    channels_last = spikes.dim() == 5 and spikes.stride(2) == 1 and spikes.shape[2] > 1
    a = (spikes.permute(0, 1, 3, 4, 2) if channels_last else spikes).contiguous().numpy()
    neg = np.packbits(a < 0) if (a < 0).any() else None
    return np.packbits(a != 0), neg, tuple(a.shape), channels_last


def _unpacker(chunks):
    it = iter(chunks)

    def next_chunk(tc: int) -> torch.Tensor:
        bits, neg, shape, channels_last = next(it)
        if shape[0] != tc:
            raise RuntimeError(f"spikes recorded in chunks of {shape[0]} steps are replayed in chunks of {tc}")
        count = int(np.prod(shape))
        spikes = torch.from_numpy(np.unpackbits(bits, count=count).reshape(shape)).to(torch.float32)
        if neg is not None:
            spikes -= 2 * torch.from_numpy(np.unpackbits(neg, count=count).reshape(shape)).to(torch.float32)
        return spikes.permute(0, 1, 4, 2, 3) if channels_last else spikes

    return next_chunk


def _bias_source(graph: Graph, tensor: str):
    """The linear node whose bias drives the IF reading ``tensor`` (through Add / pre-neuron max-pool)."""
    n = graph.node_by_name.get(tensor)
    if isinstance(n, (ir.Conv2d, ir.Dense)):
        return n
    if isinstance(n, (CumulativeMaxPool2d, CumulativeGlobalMaxPool)):
        return _bias_source(graph, n.inputs[0])
    if isinstance(n, ir.Add):
        for i in n.inputs:
            src = _bias_source(graph, i)
            if src is not None:
                return src
    return None


def _channel_mean(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], -1).mean(axis=(0, 2)) if a.ndim > 2 else a.mean(axis=0)

