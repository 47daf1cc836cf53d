"""Energy estimate of a rate-coded SNN against its ANN (H-MT Eq. 31, Horowitz ISSCC'14 45 nm figures).

    E_SNN / E_ANN = (first-layer MACs x E_MAC + SOPs x E_AC) / (ANN MACs x E_MAC)

SOPs are the synaptic operations counted by the simulator (|spikes| x fan-out of every IF layer). The
first layer receives the analog input as a constant current: its MACs are computed once per sample
(that is how the simulator runs it). ANN MACs are every op's multiply-accumulates per sample.
Two sets of per-op energies are reported: 32-bit float (E_MAC 4.6 pJ, E_AC 0.9 pJ) and 8-bit integer
(8-bit multiply 0.2 + add 0.03 = 0.23 pJ per MAC; an integer add 0.03 pJ per SOP, the low end of the
quoted 0.03-0.1 pJ). The ratio is a first-order estimate: it ignores memory traffic and neuron updates.
"""

from __future__ import annotations

from ann2snn.ir import nodes as ir
from ann2snn.ir.snn import IF

FP32 = {"e_mac_pj": 4.6, "e_ac_pj": 0.9}
INT8 = {"e_mac_pj": 0.23, "e_ac_pj": 0.03}
NOTE = ("E_SNN/E_ANN = (first-layer MACs x E_MAC + SOPs x E_AC) / (ANN MACs x E_MAC); fp32: E_MAC 4.6 pJ, "
        "E_AC 0.9 pJ; int8: E_MAC 0.23 pJ (0.2 mult + 0.03 add), E_AC 0.03 pJ (Horowitz 45 nm). "
        "First-layer MACs are counted once per sample (constant analog input current); "
        "memory traffic and neuron updates are not counted.")


def first_layer_macs(snn) -> int:
    """MACs of the ops that depend only on the analog input (run once per sample, not per step)."""
    macs = snn.graph.macs()
    static = snn.static_tensors()
    return int(sum(macs[n.name] for n in snn.graph.nodes if n.name in static))


def downstream_macs(graph) -> dict[str, int]:
    """For each IF layer, the MACs of the ops its spikes feed (through layout ops and Concat)."""
    macs = graph.macs()
    out = {}
    for n in graph.nodes:
        if not isinstance(n, IF):
            continue
        total, frontier, seen = 0, [n.name], set()
        while frontier:
            t = frontier.pop()
            for u in graph.users(t):
                if u.name in seen:
                    continue
                seen.add(u.name)
                if u.is_layout or isinstance(u, ir.Concat):
                    frontier.append(u.name)
                else:
                    total += int(macs[u.name])
        out[n.name] = total
    return out


def _figures(e: dict, first: int, ann_macs: int, sops: dict[str, float]) -> dict:
    ann_pj = ann_macs * e["e_mac_pj"]
    snn_pj = {t: first * e["e_mac_pj"] + s * e["e_ac_pj"] for t, s in sops.items()}
    return dict(e, ann_pj=float(ann_pj), snn_pj={t: float(v) for t, v in snn_pj.items()},
                ratio={t: (float(v / ann_pj) if ann_pj > 0 else None) for t, v in snn_pj.items()})


def energy_estimate(layers: dict[str, dict], timesteps, first_macs: int, ann_macs: int) -> dict:
    """The report's ``energy`` block from per-layer ``sops_per_sample`` (keyed by str(T))."""
    sops = {str(t): float(sum(lay["sops_per_sample"][str(t)] for lay in layers.values())) for t in timesteps}
    return {"note": NOTE, "first_layer_macs": int(first_macs), "ann_macs": int(ann_macs), "sops_per_sample": sops,
            "fp32": _figures(FP32, first_macs, ann_macs, sops), "int8": _figures(INT8, first_macs, ann_macs, sops)}


def ratio_at(energy: dict, t: int, kind: str = "fp32") -> float | None:
    return energy[kind]["ratio"].get(str(t))
