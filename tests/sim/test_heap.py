"""The simulator's glibc heap settings: a freed chunk buffer is reused, not faulted in again."""

from __future__ import annotations

import resource

import pytest
import torch

from ann2snn.sim import heap

needs_glibc = pytest.mark.skipif(heap._glibc() is None, reason="not glibc: the heap is left as it is")

MB = 1 << 20


def _faults_of_a_chunk(buffers: int, nbytes: int) -> int:
    """Page faults of allocating, touching and freeing ``buffers`` blocks of ``nbytes``, as a time chunk does."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    chunk = [torch.empty(nbytes // 4) for _ in range(buffers)]
    for buf in chunk:
        buf.fill_(1.0)  # touch every page
    del chunk, buf
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@needs_glibc
def test_a_freed_chunk_buffer_is_reused_without_page_faults(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    heap.reuse_freed_buffers.cache_clear()
    assert heap.reuse_freed_buffers()
    pages = 3 * 20 * MB // resource.getpagesize()
    _faults_of_a_chunk(3, 20 * MB)  # the heap grows to hold them once
    again = [_faults_of_a_chunk(3, 20 * MB) for _ in range(4)]
    # with glibc's defaults the 60 MB freed at the heap's top are trimmed, and every page faults in again
    assert min(again) < pages // 10, (again, pages)
    heap.release_freed_memory()


@needs_glibc
def test_a_users_own_glibc_settings_are_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    heap.reuse_freed_buffers.cache_clear()
    try:
        assert not heap.reuse_freed_buffers()
    finally:
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
        heap.reuse_freed_buffers.cache_clear()
