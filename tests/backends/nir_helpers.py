"""Networks built in code for the NIR tests: real conversions of small IR graphs."""

from __future__ import annotations

import numpy as np

from ann2snn.config import ConversionConfig
from ann2snn.convert.converter import build_network, plan_conversion
from ann2snn.ir import Dense, Flatten, Graph, TensorSpec
from ann2snn.ir.reference import run_graph

FP32 = "float32"  # exact comparisons against the NIR reading: not the hardware-dependent bfloat16 of "auto"


def _w(rng, *shape):
    return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def _b(rng, n, s=0.1):
    return (rng.standard_normal(n) * s).astype(np.float32)


def make_net(nodes, in_shape=(2, 8, 8), *, outputs=None, v_init=0.0, seed=0, n=32, signed=False, x=None,
             reset="subtract"):
    """Real conversion of an IR graph built in code, thresholds = max activations of random inputs."""
    g = Graph.from_unordered([TensorSpec("x", in_shape)], nodes, outputs or [nodes[-1].name]).validate()
    if x is None:
        x = np.random.default_rng(seed).random((n,) + tuple(in_shape)).astype(np.float32)
    cfg = ConversionConfig(v_init=v_init, bias_correction=False, signed=signed, reset=reset)
    plan = plan_conversion(g, cfg)
    acts = run_graph(plan.ann, x, outputs=list(plan.spiking))
    scales = {k: np.maximum(a.reshape(len(a), a.shape[1], -1).max(axis=(0, 2)) if a.ndim > 2 else a.max(axis=0),
                            1e-3) for k, a in acts.items()}
    return build_network(plan, scales, cfg, v_init)


def head(rng, src, features, out=10):
    return [Flatten("flat", (src,)), Dense("fc", ("flat",), weight=_w(rng, out, features), bias=_b(rng, out))]
