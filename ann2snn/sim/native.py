"""Fused IF chunk updates in C (``if_kernels.c``), compiled once per machine and cached.

The eager IF update (``neurons.run_if_chunk``) makes three or four passes over the layer per step and is
memory-bound; the C kernels keep each block of membrane potentials in cache across the chunk's steps, so a
step reads the current once and writes the spikes once (2.4-3.2x faster on the zoo VGG's conv layers, 1.8x
on a SqueezeNet fire layer, 4 steps, 2 threads: ``benchmarks/if_kernels.py``). They use OpenMP through the runtime torch has already loaded,
so they share torch's threads and ``torch.set_num_threads``.

The kernels are built with the system's C compiler (``$CC``, else gcc, else cc) into
``$ANN2SNN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/ann2snn`` or ``~/.cache/ann2snn``), keyed by the source,
the compiler, its flags and this CPU, so a home directory shared between machines never loads a kernel
built for another CPU. Without a working compiler, or with ``ANN2SNN_NATIVE=0``, the simulator keeps the
eager path: same results, slower. The first build takes about a second.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("if_kernels.c")
_TYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16"}
_SPIKE_TYPE_NAMES = {**_TYPE_NAMES, torch.uint8: "u8"}  # uint8 spikes: unsigned neurons only
_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-std=c11", "-shared", "-fPIC"]


def cache_dir() -> Path:
    root = os.environ.get("ANN2SNN_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ann2snn"


def _cpu_signature() -> str:
    try:  # the flags line names the instruction sets that -march=native may use
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next((line for line in lines if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _loaded_openmp() -> str | None:
    """The OpenMP runtime this process has loaded (torch's own copy), so the kernels link against it
    instead of a second runtime with a second pool of spinning threads."""
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split()[-1]
            if "/" in path and any(name in Path(path).name for name in ("libgomp", "libiomp5", "libomp")):
                return path
    except OSError:
        pass
    return None


def _compile(cc: str, flags: list[str], openmp: str | None, target: Path) -> bool:
    cmd = [cc, *flags, *(["-fopenmp"] if openmp else []), str(SOURCE)]
    if openmp:  # OpenMP pragmas, linked to the runtime already in the process (not -lgomp's copy)
        cmd += [openmp, "-Wl,-rpath," + str(Path(openmp).parent)]
    try:  # a read-only cache folder, a compiler that hangs or fails: the eager path runs
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            done = subprocess.run(cmd + ["-o", str(built)], capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                log.debug("IF kernels: %s failed:\n%s", " ".join(cmd), done.stderr[-2000:])
                return False
            os.replace(built, target)  # atomic: concurrent processes (torchrun ranks) never load a half file
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("IF kernels: building %s failed: %s", target, exc)
        return False
    return True


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None where they cannot be (then the eager path runs)."""
    if os.environ.get("ANN2SNN_NATIVE", "1") == "0" or not SOURCE.exists():
        return None
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        log.debug("IF kernels: no C compiler, using the eager IF update")
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    openmp = _loaded_openmp()
    source = SOURCE.read_bytes()
    # -march=native first; a compiler that refuses it (or OpenMP) gets the plainer build
    for flags, omp in ((_FLAGS + ["-march=native"], openmp), (_FLAGS, openmp), (_FLAGS, None)):
        key = hashlib.sha256(b"\0".join(x.encode() if isinstance(x, str) else x for x in (
            source, cc, version, " ".join(flags), str(omp), platform.machine(), _cpu_signature()))).hexdigest()[:16]
        target = cache_dir() / "kernels" / f"if_kernels-{key}.so"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.debug("IF kernels: cannot create %s: %s", target.parent, exc)
            return None
        if target.exists() or _compile(cc, flags, omp, target):
            try:
                lib = ctypes.CDLL(str(target))
            except OSError as exc:
                log.debug("IF kernels: cannot load %s: %s", target, exc)
                continue
            _declare(lib)
            log.debug("IF kernels: %s", target)
            return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for src in _TYPE_NAMES.values():
        for dst in _TYPE_NAMES.values():
            getattr(lib, f"ann2snn_if_subtract_{src}_{dst}").argtypes = [p, i64, p, p, i64, i64]
            getattr(lib, f"ann2snn_if_zero_{src}_{dst}").argtypes = [p, i64, p, p, i64, i64, p, i64]
            getattr(lib, f"ann2snn_if_signed_{src}_{dst}").argtypes = [p, i64, p, p, p, i64, i64]
        getattr(lib, f"ann2snn_if_subtract_{src}_u8").argtypes = [p, i64, p, p, i64, i64]
        getattr(lib, f"ann2snn_if_zero_{src}_u8").argtypes = [p, i64, p, p, i64, i64, p, i64]


def _same_dense_layout(v: torch.Tensor, *others: torch.Tensor) -> bool:
    dense = v.is_contiguous() or (v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last))
    return dense and all(t.shape == v.shape and t.stride() == v.stride() for t in others)


def expand_threshold(threshold: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A per-channel threshold as one value per neuron in v's memory layout (what the kernels read)."""
    return torch.empty_like(v).copy_(threshold.expand_as(v))


def run_if_chunk(v: torch.Tensor, current: torch.Tensor, steps: int, out: torch.Tensor,
                 count: torch.Tensor | None, constant: bool, reset: str, threshold) -> bool:
    """The fused form of ``neurons.run_if_chunk``, updating ``v`` and ``count`` in place.

    ``out`` may be float32, bfloat16 or (unsigned neurons) uint8. Returns False (having touched nothing)
    where the kernels are missing or the tensors do not fit them: not on the CPU, other dtypes, or layouts
    that differ between state, current and spikes.
    """
    lib = library()
    if lib is None or v.dtype != torch.float32 or v.device.type != "cpu" or v.numel() == 0:
        return False
    src, dst = _TYPE_NAMES.get(current.dtype), _SPIKE_TYPE_NAMES.get(out.dtype)
    if src is None or dst is None or out.shape[0] < steps or (dst == "u8" and count is not None):
        return False
    per_step = current if constant else current[0]
    if not _same_dense_layout(v, per_step, out[0]) or (count is not None and not _same_dense_layout(v, count)):
        return False
    n = v.numel()
    if out.stride(0) != n or (not constant and (current.shape[0] < steps or current.stride(0) != n)):
        return False
    cur_step = 0 if constant else n
    if reset == "zero":
        theta = torch.as_tensor(threshold, dtype=torch.float32)
        per_neuron = theta.numel() > 1
        if per_neuron and not _same_dense_layout(v, theta):  # callers cache the expanded form (one per layer)
            theta = expand_threshold(theta, v)
        elif not per_neuron:
            theta = theta.reshape(1).contiguous()
        getattr(lib, f"ann2snn_if_zero_{src}_{dst}")(
            current.data_ptr(), cur_step, v.data_ptr(), out.data_ptr(), n, steps, theta.data_ptr(), int(per_neuron))
    elif count is not None:
        getattr(lib, f"ann2snn_if_signed_{src}_{dst}")(
            current.data_ptr(), cur_step, v.data_ptr(), count.data_ptr(), out.data_ptr(), n, steps)
    else:
        getattr(lib, f"ann2snn_if_subtract_{src}_{dst}")(
            current.data_ptr(), cur_step, v.data_ptr(), out.data_ptr(), n, steps)
    return True
