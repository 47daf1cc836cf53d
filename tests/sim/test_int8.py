"""The int8 synaptic path: which inputs are exact in 7-bit integers, the int8 kernels against float32 with
the same rounded weights, and where int8 is refused (whole simulations: test_synaptic_dtype.py)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ann2snn.errors import DataError
from ann2snn.ir import nodes as ir
from ann2snn.ir.graph import Graph, TensorSpec
from ann2snn.ir.snn import IF
from ann2snn.sim.int8 import Grid, Int8Conv, Int8Dense, _quantize_weight, int8_available, integer_grids
from ann2snn.sim.simulate import auto_synaptic_dtype, resolve_synaptic_dtype

needs_int8 = pytest.mark.skipif(not int8_available("cpu"), reason="this torch has no oneDNN int8 ops")
rng = np.random.default_rng(0)


def _conv(name, src, cin, cout, k=3, **kw):
    return ir.Conv2d(name, (src,), weight=rng.normal(0, 0.3, (cout, cin // kw.get("groups", 1), k, k)).astype(np.float32),
                     bias=rng.normal(0, 0.1, cout).astype(np.float32), **kw)


def _if(name, src, c, signed=False):
    return IF(name, (src,), scale=np.ones(c, np.float32), v_init=np.full(1, 0.5, np.float32), signed=signed)


def test_grids_follow_spikes_through_layout_pooling_and_concat():
    nodes = [
        _conv("c0", "x", 1, 4, padding=(1, 1, 1, 1)), _if("s0", "c0", 4),
        _if("n0", "c0", 4, signed=True),
        _conv("c1", "s0", 4, 4, padding=(1, 1, 1, 1)),  # plain spikes: k in {0, 1}
        _conv("c2", "n0", 4, 4, padding=(1, 1, 1, 1)),  # signed spikes: k in {-1, 0, 1}
        ir.AvgPool2d("p0", ("s0",)),
        _conv("c3", "p0", 4, 4),  # 2x2 mean of spikes: step 1/4, k in 0..4
        ir.AvgPool2d("p1", ("s0",), padding=(1, 1, 1, 1), stride=(1, 1), kernel=(3, 3)),
        _conv("c4", "p1", 4, 4),  # border windows divide by fewer inputs: no uniform grid
        ir.Concat("cat", ("s0", "n0"), axis=0),
        _conv("c5", "cat", 8, 4),
        ir.GlobalAvgPool("g0", ("s0",)), ir.Flatten("f0", ("g0",)),
        ir.Dense("d0", ("f0",), weight=np.ones((3, 4), np.float32)),  # 16x16 positions: 256 levels > 127
    ]
    g = Graph.from_unordered([TensorSpec("x", (1, 16, 16))], nodes, ["c1", "c2", "c3", "c4", "c5", "d0"])
    grids = integer_grids(g, static={"x", "c0"})
    assert grids == {"c1": Grid(1.0, 0, 1), "c2": Grid(1.0, -1, 1), "c3": Grid(0.25, 0, 4),
                     "c5": Grid(1.0, -1, 1)}


def _grid_values(grid: Grid, shape) -> torch.Tensor:
    k = torch.from_numpy(rng.integers(grid.lo, grid.hi + 1, shape)).float()
    return k * grid.step


@needs_int8
@pytest.mark.parametrize("grid", [Grid(1.0, 0, 1), Grid(1.0, -1, 1), Grid(0.25, 0, 4), Grid(1 / 49, 0, 49)])
@pytest.mark.parametrize("conv", [
    dict(padding=(1, 1, 1, 1)),
    dict(padding=(0, 1, 1, 0), stride=(2, 2)),  # asymmetric padding: padded with the zero point
    dict(padding=(1, 1, 1, 1), groups=4),
    dict(padding=(2, 2, 2, 2), dilation=(2, 2)),
])
def test_int8_conv_is_exact_up_to_the_rounded_weights(grid, conv):
    node = _conv("c", "x", 8, 8, **conv)
    x = _grid_values(grid, (6, 8, 9, 9))
    q, scale = _quantize_weight(node.weight)
    t, l, b, r = node.padding
    reference = F.conv2d(F.pad(x, (l, r, t, b)), q.float() * scale.reshape(-1, 1, 1, 1),
                         torch.from_numpy(node.bias), node.stride, 0, node.dilation, node.groups)
    y = Int8Conv(node, grid)(x)
    assert y.dtype == torch.float32 and y.shape == reference.shape
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    # and the weight rounding itself is within half an int8 step per channel
    assert float((q.float() * scale.reshape(-1, 1, 1, 1) - torch.from_numpy(node.weight)).abs().max()) \
        <= float(scale.max()) / 2 + 1e-7


@needs_int8
@pytest.mark.parametrize("grid", [Grid(1.0, 0, 1), Grid(1.0, -1, 1), Grid(0.25, 0, 4)])
def test_int8_dense_is_exact_up_to_the_rounded_weights(grid):
    node = ir.Dense("d", ("x",), weight=rng.normal(0, 0.2, (10, 50)).astype(np.float32),
                    bias=rng.normal(0, 0.1, 10).astype(np.float32))
    x = _grid_values(grid, (4, 3, 50))  # (time, batch, features) as the simulator passes it flattened or not
    q, scale = _quantize_weight(node.weight)
    reference = F.linear(x, q.float() * scale.reshape(-1, 1), torch.from_numpy(node.bias))
    torch.testing.assert_close(Int8Dense(node, grid)(x), reference, rtol=1e-5, atol=1e-5)


def test_int8_is_refused_where_it_cannot_run():
    if int8_available("cpu"):
        assert resolve_synaptic_dtype("int8", "cpu") == "int8"
    else:
        with pytest.raises(DataError, match="int8"):
            resolve_synaptic_dtype("int8", "cpu")
    with pytest.raises(DataError, match="int8"):
        resolve_synaptic_dtype("int8", "meta")
    assert auto_synaptic_dtype("meta") == "float32"
