"""Mixed precision for training: bf16 (or fp16) autocast of the *networks* only.

The networks (encoder bodies, decoder logits; ``infovae.networks``, ``infovae.pixelcnn``)
run their matrix products in bfloat16 inside ``autocast_networks("bf16")`` and hand
float32 tensors back, so everything the objective (Eq. (6), book chapter 4) computes from
them stays float32: the codes z, the Gaussian KL, the MMD between codes and prior samples,
the log-likelihood sums. Autocasting the whole loss instead put the codes and the MMD in
bf16 and biased the MMD about 5% low (measured: about 5 nats of loss at lambda = 1000),
which is why the region is this narrow.

``resolve_precision("auto", device)`` picks bf16 where the hardware has native bf16
arithmetic (a CUDA GPU that reports it, or a CPU with AVX512-BF16 or AMX-BF16) and fp32
elsewhere; emulated bf16 is slower than fp32, so it is never chosen automatically.
Evaluation (log-likelihoods, metrics, sampling) runs in float32 unless a caller opts in.

Training may also use fp16 (``resolve_training_precision``): the same narrow region under
float16 autocast, for GPUs without native bf16 (a Colab T4, a V100), with a gradient scaler
(``torch.amp.GradScaler``, owned by the trainer) against the underflow of small gradients;
``"auto"`` for training picks bf16 where native, else fp16 on CUDA, else fp32.

Example:
    >>> import torch, infovae as iv
    >>> from infovae.precision import autocast_networks, network_region
    >>> with autocast_networks("fp32", torch.device("cpu")):
    ...     with network_region(torch.device("cpu")):
    ...         torch.ones(2, 2).dtype
    torch.float32
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import torch

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")  # of evaluation (metrics, experiments)
TRAINING_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "auto")  # of training (TrainConfig.precision)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

_NETWORK_DTYPE: contextvars.ContextVar[torch.dtype | None] = contextvars.ContextVar("infovae_network_dtype", default=None)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` does bf16 arithmetic natively (not emulated).

    CUDA: ``torch.cuda.is_bf16_supported()`` without emulation; CPU: the AVX512-BF16 or
    AMX-BF16 instruction sets (read from ``/proc/cpuinfo``; False where it cannot be read).

    Example:
        >>> from infovae.precision import native_bf16
        >>> isinstance(native_bf16("cpu"), bool), native_bf16("meta")
        (True, False)
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    return False


def native_fp16(device: torch.device | str) -> bool:
    """Whether ``device`` does fp16 arithmetic natively: every CUDA GPU; a CPU with AVX512-FP16 or AMX-FP16.

    Example:
        >>> from infovae.precision import native_fp16
        >>> isinstance(native_fp16("cpu"), bool), native_fp16("meta")
        (True, False)
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available()
    if device.type == "cpu":
        return bool({"avx512_fp16", "amx_fp16"} & _cpu_flags())
    return False


def resolve_training_precision(precision: str, device: torch.device | str) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"``: a training precision resolved for ``device``.

    ``"auto"`` is bf16 where native, else fp16 on CUDA (a T4, a V100: the trainer then scales
    the loss with a ``GradScaler``), else fp32; ``"bf16"``/``"fp16"`` are refused where the
    device would emulate them (slower than fp32).

    Raises:
        ValueError: an unknown precision, or an emulated one (the message names the fix).

    Example:
        >>> from infovae.precision import resolve_training_precision
        >>> resolve_training_precision("fp32", "cpu"), resolve_training_precision("auto", "meta")
        ('fp32', 'fp32')
        >>> resolve_training_precision("fp8", "cpu")
        Traceback (most recent call last):
        ...
        ValueError: precision must be one of ('fp32', 'bf16', 'fp16', 'auto'), got 'fp8'
    """
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"precision must be one of {TRAINING_PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp16":
        if not native_fp16(device):
            raise ValueError(
                f"precision='fp16' asked for, but {device} has no native fp16 arithmetic (emulated fp16 is slower "
                "than fp32); use precision='auto' (bf16 where native, else fp16 on CUDA) or 'fp32'"
            )
        return "fp16"
    if precision == "auto" and not native_bf16(device):
        return "fp16" if device.type == "cuda" and native_fp16(device) else "fp32"
    return resolve_precision(precision, device)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"fp32"`` or ``"bf16"``: ``"auto"`` resolved for ``device`` (bf16 only where native).

    Raises:
        ValueError: an unknown precision, or ``"bf16"`` on a device without native bf16
            (it would run slower than fp32: use ``"auto"`` or ``"fp32"``).

    Example:
        >>> from infovae.precision import resolve_precision
        >>> resolve_precision("fp32", "cpu"), resolve_precision("auto", "meta")
        ('fp32', 'fp32')
        >>> resolve_precision("auto", "cpu") in ("fp32", "bf16")
        True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        raise ValueError(
            f"precision='bf16' asked for, but {device} has no native bf16 arithmetic (emulated bf16 "
            "is slower than fp32); use precision='auto' (bf16 where native) or 'fp32'"
        )
    return precision


@contextlib.contextmanager
def autocast_networks(precision: str, device: torch.device | str) -> Iterator[str]:
    """Within this block the networks run under bf16 (or fp16) autocast, if ``precision`` resolves to it.

    Yields the resolved precision (``"fp16"`` is taken as it is: the trainer resolves it). Only code inside ``network_region`` is autocast; the rest
    of the block (the objective's arithmetic) stays float32.

    Example:
        >>> import torch
        >>> from infovae.precision import autocast_networks
        >>> with autocast_networks("fp32", "cpu") as resolved:
        ...     resolved, (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        ('fp32', torch.float32)
    """
    resolved = precision if precision == "fp16" else resolve_precision(precision, device)
    token = _NETWORK_DTYPE.set(_DTYPES.get(resolved))
    try:
        yield resolved
    finally:
        _NETWORK_DTYPE.reset(token)


@contextlib.contextmanager
def network_region(device: torch.device | str) -> Iterator[None]:
    """Autocast a network's body to the dtype set by ``autocast_networks`` (nothing otherwise).

    Networks cast what leaves the region back to their input's dtype (``out.to(x.dtype)``).

    Example:
        >>> import torch
        >>> from infovae.precision import network_region
        >>> layer = torch.nn.Linear(2, 2)
        >>> with network_region("cpu"):  # outside autocast_networks("bf16"): nothing changes
        ...     layer(torch.ones(1, 2)).dtype
        torch.float32
    """
    dtype = _NETWORK_DTYPE.get()
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


__all__ = ["PRECISIONS", "TRAINING_PRECISIONS", "autocast_networks", "native_bf16", "native_fp16", "network_region",
           "resolve_precision", "resolve_training_precision"]
