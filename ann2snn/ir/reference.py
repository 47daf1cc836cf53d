"""Torch kernels for IR nodes: the float reference, reused by calibration and the simulator.

``forward(node, *tensors)`` takes batched tensors (batch first) and returns one batched tensor. The
simulator calls the same kernels on (T_chunk * batch) inputs, so a layer behaves identically in the
ANN reference and in the SNN.
"""

from __future__ import annotations

from functools import singledispatch

import numpy as np
import torch
import torch.nn.functional as F

from ann2snn.errors import DataError
from ann2snn.ir import nodes as ir


def as_tensor(a: np.ndarray | None, like: torch.Tensor) -> torch.Tensor | None:
    if a is None:
        return None
    return torch.as_tensor(np.asarray(a), dtype=like.dtype, device=like.device)


@singledispatch
def forward(node: ir.Node, *xs: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError(f"no torch kernel for {type(node).__name__}")


def _pad2d(x: torch.Tensor, pads: tuple[int, int, int, int], value: float = 0.0) -> torch.Tensor:
    t, l, b, r = pads
    if t or l or b or r:
        return F.pad(x, (l, r, t, b), value=value)
    return x


@forward.register
def _conv2d(node: ir.Conv2d, x):
    t, l, b, r = node.padding
    w = as_tensor(node.weight, x)
    bias = as_tensor(node.bias, x)
    if t == b and l == r:
        return F.conv2d(x, w, bias, node.stride, (t, l), node.dilation, node.groups)
    return F.conv2d(_pad2d(x, node.padding), w, bias, node.stride, 0, node.dilation, node.groups)


@forward.register
def _dense(node: ir.Dense, x):
    return F.linear(x, as_tensor(node.weight, x), as_tensor(node.bias, x))


@forward.register
def _scale_shift(node: ir.ScaleShift, x):
    return x * as_tensor(node.scale, x) + as_tensor(node.shift, x)


@forward.register
def _relu(node: ir.ReLU, x):
    return x.clamp(0.0, node.ceiling) if node.ceiling is not None else torch.relu(x)


@forward.register
def _add(node: ir.Add, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


@forward.register
def _concat(node: ir.Concat, *xs):
    return torch.cat(xs, dim=node.axis + 1)


@forward.register
def _softmax(node: ir.Softmax, x):
    return (F.log_softmax if node.log else F.softmax)(x, dim=node.axis + 1)


def _ceil_extra(size: int, out: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    """Extra bottom/right padding that ceil mode needs beyond the explicit pads."""
    need = (out - 1) * s + d * (k - 1) + 1
    return max(0, need - (size + p0 + p1))


def _window_geometry(node, x):
    h, w = x.shape[-2:]
    t, l, b, r = node.padding
    dil = getattr(node, "dilation", (1, 1))
    _, oh, ow = node.output_shape([tuple(x.shape[1:])])
    eb = _ceil_extra(h, oh, node.kernel[0], node.stride[0], dil[0], t, b)
    er = _ceil_extra(w, ow, node.kernel[1], node.stride[1], dil[1], l, r)
    return (t, l, b, r), (eb, er), (oh, ow), dil


@forward.register
def _maxpool(node: ir.MaxPool2d, x):
    pads, (eb, er), (oh, ow), dil = _window_geometry(node, x)
    t, l, b, r = pads
    xp = _pad2d(x, (t, l, b + eb, r + er), value=float("-inf"))
    if xp.dim() == 4 and xp.shape[1] >= _CHANNELS_LAST_POOL_MIN and xp.is_contiguous(
            memory_format=torch.channels_last):
        return F.max_pool2d(xp, node.kernel, node.stride, 0, dil)[..., :oh, :ow]
    return _window_max(xp, node.kernel, node.stride, dil, (oh, ow))


# torch's CPU max_pool2d is fast on channels-last tensors of many channels (it vectorizes over them); on
# NCHW tensors, and on channels-last ones with few channels, a max over strided views is 2-10x faster
# (exact either way: benchmarks/maxpool_kernels.py)
_CHANNELS_LAST_POOL_MIN = 32


def _window_max(x: torch.Tensor, kernel, stride, dilation, out_hw) -> torch.Tensor:
    """Max over each pooling window as a separable max of strided views (x is already padded)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    rows = None
    for j in range(kw):
        v = x[..., :, j * dw: j * dw + (ow - 1) * sw + 1: sw]
        rows = v if rows is None else torch.maximum(rows, v)
    out = None
    for i in range(kh):
        v = rows[..., i * dh: i * dh + (oh - 1) * sh + 1: sh, :]
        out = v if out is None else torch.maximum(out, v)
    return out if kh * kw > 1 else out.clone()


@forward.register
def _avgpool(node: ir.AvgPool2d, x):
    pads, (eb, er), (oh, ow), _ = _window_geometry(node, x)
    t, l, b, r = pads
    k = node.kernel
    ones = torch.ones((1, 1) + tuple(x.shape[-2:]), dtype=x.dtype, device=x.device)
    # count_include_pad counts explicit pads but never the extra cells that ceil mode adds (ONNX rule)
    if node.count_include_pad:
        mask = _pad2d(_pad2d(ones, (t, l, b, r), 1.0), (0, 0, eb, er), 0.0)
    else:
        mask = _pad2d(ones, (t, l, b + eb, r + er), 0.0)
    total = F.avg_pool2d(_pad2d(x, (t, l, b + eb, r + er)), k, node.stride, 0) * (k[0] * k[1])
    count = F.avg_pool2d(mask, k, node.stride, 0) * (k[0] * k[1])
    return (total / count)[..., :oh, :ow]


@forward.register
def _gap(node: ir.GlobalAvgPool, x):
    return x.mean(dim=(-2, -1), keepdim=True)


@forward.register
def _gmp(node: ir.GlobalMaxPool, x):
    return x.amax(dim=(-2, -1), keepdim=True)


@forward.register
def _flatten(node: ir.Flatten, x):
    return x.reshape(x.shape[0], -1)


@forward.register
def _reshape(node: ir.Reshape, x):
    return x.reshape((x.shape[0],) + tuple(node.shape))


@forward.register
def _transpose(node: ir.Transpose, x):
    return x.permute((0,) + tuple(p + 1 for p in node.perm))


def check_input(graph, x) -> dict[str, np.ndarray]:
    """Normalise ``x`` to {input name: float32 array} and check it against the graph's input shapes."""
    if not isinstance(x, dict):
        if len(graph.inputs) != 1:
            raise DataError(f"graph '{graph.name}' has {len(graph.inputs)} inputs: pass a dict name -> array")
        x = {graph.inputs[0].name: x}
    out = {}
    for spec in graph.inputs:
        if spec.name not in x:
            raise DataError(f"no data given for graph input '{spec.name}'")
        try:
            a = np.asarray(x[spec.name])
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise DataError(f"input '{spec.name}': not an array ({e})") from None
        if a.dtype.kind not in "fiu":
            raise DataError(f"input '{spec.name}': expected a numeric array, got dtype {a.dtype}")
        if tuple(a.shape[1:]) != tuple(spec.shape):
            raise DataError(
                f"input '{spec.name}': expected shape (batch, {', '.join(map(str, spec.shape))}), got {a.shape}"
            )
        if a.shape[0] == 0:
            raise DataError(f"input '{spec.name}': no samples")
        a = a.astype(np.float32, copy=False)
        if not np.all(np.isfinite(a)):
            raise DataError(f"input '{spec.name}': contains NaN or Inf")
        out[spec.name] = a
    return out


def run_tensors(graph, feeds: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Run the graph on batched tensors; keep only ``wanted`` tensors (others are freed when unused)."""
    remaining = {name: len(users) for name, users in graph.consumers.items()}
    values = dict(feeds)
    for n in graph.nodes:
        values[n.name] = forward(n, *(values[i] for i in n.inputs))
        for i in n.inputs:
            remaining[i] -= 1
            if remaining[i] == 0 and i not in wanted:
                del values[i]
    return {k: values[k] for k in wanted}


def run_graph(graph, x, *, batch_size=256, device="cpu", outputs=None):
    feeds = check_input(graph, x)
    names = [outputs] if isinstance(outputs, str) else list(outputs or graph.outputs[:1])
    n = next(iter(feeds.values())).shape[0]
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in names}
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = {k: torch.from_numpy(v[start : start + batch_size]).to(device) for k, v in feeds.items()}
            res = run_tensors(graph, batch, set(names))
            for k in names:
                chunks[k].append(res[k].cpu().numpy())
    result = {k: np.concatenate(v) for k, v in chunks.items()}
    if isinstance(outputs, (list, tuple)):
        return result
    return result[names[0]]


# The rate limit of spiking nodes: what a converted graph computes as T -> infinity. Running a converted
# graph with these kernels checks the conversion's arithmetic without simulating time.
from ann2snn.ir import snn as _snn  # noqa: E402


@forward.register
def _if_rate_limit(node: _snn.IF, x):
    return x.clamp(-1.0 if node.signed else 0.0, 1.0).clamp(min=0.0)
