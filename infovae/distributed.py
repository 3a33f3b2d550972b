"""The whole batch across processes: what the divergence of Eq. (6) needs under data parallelism.

Under ``torch.distributed`` (``torchrun``) every process holds one shard of each global batch.
The reconstruction and KL terms of Eq. (6) (book chapter 4, ``ch4-eq6``) are means over
images, so the average over the ranks of the per-shard means is the global mean. The
divergence D(q(z) || p(z)) is not: MMD (book Eq. ``ch5-mmd-v``), the Stein gradient
(``ch5-svgd``) and the adversarial critics (``ch5-js``, ``ch5-wgan``) compare whole sets of
codes, and a per-rank estimate is another estimator (a V-statistic over B/N codes has another
bias). Inside ``whole_batch()`` (the trainer opens it around each step), ``gather`` therefore
returns the codes of every rank, concatenated in rank order, through the gradient-carrying
all-gather of ``torch.distributed.nn.functional`` (its backward sums the gradients of all ranks
into each rank's own codes), ``gather_samples`` the prior samples drawn by all ranks, and
``average_gradients`` makes the critics' updates agree. Outside the block (one process, or
evaluation) each of them returns its input unchanged, so a single-process run computes exactly
what it computed before.

Example:
    >>> import torch
    >>> from infovae import distributed
    >>> z = torch.ones(3, 2)
    >>> distributed.gather(z) is z, distributed.world_size()  # no process group: nothing to gather
    (True, 1)
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.distributed as dist

# the process group whose ranks share the current batch (None: this process has the whole batch)
_GROUP: contextvars.ContextVar[object | None] = contextvars.ContextVar("infovae_whole_batch", default=None)
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("infovae_whole_batch_active", default=False)


def world_size() -> int:
    """The number of processes of the default group (1 without ``torch.distributed``).

    Example:
        >>> from infovae.distributed import world_size
        >>> world_size()
        1
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without ``torch.distributed``).

    Example:
        >>> from infovae.distributed import rank
        >>> rank()
        0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@contextlib.contextmanager
def whole_batch(group: object | None = None) -> Iterator[None]:
    """Within this block ``gather``/``gather_samples``/``average_gradients`` act across the ranks of ``group``.

    ``group`` defaults to the default process group; with one process (or none) nothing changes.

    Example:
        >>> import torch
        >>> from infovae.distributed import gather, whole_batch
        >>> with whole_batch():  # a single process: the batch is already whole
        ...     gather(torch.zeros(2, 1)).shape
        torch.Size([2, 1])
    """
    active = world_size() > 1
    token, flag = _GROUP.set(group if active else None), _ACTIVE.set(active)
    try:
        yield
    finally:
        _GROUP.reset(token)
        _ACTIVE.reset(flag)


def _group_size() -> int:
    group = _GROUP.get()
    return dist.get_world_size(group) if _ACTIVE.get() else 1  # type: ignore[arg-type]


def gather(t: torch.Tensor) -> torch.Tensor:
    """``t`` of every rank, concatenated along dim 0 in rank order, with gradient to each rank's own part.

    Every rank's shard must have the same shape (the trainer's shards do). Identity outside
    ``whole_batch`` or with one process.

    Example:
        >>> import torch
        >>> from infovae.distributed import gather
        >>> gather(torch.arange(3.0)).tolist()
        [0.0, 1.0, 2.0]
    """
    if _group_size() == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # torch 2.13 points to its private _functional_collectives instead
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(t.contiguous(), group=_GROUP.get() or dist.group.WORLD))


def gather_samples(n: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``n`` samples in all: each of the N ranks draws ``ceil(n / N)`` with ``draw`` (on its own random
    stream), and the first ``n`` of their concatenation in rank order are returned on every rank.

    Without gradient (samples of a prior). ``draw(n)`` itself outside ``whole_batch``.

    Example:
        >>> import torch
        >>> from infovae.distributed import gather_samples
        >>> gather_samples(4, lambda k: torch.zeros(k, 2)).shape
        torch.Size([4, 2])
    """
    size = _group_size()
    if size == 1:
        return draw(n)
    mine = draw(-(-n // size)).detach().contiguous()
    parts = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(parts, mine, group=_GROUP.get())  # type: ignore[arg-type]
    return torch.cat(parts)[:n]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the ranks (one all-reduce), so that every rank applies
    the same update (the adversarial critics, trained on the gathered codes). No-op outside ``whole_batch``.

    Example:
        >>> import torch
        >>> from infovae.distributed import average_gradients
        >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.full((2,), 3.0)
        >>> average_gradients([p]); p.grad.tolist()
        [3.0, 3.0]
    """
    size = _group_size()
    if size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=_GROUP.get())  # type: ignore[arg-type]
    flat /= size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


__all__ = ["average_gradients", "gather", "gather_samples", "rank", "whole_batch", "world_size"]
