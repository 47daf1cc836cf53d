"""The quantized network and its per-layer report, the options of ``quantize``, and the helpers the CUBA and
SDNN paths share."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ann2snn.backends.loihi.lowering import Stage
from ann2snn.backends.loihi.netx import ConvLayer, DenseLayer, FlattenLayer, NetxNetwork, NeuronParams
from ann2snn.ir import nodes as ir

U_LIMIT = 1 << 17  # |a| (per step, hidden) and |Σ a| (readout) must stay below this: u = a << 6 is 24-bit
MESSAGE_MAX = (1 << 15) - 1  # SDNN graded spikes: netx's num_message_bits = 16 (signed)


@dataclass(frozen=True)
class QuantizationOptions:
    """Knobs of :func:`quantize` (the defaults are what ``export_loihi`` uses).

    neuron: ``cuba`` (binary spikes, IF as CUBA iDecay=4096 vDecay=0) or ``sdnn`` (graded sigma-delta).
    max_timesteps: CUBA: the readout accumulator is sized so that T up to this never overflows.
    input_layer: CUBA: ``current`` (default) makes the first Conv/Gemm + IF the netx input layer, driven by
        its analog input current ``round((W·x + b)·S)`` as bias (the host computes that first linear op, as
        the float simulator does); ``pixels`` adds one IF input neuron per input value, driven by
        ``round(x·S_in)`` (rates are then limited to 1/n by the reset to zero, which costs accuracy).
        SDNN always uses a Delta input layer of the input's shape.
    input_rate: CUBA ``pixels``: firing rate of an input neuron at the largest input value (1 = every step).
    scale_tolerance: S search: the largest S whose error is within (1 + tolerance) of the minimum.
    sdnn_threshold: SDNN: delta threshold in normalized units (a fraction of each layer's λ).
    sdnn_activation_max: SDNN: assumed largest normalized activation when no calibration data is given.
    sdnn_spike_exp: SDNN: netx's ``spike_exp`` the file is made for (load it with
        ``netx.hdf5.Network(net_config=..., spike_exp=...)``): the input message is ``a_in << spike_exp``
        and biases/thresholds are applied ``<< (spike_exp + 6)``. netx's default 6 costs 6 bits of bias
        resolution and of input range in the 24-bit conv registers; 0 (the default here) keeps them.
    sdnn_weight_target: SDNN: integer weight magnitude every row should reach (128 = 7 bits); message units
        are planned so that the 24-bit conv registers leave room for it in all rows but the
        ``sdnn_row_quantile`` fraction with the smallest weights (see ``_plan_sdnn``).
    threshold_percentile, threshold_max: CUBA per-channel scales (see the module docstring): the layer's
        threshold scale V is this percentile of the channels' weight-optimal scales S*_c, and a channel uses
        S_c = clip(S*_c, V/threshold_max, V), i.e. its threshold V/S_c is between 1 and threshold_max
        (unbounded by default: a capped threshold clips the weights instead).
    time_dilation: CUBA: every IF threshold ×this (spikes worth as much more, rates that much lower): fewer
        coincident input spikes per step, so less overshoot lost to the reset to zero, and a finer rate
        staircase for constant inputs, at the price of fewer spikes per T.
    input_dilation: CUBA ``current`` input layer: its own time dilation (default: ``time_dilation``). Its
        constant bias with reset to zero gives rates 1/n only (n >= the dilation), so dilation trades the
        coarseness of that staircase against the number of spikes.
    current_decay: CUBA hidden neurons' ``iDecay`` (1..4096). 4096 makes ``u`` each step's synaptic input
        alone; below it ``u`` low-pass filters the input over about 4096/iDecay steps and every input unit
        delivers 4096/iDecay units to ``v`` in all, so vThMant and biases are scaled by that (same
        normalized thresholds). The smoother per-step input leaves less overshoot for the reset to zero.
    """

    input_layer: str = "current"
    input_rate: float = 1.0
    scale_tolerance: float = 0.01
    threshold_percentile: float = 50.0
    threshold_max: float = 1e9
    time_dilation: float = 1.5
    input_dilation: float | None = None
    current_decay: int = 2048
    sdnn_threshold: float = 1.0 / 256
    sdnn_activation_max: float = 4.0
    sdnn_weight_target: float = 64.0
    sdnn_spike_exp: int = 0
    sdnn_row_quantile: float = 0.5

    def __post_init__(self) -> None:
        if self.input_layer not in ("current", "pixels"):
            raise ValueError(f"input_layer must be 'current' or 'pixels', got {self.input_layer!r}")
        if not 0 < self.input_rate <= 1:
            raise ValueError(f"input_rate must be in (0, 1], got {self.input_rate}")
        if self.scale_tolerance < 0 or self.sdnn_threshold < 0 or self.sdnn_activation_max <= 0:
            raise ValueError("scale_tolerance and sdnn_threshold must be >= 0, sdnn_activation_max > 0")
        if not 0 <= int(self.sdnn_spike_exp) <= 16:
            raise ValueError(f"sdnn_spike_exp must be in 0..16, got {self.sdnn_spike_exp}")
        if self.time_dilation < 1 or (self.input_dilation is not None and self.input_dilation < 1):
            raise ValueError(f"time_dilation and input_dilation must be >= 1, got {self.time_dilation}, "
                             f"{self.input_dilation}")
        if not isinstance(self.current_decay, (int, np.integer)) or not 1 <= self.current_decay <= 4096:
            raise ValueError(f"current_decay must be an integer iDecay in 1..4096, got {self.current_decay!r}")
        if not 0 <= self.threshold_percentile <= 100 or self.threshold_max < 1:
            raise ValueError("threshold_percentile must be in [0, 100] and threshold_max >= 1")


@dataclass(frozen=True)
class LayerQuantization:
    """What quantization did to one netx layer (the per-layer report).

    scale: the layer's reference scale (CUBA: the threshold scale V+1, i.e. vThMant+1 per unit threshold;
    SDNN: the median per-channel weight scale). scale_min/scale_max: range of the per-output-channel weight
    scales. weight_error / bias_error: relative L2 error ‖Q/S − x‖/‖x‖. threshold_min/max: CUBA effective
    thresholds per channel in normalized units ((vThMant+1)/S_c; 1 = the converted graph's); SDNN: the
    delta threshold per channel. message_unit_min: SDNN: smallest message units per normalized unit.
    """

    index: int
    type: str
    name: str
    nodes: tuple[str, ...]
    scale: float
    vth_mant: int | None
    weight_max: int | None
    weight_error: float | None
    bias_error: float | None
    weights_clipped: int = 0
    biases_clipped: int = 0
    scale_min: float | None = None
    scale_max: float | None = None
    threshold_min: float | None = None
    threshold_max: float | None = None
    message_unit_min: float | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class HostLayer:
    """The first linear op, computed on the host when the netx input layer is driven by its current.

    ``bias_mant = clip(round((W·x + b)·scale), -limit, limit)`` with W, b in the units of the raw input x
    (PyTorch layouts); the result has the netx input layer's (C, H, W) or (N,) shape.
    """

    kind: str  # "conv" or "dense"
    weight: np.ndarray
    bias: np.ndarray | None
    in_shape: tuple[int, ...]
    scale: float | np.ndarray  # scalar or per output channel
    limit: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def current(self, x: np.ndarray) -> np.ndarray:
        """Float input current (W·x + b) for x (N, *in_shape), float64."""
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        w = torch.from_numpy(np.asarray(self.weight, np.float64))
        with torch.no_grad():
            if self.kind == "conv":
                y = torch.nn.functional.conv2d(xt, w, stride=self.stride, padding=self.padding,
                                               dilation=self.dilation, groups=self.groups)
            else:
                y = xt.reshape(len(xt), -1) @ w.T
        y = y.numpy()
        if self.bias is not None:
            y = y + np.asarray(self.bias, np.float64).reshape((-1,) + (1,) * (y.ndim - 2))
        return y

    def bias_mant(self, x: np.ndarray) -> np.ndarray:
        cur = self.current(x)
        scale = np.asarray(self.scale, np.float64)
        scale = scale.reshape((-1,) + (1,) * (cur.ndim - 2)) if scale.ndim else scale
        return np.clip(np.rint(cur * scale), -self.limit, self.limit).astype(np.int64)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "weight": np.asarray(self.weight).tolist(),
                "bias": None if self.bias is None else np.asarray(self.bias).tolist(),
                "in_shape": list(self.in_shape), "scale": np.asarray(self.scale).tolist(), "limit": self.limit,
                "stride": list(self.stride), "padding": list(self.padding), "dilation": list(self.dilation),
                "groups": self.groups}

    @classmethod
    def from_dict(cls, d: dict) -> "HostLayer":
        return cls(kind=str(d["kind"]), weight=np.asarray(d["weight"], np.float64),
                   bias=None if d["bias"] is None else np.asarray(d["bias"], np.float64),
                   in_shape=tuple(int(v) for v in d["in_shape"]), scale=_scalar_or_array(d["scale"]),
                   limit=int(d["limit"]),
                   stride=tuple(d["stride"]), padding=tuple(d["padding"]), dilation=tuple(d["dilation"]),
                   groups=int(d["groups"]))


@dataclass(frozen=True)
class QuantizedNetwork:
    """A netx network plus what is needed to drive and decode it.

    input_scale: integer input per unit of x (CUBA ``pixels``: bias_mant = round(x·input_scale); SDNN: a_in);
        with ``host_layer`` the input layer's bias comes from it instead.
    readout_scale: integer readout units per ANN output unit, scalar or per output (CUBA: per step; SDNN:
        Sigma units).
    readout_bias: float readout bias in ANN output units, added exactly on the host when decoding (CUBA also
        holds it, quantized, as the readout layer's bias).
    output_unit: ANN value of one readout unit (the converted graph's output unit, per output).
    """

    network: NetxNetwork
    neuron: str
    layers: tuple[LayerQuantization, ...]
    input_scale: int
    readout_scale: float | np.ndarray
    readout_bias: np.ndarray | None
    output_unit: np.ndarray
    options: QuantizationOptions
    warnings: tuple[str, ...] = ()
    host_layer: HostLayer | None = None
    max_timesteps: int = 128

    @property
    def latency(self) -> int:
        """Lava layer index of the readout = steps from the input neuron to the readout."""
        return sum(1 for layer in self.network.layers if not isinstance(layer, FlattenLayer)) - 1


def _scalar_or_array(v):
    a = np.asarray(v, np.float64)
    return float(a) if a.ndim == 0 else a


def rowwise(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0], -1)


def broadcast_in(w: np.ndarray, per_input: np.ndarray, groups: int = 1) -> np.ndarray:
    """``w`` with each input channel/feature i multiplied by ``per_input[i]`` (conv groups honoured)."""
    per_input = np.asarray(per_input, np.float64)
    if w.ndim == 2:
        return w * per_input[None, :]
    return w * per_input[ir.conv_input_channels(*w.shape[:2], groups)][:, :, None, None]


def per_row(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A per-output-channel vector shaped to broadcast against ``w``."""
    return np.asarray(values, np.float64).reshape((-1,) + (1,) * (w.ndim - 1))


def layer_report(index: int, ltype: str, stage: Stage, scale: float, vth: int | None, w: np.ndarray,
                  w_int: np.ndarray, s_rows: np.ndarray, b: np.ndarray | None, b_int: np.ndarray | None,
                  b_div: np.ndarray | None, **extra) -> LayerQuantization:
    """Errors of a layer quantized with per-row scales ``s_rows`` (bias_int = b·b_div)."""
    sr = per_row(s_rows, w)
    werr = float(np.linalg.norm(w_int / sr - w) / max(np.linalg.norm(w), 1e-300))
    wclip = int(np.count_nonzero(np.abs(w * sr - w_int) > 1.0 + 1e-9))
    berr, bclip = None, 0
    if b is not None and np.any(b):
        qb = (np.zeros_like(b) if b_int is None else b_int) / b_div
        berr = float(np.linalg.norm(qb - b) / np.linalg.norm(b))
        bclip = int(np.count_nonzero(np.abs(b * b_div - (0 if b_int is None else b_int)) > 0.5 + 1e-9))
    return LayerQuantization(
        index=index, type=ltype, name=stage.name, nodes=stage.nodes, scale=float(scale), vth_mant=vth,
        weight_max=int(np.abs(w_int).max()), weight_error=werr, bias_error=berr, weights_clipped=wclip,
        biases_clipped=bclip, scale_min=float(np.min(s_rows)), scale_max=float(np.max(s_rows)), **extra)


def add_flatten_layer(stage: Stage, layers: list, reports: list, per_channel: np.ndarray) -> np.ndarray:
    """Append a netx flatten layer and its report; returns the per-channel vector expanded per feature."""
    layers.append(FlattenLayer())
    reports.append(LayerQuantization(len(layers) - 1, "flatten", stage.name, stage.nodes, 1.0, None, None, None, None))
    return flatten_vector(per_channel, stage)


def netx_layer(stage: Stage, w_int: np.ndarray, b_int: np.ndarray | None, neuron: NeuronParams | None):
    if stage.kind in ("conv", "pool"):
        return ConvLayer(weight=w_int, shape=stage.out_shape, neuron=neuron, stride=stage.stride,
                         padding=stage.padding, dilation=stage.dilation, groups=stage.groups, bias=b_int)
    return DenseLayer(weight=w_int, neuron=neuron, bias=b_int)


def nonzero_int_bias(b: np.ndarray | None) -> np.ndarray | None:
    return None if b is None or not np.any(b) else b.astype(np.int64)


def layer_kind(stage: Stage) -> str:
    return {"conv": "conv", "pool": "conv", "dense": "dense", "readout": "dense", "flatten": "flatten"}[stage.kind]


def flatten_vector(vec: np.ndarray, stage: Stage) -> np.ndarray:
    """A per-channel vector expanded to the C·H·W features of a flatten."""
    vec = np.asarray(vec, np.float64).reshape(-1)
    n = int(np.prod(stage.out_shape))
    return np.repeat(vec, n // len(vec)) if len(vec) != n else vec
