"""Bit-exact numpy simulator of a netx network under Lava 0.10.0's ``fixed_pt`` process models.

This is the project's definition of "what Loihi computes" for a ``.net`` file (``docs/LOIHI_NIR.md`` §2): it
reproduces the lava-dl golden fixtures exactly. Models mirrored (semantics only, no Lava code):

* CUBA/LOIHI -> ``PyLifModelBitAcc`` (``PyLifResetModelBitAcc`` with ``reset_interval``)::

      u = trunc(u * (4096 - iDecay)) + (a_in << 6)      # trunc rounds toward zero; u wraps at 24 bits
      v = trunc(v * (4096 - vDecay)) + u + (bias << 6)  # v saturates at ±(2**23 - 1)
      s = v > (vThMant << 6);  v[s] = 0                 # strict >, reset to zero, u untouched

* SDNN input -> ``PyDeltaModelFixed``; SDNN -> ``PySigmaDeltaModelFixed`` (the residue-carrying model, ReLU);
  SDNN with ``sigma_output`` -> ``PySigmaModelFixed``. Messages are graded: ``activation << spike_exp``.
* Dense -> ``PyDenseModelBitAcc`` after netx's ``optimize_weight_bits`` (including Lava's clipping and
  truncation; see :func:`netx_dense_weights`), with ``DelayDense`` semantics when a layer has delays.
* Conv -> ``PyConvModelFixed``: PyTorch cross-correlation with the stored kernel, wrapped to 24 bits.
  Sums here are exact integers. (Lava's CPU conv goes through float32 torch when torch is installed, so
  Lava itself rounds once a partial sum passes 2**24; binary spikes with 8-bit weights never get there.)

Timing: every synapse delivers at step t what it computed from its input at step t-1 (Lava's ``a_buf``), so
each layer adds one step of latency; neurons send in the step they update. Steps are numbered from 1 and
result index ``t-1`` holds the state right after step t.

The simulator is layer-major: per chunk of ``time_chunk`` steps each synaptic operation runs once over all
(batch × steps) inputs, and only the elementwise neuron updates loop over time. All state is int64; the
int32 ports and 24-bit registers of Lava are applied where Lava applies them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from ann2snn.errors import BackendConstraintError, DataError
from ann2snn.backends.loihi.netx import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
    chw_to_lava,
    lava_to_chw,
)

log = logging.getLogger(__name__)

__all__ = [
    "FixedPointConfig",
    "FixedPointResult",
    "simulate_fixed_point",
    "netx_dense_weights",
    "lava_to_chw",
    "chw_to_lava",
]

_STATE_EXP = 6  # netx fixes state_exp=6 for Delta/SigmaDelta
_ACT_SHIFT = 6  # Lava LIF: a_in, bias (bias_exp=6 from netx) and vth are MSB-aligned by 6 bits
_UV_MAX = 1 << 23  # u and v are 24-bit signed registers
_EXACT = 1 << 53  # float64 sums of integers are exact below this
_EXACT32 = 1 << 24  # ... and float32 sums below this (4-6x faster convolutions for binary spikes)
RECORDABLE = ("s", "u", "v", "sigma")


@dataclass(frozen=True)
class FixedPointConfig:
    """Load/run options that netx's ``hdf5.Network(...)`` takes; the defaults are netx's defaults.

    reset_interval: clear ``u``/``v`` of every CUBA layer periodically (netx builds ``LIFReset``). Lava layer
        L (counting non-flatten layers, and the input layer only if it has a neuron) is cleared at the start
        of steps t with ``t % reset_interval == (reset_offset + 1 + L) % reset_interval``. SDNN ignores it.
    reset_offset: phase of those resets.
    spike_exp: SDNN message exponent; thresholds and biases scale by ``2**(spike_exp + 6)``.
    input_message_bits: for a network without an input neuron, 0 means ``input_spikes`` are binary
        (Lava uses ``x != 0``), > 0 means they are graded and used as they are.
    time_chunk: steps simulated per synaptic batch; bounds memory, never changes results.
    """

    reset_interval: int | None = None
    reset_offset: int = 0
    spike_exp: int = 6
    input_message_bits: int = 0
    time_chunk: int = 32

    def __post_init__(self) -> None:
        if self.reset_interval is not None and self.reset_interval < 1:
            raise ValueError(f"reset_interval must be >= 1, got {self.reset_interval}")
        if self.time_chunk < 1:
            raise ValueError(f"time_chunk must be >= 1, got {self.time_chunk}")
        if not 0 <= self.spike_exp <= 16:
            raise ValueError(f"spike_exp must be in 0..16, got {self.spike_exp}")


@dataclass(frozen=True)
class FixedPointResult:
    """Recorded traces, keyed by netx layer index; every array is int64 of shape (batch, steps, *shape).

    ``s`` is what a layer sends each step: 0/1 spikes for CUBA, graded messages for SDNN, the running sum for
    a Sigma output. ``u``/``v`` are CUBA states and ``sigma`` the SDNN accumulator, all in Lava units (the
    HDF5 integer units times 64 for CUBA ``u``/``v``).
    """

    steps: int
    output_layer: int
    readout_layer: int | None = None
    s: dict[int, np.ndarray] = field(default_factory=dict)
    u: dict[int, np.ndarray] = field(default_factory=dict)
    v: dict[int, np.ndarray] = field(default_factory=dict)
    sigma: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        """What the last layer sends, (batch, steps, *shape)."""
        return self.s[self.output_layer]

    @property
    def readout(self) -> np.ndarray | None:
        """``v`` of a final dense layer without a neuron group (netx's default integrator), else None.

        With iDecay=0/vDecay=4096 that is ``v[t] = (Σ_{t'≤t} a[t'] << 6) + (bias << 6)``: the running sum of
        the synaptic input, in units of 64. ``u`` (the same sum without bias) wraps at 24 bits, so keep
        ``Σ a`` below 2**17 over the simulated steps.
        """
        return None if self.readout_layer is None else self.v[self.readout_layer]


# ----------------------------------------------------------------------------------------------------------
# Integer helpers (Lava's numpy semantics on int32 registers, computed in int64)
# ----------------------------------------------------------------------------------------------------------


def _wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's complement wrap to ``bits`` (Lava's ``signed_clamp``; also numpy's int32 overflow)."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def _shl32(x: np.ndarray, n: int) -> np.ndarray:
    """numpy ``left_shift`` on int32: a count outside 0..31 gives 0 (netx relies on it for negative counts)."""
    return x << n if 0 <= n < 32 else np.zeros_like(x)


def _shr32(x: np.ndarray, n: int) -> np.ndarray:
    """numpy ``right_shift`` on int32: a count outside 0..31 fills with the sign bit."""
    return x >> n if 0 <= n < 32 else np.where(x < 0, -1, 0).astype(x.dtype)


def _wrap_u(u: np.ndarray) -> np.ndarray:
    """Lava's 24-bit wrap of ``u``: one conditional correction (the second test reuses the unwrapped value)."""
    wrapped = np.where(u > _UV_MAX, u - 2 * _UV_MAX, u)
    return _wrap(np.where(wrapped <= -_UV_MAX, u + 2 * _UV_MAX, wrapped), 32)


def _trunc_decay(x: np.ndarray, factor: int) -> np.ndarray:
    """``sign(x*f) * (|x*f| >> 12)``: Lava's 12-bit decay, rounding toward zero."""
    if factor == 4096:  # no decay (CUBA's v here); exactly x
        return x
    if factor == 0:  # full decay (CUBA's u here)
        return np.zeros_like(x)
    p = x * factor
    return np.sign(p) * (np.abs(p) >> 12)


def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """The dense weights Lava runs with after netx loads ``weight``, and the weight exponent.

    netx's ``optimize_weight_bits`` clips a mixed-sign matrix to [-256, 254], picks a sign mode, scales the
    weights up by ``2**scale_bits`` and sets ``weight_exp = -scale_bits``; Lava's bit-accurate Dense then
    re-derives the sign mode, clips to 8 bits and zeroes low bits. The synapse computes
    ``(W_lava @ s) >> -weight_exp``. For integer weights in [-256, 254] with both signs, or all in [0, 255],
    that equals ``W @ s`` exactly. It does not when all weights are ≤ 0 and the most negative one is -2**k
    (Lava clips -256 to -255, then truncation changes the weights), or when all are ≥ 0 with a maximum above
    255 (a negative shift zeroes them all). :func:`ann2snn.backends.loihi.profile.check_network` reports both.

    Raises ValueError for an all-zero matrix (netx fails with OverflowError on it).
    """
    w = np.asarray(weight, dtype=np.int64)
    if not np.any(w):
        raise ValueError("all weights are zero: netx's optimize_weight_bits fails (OverflowError) on it")
    wmax, wmin = int(w.max()), int(w.min())
    if (wmax > 254 and wmin < 0) or (wmin < -256 and wmax > 0):
        log.warning("mixed-sign dense weights in [%d, %d] are clipped to [-256, 254] by netx", wmin, wmax)
        w = np.clip(w, -256, 254)
        wmax, wmin = int(w.max()), int(w.min())
    # netx's sign mode: strictly negative max -> inhibitory; non-negative min -> excitatory; else mixed
    if wmax < 0:
        signed, scale = 0, -256 / wmin
    elif wmin >= 0:
        signed, scale = 0, 255 / wmax
    else:
        signed = 1
        scale = min(127 / wmax if wmax > 0 else np.inf, -128 / wmin)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n_zero_bits = 0  # largest n <= 8 such that every weight is a multiple of 2**n
    for n in range(8, 0, -1):
        if not np.any(w % (1 << n)):
            n_zero_bits = n
            break
    num_weight_bits = 8 - scale_bits - (n_zero_bits - signed)
    weight_exp = -scale_bits
    w = _shl32(w, scale_bits)
    # Lava re-derives the sign mode from the scaled weights: max <= 0 is inhibitory here (netx said max < 0)
    if w.min() >= 0:
        mode = "exc"
        w = np.clip(w, 0, 255)
    elif w.max() <= 0:
        mode = "inh"
        w = -np.clip(-w, 0, 255)
    else:
        mode = "mixed"
        w = np.clip(w, -256, 255)
    n_trunc = 8 - num_weight_bits + (mode == "mixed")
    if mode == "inh":
        w = -_shl32(_shr32(-w, n_trunc), n_trunc)
    else:
        w = _shl32(_shr32(w, n_trunc), n_trunc)
    return w.astype(np.int64), weight_exp


def _exact(op, x: np.ndarray, abs_row_sum: int) -> np.ndarray:
    """``op(x)`` for a linear ``op`` with integer weights, exactly, via float32 or float64 BLAS/conv.

    A floating-point sum of integers is exact while every partial sum stays below 2**24 (float32) or 2**53
    (float64), whatever the summation order: ``op`` gets float32 input when ``max|x|`` times the largest
    absolute weight row sum stays below 2**24 (binary spikes with 8-bit weights always do), else float64.
    Beyond 2**53, x is split into ``hi * 2**k + lo`` and both halves are evaluated exactly. The int64
    combination may wrap, which is harmless: callers wrap to 32 or 24 bits.
    """
    x = np.asarray(x, dtype=np.int64)
    peak = int(np.abs(x).max(initial=0))
    bound = peak * max(abs_row_sum, 1)
    if bound < _EXACT32:
        return np.rint(op(x.astype(np.float32))).astype(np.int64)
    if bound < _EXACT:
        return np.rint(op(x.astype(np.float64))).astype(np.int64)
    k = max(1, 52 - max(abs_row_sum, 1).bit_length())
    lo = x & ((1 << k) - 1)
    hi = x >> k
    return (_exact(op, hi, abs_row_sum) << k) + _exact(op, lo, abs_row_sum)


# ----------------------------------------------------------------------------------------------------------
# Synapses
# ----------------------------------------------------------------------------------------------------------


class _Synapse:
    """One synaptic connection with Lava's one-step ``a_buf`` delay (plus per-synapse delays for dense).

    ``pending`` holds contributions already computed for the next ``max_delay + 1`` steps, so chunked
    simulation gives the same result as stepping one step at a time.
    """

    def __init__(self, layer: ConvLayer | DenseLayer, index: int, graded_input: bool, batch: int, backend: str):
        self.layer = layer
        self.graded_input = graded_input
        out_shape = layer.shape
        if isinstance(layer, DenseLayer):
            try:
                w, self.weight_exp = netx_dense_weights(layer.weight)
            except ValueError as exc:
                raise BackendConstraintError(
                    [(f"{index} (dense)", str(exc), "remove the layer or give it a non-zero weight")], backend
                ) from exc
            delays = layer.delay_matrix()
            if delays is None:
                groups = [(0, w)]
            else:
                # Lava's DelayDense sums delays 0..max_delay only: a negative delay drops the synapse
                groups = [(int(k), np.where(delays == k, w, 0)) for k in np.unique(delays) if k >= 0]
                groups = groups or [(0, np.zeros_like(w))]
            # transposed weights in both float types _exact may evaluate in
            self.groups = [(k, {dt: np.ascontiguousarray(g.T, dtype=dt) for dt in (np.float32, np.float64)})
                           for k, g in groups]
            self.abs_row_sum = int(np.abs(w).sum(axis=1).max())
            self.max_delay = max(k for k, _ in self.groups)
        else:
            self.weight_exp = 0
            self.kernels = {dt: torch.from_numpy(layer.weight.astype(dt)) for dt in (np.float32, np.float64)}
            self.abs_row_sum = int(np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1).max())
            self.max_delay = 0
        self.pending = np.zeros((batch, self.max_delay + 1) + tuple(out_shape), dtype=np.int64)

    def _dense(self, x: np.ndarray, w_t: dict) -> np.ndarray:
        acc = _exact(lambda xf: xf @ w_t[xf.dtype.type], x, self.abs_row_sum)
        return _shl32(acc, self.weight_exp) if self.weight_exp > 0 else _shr32(acc, -self.weight_exp)

    def _conv(self, x: np.ndarray) -> np.ndarray:
        layer = self.layer

        def op(xf: np.ndarray) -> np.ndarray:
            out = torch.nn.functional.conv2d(
                torch.from_numpy(xf), self.kernels[xf.dtype.type], stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, groups=layer.groups,
            )
            return out.numpy()

        return _wrap(_exact(op, x, self.abs_row_sum), 24)  # Lava's conv a_buf is a signed 24-bit value

    def run(self, x: np.ndarray) -> np.ndarray:
        """Synaptic input for the chunk's steps, given the presynaptic messages of the same steps."""
        batch, steps = x.shape[:2]
        if not self.graded_input:
            x = (x != 0).astype(np.int64)  # num_message_bits == 0: Lava reads spikes as booleans
        flat = x.reshape((batch * steps,) + x.shape[2:])
        out_shape = self.pending.shape[2:]
        full = np.zeros((batch, steps + self.max_delay + 1) + out_shape, dtype=np.int64)
        full[:, : self.max_delay + 1] = self.pending
        if isinstance(self.layer, DenseLayer):
            for delay, w in self.groups:
                part = self._dense(flat, w).reshape((batch, steps) + out_shape)
                full[:, 1 + delay : 1 + delay + steps] += part
            full = _wrap(full, 32)  # Dense a_out is an int32 port
        else:
            full[:, 1 : 1 + steps] += self._conv(flat).reshape((batch, steps) + out_shape)
        self.pending = full[:, steps:].copy()
        return full[:, :steps]


# ----------------------------------------------------------------------------------------------------------
# Neurons: state lives in the object; run() loops over the chunk's steps
# ----------------------------------------------------------------------------------------------------------


class _Lif:
    """Lava ``PyLifModelBitAcc`` (or ``PyLifResetModelBitAcc`` when ``reset`` is given)."""

    def __init__(self, neuron: NeuronParams, state_shape: tuple[int, ...], bias: np.ndarray | int,
                 reset: tuple[int, int] | None):
        self.u = np.zeros(state_shape, dtype=np.int64)
        self.v = np.zeros(state_shape, dtype=np.int64)
        self.u_factor = 4096 - neuron.i_decay  # du + ds_offset == iDecay
        self.v_factor = 4096 - neuron.v_decay  # dv + dm_offset == vDecay
        self.bias = np.asarray(bias, dtype=np.int64) << _ACT_SHIFT
        self.vth = neuron.vth_mant << _ACT_SHIFT
        self.reset = reset

    def _u_stays_in_range(self, drive: np.ndarray | None, steps: int) -> bool:
        """Can ``u`` not reach 24 bits this chunk? The decay only shrinks |u|, so |u| stays below
        |u0| + peak drive × (1 + f + f² + ...); then both of Lava's wraps are the identity and can be skipped."""
        peak = 0 if drive is None else int(np.abs(drive).max(initial=0))
        f = self.u_factor / 4096
        reach = peak * steps if f >= 1 else peak / (1 - f)
        return int(np.abs(self.u).max(initial=0)) + reach < _UV_MAX

    def run(self, a: np.ndarray | None, t0: int, steps: int, keep: Collection[str]) -> dict[str, np.ndarray]:
        shape = (self.u.shape[0], steps) + self.u.shape[1:]
        out = {"s": np.zeros(shape, dtype=np.int64)}
        for key in ("u", "v"):
            if key in keep:
                out[key] = np.zeros(shape, dtype=np.int64)
        drive = None if a is None else _wrap(a << _ACT_SHIFT, 32)  # the int32 a_in port, for the whole chunk
        # iDecay = 4096 (an unfiltered current): u is each step's input alone, so all steps' u at once
        u_chunk = _wrap_u(drive) if drive is not None and self.u_factor == 0 else None
        no_wrap = u_chunk is None and self._u_stays_in_range(drive, steps)
        for k in range(steps):
            if self.reset is not None and (t0 + k) % self.reset[0] == self.reset[1]:
                self.u[...] = 0
                self.v[...] = 0
            if u_chunk is not None:
                u = u_chunk[:, k]
            else:
                u = _trunc_decay(self.u, self.u_factor)
                if drive is not None:
                    u = u + drive[:, k] if no_wrap else _wrap(u + drive[:, k], 32)
                if not no_wrap:
                    u = _wrap_u(u)
            v = _trunc_decay(self.v, self.v_factor) + u + self.bias
            v = np.clip(v, -(_UV_MAX - 1), _UV_MAX - 1)
            spikes = v > self.vth
            v[spikes] = 0
            self.u, self.v = u, v
            out["s"][:, k] = spikes
            if "u" in out:
                out["u"][:, k] = u
            if "v" in out:
                out["v"][:, k] = v
        return out


class _SigmaDelta:
    """Lava ``PyDeltaModelFixed`` (``delta_input``), ``PySigmaDeltaModelFixed`` or ``PySigmaModelFixed``."""

    def __init__(self, neuron: NeuronParams, state_shape: tuple[int, ...], bias: np.ndarray | int,
                 spike_exp: int, delta_input: bool):
        scale = 1 << (spike_exp + _STATE_EXP)
        self.kind = "delta" if delta_input else ("sigma" if neuron.sigma_output else "sigma_delta")
        self.in_shift = spike_exp + _STATE_EXP
        self.vth = neuron.vth_mant * scale
        self.bias = _wrap(np.asarray(bias, dtype=np.int64) * scale, 32)
        self.sigma = np.zeros(state_shape, dtype=np.int64)
        self.act = np.zeros(state_shape, dtype=np.int64)
        self.residue = np.zeros(state_shape, dtype=np.int64)

    def _delta(self, act: np.ndarray) -> np.ndarray:
        delta = _wrap(act - self.act + self.residue, 32)
        sent = np.where(np.abs(delta) >= self.vth, delta, 0)
        self.residue = delta - sent
        self.act = act
        return sent >> _STATE_EXP

    def run(self, a: np.ndarray | None, t0: int, steps: int, keep: Collection[str]) -> dict[str, np.ndarray]:
        shape = (self.sigma.shape[0], steps) + self.sigma.shape[1:]
        out = {"s": np.zeros(shape, dtype=np.int64)}
        if "sigma" in keep and self.kind != "delta":
            out["sigma"] = np.zeros(shape, dtype=np.int64)
        zero = np.zeros(self.sigma.shape, dtype=np.int64)
        for k in range(steps):
            a_k = zero if a is None else a[:, k]
            if self.kind == "delta":
                sent = self._delta(_wrap(a_k << self.in_shift, 32))
            else:
                self.sigma = _wrap(self.sigma + a_k, 32)
                if self.kind == "sigma":
                    sent = self.sigma
                else:
                    sent = self._delta(np.maximum(_wrap(self.sigma + self.bias, 32), 0))
            out["s"][:, k] = sent
            if "sigma" in out:
                out["sigma"][:, k] = self.sigma
        return out


# ----------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------


def _full_bias(layer: ConvLayer | DenseLayer) -> np.ndarray | int:
    if layer.bias is None:
        return 0
    if isinstance(layer, ConvLayer) and layer.bias.ndim == 1:
        return layer.bias.reshape(-1, 1, 1)  # per-channel bias broadcast over (H, W)
    return layer.bias


def _as_input(name: str, value: np.ndarray | None, shape: tuple[int, ...], timed: bool) -> np.ndarray | None:
    """Check and normalise an input array: (batch, T, *shape) when ``timed`` else (batch, *shape)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.trunc(arr)):
            raise DataError(f"{name} must hold integers (Lava state is fixed point); got non-integer values")
    elif arr.dtype.kind not in "iub":
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    lead = 2 if timed else 1
    if not timed and arr.shape == shape:
        arr = arr[None]
    if arr.ndim != len(shape) + lead or tuple(arr.shape[lead:]) != tuple(shape):
        want = "(batch, T, " if timed else "(batch, "
        raise DataError(
            f"{name} must have shape {want}{', '.join(map(str, shape))}) in CHW layout, got {arr.shape}"
            + ("" if timed else "; convert Lava (W, H, C) arrays with lava_to_chw()")
        )
    if timed and arr.shape[1] == 0:
        raise DataError(f"{name} has no time steps")
    return arr.astype(np.int64)


def simulate_fixed_point(
    net: NetxNetwork,
    steps: int,
    *,
    input_bias: np.ndarray | None = None,
    input_a_in: np.ndarray | None = None,
    input_spikes: np.ndarray | None = None,
    record: Collection[str] = ("s",),
    record_layers: Collection[int] | None = None,
    config: FixedPointConfig = FixedPointConfig(),
) -> FixedPointResult:
    """Run ``net`` for ``steps`` steps exactly as Lava's ``fixed_pt`` models would.

    How the input is driven (all arrays in PyTorch CHW layout, integers; use :func:`lava_to_chw` for Lava
    (W, H, C) arrays):

    * ``input_bias`` — the input layer neuron's ``bias_mant``, (batch, *shape) or (*shape): constant drive,
      added as ``bias << 6`` every step (how netx's tinynet test feeds its image). CUBA input layers only.
    * ``input_a_in`` — what a source connected to the input neuron's ``a_in`` sends, (batch, T, *shape). Step
      t uses ``[:, (t-1) % T]`` like a Lava ``RingBuffer``, so T=1 repeats one frame (the PilotNet tests).
      Added as ``a << 6`` to a CUBA ``u``; a Delta (SDNN) input encodes it as ``a << (spike_exp + 6)``.
    * ``input_spikes`` — for a network without an input neuron (no input layer, or one without ``neuron``):
      (batch, T, *shape) fed straight into the first synapse, binary unless
      ``config.input_message_bits > 0``; cycles like ``input_a_in``.

    ``record`` picks traces among ``s``, ``u``, ``v`` (CUBA) and ``sigma`` (SDNN), for the layers in
    ``record_layers`` (netx indices; default all). The final layer's ``s`` is always kept, and so are ``u``
    and ``v`` of a final dense layer without a neuron (see :attr:`FixedPointResult.readout`).
    """
    if int(steps) < 1:
        raise DataError(f"steps must be >= 1, got {steps}")
    steps = int(steps)
    unknown = set(record) - set(RECORDABLE)
    if unknown:
        raise DataError(f"cannot record {sorted(unknown)}; choose from {RECORDABLE}")
    n_layers = len(net.layers)
    out_index = max(i for i, l in enumerate(net.layers) if not isinstance(l, FlattenLayer))
    wanted = set(range(n_layers)) if record_layers is None else {int(i) for i in record_layers}
    if wanted - set(range(n_layers)):
        raise DataError(f"record_layers {sorted(wanted - set(range(n_layers)))} are not layer indices")

    first = net.layers[0]
    input_neuron = first.neuron if isinstance(first, InputLayer) else None
    shape_in = net.input_shape
    bias_in = _as_input("input_bias", input_bias, shape_in, timed=False)
    a_in = _as_input("input_a_in", input_a_in, shape_in, timed=True)
    spikes_in = _as_input("input_spikes", input_spikes, shape_in, timed=True)
    if input_neuron is None:
        if bias_in is not None or a_in is not None:
            raise DataError("this network has no input neuron: drive it with input_spikes, not input_bias/input_a_in")
    else:
        if spikes_in is not None:
            raise DataError("the input layer has a neuron: drive it with input_bias or input_a_in, not input_spikes")
        if bias_in is not None and not input_neuron.is_cuba:
            raise DataError("an SDNN (Delta) input layer has no bias: drive it with input_a_in")
    batches = {arr.shape[0] for arr in (bias_in, a_in, spikes_in) if arr is not None}
    if len(batches - {1}) > 1:
        raise DataError(f"inputs disagree on the batch size: {sorted(batches)}")
    batch = max(batches) if batches else 1

    backend = "loihi2"
    stages: list[tuple[int, _Synapse | None, _Lif | _SigmaDelta | None]] = []
    lava_index = 0  # netx's block counter, which sets each LIFReset phase
    graded = config.input_message_bits > 0
    warned_reset = False
    for i, layer in enumerate(net.layers):
        if isinstance(layer, FlattenLayer):
            continue
        if isinstance(layer, InputLayer):
            neuron, synapse, bias = layer.neuron, None, (bias_in if bias_in is not None else 0)
            if neuron is None:
                continue
        else:
            neuron = layer.neuron if isinstance(layer, ConvLayer) else layer.effective_neuron
            synapse = _Synapse(layer, i, graded, batch, backend)
            bias = _full_bias(layer)
        state_shape = (batch,) + tuple(net.shapes[i])
        if neuron.is_cuba:
            reset = None
            if config.reset_interval is not None:
                r = config.reset_interval
                reset = (r, (config.reset_offset + 1 + lava_index) % r)
            pop: _Lif | _SigmaDelta = _Lif(neuron, state_shape, np.broadcast_to(bias, state_shape), reset)
            graded = False  # netx's LIF sends binary spikes (num_message_bits=0)
        else:
            if config.reset_interval is not None and not warned_reset:
                log.warning("reset_interval is ignored by SDNN layers (as in netx)")
                warned_reset = True
            pop = _SigmaDelta(neuron, state_shape, np.broadcast_to(bias, state_shape), config.spike_exp,
                              delta_input=isinstance(layer, InputLayer))
            graded = True  # SDNN messages are graded (16 message bits)
        stages.append((i, synapse, pop))
        lava_index += 1

    if not stages:
        raise DataError("the network has no neuron layer to simulate (only an input layer without a neuron)")

    def keys_for(i: int) -> set[str]:
        keys = set(record) if i in wanted else set()
        if i == out_index:
            keys.add("s")
            last = net.layers[i]
            if isinstance(last, DenseLayer) and last.neuron is None:
                keys |= {"u", "v"}
        return keys

    results: dict[str, dict[int, np.ndarray]] = {k: {} for k in RECORDABLE}
    for i, _, pop in stages:
        for key in keys_for(i):
            if key in ("u", "v") and not isinstance(pop, _Lif):
                continue
            if key == "sigma" and not (isinstance(pop, _SigmaDelta) and pop.kind != "delta"):
                continue
            results[key][i] = np.zeros((batch, steps) + tuple(net.shapes[i]), dtype=np.int64)

    def cycle(arr: np.ndarray, t0: int, n: int) -> np.ndarray:
        idx = np.arange(t0 - 1, t0 - 1 + n) % arr.shape[1]  # Lava RingBuffer: step t sends [(t-1) % T]
        return np.broadcast_to(arr[:, idx], (batch, n) + arr.shape[2:])

    for t0 in range(1, steps + 1, config.time_chunk):
        n = min(config.time_chunk, steps + 1 - t0)
        x = cycle(spikes_in, t0, n) if spikes_in is not None else np.zeros((batch, n) + shape_in, dtype=np.int64)
        drive = cycle(a_in, t0, n) if a_in is not None else None  # only the input neuron is driven directly
        for i, synapse, pop in stages:
            if synapse is not None:
                if isinstance(synapse.layer, DenseLayer):
                    x = x.reshape(batch, n, -1)  # flatten: C·H·W order, as netx feeds a dense layer
                drive = synapse.run(x)
            traces = pop.run(drive, t0, n, keys_for(i))
            for key, arr in traces.items():
                if i in results[key]:
                    results[key][i][:, t0 - 1 : t0 - 1 + n] = arr
            x, drive = traces["s"], None
    log.debug("simulated %d steps of a %d-layer netx network, batch %d", steps, n_layers, batch)
    last = net.layers[out_index]
    readout = out_index if isinstance(last, DenseLayer) and last.neuron is None else None
    return FixedPointResult(steps=steps, output_layer=out_index, readout_layer=readout, **results)
