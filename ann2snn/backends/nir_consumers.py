"""Run ann2snn's NIR files (``semantics="nir"``) in snnTorch, Norse and Sinabs, as their users would.

Each consumer is loaded through its documented import or, where that import changes what the file means,
the thinnest fix of the consumer's own bug (found on snnTorch 1.0.0, Norse 1.1.0 and Sinabs 3.1.3 with
nir 1.0.8 and nirtorch 2.6; the README's NIR section shows the same code):

- **snnTorch** ``snntorch.import_nir.import_from_nir`` maps NIR's IF to ``Leaky(beta=0.9)`` with reset
  by subtraction: a leaky neuron. Fix: ``beta = 1``, ``reset_mechanism = "zero"`` and ``init_hidden = True``
  on every Leaky (without it a Leaky returns ``(spikes, mem)`` and the next layer receives the pair).
- **Norse** ``norse.torch.from_nir`` and **Sinabs** ``sinabs.from_nir`` build a ``nirtorch.load`` executor,
  which runs the nodes depth first: at a residual join one branch arrives a step late, and the graph returns
  the last node it ran instead of the ``Output``. Fix: ``nirtorch.nir_to_torch`` (what snnTorch uses), with
  the consumer's own neuron for ``IF``.
- **Sinabs** maps IF to ``IAFSqueeze`` with several spikes per step (``MultiSpike``), reset by subtraction
  and v clipped at -threshold; NIR's IF emits one spike and resets to v_reset. Fix: ``SingleSpike``,
  ``MembraneReset()``, ``min_v_mem=None``. ``pip install sinabs`` pins nir <= 1.0.4 and so brings nirtorch
  2.0.2, whose ``nir_to_torch`` fails on residual joins: install ``nirtorch>=2.6`` and ``nir>=1.0.6`` beside it
  (``--no-deps``; Sinabs' NIR import works with them). The files themselves read with nir 1.0.4 too.
- nirtorch's default ``Affine`` map leaves the bias at its random init (it sets ``weight.bias``), and
  nirtorch 2.0.2 has no ``Flatten`` map: both are given here.

:func:`run` returns the output summed over ``timesteps`` steps (the readout is ``readout="current"``):
its argmax is the prediction, divided by T the estimate. Nothing here is imported by the rest of ann2snn.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

CONSUMERS = ("snntorch", "norse", "sinabs")
PACKAGES = {"snntorch": "snntorch", "norse": "norse", "sinabs": "sinabs"}


def versions() -> dict[str, str | None]:
    """Installed version of each consumer and of nir / nirtorch (None when absent)."""
    out = {}
    for name in (*PACKAGES.values(), "nir", "nirtorch"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load(consumer: str, graph, *, batch_size: int | None = None):
    """The torch module ``consumer`` builds from ``graph`` (a ``nir.NIRGraph``), with the fixes above.
    ``batch_size`` is needed by Sinabs (its neurons fold time into the batch axis)."""
    if consumer == "snntorch":
        import snntorch
        from snntorch.import_nir import import_from_nir

        model = import_from_nir(graph)
        for module in model.modules():
            if isinstance(module, snntorch.Leaky):
                module.beta = _tensor(1.0)
                module.reset_mechanism = "zero"
                module.init_hidden = True
        return model
    import nir
    import nirtorch

    maps = {nir.Affine: _affine, nir.Flatten: _flatten}
    if consumer == "norse":
        import norse.torch as norse

        maps[nir.IF] = lambda n: norse.IAFCell(norse.IAFParameters(v_th=_tensor(n.v_threshold)))
    elif consumer == "sinabs":
        import sinabs.layers as sl
        from sinabs.activation import MembraneReset, SingleSpike

        if batch_size is None:
            raise ValueError("Sinabs needs batch_size")
        maps[nir.IF] = lambda n: sl.IAFSqueeze(batch_size=batch_size, spike_threshold=_uniform(n.v_threshold),
                                               spike_fn=SingleSpike, reset_fn=MembraneReset(), min_v_mem=None)
    else:
        raise ValueError(f"consumer={consumer!r} (allowed: {', '.join(CONSUMERS)})")
    return nirtorch.nir_to_torch(graph, maps)


def run(consumer: str, graph, x: np.ndarray, timesteps: int, *, batch_size: int = 50) -> np.ndarray:
    """The output of ``graph`` run by ``consumer`` on ``x`` (the same input every step), summed over
    ``timesteps`` steps: (N, outputs)."""
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], np.float32))
            if consumer == "sinabs":  # time folded into the batch axis: (B*T, ...), each sample's steps together
                model = load(consumer, graph, batch_size=len(xb))
                seq = xb.unsqueeze(1).expand(-1, timesteps, *xb.shape[1:]).reshape(-1, *xb.shape[1:])
                outs.append(_first(model(seq)).reshape(len(xb), timesteps, -1).sum(1).numpy())
                continue
            model, state, total = load(consumer, graph), None, 0
            for _ in range(timesteps):
                out = model(xb, state)
                out, state = out if isinstance(out, tuple) else (out, None)
                total = total + out
            outs.append(total.reshape(len(xb), -1).numpy())
    return np.concatenate(outs)


def _tensor(v):
    import torch

    return torch.as_tensor(np.asarray(v, np.float32))


def _uniform(v) -> float:
    values = np.unique(np.asarray(v))
    if values.size != 1:
        raise ValueError("Sinabs' IAF takes one threshold per layer; ann2snn's nir form has threshold 1 everywhere")
    return float(values[0])


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _affine(node):
    import torch

    layer = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
    layer.weight.data = torch.from_numpy(np.asarray(node.weight, np.float32))
    layer.bias.data = torch.from_numpy(np.asarray(node.bias, np.float32))
    return layer


def _flatten(node):
    import torch

    return torch.nn.Flatten(start_dim=int(node.start_dim), end_dim=int(node.end_dim))
