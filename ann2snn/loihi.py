"""Loihi (Lava netx) export, input encoding and bit-exact fixed-point evaluation: the public API.

::

    import ann2snn, ann2snn.loihi as loihi

    snn = ann2snn.convert("model.onnx", calibration=x_calib)
    exp = loihi.export(snn, "out/model.net", neuron="cuba", calibration=x_calib)   # or neuron="sdnn"
    print(exp.table())                                 # per-layer scale, vThMant, quantization error
    bias = loihi.input_bias(exp, x_test[:1])           # (1, C, H, W) integers; layout="lava" gives (1, W, H, C)
    res = loihi.simulate_loihi(exp, x_test, [32, 64, 128])
    res.predictions(128)                               # argmax of the fixed-point readout at T=128
    loihi.accuracy(exp, x_test, y_test, [128])         # {128: 0.89}

``simulate_loihi`` runs :func:`ann2snn.backends.loihi.fixed_point.simulate_fixed_point`, which reproduces Lava's
``fixed_pt`` models bit for bit; the numbers it gives are what Lava computes for the same ``.net`` file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ann2snn.backends.loihi.export import LoihiExport, check_loihi, export_loihi, load_loihi
from ann2snn.backends.loihi.fixed_point import simulate_fixed_point
from ann2snn.backends.loihi.netx import NetxNetwork, chw_to_lava
from ann2snn.backends.loihi.profile import LOIHI1, LOIHI2, LoihiProfile
from ann2snn.backends.loihi.quantized import QuantizationOptions
from ann2snn.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "LOIHI1", "LOIHI2", "LoihiExport", "LoihiProfile", "LoihiSimulationResult", "QuantizationOptions",
    "accuracy", "check", "decode", "export", "input_a_in", "input_bias", "load", "simulate_loihi",
]

export = export_loihi
load = load_loihi
check = check_loihi


def _as_export(model) -> LoihiExport:
    if isinstance(model, LoihiExport):
        return model
    if isinstance(model, NetxNetwork):
        latency = sum(1 for layer in model.layers if type(layer).__name__ != "FlattenLayer") - 1
        return LoihiExport(network=model, neuron=None, latency=latency)
    if isinstance(model, (str, os.PathLike)):
        return load_loihi(model)
    raise TypeError(f"expected a LoihiExport, NetxNetwork or .net path, got {type(model).__name__}")


def _layout(arr: np.ndarray, layout: str) -> np.ndarray:
    if layout == "chw":
        return arr
    if layout == "lava":
        return chw_to_lava(arr)
    raise DataError(f"layout must be 'chw' or 'lava', got {layout!r}")


def input_bias(model, x: np.ndarray, *, layout: str = "chw") -> np.ndarray:
    """The CUBA input layer's integer ``bias_mant`` for real inputs ``x`` (N, *input shape).

    ``round(x · input_scale)``; for a netx network without ann2snn metadata ``round(x)``. ``layout="lava"``
    returns Lava's (N, W, H, C) order, ready for ``net.in_layer.neuron.bias_mant`` (one sample: ``[0]``).
    """
    exp = _as_export(model)
    if exp.input_neuron != "cuba":
        raise DataError("this network's input layer is not a CUBA neuron: drive an SDNN (Delta) input with "
                        "input_a_in(), or a neuron-less input with spikes")
    return _layout(exp.encode(x), layout)


def input_a_in(model, x: np.ndarray, *, layout: str = "chw") -> np.ndarray:
    """The frame to send to the input neuron's ``a_in`` every step (SDNN Delta input): ``round(x·input_scale)``."""
    exp = _as_export(model)
    if exp.input_neuron is None:
        raise DataError("this network's input layer has no neuron: feed its first synapse with spikes")
    return _layout(exp.encode(x), layout)


@dataclass
class LoihiSimulationResult:
    """Decoded fixed-point readouts: ``outputs[T]`` (N, n_outputs) in ANN output units (raw for foreign nets)."""

    timesteps: list[int]
    outputs: dict[int, np.ndarray]
    steps: int
    latency: int

    def predictions(self, t: int) -> np.ndarray:
        return self.outputs[t].reshape(len(self.outputs[t]), -1).argmax(axis=1)


def simulate_loihi(model, x: np.ndarray, timesteps=(32, 64, 128), *, batch_size: int = 25,
                   progress: bool = False) -> LoihiSimulationResult:
    """Run ``x`` through the bit-exact fixed-point model and decode the readout at every T.

    ``model``: a :class:`LoihiExport`, a ``.net`` path (with its sidecar when ann2snn wrote it) or a
    ``NetxNetwork``. One run of ``max(T) + latency`` steps per batch gives every T: the readout for T is
    taken after step ``T + latency`` (each layer adds one step of delay).
    """
    exp = _as_export(model)
    ts = sorted({int(t) for t in np.atleast_1d(timesteps)})
    if not ts or ts[0] < 1:
        raise DataError(f"timesteps must be positive integers, got {timesteps}")
    if exp.neuron == "cuba" and ts[-1] > exp.max_timesteps:
        log.warning("T=%d exceeds the %d steps the readout was sized for: its 24-bit accumulator may wrap",
                    ts[-1], exp.max_timesteps)
    x = np.asarray(x)
    if len(x) == 0:
        raise DataError("no input samples")
    steps = exp.steps_for(ts[-1])
    config = exp.fixed_point_config(ts[-1])
    outputs: dict[int, list[np.ndarray]] = {t: [] for t in ts}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(x), unit="img", desc="loihi fixed-point", leave=False)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        res = simulate_fixed_point(exp.network, steps, config=config, record=("s",),
                                   record_layers=(), **exp.drive(xb))
        for t in ts:
            outputs[t].append(exp.decode(res, t))
        if bar is not None:
            bar.update(len(xb))
    if bar is not None:
        bar.close()
    return LoihiSimulationResult(ts, {t: np.concatenate(v) for t, v in outputs.items()}, steps, exp.latency)


def decode(model, raw: np.ndarray, t: int) -> np.ndarray:
    """ANN-unit outputs from a Lava run: ``raw`` is the readout's ``neuron.v`` (CUBA) or the Sigma output
    (SDNN) after ``t + latency`` steps, shape (n_outputs,) or (N, n_outputs); argmax is the prediction."""
    return _as_export(model).decode_readout(raw, t)


def accuracy(model, x: np.ndarray, y: np.ndarray, timesteps=(32, 64, 128), **kw) -> dict[int, float]:
    """Fraction of samples whose fixed-point prediction equals the label, per T."""
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{len(x)} inputs but {len(y)} labels")
    res = simulate_loihi(model, x, timesteps, **kw)
    return {t: float(np.mean(res.predictions(t) == y)) for t in res.timesteps}
