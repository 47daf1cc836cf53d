"""Running over several processes and machines with ``torch.distributed`` (launched by ``torchrun``).

One process without ``torchrun`` is a group of one: every collective is a no-op, nothing changes. Under
``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`init_from_env` joins the process group
(gloo on CPU, NCCL for ``--device cuda``) with a timeout on every collective, so a rank that dies or hangs
makes the others stop with :class:`~ann2snn.errors.DistributedRunError` instead of waiting forever.

Who does what: calibration statistics and evaluation batches are split by rank and reduced / gathered
(``collect_activation_stats``, ``ann2snn.evaluate``); everything else (conversion choices, the report)
runs identically on every rank or on rank 0 alone (:func:`local`), and only rank 0 writes outputs.
"""

from __future__ import annotations

import datetime
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ann2snn.errors import DistributedRunError

__all__ = ["ProcessGroup", "current", "init_from_env", "local", "shutdown", "threads_per_rank"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0  # a collective waits this long for the slowest rank before the run is declared dead


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run. The collectives are no-ops in a group of one."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def _run(self, what: str, fn, *args):
        try:
            return fn(*args)
        except (RuntimeError, ConnectionError, OSError) as e:  # gloo/NCCL report a lost peer as RuntimeError
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedRunError(f"rank {self.rank} of {self.world_size}: {what} failed, another rank died "
                                      f"or stopped answering ({first})") from None

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` over all ranks in place (``op``: sum, max, min); returns it."""
        if not self.distributed:
            return tensor
        import torch.distributed as dist

        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        moved = tensor.to(self._device())
        self._run(f"all_reduce ({op})", dist.all_reduce, moved, red)
        if moved is not tensor:
            tensor.copy_(moved)
        return tensor

    def all_gather_object(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order (``[obj]`` in a group of one)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        self._run("all_gather_object", dist.all_gather_object, out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == src else None]
        self._run("broadcast_object_list", dist.broadcast_object_list, box, src)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            self._run("barrier", dist.barrier)


_SINGLE = ProcessGroup()
_current: ProcessGroup = _SINGLE


def current() -> ProcessGroup:
    """The group the running code belongs to (a group of one unless :func:`init_from_env` joined one)."""
    return _current


@contextmanager
def local():
    """Run a block as a group of one (work that rank 0 does alone must not enter a collective)."""
    global _current
    saved, _current = _current, _SINGLE
    try:
        yield _SINGLE
    finally:
        _current = saved


def threads_per_rank(local_world_size: int) -> int:
    """Torch threads for one of ``local_world_size`` ranks on this machine: the cores shared out, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_world_size))


def init_from_env(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S, threads: int | None = None
                  ) -> ProcessGroup:
    """Join the ``torchrun`` process group described by the environment, or stay a group of one.

    Sets torch's thread count to ``threads``, by default this rank's share of the machine's cores (torchrun
    itself sets OMP_NUM_THREADS=1 whatever the cores, and N ranks x all cores would oversubscribe them).
    """
    global _current
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _current
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    torch.set_num_threads(threads or threads_per_rank(local_world))
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=float(timeout_s)))
        except (RuntimeError, ValueError, ConnectionError, OSError) as e:
            raise DistributedRunError(f"rank {rank} of {world}: cannot join the process group ({e})") from None
    _current = ProcessGroup(rank=rank, world_size=world, local_world_size=local_world, backend=backend)
    log.info("rank %d of %d (%s), %d torch thread(s)", rank, world, backend, torch.get_num_threads())
    return _current


def shutdown() -> None:
    """Leave the process group (no-op in a group of one)."""
    global _current
    if _current.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _current = _SINGLE
