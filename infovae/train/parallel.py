"""Data-parallel training with ``torch.distributed``: the process group, the rank's device and seeds.

Launched by ``torchrun --nproc_per_node=N script.py`` (or with the ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` of a multi-node launch), the ``Trainer`` joins the default
process group (``init_from_environment``: NCCL on CUDA, gloo on the CPU), puts each rank on its
own GPU (``LOCAL_RANK``), wraps the model in ``DistributedDataParallel`` and reads its shard of
every global batch. What each rank draws at random (binarization, codes, prior samples) comes
from its own stream, seeded from the run's seed and the rank (``rank_seed``), so a run is
reproducible at a given world size; the codes and prior samples of all ranks meet in the
divergence (``infovae.distributed``), so the objective is that of the whole batch.

Example:
    >>> from infovae.train.parallel import rank_seed
    >>> rank_seed(0, rank=0, world_size=1), rank_seed(0, rank=0, world_size=2) != rank_seed(0, rank=1, world_size=2)
    (0, True)
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or an equivalent launcher) with more than one process.

    Example:
        >>> from infovae.train.parallel import launched
        >>> isinstance(launched(), bool)
        True
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device: torch.device) -> tuple[int, int]:
    """Join (or reuse) the default process group; returns ``(rank, world_size)``, ``(0, 1)`` when not launched.

    The backend is NCCL for CUDA devices and gloo otherwise.

    Raises:
        ValueError: ``WORLD_SIZE`` says several processes but ``RANK`` or ``MASTER_ADDR`` is missing
            (start the script with ``torchrun --nproc_per_node=N``).

    Example:
        >>> import torch
        >>> from infovae.train.parallel import init_from_environment
        >>> init_from_environment(torch.device("cpu"))  # a single process
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if not launched():
        return 0, 1
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} unset: start the script with "
                         "torchrun --nproc_per_node=N (which sets them), or unset WORLD_SIZE for one process")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA device given without an index, else ``device``.

    Example:
        >>> import torch
        >>> from infovae.train.parallel import rank_device
        >>> rank_device(torch.device("cpu"))
        device(type='cpu')
    """
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def rank_seed(seed: int, rank: int, world_size: int, stream: int = 0) -> int:
    """The seed of random stream ``stream`` of ``rank``: ``seed`` itself for one process (stream 0), else a
    well-mixed function of (seed, rank, stream) (``numpy.random.SeedSequence``), distinct for every rank.

    Example:
        >>> from infovae.train.parallel import rank_seed
        >>> rank_seed(3, 0, 1), rank_seed(3, 0, 1, stream=1)
        (3, 4)
    """
    if world_size == 1:
        return seed + stream  # the single-process streams, as they always were
    return int(np.random.SeedSequence(seed, spawn_key=(rank, stream)).generate_state(1, np.uint64)[0] >> 1)


__all__ = ["init_from_environment", "launched", "rank_device", "rank_seed"]
