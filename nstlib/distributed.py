"""Training on several processes with ``torch.distributed`` (``torchrun``): the few things a rank must know.

``torchrun --nproc_per_node N -m nstlib train ...`` starts N copies of the training; each is a
*rank* ``r`` of ``N`` (the *world size*). :func:`nstlib.train_transform_net` joins their process
group (:func:`join`: the group a caller initialised, or one it starts from torchrun's environment
variables and closes again at the end) and then trains with ``DistributedDataParallel``:

* **the data**: ``batch_size`` stays the *global* batch ``B``; each step's ``B`` indices (the
  single-process order, :func:`nstlib.training.epoch_order`) are cut into ``N`` equal slices and rank
  ``r`` takes slice ``r`` (:func:`shard`), so the union over the ranks is exactly the single-process
  batch (``B`` must be a multiple of ``N``);
* **the gradient**: every loss is a mean over the rank's ``B/N`` images, and DDP averages the ranks'
  gradients: ``(1/N) sum_r grad mean_{i in slice r} l_i = grad (1/B) sum_i l_i``, the single-process
  gradient; instance norm works per image, so no batch statistics need synchronising;
* **the losses**: each step's four loss values are averaged over the ranks (:func:`mean_across`),
  the global batch's losses as one process would record them, and every rank sees the same numbers,
  so a NaN on one rank stops every rank at the same step, before the backward pass;
* **the files**: rank 0 alone finds and reads the checkpoint to resume from and hands it to the
  others (:func:`on_main`), writes checkpoints (each rank's RNG states gathered into them,
  :func:`gather`), samples and the progress bar; the callback runs on rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int  # the rank on this machine: its GPU
    owns_group: bool  # nstlib started the group (from torchrun's variables) and closes it in :func:`leave`

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0


def _dist():
    import torch.distributed as dist

    return dist


def _wants_cuda(device: Any) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def join(device: Any = None) -> Ranks | None:
    """This process's :class:`Ranks`, or None for a single process (the default path).

    An initialised ``torch.distributed`` group of two or more processes is used as it is. Without
    one, the variables ``torchrun`` sets (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``) start one: NCCL when training on CUDA (``device``), gloo
    otherwise; that group is closed by :func:`leave`.
    """
    if not torch.distributed.is_available():
        return None
    dist = _dist()
    owns = False
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        backend = "nccl" if _wants_cuda(device) else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        owns = True
    world = dist.get_world_size()
    if world <= 1:
        return None
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
    return Ranks(rank, world, local, owns)


def leave(ranks: Ranks | None) -> None:
    """Close the process group :func:`join` started (a caller's own group stays open)."""
    if ranks is not None and ranks.owns_group:
        dist = _dist()
        if dist.is_initialized():
            dist.destroy_process_group()


def device_for(ranks: Ranks, device: Any) -> Any:
    """Each rank's device: ``cuda:<local rank>`` where CUDA without an index is meant, else ``device``."""
    if _wants_cuda(device) and (device is None or torch.device(device).index is None):
        return f"cuda:{ranks.local_rank}"
    return device


def check_batch(batch_size: int, ranks: Ranks) -> None:
    """ValueError unless the global ``batch_size`` splits into equal slices, one per rank."""
    if batch_size % ranks.world_size:
        raise ValueError(f"batch_size={batch_size} is the global batch and must be a multiple of the "
                         f"{ranks.world_size} processes (each takes batch_size / {ranks.world_size} images): use "
                         f"batch_size={ranks.world_size * max(1, batch_size // ranks.world_size)}")


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s slice of one global batch: ``indices[r*B/N : (r+1)*B/N]`` (all of it for one process)."""
    per = len(indices) // world_size
    return indices[rank * per:(rank + 1) * per]


def _device(dist) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_across(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """``values`` averaged over the ranks (``(1/N) sum_r values_r``, float64); a NaN anywhere is a NaN everywhere."""
    dist = _dist()
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=_device(dist))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(values, (tensor / ranks.world_size).tolist()))


def gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    dist = _dist()
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    """Wait until every rank arrives here."""
    _dist().barrier()


def on_main(ranks: Ranks, function: Callable[[], T]) -> T:
    """``function()`` run on rank 0 only; every rank returns its result, or raises the exception it raised
    (so a refusal on rank 0, e.g. a missing checkpoint, stops every rank with the same message)."""
    dist = _dist()
    outcome: list[Any] = [None]
    if ranks.is_main:
        try:
            outcome[0] = ("value", function())
        except Exception as error:  # handed to the other ranks, then raised here too
            outcome[0] = ("error", error)
    dist.broadcast_object_list(outcome, src=0)
    kind, payload = outcome[0]
    if kind == "error":
        raise payload
    return payload


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(net)``: its backward averages the gradients over the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
