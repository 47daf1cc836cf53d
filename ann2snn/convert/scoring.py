"""Label-free score of a converted network against its ANN (tuning, the what-if diagnosis, ``auto``)."""

from __future__ import annotations

import numpy as np


def score_network(net, x: np.ndarray, ann_out: np.ndarray, timesteps, *, batch_size: int = 100) -> dict:
    """Agreement of the SNN's argmax with the ANN's and relative output error, at T=``timesteps``.

    ``timesteps``: one T, or several (one simulation up to the largest): then both figures are means over
    them and ``per_t`` gives the agreement at each (absent for one T). ``ann_out``: the ANN's outputs (before any output
    softmax) on ``x``. No labels are used.
    """
    single = np.isscalar(timesteps)
    ts = [int(timesteps)] if single else [int(t) for t in timesteps]
    # float32: tuning and auto choices must give the same result on every machine (not bfloat16's 'auto')
    res = net.simulate(x, ts, batch_size=batch_size, synaptic_dtype="float32")
    ann_pred = ann_out.reshape(len(ann_out), -1).argmax(1)
    scale = max(float(np.linalg.norm(ann_out)), 1e-12)
    agree = {t: float((res.outputs[t].reshape(len(ann_out), -1).argmax(1) == ann_pred).mean()) for t in ts}
    err = [float(np.linalg.norm(res.outputs[t] - ann_out) / scale) for t in ts]
    score = {"agreement": float(np.mean(list(agree.values()))), "relative_error": float(np.mean(err))}
    return score if single else dict(score, per_t=agree)
