"""Label-free score of a converted network against its ANN (used by tuning and the what-if diagnosis)."""

from __future__ import annotations

import numpy as np


def score_network(net, x: np.ndarray, ann_out: np.ndarray, timesteps: int, *, batch_size: int = 100) -> dict:
    """Agreement of the SNN's argmax with the ANN's and relative output error, at T=``timesteps``.

    ``ann_out``: the ANN's outputs (before any output softmax) on ``x``. No labels are used.
    """
    t = int(timesteps)
    res = net.simulate(x, [t], batch_size=batch_size)
    ann_pred = ann_out.reshape(len(ann_out), -1).argmax(1)
    out = res.outputs[t]
    agree = float((out.reshape(len(out), -1).argmax(1) == ann_pred).mean())
    err = float(np.linalg.norm(out - ann_out) / max(float(np.linalg.norm(ann_out)), 1e-12))
    return {"agreement": agree, "relative_error": err}

