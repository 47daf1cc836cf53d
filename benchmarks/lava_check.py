"""Run ann2snn's netx exports in real Lava and compare them with ``simulate_fixed_point`` bit for bit.

Needs Lava, which installs on Python 3.10 only (setup in benchmarks/RESULTS.md, "Real Lava"):

    ann2snn convert vgg_avgpool --target loihi --loihi-neuron cuba --out /tmp/lava/cuba --no-report   # Python 3.11
    /tmp/venv-lava/bin/python benchmarks/lava_check.py /tmp/lava/cuba/vgg_avgpool/vgg_avgpool.net --n 4 --timesteps 32

Per image, Lava (``Loihi2SimCfg(select_tag="fixed_pt")``, the README's recipe: ``reset_interval = T + latency``
for CUBA, a period-1 RingBuffer source and ``spike_exp`` from the sidecar for SDNN) runs ``T + latency``
steps (SDNN: ``latency + 1``), with Monitors on every layer's spikes and on the readout (CUBA: the output
layer's ``v``; SDNN: the Sigma output). The same image goes through ``simulate_fixed_point``; the script
prints, per image, whether every recorded value of every step is equal, or the first difference (layer,
step, neuron). Exit code 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def lava_run(path: str, exp, x: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """One image through Lava: {"layer i": spikes (steps, *CHW shape)} and {"readout": (steps, n)}."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io
    from lava.proc.monitor.process import Monitor

    from ann2snn import loihi
    from ann2snn.backends.loihi.netx import lava_to_chw

    if exp.neuron == "cuba":
        net = netx.hdf5.Network(net_config=path, reset_interval=steps)
        net.in_layer.neuron.bias_mant.init = loihi.input_bias(exp, x[None], layout="lava")[0]
    else:
        net = netx.hdf5.Network(net_config=path, spike_exp=exp.spike_exp)
        frame = loihi.input_a_in(exp, x[None], layout="lava")[0][..., None]
        src = io.source.RingBuffer(data=frame)
        src.s_out.connect(net.in_layer.neuron.a_in)
    monitors = {}
    for i, layer in enumerate(net.layers):
        if hasattr(layer, "neuron"):
            m = Monitor()
            m.probe(layer.neuron.s_out, steps)
            monitors[f"layer {i}"] = (m, layer.neuron, "s_out")
    if exp.neuron == "cuba":
        m = Monitor()
        m.probe(net.out_layer.neuron.v, steps)
        monitors["readout"] = (m, net.out_layer.neuron, "v")
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    out = {}
    for key, (m, proc, var) in monitors.items():
        data = np.asarray(m.get_data()[proc.name][var])  # (steps, *Lava shape)
        out[key] = lava_to_chw(data) if data.ndim == 4 else data
    net.stop()
    return out


def ours(exp, x: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    from ann2snn.backends.loihi.fixed_point import simulate_fixed_point
    from ann2snn.backends.loihi.netx import FlattenLayer

    config = exp.fixed_point_config(steps - exp.latency) if exp.neuron == "cuba" else exp.fixed_point_config(1)
    res = simulate_fixed_point(exp.network, steps, record=("s", "v"), config=config, **exp.drive(x[None]))
    idx = [i for i, layer in enumerate(exp.network.layers) if not isinstance(layer, FlattenLayer)]
    out = {}
    for lava_index, i in enumerate(idx):  # netx builds no block for a flatten layer
        if i in res.s:
            out[f"layer {lava_index}"] = res.s[i][0]
    if exp.neuron == "cuba":
        out["readout"] = res.readout[0]
    return out


def first_difference(a: dict, b: dict) -> str | None:
    for key in sorted(set(a) & set(b)):
        x, y = np.asarray(a[key]).reshape(len(a[key]), -1), np.asarray(b[key]).reshape(len(b[key]), -1)
        if x.shape != y.shape:
            return f"{key}: shape {x.shape} (Lava) vs {y.shape} (ann2snn)"
        bad = np.argwhere(x != y)
        if len(bad):
            t, k = bad[0]
            return f"{key}: step {t}, neuron {k}: Lava {x[t, k]} vs ann2snn {y[t, k]}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nets", nargs="+", help=".net files written by ann2snn (with their .loihi.json sidecar)")
    ap.add_argument("--n", type=int, default=4, help="test images of the zoo sample to run (default 4)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--timesteps", type=int, default=32, help="CUBA: T (Lava runs T + latency steps)")
    ap.add_argument("--sample-model", default="vgg_avgpool", help="zoo model whose bundled test images to use")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from ann2snn import loihi
    from ann2snn.data import load_zoo_sample

    sample = load_zoo_sample(a.sample_model)
    xs, ys = sample.test_x[a.start:a.start + a.n], sample.test_y[a.start:a.start + a.n]
    report, failed = [], False
    for path in a.nets:
        exp = loihi.load(path)
        steps = exp.steps_for(a.timesteps) if exp.neuron == "cuba" else exp.latency + 1
        for k, (x, y) in enumerate(zip(xs, ys)):
            t0 = time.perf_counter()
            lava, mine = lava_run(path, exp, x, steps), ours(exp, x, steps)
            diff = first_difference(lava, mine)
            compared = sorted(set(lava) & set(mine))
            t = a.timesteps if exp.neuron == "cuba" else 1
            pred = int(np.argmax(loihi.decode(exp, lava["readout"][-1] if exp.neuron == "cuba"
                                              else lava[compared[-1]][-1], t)))
            row = dict(net=path, neuron=exp.neuron, image=a.start + k, label=int(y), lava_prediction=pred,
                       steps=steps, compared=compared, equal=diff is None, first_difference=diff,
                       seconds=round(time.perf_counter() - t0, 1))
            report.append(row)
            failed |= diff is not None
            print(f"{path} [{exp.neuron}] image {a.start + k}: {len(compared)} traces x {steps} steps "
                  f"{'all equal' if diff is None else 'DIFFER: ' + diff}; Lava predicts {pred} (label {int(y)}) "
                  f"[{row['seconds']} s]", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
