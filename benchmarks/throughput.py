"""Simulation throughput vs the ANN's own forward pass x T, and vs SpikingJelly 2.0.0.

    python benchmarks/throughput.py --model vgg_avgpool --T 64 --batch 100 --threads 2 --reps 5

Everything that is compared is measured in the SAME process run, interleaved, on the same batch with
the same number of threads: per repetition, the ANN forward (torch, ann2snn's IR reference kernels in NCHW
and channels-last, the same ANN as a plain torch nn.Module, and the source ONNX file in onnxruntime with
the same threads; mean of 5 calls each) and one simulation of
T steps per simulator configuration. Reported: the median over repetitions of sim_time / (T x ANN forward
time) against the NCHW reference and against the fastest of the four, their min/max (the noise), image-timesteps per
second, and peak RSS (each configuration again in a fresh subprocess, so the figures are separate).
SpikingJelly runs in its own venv (benchmarks/.venv-sj) and reports its ratio against its own torch
ANN forward measured in that process; its throughput is compared in img-steps/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann2snn.sim import native  # noqa: E402
from ann2snn.sim.simulate import _BatchRun  # noqa: E402
from common import ROOT, converted, export_ir, load_model_data, machine, run_sj, write_json  # noqa: E402

CONFIGS = {  # name -> simulate kwargs
    "fp32_chunk8": dict(synaptic_dtype="float32", time_chunk=8),
    "fp32_chunk4": dict(synaptic_dtype="float32", time_chunk=4),
    "fp32_chunk2": dict(synaptic_dtype="float32", time_chunk=2),
    "fp32_chunk16": dict(synaptic_dtype="float32", time_chunk=16),
    "bf16_chunk8": dict(synaptic_dtype="bfloat16", time_chunk=8),
    "bf16_chunk4": dict(synaptic_dtype="bfloat16", time_chunk=4),
    "int8_chunk4": dict(synaptic_dtype="int8", time_chunk=4),
    "int8_chunk8": dict(synaptic_dtype="int8", time_chunk=8),
    "default": dict(),
}
# the same with the eager IF update instead of the fused C kernels (``ann2snn.sim.native``), and int8 with
# float32 spikes everywhere (no uint8 spikes written by the kernels: ``_BatchRun._byte_spike_layers``)
EAGER_IF = {f"{name}_eager": kwargs for name, kwargs in CONFIGS.items()}
FLOAT_SPIKES = {f"{name}_float_spikes": kwargs for name, kwargs in CONFIGS.items() if name.startswith("int8")}
VARIANTS = {**EAGER_IF, **FLOAT_SPIKES}


def simulate(net, x, timesteps, config: str, **kwargs):
    """``net.simulate`` with the named configuration (a ``VARIANTS`` name: part of the simulator switched off)."""
    if config not in VARIANTS:
        return net.simulate(x, timesteps, **kwargs, **CONFIGS[config])
    target, name = (native, "library") if config in EAGER_IF else (_BatchRun, "_byte_spike_layers")
    original = getattr(target, name)
    setattr(target, name, (lambda: None) if config in EAGER_IF else (lambda self: set()))
    try:
        return net.simulate(x, timesteps, **kwargs, **VARIANTS[config])
    finally:
        setattr(target, name, original)


def ann_forward(net, xb):
    """The ANN's forward pass: ann2snn's torch IR reference kernels (what a PyTorch user runs)."""
    from ann2snn.ir.reference import run_tensors

    g = net.ann
    with torch.inference_mode():
        return run_tensors(g, {g.inputs[0].name: xb}, {g.outputs[0]})


def ann_time(net, xb, forward=None) -> tuple[float, float]:
    """(wall, CPU) seconds per ANN forward, mean of 5 calls (``forward(xb)``, default ``ann_forward``)."""
    forward = forward or (lambda x: ann_forward(net, x))
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for _ in range(5):
            forward(xb)
    return (time.perf_counter() - t0) / 5, (time.process_time() - c0) / 5


def torch_module(net):
    """The same ANN as a plain torch ``nn.Module`` (benchmarks/sj_convert.IRModule: nn.Conv2d, nn.ReLU, ...),
    what a PyTorch user would time; no SpikingJelly needed."""
    from sj_convert import IRModule

    with tempfile.TemporaryDirectory() as d:
        export_ir(net.ann, Path(d) / "m.json", Path(d) / "m.npz")
        spec = json.loads((Path(d) / "m.json").read_text())
        with np.load(Path(d) / "m.npz") as z:
            arrays = {k: z[k] for k in z.files}
    return IRModule(spec, arrays).eval()


def rss_child(a, cfg: str) -> float:
    """Peak RSS (MB) of a fresh process that loads the network and runs one simulation."""
    code = (f"import sys, torch; torch.set_num_threads({a.threads}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
            f"from common import *; p, cx, tx, ty, _ = load_model_data({a.model!r}, n_test={a.batch});"
            f"net = converted({a.model!r}, p, cx);"
            + ("" if cfg == "none" else f"net.simulate(tx, [{a.T}], batch_size={a.batch}, **{CONFIGS.get(cfg, VARIANTS.get(cfg))!r});")
            + "print(peak_rss_mb())")
    env = {**os.environ, "ANN2SNN_NATIVE": "0"} if cfg in EAGER_IF else None
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg_avgpool")
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS) + list(VARIANTS))
    ap.add_argument("--sj", action="store_true", help="also measure SpikingJelly 2.0.0 (needs benchmarks/.venv-sj)")
    ap.add_argument("--sj-mode", default="99.9%")
    ap.add_argument("--rss", action="store_true", help="peak RSS per configuration (fresh subprocesses)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--conversion", default=None, metavar="JSON",
                    help='ConversionConfig fields for the network (default: the default config), e.g. '
                         '\'{"v_init": 0.5, "bias_correction": false}\' where the default conversion is too slow')
    ap.add_argument("--n-calib", type=int, default=None, help="calibration images (default: all the loader gives)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    path, cx, tx, ty, _ = load_model_data(a.model, n_test=a.batch)
    if a.rss and a.conversion:
        sys.exit("--rss measures networks of the default conversion: drop --conversion")
    cx = cx[:a.n_calib] if a.n_calib else cx
    if a.conversion:
        from ann2snn.config import ConversionConfig

        fields = json.loads(a.conversion)
        tag = "_".join(f"{k}-{v}" for k, v in sorted(fields.items())) + f"_calib{len(cx)}"
        net = converted(a.model, path, cx, ConversionConfig(**fields), tag=tag)
    else:
        net = converted(a.model, path, cx)
    x = tx[:a.batch]
    xb = torch.from_numpy(x)
    T = a.T
    # the ANN in channels-last layout too (oneDNN's NHWC convolutions are faster on few-channel layers, and
    # the simulator uses them): ratios are given against both, "best" = the faster of the two per repetition
    xb_cl = xb.contiguous(memory_format=torch.channels_last) if xb.dim() == 4 else xb
    ann_forward(net, xb)
    ann_forward(net, xb_cl)
    module = torch_module(net)
    with torch.inference_mode():
        module(xb)
    from ann2snn.evaluation import OnnxRuntimeModel

    ort_model = OnnxRuntimeModel(path, threads=a.threads)  # runs a model fixed to batch 1 image by image
    ort_forward = lambda xb: ort_model(xb.numpy(), batch_size=len(xb))  # noqa: E731
    ort_forward(xb)
    for c in a.configs:  # warm-up
        simulate(net, x, [4], c, batch_size=a.batch)
    # each simulation is paired with ANN measurements taken just before it: wall clock and process CPU time
    # (less sensitive to other processes taking the cores)
    runs = {c: [] for c in a.configs}
    ratios = {c: [] for c in a.configs}
    best_ratios = {c: [] for c in a.configs}
    cpu_ratios = {c: [] for c in a.configs}
    ann_s, ann_cl_s, ann_mod_s, ann_ort_s = [], [], [], []
    for r in range(a.reps):
        for c in a.configs:
            f, fc = ann_time(net, xb)
            g, gc = ann_time(net, xb_cl)
            h, _ = ann_time(net, xb, module)
            o, _ = ann_time(net, xb, ort_forward)
            ann_s.append(f)
            ann_cl_s.append(g)
            ann_mod_s.append(h)
            ann_ort_s.append(o)
            t0, c0 = time.perf_counter(), time.process_time()
            simulate(net, x, [T], c, batch_size=a.batch)
            s, sc = time.perf_counter() - t0, time.process_time() - c0
            runs[c].append(s)
            ratios[c].append(s / (f * T))
            best_ratios[c].append(s / (min(f, g, h, o) * T))
            cpu_ratios[c].append(sc / (fc * T))
        print(f"rep {r}: ann {ann_s[-1] * 1e3:.1f} ms (channels-last {ann_cl_s[-1] * 1e3:.1f}, "
              f"nn.Module {ann_mod_s[-1] * 1e3:.1f}, onnxruntime {ann_ort_s[-1] * 1e3:.1f}); " +
              ", ".join(f"{c} {ratios[c][-1]:.2f}/{best_ratios[c][-1]:.2f}" for c in a.configs), file=sys.stderr,
              flush=True)
    res = {"machine": machine(), "model": a.model, "T": T, "batch": a.batch, "reps": a.reps,
           "ann_forward_ms": [s * 1e3 for s in ann_s], "ann_forward_channels_last_ms": [s * 1e3 for s in ann_cl_s],
           "ann_forward_nn_module_ms": [s * 1e3 for s in ann_mod_s],
           "ann_forward_onnxruntime_ms": [s * 1e3 for s in ann_ort_s],
           "configs": {}}
    for c in a.configs:
        rr, cr, br = ratios[c], cpu_ratios[c], best_ratios[c]
        res["configs"][c] = {"kwargs": {**CONFIGS.get(c, VARIANTS.get(c)), "fused_if": c not in EAGER_IF,
                                        "byte_spikes": c not in VARIANTS}, "sim_s": runs[c], "ratio_median": statistics.median(rr),
                             "ratio_min": min(rr), "ratio_max": max(rr), "cpu_ratio_median": statistics.median(cr),
                             "cpu_ratio_min": min(cr), "cpu_ratio_max": max(cr),
                             "best_ann_ratio_median": statistics.median(br), "best_ann_ratio_min": min(br),
                             "best_ann_ratio_max": max(br),
                             "img_steps_per_s": a.batch * T / statistics.median(runs[c])}
    if a.rss:
        base = rss_child(a, "none")
        res["rss_baseline_mb"] = base
        for c in a.configs:
            res["configs"][c]["peak_rss_mb"] = rss_child(a, c)
    if a.sj:
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            export_ir(net.ann, d / "m.json", d / "m.npz")
            np.savez(d / "data.npz", calib_x=cx[:500], test_x=x, test_y=ty[:a.batch])
            sj = run_sj(["--spec", str(d / "m.json"), "--weights", str(d / "m.npz"), "--data", str(d / "data.npz"),
                         "--mode", a.sj_mode, "--timesteps", str(T), "--throughput", "--reps", str(a.reps),
                         "--batch", str(a.batch), "--threads", str(a.threads)])
        sj["ratio_median"] = statistics.median(sj["ratio_vs_ann_xT"])
        res["spikingjelly"] = sj
        for c in a.configs:
            res["configs"][c]["speedup_vs_sj"] = res["configs"][c]["img_steps_per_s"] / sj["img_steps_per_s"]
    print(f"machine: {res['machine']}")
    print(f"{a.model}, T={T}, batch {a.batch}, {a.threads} threads, {a.reps} reps; ANN forward median "
          f"{statistics.median(ann_s) * 1e3:.1f} ms (min {min(ann_s) * 1e3:.1f}, max {max(ann_s) * 1e3:.1f}); "
          f"channels-last {statistics.median(ann_cl_s) * 1e3:.1f} ms; plain torch nn.Module "
          f"{statistics.median(ann_mod_s) * 1e3:.1f} ms; onnxruntime {statistics.median(ann_ort_s) * 1e3:.1f} ms")
    print(f"{'config':<14} {'wall sim/(T*ANN) med [min-max]':>30} {'vs fastest ANN':>20} {'CPU-time ratio':>20}"
          f" {'img-steps/s':>12} {'vs SJ':>7} {'peak RSS MB':>12}")
    for c, v in res["configs"].items():
        print(f"{c:<14} {v['ratio_median']:>14.2f} [{v['ratio_min']:.2f}-{v['ratio_max']:.2f}]{'':>6}"
              f" {v['best_ann_ratio_median']:>8.2f} [{v['best_ann_ratio_min']:.2f}-{v['best_ann_ratio_max']:.2f}]"
              f" {v['cpu_ratio_median']:>8.2f} [{v['cpu_ratio_min']:.2f}-{v['cpu_ratio_max']:.2f}]"
              f" {v['img_steps_per_s']:>12.0f} {v.get('speedup_vs_sj', float('nan')):>7.2f}"
              f" {v.get('peak_rss_mb', float('nan')):>12.0f}")
    if a.sj:
        sj = res["spikingjelly"]
        print(f"SpikingJelly {sj['spikingjelly']} ({sj['mode']}): ratio {sj['ratio_median']:.2f} vs its ANN x T, "
              f"{sj['img_steps_per_s']:.0f} img-steps/s, peak RSS {sj['peak_rss_mb']:.0f} MB")
    write_json(a.json, res)


if __name__ == "__main__":
    main()
