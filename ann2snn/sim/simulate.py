"""Layer-major, time-chunked rate-code simulator (torch; CPU by default, CUDA on request).

For each batch and each chunk of ``time_chunk`` steps, the graph is walked once in topological order:
- every synaptic or layout op (conv, dense, pooling, reshapes) runs ONCE on a (chunk * batch) tensor;
- only the elementwise neuron updates (IF, cumulative max) loop over the steps of the chunk;
- tensors that depend only on the analog input (the first layer's current) are computed once per batch
  and reused every step.
Memory is bounded by ``time_chunk * batch``, never by T. One run up to max(timesteps) yields the
readout at every requested T.

The readout integrates the output tensor: the time average times the output unit estimates the ANN
output; prediction = argmax, probabilities = softmax of the time average (when the ANN ended in one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ann2snn.errors import DataError
from ann2snn.ir import nodes as ir
from ann2snn.ir.reference import check_input, forward
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d
from ann2snn.sim import heap, native
from ann2snn.sim.int8 import int8_available, int8_op, integer_grids, whole_number_tensors
from ann2snn.sim.neurons import run_if_chunk

log = logging.getLogger(__name__)

CUMULATIVE_POOLS = (CumulativeMaxPool2d, CumulativeGlobalMaxPool)


@dataclass
class _Moments:
    """Streaming sums for Pearson correlation and relative error between SNN and ANN values."""

    n: float = 0.0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0
    sdd: float = 0.0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # numpy's sums do not depend on the thread count (torch's parallel reductions do), so one process
        # and several ranks with fewer threads each report the same figures to the last bit
        x = x.double().reshape(-1).cpu().numpy()
        y = y.double().reshape(-1).cpu().numpy()
        self.n += x.size
        self.sx += float(x.sum())
        self.sy += float(y.sum())
        self.sxx += float((x * x).sum())
        self.syy += float((y * y).sum())
        self.sxy += float((x * y).sum())
        self.sdd += float(((x - y) ** 2).sum())

    def pearson(self) -> float | None:
        if self.n < 2:
            return None
        cov = self.sxy - self.sx * self.sy / self.n
        vx = self.sxx - self.sx**2 / self.n
        vy = self.syy - self.sy**2 / self.n
        if vx <= 0 or vy <= 0:
            return None
        return float(cov / math.sqrt(vx * vy))

    def relative_error(self) -> float | None:
        return float(math.sqrt(self.sdd / self.syy)) if self.syy > 0 else None

    FIELDS = ("n", "sx", "sy", "sxx", "syy", "sxy", "sdd")


@dataclass
class _LayerAccumulator:
    spikes: dict[int, float] = field(default_factory=dict)  # T -> total |spikes| up to T
    saturated: dict[int, float] = field(default_factory=dict)
    silent: dict[int, float] = field(default_factory=dict)
    moments: dict[int, _Moments] = field(default_factory=dict)


@dataclass
class SimulationResult:
    """Outputs (time averages in ANN units) at each checkpoint T, plus optional per-layer statistics."""

    timesteps: list[int]
    outputs: dict[int, np.ndarray]
    softmax: bool = False
    log_softmax: bool = False
    layers: dict[str, dict] | None = None
    # the raw sums behind ``layers``: {IF layer: (len(timesteps), len(LAYER_SUM_FIELDS)) float64}; sums of
    # several runs added in one order give the statistics of all their samples (sharded evaluation)
    layer_sums: dict[str, np.ndarray] | None = None
    samples: int = 0
    probe: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    synaptic_dtype: str = "float32"  # what "auto" resolved to on this machine

    def predictions(self, t: int) -> np.ndarray:
        return self.outputs[t].reshape(len(self.outputs[t]), -1).argmax(axis=1)

    def probabilities(self, t: int) -> np.ndarray:
        z = torch.from_numpy(self.outputs[t].reshape(len(self.outputs[t]), -1))
        return torch.softmax(z, dim=1).numpy()


def static_tensors(graph, dynamic_inputs: bool) -> set[str]:
    """Tensors constant over time: they depend only on the analog input, through no neuron."""
    static = set() if dynamic_inputs else {t.name for t in graph.inputs}
    for n in graph.nodes:
        if isinstance(n, IF):
            continue
        if all(i in static for i in n.inputs):
            static.add(n.name)
    return static


def sops_per_spike(graph) -> dict[str, float]:
    """Average synaptic operations triggered by one spike of each IF layer (fan-out through layout ops)."""
    shapes = graph.shapes
    macs = graph.macs()
    result = {}
    for n in graph.nodes:
        if not isinstance(n, IF):
            continue
        total, frontier = 0.0, [n.name]
        while frontier:
            t = frontier.pop()
            for u in graph.users(t):
                if u.is_layout or isinstance(u, ir.Concat):
                    frontier.append(u.name)
                else:
                    total += macs[u.name] / max(1, int(np.prod(shapes[u.inputs[0]])) * len(u.inputs))
        result[n.name] = total
    return result


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape((x.shape[0] * x.shape[1],) + tuple(x.shape[2:]))


# synaptic mode -> dtype of the spikes between IF layers and the conv/dense ops they meet; "int8" keeps
# float32 spikes and casts them to uint8 at each conv/dense that can take them (``ann2snn.sim.int8``), except
# where only such ops read a layer: the fused IF kernels then write its spikes as uint8 (``_byte_spike_layers``)
SYNAPTIC_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.float32}
DEFAULT_SYNAPTIC_DTYPE = "auto"  # int8 with VNNI, else bfloat16 where native, else float32 (``auto_synaptic_dtype``)


def native_bfloat16(device) -> bool:
    """Does ``device`` run bfloat16 convolutions natively (AVX512-BF16 or AMX on CPU, bf16 on CUDA)?

    Without it oneDNN emulates bfloat16 and is slower than float32, so ``auto`` keeps float32 there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(p()) for p in probes if p is not None)


def native_int8(device) -> bool:
    """Does ``device`` have fast int8 dot products (VNNI or AMX) and oneDNN's int8 ops in this torch?"""
    if torch.device(device).type != "cpu" or not int8_available("cpu"):
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_vnni_supported", "_is_amx_tile_supported")]
    return any(bool(p()) for p in probes if p is not None)


def auto_synaptic_dtype(device) -> str:
    """What ``auto`` runs on ``device``: the fastest mode the hardware runs natively (benchmarks/RESULTS.md)."""
    if native_int8(device):
        return "int8"
    return "bfloat16" if native_bfloat16(device) else "float32"


def check_device(device) -> None:
    """An unknown or absent device (--device cuda without a GPU) is a one-line DataError, not a torch traceback."""
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError, TypeError) as e:
        raise DataError(f"device {device!r} is not available: {e}") from None


def resolve_synaptic_dtype(synaptic_dtype: str | None, device) -> str:
    """``auto``/None -> ``auto_synaptic_dtype(device)``; other names are checked (int8 needs a CPU with
    oneDNN's int8 ops)."""
    name = DEFAULT_SYNAPTIC_DTYPE if synaptic_dtype is None else synaptic_dtype
    if name == "auto":
        return auto_synaptic_dtype(device)
    if name not in SYNAPTIC_DTYPES:
        raise DataError(f"synaptic_dtype must be auto or one of {sorted(SYNAPTIC_DTYPES)}, got {synaptic_dtype!r}")
    if name == "int8" and not int8_available(str(torch.device(device).type)):
        raise DataError(f"synaptic_dtype int8 runs on CPU with oneDNN's int8 ops; not available on {device!r}")
    return name


# ops that may run on bfloat16 spikes / currents without losing exactness they rely on
_BF16_OPS = (ir.Conv2d, ir.Dense, ir.AvgPool2d, ir.MaxPool2d, ir.GlobalAvgPool, ir.GlobalMaxPool, ir.Flatten,
             ir.Reshape, ir.Transpose, ir.Concat)
# ops that move uint8 spikes between the IF kernels and int8 synapses unchanged (``_byte_spike_layers``)
_BYTE_MOVES = (ir.Flatten, ir.Reshape, ir.Transpose, ir.Concat)


class _Kernels:
    """Per-simulation cache of the weights of conv/dense nodes fed by time-varying (spike) tensors.

    Convolutions run in channels-last layout: oneDNN's NHWC kernels are 2-3x faster than NCHW ones on the
    few-channel layers of small CNNs (measured on 2 cores: 16->16 channels at 28x28, 1.8 vs 6.9 ms per
    100 images), and the IF state and spikes between two convolutions keep that layout, so nothing is
    copied back. ``mode``: a ``SYNAPTIC_DTYPES`` name. float32; bfloat16 (spikes are exact in it, weights
    are rounded); int8: the conv/dense ops of ``int8_grids`` take uint8 inputs and int8 weights
    (``ann2snn.sim.int8``), the others float32.
    """

    def __init__(self, mode: str, device, int8_grids=None):
        self.dtype = SYNAPTIC_DTYPES[mode]
        self.device = device
        self.int8_grids = int8_grids or {}
        self.params: dict[str, tuple] = {}
        self.int8_ops: dict[str, object] = {}

    @classmethod
    def for_network(cls, mode: str, device, net) -> "_Kernels":
        grids = integer_grids(net.graph, net.static_tensors()) if mode == "int8" else None
        return cls(mode, device, grids)

    def synaptic(self, n, x: torch.Tensor) -> torch.Tensor:
        grid = self.int8_grids.get(n.name)
        if grid is not None:
            op = self.int8_ops.get(n.name)
            if op is None:
                op = self.int8_ops[n.name] = int8_op(n, grid)
            return op(x)
        p = self.params.get(n.name)
        if p is None:
            w = torch.as_tensor(np.asarray(n.weight), device=self.device).to(self.dtype)
            if isinstance(n, ir.Conv2d):
                w = w.contiguous(memory_format=torch.channels_last)
            bias = None if n.bias is None else torch.as_tensor(np.asarray(n.bias), device=self.device).to(self.dtype)
            p = self.params[n.name] = (w, bias)
        w, bias = p
        x = x.to(self.dtype)
        if isinstance(n, ir.Dense):
            return F.linear(x, w, bias)
        x = x.contiguous(memory_format=torch.channels_last)  # a no-op when the spikes already are
        t, l, b, r = n.padding
        if t == b and l == r:
            return F.conv2d(x, w, bias, n.stride, (t, l), n.dilation, n.groups)
        return F.conv2d(F.pad(x, (l, r, t, b)), w, bias, n.stride, 0, n.dilation, n.groups)


class _BatchRun:
    """State of one batch across time chunks."""

    def __init__(self, net, x: torch.Tensor, generator: torch.Generator | None, *, keep=(),
                 kernels: _Kernels, replay=None):
        self.net = net
        # IF layers whose spikes are read back (a callable per layer returning its next chunk) instead of
        # being simulated: their inputs need not be in the graph (see ``run_batch``)
        self.replay = dict(replay or {})
        self.graph = net.graph
        self.x = x
        self.generator = generator
        self.static = net.static_tensors()
        self.whole_numbers = whole_number_tensors(self.graph, self.static)
        self.kernels = kernels
        self.spike_dtype = kernels.dtype
        self.fused_if = x.device.type == "cpu" and native.library() is not None
        heap.reuse_freed_buffers()  # each chunk's buffers are the last chunk's, not freshly faulted pages
        self.values_static: dict[str, torch.Tensor] = {}
        self.state: dict[str, dict] = {}
        feeds = {self.graph.inputs[0].name: x}
        if self.graph.inputs[0].name in self.static:
            self.values_static.update(feeds)
        for n in self.graph.nodes:
            if n.name in self.static:
                self.values_static[n.name] = forward(n, *(self.values_static[i] for i in n.inputs))
        # time-varying tensors are dropped from a chunk as soon as their last user has run
        self.keep = set(keep)
        self.uses: dict[str, int] = {}
        for n in self.graph.nodes:
            if n.name not in self.static:
                for i in n.inputs:
                    self.uses[i] = self.uses.get(i, 0) + 1
        self.byte_spikes = self._byte_spike_layers() if self.fused_if else set()

    def _byte_spike_layers(self) -> set[str]:
        """Spike tensors that only int8 synapses of unit grid read, directly or through Concat and layout ops:
        unsigned IF layers whose spikes the kernels write as uint8, and the Concat / layout ops between them
        and those synapses, which move the bytes as they are (a quarter of the bytes, no float -> uint8 pass)."""
        readers: dict[str, list] = {}
        for n in self.graph.nodes:
            for i in n.inputs:
                readers.setdefault(i, []).append(n)
        grids = self.kernels.int8_grids

        def unit_synapse(r) -> bool:
            return isinstance(r, (ir.Conv2d, ir.Dense)) and r.name in grids and grids[r.name].step == 1 \
                and grids[r.name].lo == 0

        fixed = set(self.keep) | set(self.replay) | set(self.graph.outputs) | set(self.static)
        bytes_ = {n.name for n in self.graph.nodes if n.name not in fixed and (
            (isinstance(n, IF) and not n.signed) or isinstance(n, _BYTE_MOVES))}
        changed = True
        while changed:  # drop what a float op reads, or what is made of non-byte inputs, until nothing changes
            changed = False
            for n in self.graph.nodes:
                if n.name not in bytes_:
                    continue
                inputs_ok = isinstance(n, IF) or all(i in bytes_ for i in n.inputs)
                readers_ok = bool(readers.get(n.name)) and all(unit_synapse(r) or r.name in bytes_
                                                               for r in readers[n.name])
                if not (inputs_ok and readers_ok):
                    bytes_.discard(n.name)
                    changed = True
        return bytes_

    def _input_chunk(self, tc: int) -> torch.Tensor:
        """Seeded Poisson spikes: P(spike) = |x| / unit, value sign(x) (unit = max |x| in calibration)."""
        unit = self.net.input_unit
        p = (self.x.abs() / unit).clamp(max=1.0)
        r = torch.rand((tc,) + tuple(self.x.shape), generator=self.generator, dtype=self.x.dtype)
        return (r.to(self.x.device) < p).to(self.x.dtype) * torch.sign(self.x)

    def chunk(self, tc: int) -> dict[str, torch.Tensor]:
        """Advance ``tc`` steps. Returns {tensor: (tc, B, ...)} for the kept time-varying tensors."""
        vals: dict[str, torch.Tensor] = {}
        inp = self.graph.inputs[0].name
        if inp not in self.static:
            vals[inp] = self._input_chunk(tc)
        B = self.x.shape[0]
        left = dict(self.uses)
        low = self.kernels.dtype != torch.float32
        for n in self.graph.nodes:
            if n.name in self.static:
                continue
            if n.name in self.replay:
                vals[n.name] = self.replay[n.name](tc)
            elif isinstance(n, IF):
                vals[n.name] = self._if(n, tc, B, vals)
            elif isinstance(n, CUMULATIVE_POOLS):
                vals[n.name] = self._cumulative_pool(n, vals[n.inputs[0]].float())
            else:
                ins = [vals[i] if i in vals else self.values_static[i].expand((tc,) + tuple(self.values_static[i].shape))
                       for i in n.inputs]
                spikes = all(t.dtype in (self.spike_dtype, torch.uint8) for t in ins)  # uint8: _byte_spike_layers
                if isinstance(n, (ir.Conv2d, ir.Dense)) and spikes:
                    y = self.kernels.synaptic(n, _flat(ins[0]))
                elif n.name in self.byte_spikes:
                    y = forward(n, *(_flat(t) for t in ins))  # uint8 spikes moved as they are
                else:
                    if not (low and isinstance(n, _BF16_OPS)):
                        ins = [t.float() for t in ins]
                    elif len({t.dtype for t in ins}) > 1:
                        ins = [t.float() for t in ins]
                    y = forward(n, *(_flat(t) for t in ins))
                vals[n.name] = y.reshape((tc, B) + tuple(y.shape[1:]))
            for i in n.inputs:
                if i in left:
                    left[i] -= 1
                    if left[i] == 0 and i not in self.keep:
                        vals.pop(i, None)
        return vals

    def _if(self, n: IF, tc: int, B: int, vals) -> torch.Tensor:
        src = n.inputs[0]
        constant = src in self.static
        if constant and self.values_static[src].dim() == 4:  # the first layer's current: channels-last once
            self.values_static[src] = self.values_static[src].contiguous(memory_format=torch.channels_last)
        current = self.values_static[src] if constant else vals[src]
        shape = tuple(current.shape[-(current.dim() - (0 if constant else 1)):])
        st = self.state.get(n.name)
        if st is None:
            dtype = torch.float32 if current.dtype == torch.bfloat16 else current.dtype
            def per_channel(values):  # a scalar or one value per channel, broadcastable against (B, C, ...)
                t = torch.as_tensor(values, dtype=dtype, device=current.device)
                return t.reshape((-1,) + (1,) * (len(shape) - 2)) if t.numel() > 1 else t.reshape(())

            like = current if constant else current[0]  # same memory layout as the current (channels-last)
            theta = 1.0 if np.all(np.asarray(n.threshold) == 1) else per_channel(n.threshold)
            st = {"v": torch.zeros_like(like, dtype=dtype).add_(per_channel(n.v_init)), "threshold": theta,
                  "count": torch.zeros_like(like, dtype=dtype) if n.signed else None}
            # the kernels read a per-channel threshold as one value per neuron in v's layout: expanded once
            per_neuron = isinstance(theta, torch.Tensor) and theta.numel() > 1
            st["fused_threshold"] = native.expand_threshold(theta, st["v"]) if per_neuron and self.fused_if else theta
            self.state[n.name] = st
        if self.fused_if:
            # the fused kernels write the spikes in the consumer's dtype and update the state in place
            dtype = torch.uint8 if n.name in self.byte_spikes else self.spike_dtype
            out = self._spike_buffer(tc, shape, current, constant, dtype)
            if native.run_if_chunk(st["v"], current, tc, out, st["count"], constant, n.reset, st["fused_threshold"]):
                return out
        # spikes are computed in v's dtype: an IF step writing bfloat16 spikes (and subtracting them from a
        # float32 v) goes through slow mixed-dtype loops; one cast of the whole chunk afterwards is 2x cheaper
        dtype = st["v"].dtype
        out = self._spike_buffer(tc, shape, current, constant, dtype)
        st["v"], st["count"] = run_if_chunk(st["v"], current, tc, out, st["count"], constant, n.reset,
                                            st["threshold"])
        return out if self.spike_dtype == dtype else out.to(self.spike_dtype)

    @staticmethod
    def _spike_buffer(tc: int, shape: tuple, current: torch.Tensor, constant: bool, dtype) -> torch.Tensor:
        """(tc, *shape) in the current's memory layout (channels-last for 4-D layers)."""
        if constant and len(shape) == 4:  # (tc, B, C, H, W) with channels-last strides
            b, c, h, w = shape
            return torch.empty((tc, b, h, w, c), dtype=dtype, device=current.device).permute(0, 1, 4, 2, 3)
        if constant:
            return torch.empty((tc,) + shape, dtype=dtype, device=current.device)
        return torch.empty_like(current, dtype=dtype)

    def _cumulative_pool(self, n, x: torch.Tensor) -> torch.Tensor:
        tc, B = x.shape[:2]
        st = self.state.setdefault(n.name, {})
        if n.inputs[0] in self.whole_numbers:
            # counts of spikes: exact in any order of addition, and a running sum in the input's layout is
            # 2-3x faster than torch.cumsum (which accumulates in float64 and returns NCHW)
            cum = torch.empty_like(x)
            cum[0] = x[0]
            for i in range(1, tc):
                torch.add(cum[i - 1], x[i], out=cum[i])
        else:
            cum = torch.cumsum(x, dim=0)
        if "carry" in st:
            cum.add_(st["carry"])
        pooled = forward(n, _flat(cum))
        pooled = pooled.reshape((tc, B) + tuple(pooled.shape[1:]))
        prev = st.get("pooled")
        out = torch.empty_like(pooled)
        out[0] = pooled[0] - prev if prev is not None else pooled[0]
        out[1:] = pooled[1:] - pooled[:-1]
        st["carry"] = cum[-1]
        st["pooled"] = pooled[-1]
        return out


def partial_sums(x: torch.Tensor, start: torch.Tensor | float, ks: list[int], *, whole: bool = False
                  ) -> dict[int, torch.Tensor]:
    """start + x[:k+1].sum(0) for each k in ks (fp32), plus the whole chunk under key -1.

    whole: x holds whole numbers (spikes), which add exactly in any order: summed step by step in x's
    layout (torch.sum over the time axis of a channels-last chunk is up to 8x slower).
    """
    out, acc, prev = {}, start, 0
    for k in sorted(ks) + [x.shape[0] - 1]:
        if k + 1 > prev:
            if whole:
                acc = x[prev] + acc  # x first: the sum takes x's (channels-last) layout
                for i in range(prev + 1, k + 1):
                    acc.add_(x[i])
            else:
                acc = acc + x[prev:k + 1].sum(0, dtype=torch.float32)
            prev = k + 1
        out[k] = acc
    out[-1] = acc
    return out


def _input_generator(net, batch_index: int) -> torch.Generator | None:
    """The Poisson encoder's generator of one batch: the same spikes whichever run asks for them."""
    if net.config.input_encoding != "poisson":
        return None
    return torch.Generator().manual_seed(net.config.seed * 1_000_003 + batch_index)


def run_batch(net, x: torch.Tensor, batch_index: int, steps: int, *, time_chunk: int = 4, keep=(),
              replay=None):
    """Simulate one batch for ``steps`` steps in float32 (what is derived from it, such as bias correction,
    must not depend on the hardware's bfloat16); yields {kept tensor: (tc, B, ...)} per chunk.

    ``net.graph`` may be a part of a network: ``replay`` maps IF layers to callables ``f(tc)`` giving
    their next ``tc`` steps of spikes (recorded from an earlier run), so that only the nodes between
    them and ``keep`` are simulated. ``batch_index`` seeds the Poisson encoder as ``simulate`` does.
    """
    run = _BatchRun(net, x, _input_generator(net, batch_index), keep=keep, kernels=_Kernels("float32", x.device),
                    replay=replay)
    done = 0
    while done < steps:
        tc = min(time_chunk, steps - done)
        with torch.inference_mode():  # per chunk: a mode held across a yield would leak into the caller
            vals = run.chunk(tc)
        yield vals
        done += tc


def simulate(net, x: np.ndarray, timesteps, *, batch_size: int = 100, time_chunk: int = 4,
             device: str = "cpu", layer_stats: bool = False, probe=(), progress: bool = False,
             synaptic_dtype: str | None = None) -> SimulationResult:
    """Simulate ``net`` (a SpikingNetwork) on ``x`` up to max(timesteps); see the module docstring.

    layer_stats: record per-IF-layer firing rate, saturated/silent fractions, correlation and relative
        error against the ANN activation, and SOPs at every checkpoint (costs one ANN pass per batch).
    probe: IF layer names whose per-channel mean value (rate x lambda) is returned in ``result.probe``.
    synaptic_dtype: ``"float32"``, ``"bfloat16"``, ``"int8"`` or ``"auto"`` (default): the arithmetic of the
        conv/dense ops that spikes meet (membrane potentials, IF updates and readouts stay float32).
        bfloat16: spikes are exact in it; weights and the resulting currents are rounded to 8 mantissa bits.
        int8 (CPU): inputs on an integer grid (spikes, their average pools; ``ann2snn.sim.int8``) as uint8,
        weights rounded to int8 per output channel, exact int32 sums; other synaptic ops stay float32.
        ``auto`` (``auto_synaptic_dtype``): int8 on CPUs with VNNI or AMX, else bfloat16 where the hardware has
        it natively, else float32; both lower-precision modes are faster, and at T=32 and 64 neither loses
        more than 0.1 pt of float32's accuracy on the zoo and MNIST models (benchmarks/RESULTS.md). Pass
        ``"float32"`` for results that do not depend on the hardware.
    """
    ts = sorted({int(t) for t in timesteps})
    if not ts or ts[0] < 1:
        raise DataError(f"timesteps must be positive integers, got {list(timesteps)}")
    if batch_size < 1 or time_chunk < 1:
        raise DataError("batch_size and time_chunk must be >= 1")
    check_device(device)
    synaptic_dtype = resolve_synaptic_dtype(synaptic_dtype, device)
    kernels = _Kernels.for_network(synaptic_dtype, device, net)
    graph = net.graph
    feeds = check_input(graph, x)
    xs = next(iter(feeds.values()))
    n_samples = xs.shape[0]
    t_max = ts[-1]
    out_name = graph.outputs[0]
    out_unit = torch.as_tensor(net.output_units[out_name])
    outputs = {t: [] for t in ts}
    ann_graph = net.ann
    spiking = [n for n in graph.nodes if isinstance(n, IF)]
    acc = {}
    if layer_stats:
        acc = {n.name: _LayerAccumulator() for n in spiking}
    probe = list(probe)
    probe_sum = {name: {t: 0.0 for t in ts} for name in probe}
    probe_count = 0
    tracked = sorted(set(acc) | set(probe))
    bar = tqdm(total=n_samples * t_max, disable=not progress, unit="img-step", desc="simulate", leave=False)
    with torch.inference_mode():
        for b_idx, start in enumerate(range(0, n_samples, batch_size)):
            xb = torch.from_numpy(xs[start:start + batch_size]).to(device)
            run = _BatchRun(net, xb, _input_generator(net, b_idx), keep=set(tracked) | {out_name}, kernels=kernels)
            ann_acts = None
            if layer_stats:
                from ann2snn.ir.reference import run_tensors

                ann_acts = run_tensors(ann_graph, {ann_graph.inputs[0].name: xb}, set(acc))
            readout = torch.zeros((xb.shape[0],) + tuple(graph.shapes[out_name]), dtype=xb.dtype, device=device)
            zeros = {name: torch.zeros((xb.shape[0],) + tuple(graph.shapes[name]), dtype=xb.dtype, device=device)
                     for name in tracked}
            net_counts, act_counts = dict(zeros), dict(zeros)
            probe_count += xb.shape[0]
            done = 0
            while done < t_max:
                tc = min(time_chunk, t_max - done)
                vals = run.chunk(tc)
                ks = [t - done - 1 for t in ts if done < t <= done + tc]
                if out_name in run.static:
                    step = run.values_static[out_name].to(readout.dtype)
                    cum = {k: readout + step * (k + 1) for k in ks + [tc - 1]}
                    cum[-1] = cum[tc - 1]
                else:
                    cum = partial_sums(vals[out_name], readout, ks)
                # IF outputs are never static; signed neurons need net and absolute counts apart
                net_cum = {name: partial_sums(vals[name], net_counts[name], ks, whole=True) for name in tracked}
                act_cum = {name: partial_sums(vals[name].abs(), act_counts[name], ks, whole=True)
                           if graph.node(name).signed else net_cum[name] for name in acc}
                for t in ts:
                    if done < t <= done + tc:
                        k = t - done - 1
                        outputs[t].append(((cum[k] / t) * out_unit.to(device)).cpu().numpy())
                        for name, a in acc.items():
                            _record(a, graph.node(name), t, net_cum[name][k], act_cum[name][k], ann_acts[name])
                        for name in probe:
                            probe_sum[name][t] = probe_sum[name][t] + channel_sum(net_cum[name][k] / t)
                readout = cum[-1]
                net_counts = {name: c[-1] for name, c in net_cum.items()}
                act_counts = {name: c[-1] for name, c in act_cum.items()}
                del vals
                done += tc
                bar.update(xb.shape[0] * tc)
    bar.close()
    heap.release_freed_memory()
    result = SimulationResult(ts, {t: np.concatenate(v) for t, v in outputs.items()},
                              softmax=net.output_softmax is not None and not net.output_softmax.log,
                              log_softmax=net.output_softmax is not None and net.output_softmax.log,
                              samples=n_samples, synaptic_dtype=synaptic_dtype)
    if layer_stats:
        result.layer_sums = {name: _sums(a, ts) for name, a in acc.items()}
        result.layers = layer_statistics(net, result.layer_sums, n_samples, ts)
    for name in probe:
        node = graph.node(name)
        per_channel = int(np.prod(graph.shapes[name][1:])) if len(graph.shapes[name]) > 1 else 1
        scale = np.asarray(node.scale, np.float64).reshape(-1)
        result.probe[name] = {t: probe_sum[name][t] / (probe_count * per_channel) * scale for t in ts}
    return result


def _record(a: _LayerAccumulator, node: IF, t: int, net_count: torch.Tensor, act_count: torch.Tensor,
            ann_act: torch.Tensor) -> None:
    """Add one batch's figures at checkpoint t: rate from the net count, activity from |spikes|."""
    scale = torch.as_tensor(node.scale, dtype=net_count.dtype, device=net_count.device)
    scale = scale.reshape((-1,) + (1,) * (net_count.dim() - 2)) if scale.numel() > 1 else scale.reshape(())
    # spike counts are whole numbers: exact in float64 whatever the order of addition
    a.spikes[t] = a.spikes.get(t, 0.0) + float(act_count.double().sum())
    a.saturated[t] = a.saturated.get(t, 0.0) + float((net_count >= t).sum())
    a.silent[t] = a.silent.get(t, 0.0) + float((act_count == 0).sum())
    a.moments.setdefault(t, _Moments()).add(net_count / t * scale, ann_act)


def channel_sum(values: torch.Tensor) -> np.ndarray:
    """Sum over batch and spatial positions, per channel (axis 1 of a batched tensor); in numpy, whose sums
    do not depend on the thread count (bias correction must not depend on how many threads a rank has)."""
    a = values.double().cpu().numpy()
    return a.sum(axis=0) if a.ndim == 2 else a.sum(axis=(0, *range(2, a.ndim)))


# what each column of SimulationResult.layer_sums holds
LAYER_SUM_FIELDS = ("spikes", "saturated", "silent") + tuple(f"moments.{f}" for f in _Moments.FIELDS)


def _sums(a: _LayerAccumulator, ts) -> np.ndarray:
    return np.array([[a.spikes[t], a.saturated[t], a.silent[t]] + [getattr(a.moments[t], f) for f in _Moments.FIELDS]
                     for t in ts], np.float64)


def layer_statistics(net, layer_sums: dict[str, np.ndarray], n_samples: int, ts) -> dict[str, dict]:
    """Per-IF-layer firing rate, saturated/silent fractions, correlation, relative error and SOPs from the
    raw sums of ``n_samples`` samples (one run's, or several runs' added up); each figure keyed by int T."""
    graph = net.graph
    spp = sops_per_spike(graph)
    out = {}
    for name, sums in layer_sums.items():
        neurons = int(np.prod(graph.shapes[name]))
        total = neurons * n_samples
        row = {t: dict(zip(LAYER_SUM_FIELDS, (float(v) for v in sums[i]))) for i, t in enumerate(ts)}
        moments = {t: _Moments(**{f: row[t][f"moments.{f}"] for f in _Moments.FIELDS}) for t in ts}
        out[name] = {
            "neurons": neurons,
            "firing_rate": {t: row[t]["spikes"] / (total * t) for t in ts},
            "saturated_fraction": {t: row[t]["saturated"] / total for t in ts},
            "silent_fraction": {t: row[t]["silent"] / total for t in ts},
            "pearson_r": {t: moments[t].pearson() for t in ts},
            "relative_error": {t: moments[t].relative_error() for t in ts},
            "sops_per_sample": {t: row[t]["spikes"] * spp[name] / n_samples for t in ts},
        }
    return out
