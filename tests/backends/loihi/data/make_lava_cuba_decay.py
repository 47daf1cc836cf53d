"""Regenerate ``lava_cuba_decay.json``: Lava's own fixed-point CUBA neurons with a decaying current.

Every lava-dl fixture in ``shared/lava_fixtures`` uses iDecay = 4096 (no current memory), while ann2snn's CUBA
export uses iDecay = 2048 by default; this records Lava's answer for that path. Needs Lava, which installs on
Python 3.10 only (not an ann2snn dependency)::

    python3.10 -m venv lava && lava/bin/pip install lava-nc==0.10.0
    lava/bin/python tests/backends/loihi/data/make_lava_cuba_decay.py tests/backends/loihi/data/lava_cuba_decay.json

Network: a RingBuffer of binary spikes -> Dense (even 8-bit weights, both signs) -> LIF(du = iDecay - 1,
dv = vDecay, bias_exp = 6), run with ``Loihi2SimCfg(select_tag="fixed_pt")``; u, v and spikes of every step.
"""

import json
import sys

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor


def run_case(seed: int, i_decay: int, v_decay: int, vth: int, n_in: int = 6, n_out: int = 5, steps: int = 24) -> dict:
    rng = np.random.default_rng(seed)
    spikes = (rng.random((n_in, steps)) < 0.4).astype(np.int32)
    weight = 2 * rng.integers(-60, 100, (n_out, n_in))
    bias = rng.integers(-300, 600, n_out)
    src = RingBuffer(data=spikes)
    dense = Dense(weights=weight)
    lif = LIF(shape=(n_out,), du=i_decay - 1, dv=v_decay, vth=vth, bias_mant=bias, bias_exp=6)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    monitors = {}
    for name, port in (("u", lif.u), ("v", lif.v), ("s", lif.s_out)):
        monitors[name] = Monitor()
        monitors[name].probe(port, steps)
    lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    traces = {name: m.get_data()[lif.name]["s_out" if name == "s" else name].astype(int).tolist()
              for name, m in monitors.items()}
    lif.stop()
    return {"i_decay": i_decay, "v_decay": v_decay, "vth": vth, "steps": steps, "spikes": spikes.tolist(),
            "weight": weight.tolist(), "bias": bias.tolist(), **traces}


if __name__ == "__main__":
    cases = [run_case(7, 2048, 0, 400), run_case(8, 1500, 0, 300), run_case(9, 2048, 700, 250)]
    doc = {"about": "Lava 0.10.0, Loihi2SimCfg(select_tag='fixed_pt'): RingBuffer spikes (input x step) -> Dense "
                    "-> LIF(du=iDecay-1, dv=vDecay, bias_exp=6); u, v, s rows are steps 1..T (make_lava_cuba_decay.py)",
           "cases": cases}
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f)
