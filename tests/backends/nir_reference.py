"""A reference interpreter of NIR graphs for the tests (see :class:`NirInterpreter`)."""

from __future__ import annotations

import nir
import numpy as np

from ann2snn.backends.nir import nir_summary


def _conv_np(x, w, b, stride, padding, dilation, groups):
    """NIR's Conv2d: cross-correlation of (B, C, H, W) with (O, C/groups, kH, kW) weights, symmetric zero pads."""
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (B, C, oh, ow, kh, kw)
    cig, cog = w.shape[1], w.shape[0] // groups
    outs = [np.tensordot(win[:, g * cig:(g + 1) * cig], w[g * cog:(g + 1) * cog], axes=([1, 4, 5], [1, 2, 3]))
            for g in range(groups)]  # each (B, oh, ow, O/groups)
    return np.concatenate(outs, axis=-1).transpose(0, 3, 1, 2) + b[None, :, None, None]


class NirInterpreter:
    """The reference interpreter of ann2snn's NIR files: a discrete-time numpy executor written from the NIR
    specification (neuromorphs/NIR, docs "Primitives"), not from ann2snn's simulator.

    Time: Euler steps of dt = 1, the unit the files record (graph metadata ``dt``). Per step the nodes run
    in data-flow order and a node's input is the sum of every edge that arrives at it (NIR's fan-in rule).
    Primitives: ``Affine`` W x + b, ``Linear`` W x, ``Conv2d`` (cross-correlation, symmetric zero pads,
    stride, dilation, groups, bias), ``Flatten`` (dims counted without the batch axis), ``Scale`` s * x,
    ``AvgPool2d``/``SumPool2d`` (zero pads counted), ``I`` dv/dt = r I, and ``IF``: dv/dt = r I, spike
    z = H(v - v_threshold) with H(0) = 0, then v = v_reset (0 when the file has none); v starts at 0.

    ``rule="ann2snn"`` instead honours the annotated form's metadata (fire on v >= v_threshold, reset by
    subtraction, start at the node's ``v_init``): what a consumer must add to the primitives for it.
    """

    def __init__(self, graph: nir.NIRGraph, rule: str = "nir_spec"):
        self.g, self.rule = graph, rule
        self.order = [row[0] for row in nir_summary(graph)]
        self.preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}

    def run(self, x: np.ndarray, steps: int, *, summed: bool = False):
        """(values of the Output nodes at the last step, or summed over the steps when ``summed``: what a
        ``readout="current"`` file needs; IF spike counts per layer) for the same input ``x`` every step."""
        v, counts, readout = {}, {}, {}
        for name, nd in self.g.nodes.items():
            if isinstance(nd, nir.IF):
                v0 = nd.metadata["v_init"] if self.rule == "ann2snn" else np.zeros_like(nd.r)
                v[name] = np.broadcast_to(v0, (len(x),) + nd.r.shape).astype(np.float32)
                counts[name] = np.zeros_like(v[name])
            elif isinstance(nd, nir.I):
                v[name] = np.zeros((len(x),) + nd.r.shape, np.float32)
        for _ in range(steps):
            vals = {}
            for name in self.order:
                nd = self.g.nodes[name]
                if isinstance(nd, nir.Input):
                    vals[name] = x
                    continue
                i = sum(vals[p] for p in self.preds[name])
                vals[name] = self._apply(name, nd, i, v, counts)
                if isinstance(nd, nir.Output):
                    readout[name] = readout.get(name, 0) + vals[name] if summed else vals[name]
        return readout, counts

    def _apply(self, name, nd, i, v, counts):
        if isinstance(nd, nir.Conv2d):
            return _conv_np(i, nd.weight, nd.bias, nd.stride, nd.padding, nd.dilation, int(nd.groups))
        if isinstance(nd, nir.Affine):
            return i @ nd.weight.T + nd.bias
        if isinstance(nd, nir.Linear):
            return i @ nd.weight.T
        if isinstance(nd, nir.Scale):
            return i * nd.scale
        if isinstance(nd, nir.Flatten):
            start = int(nd.start_dim)  # NIR dims exclude the batch axis; negative ones count from the end
            start = start + 1 if start >= 0 else i.ndim + start
            return i.reshape(i.shape[:start] + (-1,))
        if isinstance(nd, (nir.AvgPool2d, nir.SumPool2d)):
            (kh, kw), (sh, sw), (ph, pw) = nd.kernel_size, nd.stride, nd.padding
            xp = np.pad(i, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
            total = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
            total = total.sum(axis=(-2, -1), dtype=np.float32)
            return total / np.float32(kh * kw) if isinstance(nd, nir.AvgPool2d) else total
        if isinstance(nd, nir.IF):
            v[name] = v[name] + nd.r * i
            if self.rule == "ann2snn":
                s = (v[name] >= nd.v_threshold).astype(np.float32)
                v[name] = v[name] - s * nd.v_threshold
            else:
                s = (v[name] > nd.v_threshold).astype(np.float32)
                v_reset = 0.0 if nd.v_reset is None else nd.v_reset
                v[name] = np.where(s > 0, v_reset, v[name])
            counts[name] += s
            return s
        if isinstance(nd, nir.I):
            v[name] = v[name] + nd.r * i
            return v[name]
        if isinstance(nd, nir.Output):
            return i
        raise NotImplementedError(type(nd).__name__)
