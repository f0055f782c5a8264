"""Several processes on one job: PyTorch's own distributed engine (``torchrun``), as the trainer uses it.

``torchrun`` starts the processes, gives each its ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, rendezvouses them
across nodes and stops all of them when one fails; :func:`init_world` joins the process group (gloo on CPU; on
CUDA, the GPU of ``LOCAL_RANK`` and nccl for CUDA tensors, gloo beside it for the few CPU messages the harness
sends). The harness itself sends almost nothing over it: the work is shared through the feature cache, whose
shards each process claims with a file lock (:mod:`bench.cache`), so the group only checks that every process
sees the same folders and brings the outcomes to rank 0 at the end.

:class:`World` is what the rest of the harness knows of this: ``rank``, ``size``, which (extractor, task) pairs a
rank owns, and how to gather per-rank lists on rank 0. A plain process is ``World()``: rank 0 of 1.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from bench.core.errors import NotFoundError, UsageError

# How long a rank waits for the others at the few points where they meet (the folder check at the start, the
# outcomes at the end, where early ranks wait for the last evaluation). A rank that dies is noticed at once
# (torchrun stops the others); this only bounds a rank that hangs. BENCH_DIST_TIMEOUT_MINUTES overrides it.
DEFAULT_TIMEOUT_MINUTES = 24 * 60


class StoppedBySignal(BaseException):
    """The launcher stopped this process (SIGTERM: torchrun does so when another rank fails). A BaseException,
    like KeyboardInterrupt, so that no per-pair ``except Exception`` carries on after it."""


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    host: str = field(default_factory=socket.gethostname)
    group: bool = False  # a torch.distributed process group was joined (and is left by close())

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def owner(self, index: int) -> int:
        """The rank that finalises, evaluates and records pair number ``index`` (round robin)."""
        return index % self.size

    def owns(self, index: int) -> bool:
        return self.owner(index) == self.rank

    def prefix(self) -> str:
        return f"[rank {self.rank}/{self.size}] " if self.distributed else ""

    def gather(self, items: list) -> list:
        """Every rank's ``items`` concatenated in rank order, on rank 0 (other ranks get their own back)."""
        if not self.group:
            return items
        if self.rank != 0:
            torch.distributed.gather_object(items, None, dst=0)
            return items
        parts: list[Any] = [None] * self.size
        torch.distributed.gather_object(items, parts, dst=0)
        return [item for part in parts for item in part]

    def check_shared(self, folders: dict[str, Path]) -> None:
        """Refuse to start when a folder the ranks share their work through (the cache, the results) is not the
        same folder for every rank: rank 0 writes a file into each, every rank looks for it."""
        if not self.group:
            return
        token = [uuid.uuid4().hex if self.rank == 0 else None]
        torch.distributed.broadcast_object_list(token, src=0)
        marks = {}
        for what, folder in folders.items():
            marks[what] = Path(folder) / ".hemabench-ranks" / f"{token[0]}"
            if self.rank == 0:
                marks[what].parent.mkdir(parents=True, exist_ok=True)
                marks[what].write_text(self.host)
        torch.distributed.barrier()
        missing = [what for what, mark in marks.items() if not mark.is_file()]
        seen: list[Any] = [None] * self.size
        paths = {what: str(folder) for what, folder in folders.items()}
        torch.distributed.all_gather_object(seen, (self.rank, self.host, missing, paths))
        torch.distributed.barrier()
        if self.rank == 0:
            for mark in marks.values():
                mark.unlink(missing_ok=True)
                try:
                    mark.parent.rmdir()
                except OSError:  # another launch's mark is in it
                    pass
        for rank, host, blind, theirs in seen:
            if blind:
                what = blind[0]
                raise NotFoundError(
                    f"rank {rank} on {host} does not see the {what} folder {seen[0][3][what]} that rank 0 on "
                    f"{seen[0][1]} writes to (rank {rank} looked in {theirs[what]}): the processes share their work "
                    "through it, so it must be one folder on a file system every node mounts at the same path "
                    "(set BENCH_HOME, --results) (docs/distributed.md)")

    def close(self) -> None:
        if self.group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.group = False


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 for a plain process)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start several processes "
                         "with torchrun (docs/distributed.md)") from None


def init_world(device: str = "auto", *, cpu_messages: bool = True) -> World:
    """Join torchrun's process group when there is one (else ``World()``), on the GPU of LOCAL_RANK on CUDA.

    ``cpu_messages``: the harness sends Python objects (CPU tensors) between ranks, so on CUDA it joins with
    ``cpu:gloo,cuda:nccl``; the trainer, whose collectives are all on the GPU, joins with nccl alone."""
    size = launched_world_size()
    if size <= 1:
        return World()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and ":" in device:
        raise UsageError(f"--device {device}: under torchrun every process takes the GPU of its LOCAL_RANK; pass "
                         "--device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if local >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} GPU(s): start at most "
                             "that many processes per node (torchrun --nproc-per-node)")
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        backend = ("cpu:gloo,cuda:nccl" if cpu_messages else "nccl") if cuda else "gloo"
        minutes = float(os.environ.get("BENCH_DIST_TIMEOUT_MINUTES", DEFAULT_TIMEOUT_MINUTES))
        timeout = dt.timedelta(minutes=minutes) if cpu_messages else None  # the trainer keeps torch's default
        torch.distributed.init_process_group(backend=backend, timeout=timeout)
    world = World(torch.distributed.get_rank(), torch.distributed.get_world_size(), local, group=True)
    if cpu_messages:  # the harness says what was unfinished when torchrun stops it
        _installed_in[0] = os.getpid()
        signal.signal(signal.SIGTERM, _stop)
    return world


def quiet_stop() -> None:
    """Back to the default SIGTERM (die at once): once the work is done, a stop has nothing to say."""
    if _installed_in[0] == os.getpid():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_describers: list[Callable[[], str]] = []
_installed_in = [0]  # the pid that installed _stop: DataLoader workers inherit the handler and must not run it


def _stop(signum, frame) -> None:
    if os.getpid() != _installed_in[0]:  # a forked worker (torchrun signals the whole process group): just die
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    said = " ".join(text for text in (describe() for describe in _describers) if text)
    raise StoppedBySignal(
        f"rank {os.environ.get('RANK', '?')} was stopped by its launcher (signal {signum}; torchrun stops every "
        f"process when one fails: its rank and exit code are in torchrun's report). {said}".strip())


@contextmanager
def describing(describe: Callable[[], str]) -> Iterator[None]:
    """While inside, a stop by the launcher says ``describe()`` (which shards were unfinished, and by whom)."""
    _describers.append(describe)
    try:
        yield
    finally:
        _describers.remove(describe)
