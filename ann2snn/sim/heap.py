"""glibc heap settings for the simulator: reuse freed chunk buffers instead of faulting in fresh pages.

Every time chunk allocates and frees the same few tensors of megabytes (currents, spikes, pooled spikes).
With glibc's defaults such blocks are mmap-ed and unmapped on free, or trimmed off the heap's top, whenever
its dynamic thresholds have not caught up with the process's mix of sizes, and each chunk then faults its
pages in again, zero-filled by the kernel: the README's main job spent a sixth of its CPU time in those page
faults (``benchmarks/heap_reuse.py``; figures in ``benchmarks/RESULTS.md``, "Heap reuse").
``reuse_freed_buffers`` raises glibc's mmap threshold to its ceiling (32 MiB) and its trim threshold to 1 GiB,
once per process; the memory is handed back explicitly with ``release_freed_memory`` (``malloc_trim``) where
a simulation or an evaluation batch ends, so the RSS between runs is what it was. Other C libraries (musl,
macOS, Windows) are left as they are, and so is a process whose user set glibc's own
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from functools import lru_cache

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit systems
# freed memory kept at the heap's top; both must be set: a fixed mmap threshold alone keeps the 128 KiB
# trim threshold (and was slower than the defaults), a trim threshold alone fixes the mmap one at 128 KiB
TRIM_THRESHOLD = 1 << 30


@lru_cache(maxsize=1)
def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (and glibc's mallopt and malloc_trim)
        return libc
    except (OSError, AttributeError):
        return None


@lru_cache(maxsize=1)
def reuse_freed_buffers() -> bool:
    """Keep freed blocks of up to 32 MiB in the heap for the next chunk (once per process)."""
    libc = _glibc()
    if libc is None or os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc heap: mmap threshold %d, trim threshold %d: %s", MMAP_THRESHOLD, TRIM_THRESHOLD,
              "set" if ok else "refused")
    return ok


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS. Each batch frees megabytes of simulator and onnxruntime
    buffers while the small per-batch records stay allocated between them; glibc then cannot shrink its heaps,
    and an evaluation of 60,000 images grew by 900 MB without it (15 KB per image, nothing of it live)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
