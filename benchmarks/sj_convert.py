"""Runs INSIDE the SpikingJelly venv (benchmarks/.venv-sj): build a torch module from an exported
ann2snn IR (benchmarks/common.export_ir), convert it with SpikingJelly 2.0.0's rate-coding recipe and
measure accuracy vs T and/or simulation throughput. Prints one JSON line on stdout.

    python sj_convert.py --spec model.json --weights model.npz --data data.npz \
        --mode 99.9% --timesteps 8 16 32 64 [--throughput --reps 5 --batch 100 --threads 2]
data.npz: calib_x, test_x, test_y (float32 preprocessed images, int labels).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class IRModule(nn.Module):
    """Executes the exported layer list; ReLUs are nn.ReLU modules so SpikingJelly replaces them."""

    def __init__(self, spec: dict, arrays):
        super().__init__()
        self.spec = spec
        self.mods = nn.ModuleDict()
        for e in spec["layers"]:
            key = self._key(e["name"])
            op = e["op"]
            if op == "Conv2d":
                w = torch.from_numpy(arrays[f"{e['name']}/w"])
                b = arrays.get(f"{e['name']}/b")
                t, l, bo, r = e["padding"]
                m = nn.Conv2d(w.shape[1] * e["groups"], w.shape[0], tuple(w.shape[2:]), tuple(e["stride"]),
                              (t, l) if (t == bo and l == r) else 0, tuple(e["dilation"]), e["groups"],
                              bias=b is not None)
                m.weight.data.copy_(w)
                if b is not None:
                    m.bias.data.copy_(torch.from_numpy(b))
                self.mods[key] = m
                if not (t == bo and l == r):  # a module, not F.pad: SpikingJelly's step-mode adapter rejects functions
                    self.mods[key + "_pad"] = nn.ZeroPad2d((l, r, t, bo))
            elif op == "Dense":
                w = torch.from_numpy(arrays[f"{e['name']}/w"])
                b = arrays.get(f"{e['name']}/b")
                m = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
                m.weight.data.copy_(w)
                if b is not None:
                    m.bias.data.copy_(torch.from_numpy(b))
                self.mods[key] = m
            elif op == "ReLU":
                self.mods[key] = nn.ReLU()
            elif op == "MaxPool2d":
                # SpikingJelly's converter rejects pad modules: express the padding inside nn.MaxPool2d when it
                # can (symmetric -> padding=, bottom/right only -> ceil_mode; the probe below checks the shape)
                pl, pr, pt, pb = e["pad"]
                sym, tail = (pl == pr and pt == pb), (pl == 0 and pt == 0)
                self.mods[key] = nn.MaxPool2d(tuple(e["kernel"]), tuple(e["stride"]), (pt, pl) if sym else 0,
                                              tuple(e["dilation"]), ceil_mode=bool(any(e["pad"]) and tail and not sym))
                if sym or tail:
                    e = dict(e, pad=[0, 0, 0, 0])
            elif op == "AvgPool2d":
                self.mods[key] = nn.AvgPool2d(tuple(e["kernel"]), tuple(e["stride"]), 0)
            if op in ("MaxPool2d", "AvgPool2d") and any(e["pad"]):
                fill = float("-inf") if op == "MaxPool2d" else 0.0
                self.mods[key + "_pad"] = nn.ConstantPad2d(tuple(e["pad"]), fill)
            elif op == "ScaleShift":
                self.register_buffer(key + "_scale", torch.from_numpy(arrays[f"{e['name']}/scale"]))
                self.register_buffer(key + "_shift", torch.from_numpy(arrays[f"{e['name']}/shift"]))

        self._crop: set[str] = set()
        self._probing = True
        with torch.no_grad():
            self.forward(torch.zeros((1,) + tuple(spec["input_shape"])))
        self._probing = False

    @staticmethod
    def _key(name: str) -> str:
        return "m_" + "".join(c if c.isalnum() else "_" for c in name)

    def forward(self, x):
        vals = {self.spec["input"]: x}
        for e in self.spec["layers"]:
            op, key = e["op"], self._key(e["name"])
            ins = [vals[i] for i in e["inputs"]]
            h = ins[0]
            if op == "Conv2d":
                t, l, b, r = e["padding"]
                if key + "_pad" in self.mods:
                    h = self.mods[key + "_pad"](h)
                y = self.mods[key](h)
            elif op in ("Dense", "ReLU"):
                y = self.mods[key](h)
            elif op in ("MaxPool2d", "AvgPool2d"):
                if key + "_pad" in self.mods:
                    h = self.mods[key + "_pad"](h)
                y = self.mods[key](h)
                if self._probing and tuple(y.shape[-2:]) != tuple(e["crop"]):
                    self._crop.add(key)
                if key in self._crop:  # ceil_mode only: a getitem node (found by the probe, fx cannot branch)
                    y = y[..., :e["crop"][0], :e["crop"][1]]
            elif op == "ScaleShift":
                y = h * getattr(self, key + "_scale") + getattr(self, key + "_shift")
            elif op == "Add":
                y = ins[0]
                for z in ins[1:]:
                    y = y + z
            elif op == "Concat":
                y = torch.cat(ins, dim=e["axis"] + 1)
            elif op == "Flatten":
                y = torch.flatten(h, 1)
            elif op == "Reshape":
                y = h.reshape((h.shape[0],) + tuple(e["shape"]))
            elif op == "Transpose":
                y = h.permute((0,) + tuple(p + 1 for p in e["perm"]))
            elif op == "GlobalAvgPool":
                y = h.mean(dim=(-2, -1), keepdim=True)
            elif op == "GlobalMaxPool":
                y = h.amax(dim=(-2, -1), keepdim=True)
            elif op == "Softmax":
                y = h  # argmax readout: the final softmax changes nothing (SpikingJelly has none)
            else:
                raise NotImplementedError(op)
            vals[e["name"]] = y
        return vals[self.spec["output"]]


def convert_sj(ann, calib_x, mode, batch=100):
    from spikingjelly.activation_based import ann2snn

    dl = [(torch.from_numpy(calib_x[i:i + batch]), torch.zeros(len(calib_x[i:i + batch]), dtype=torch.long))
          for i in range(0, len(calib_x), batch)]
    recipe = ann2snn.RateCodingRecipe(dataloader=dl, mode=mode)
    return ann2snn.Converter(recipe=recipe, device="cpu").convert(ann)


def sim_sj(snn, x, ts):
    """Accumulate outputs over max(ts) steps (constant analog input); returns {T: summed outputs}."""
    from spikingjelly.activation_based import functional

    functional.reset_net(snn)
    acc, out = None, {}
    for t in range(1, max(ts) + 1):
        y = snn(x)
        acc = y.clone() if acc is None else acc + y
        if t in ts:
            out[t] = acc.clone()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", default="99.9%")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    spec = json.loads(open(a.spec).read())
    with np.load(a.weights) as z:
        arrays = {k: z[k] for k in z.files}
    with np.load(a.data) as z:
        calib_x, test_x, test_y = z["calib_x"], z["test_x"], z["test_y"]
    ann = IRModule(spec, arrays).eval()
    res = {"spikingjelly": __import__("spikingjelly").__version__ if hasattr(__import__("spikingjelly"), "__version__")
           else "2.0.0", "torch": torch.__version__, "mode": a.mode, "threads": torch.get_num_threads()}
    with torch.inference_mode():
        t0 = time.perf_counter()
        snn = convert_sj(ann, calib_x, a.mode)
        res["convert_s"] = time.perf_counter() - t0
        if a.accuracy:
            ann_correct, correct = 0, {t: 0 for t in a.timesteps}
            for i in range(0, len(test_x), a.batch):
                xb = torch.from_numpy(test_x[i:i + a.batch])
                yb = torch.from_numpy(test_y[i:i + a.batch])
                ann_correct += int((ann(xb).reshape(len(xb), -1).argmax(1) == yb).sum())
                outs = sim_sj(snn, xb, a.timesteps)
                for t in a.timesteps:
                    correct[t] += int((outs[t].reshape(len(xb), -1).argmax(1) == yb).sum())
            res["ann_accuracy"] = ann_correct / len(test_x)
            res["snn_accuracy"] = {str(t): c / len(test_x) for t, c in correct.items()}
            res["samples"] = int(len(test_x))
        if a.throughput:
            T = max(a.timesteps)
            xb = torch.from_numpy(test_x[:a.batch])
            ann(xb), sim_sj(snn, xb, [2])
            ann_s, sim_s = [], []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                for _ in range(5):
                    ann(xb)
                ann_s.append((time.perf_counter() - t0) / 5)
                t0 = time.perf_counter()
                sim_sj(snn, xb, [T])
                sim_s.append(time.perf_counter() - t0)
            res.update(T=T, batch=a.batch, ann_forward_s=ann_s, sim_s=sim_s,
                       sim_median_s=statistics.median(sim_s),
                       img_steps_per_s=a.batch * T / statistics.median(sim_s),
                       ratio_vs_ann_xT=[s / (f * T) for s, f in zip(sim_s, ann_s)])
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for line in open("/proc/self/status"):  # VmHWM: not inherited across exec, unlike ru_maxrss
        if line.startswith("VmHWM:"):
            res["peak_rss_mb"] = int(line.split()[1]) / 1024.0
    print(json.dumps(res))


if __name__ == "__main__":
    main()
