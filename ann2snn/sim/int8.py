"""Integer synapses: spike tensors as uint8, weights as int8 per output channel, int32 accumulation (oneDNN).

A tensor that reaches a conv/dense layer from IF neurons only through layout ops, Concat, max-pooling or
a uniform average pool holds values on a known integer grid: ``value = step * k`` with integer
``k`` in ``[lo, hi]`` (spikes: step 1, k in {0, 1}, or {-1, 0, 1} for signed neurons; a 2x2 average pool
of spikes: step 1/4, k in 0..4). ``integer_grids`` finds that grid for every synaptic input statically.
Such an input is exact in uint8 (``q = k - lo``, oneDNN's zero point ``-lo``), so only the weights are
rounded: to int8 with one scale per output channel (``max |w| / 127``). oneDNN accumulates in int32 and
rescales to float32 (``x_scale * w_scale[c] * acc + bias``) before the neuron, whose state stays float32.
The simulator hands over spikes that only such ops read as uint8 already (the fused IF kernels write them).

``k - lo`` is kept within 0..127 (7 bits): that is exact on every x86 int8 path, including the ones
without VNNI whose 16-bit intermediate sums saturate for 8-bit activations. A synaptic op whose input has
no grid, or a wider one, keeps the float32 kernel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ann2snn.ir import nodes as ir
from ann2snn.ir.snn import IF, CumulativeGlobalMaxPool, CumulativeMaxPool2d

Q_MAX = 127  # largest stored activation value (7 bits; see the module docstring)


@dataclass(frozen=True)
class Grid:
    """Values ``step * k`` with integer k in [lo, hi]."""

    step: float
    lo: int
    hi: int

    def scaled(self, factor: int) -> "Grid":
        """The grid of a sum of ``factor`` such values divided by ``factor`` (a uniform average pool)."""
        return Grid(self.step / factor, self.lo * factor, self.hi * factor)

    @property
    def fits(self) -> bool:
        return self.hi - self.lo <= Q_MAX


def _uniform_average(n: ir.AvgPool2d, in_shape) -> bool:
    """Does every output of the pool divide by kernel_h * kernel_w (no border windows of other sizes)?"""
    if any(n.padding) and not n.count_include_pad:
        return False
    if not n.ceil_mode:
        return True
    floor_mode = ir.AvgPool2d(n.name, n.inputs, kernel=n.kernel, stride=n.stride, padding=n.padding)
    return floor_mode.output_shape([in_shape]) == n.output_shape([in_shape])


def integer_grids(graph, static: set[str]) -> dict[str, Grid]:
    """{conv/dense node: the grid of its input} for the synaptic ops whose time-varying input is exact in
    7-bit unsigned integers (see the module docstring)."""
    grids = tensor_grids(graph, static)
    return {n.name: grids[n.inputs[0]] for n in graph.nodes
            if isinstance(n, (ir.Conv2d, ir.Dense)) and n.inputs[0] in grids and grids[n.inputs[0]].fits}


def tensor_grids(graph, static: set[str], *, averages: bool = True) -> dict[str, Grid]:
    """{time-varying tensor: its grid} for the tensors whose every value is ``step * k`` (spikes and what
    pools, concatenates or reshapes them); the outputs of conv/dense ops have none.

    averages: follow average pools (their grids need the graph's shapes; a part of a graph whose inputs
    are replayed spikes has none, so ``whole_number_tensors`` leaves them out: their step is below 1).
    """
    shapes = graph.shapes if averages else None
    grids: dict[str, Grid] = {}
    inp = graph.inputs[0].name
    if inp not in static:  # Poisson input spikes: sign(x)
        grids[inp] = Grid(1.0, -1, 1)
    for n in graph.nodes:
        if n.name in static:
            continue
        ins = [grids.get(i) for i in n.inputs]
        grid = None
        if isinstance(n, IF):
            grid = Grid(1.0, -1 if n.signed else 0, 1)
        elif isinstance(n, (ir.Conv2d, ir.Dense)):
            pass
        elif None in ins:
            grid = None
        elif n.is_layout or isinstance(n, (ir.MaxPool2d, ir.GlobalMaxPool, CumulativeMaxPool2d,
                                           CumulativeGlobalMaxPool)):
            # a cumulative pool's step output max(c + x) - max(c) lies between min x and max x
            grid = ins[0]
        elif isinstance(n, ir.Concat) and len({g.step for g in ins}) == 1:
            grid = Grid(ins[0].step, min(g.lo for g in ins), max(g.hi for g in ins))
        elif not averages:
            grid = None
        elif isinstance(n, ir.AvgPool2d) and _uniform_average(n, shapes[n.inputs[0]]):
            grid = ins[0].scaled(n.kernel[0] * n.kernel[1])
        elif isinstance(n, ir.GlobalAvgPool):
            grid = ins[0].scaled(int(np.prod(shapes[n.inputs[0]][1:])))
        if grid is not None:
            grids[n.name] = grid
    return grids


def whole_number_tensors(graph, static: set[str]) -> set[str]:
    """Time-varying tensors of whole numbers: spikes, and their max-pools, concatenations and layouts."""
    return {t for t, g in tensor_grids(graph, static, averages=False).items() if g.step == 1}


@functools.cache
def int8_available(device: str = "cpu") -> bool:
    """Can this torch run oneDNN's uint8 x int8 convolution and linear ops on ``device``? (a tiny probe)"""
    if torch.device(device).type != "cpu" or not hasattr(torch.ops, "onednn"):
        return False
    try:
        x = torch.ones((1, 1, 3, 3)).contiguous(memory_format=torch.channels_last)
        conv = Int8Conv(ir.Conv2d("probe", ("x",), weight=np.ones((1, 1, 3, 3), np.float32)), Grid(1.0, 0, 1))
        dense = Int8Dense(ir.Dense("probe", ("x",), weight=np.ones((1, 9), np.float32)), Grid(1.0, 0, 1))
        return float(conv(x).sum()) == 9.0 and float(dense(x.reshape(1, 9)).sum()) == 9.0
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def _quantize_weight(weight: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel (axis 0): (int8 weights, float32 scales)."""
    w = torch.as_tensor(np.asarray(weight, np.float32))
    peak = w.reshape(w.shape[0], -1).abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
    q = torch.round(w / scale.reshape((-1,) + (1,) * (w.dim() - 1))).clamp_(-127, 127).to(torch.int8)
    return q, scale.float()


class _Int8Op:
    """Shared by the conv and dense forms: the input grid, the weight scales and the float32 bias."""

    def __init__(self, node, grid: Grid):
        self.grid = grid
        self.zero_point = -grid.lo
        self.weight, self.weight_scale = _quantize_weight(node.weight)
        self.weight_zero_point = torch.zeros(len(self.weight_scale), dtype=torch.long)
        self.bias = None if node.bias is None else torch.as_tensor(np.asarray(node.bias, np.float32))
        self.inv_step = 1.0 / grid.step
        self.exact_step = grid.step == 1.0

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """float32 values on the grid -> uint8 ``k - lo`` (same memory layout). float -> int8 is vectorized
        (float -> uint8 is not: 4x slower), and k - lo <= 127 makes the int8 and uint8 bytes equal."""
        if self.exact_step and not self.zero_point:
            # spikes the IF kernels wrote as bytes already are k - lo
            return x if x.dtype == torch.uint8 else x.to(torch.int8).view(torch.uint8)
        k = x if self.exact_step else torch.round(x * self.inv_step)  # k / n is not exact in float32
        return (k + self.zero_point).to(torch.int8).view(torch.uint8)


class Int8Conv(_Int8Op):
    def __init__(self, node: ir.Conv2d, grid: Grid):
        super().__init__(node, grid)
        t, l, b, r = node.padding
        self.symmetric = t == b and l == r
        self.pad = (l, r, t, b)
        padding = [t, l] if self.symmetric else [0, 0]
        self.args = (list(node.stride), padding, list(node.dilation), node.groups)
        self.packed = torch.ops.onednn.qconv_prepack(self.weight, self.weight_scale, self.grid.step,
                                                     self.zero_point, *self.args, None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quantize(x.contiguous(memory_format=torch.channels_last))
        if not self.symmetric:
            q = F.pad(q, self.pad, value=self.zero_point)  # the zero point is the value 0
        return torch.ops.onednn.qconv2d_pointwise(q, self.grid.step, self.zero_point, self.packed, self.weight_scale,
                                                  self.weight_zero_point, self.bias, *self.args, 1.0, 0,
                                                  torch.float32, "none", [], "")


class Int8Dense(_Int8Op):
    def __init__(self, node: ir.Dense, grid: Grid):
        super().__init__(node, grid)
        self.packed = torch.ops.onednn.qlinear_prepack(self.weight, None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quantize(x.reshape(-1, x.shape[-1]))
        y = torch.ops.onednn.qlinear_pointwise(q, self.grid.step, self.zero_point, self.packed, self.weight_scale,
                                               self.weight_zero_point, self.bias, 1.0, 0, torch.float32,
                                               "none", [], "")
        return y.reshape(tuple(x.shape[:-1]) + (y.shape[-1],))


def int8_op(node, grid: Grid):
    return Int8Conv(node, grid) if isinstance(node, ir.Conv2d) else Int8Dense(node, grid)
