"""Where and at what scale the code runs: device, profile and seeds.

Three environment variables steer every chapter and command of the book:

``INFOVAE_DEVICE``
    a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``); unset, the fastest
    available device is used.
``INFOVAE_PROFILE``
    ``quick`` (CI smoke scale), ``book`` (the committed outputs, a 2-core CPU) or
    ``paper`` (the paper's constants, for a GPU). Unset, ``CI=true`` selects ``quick``,
    a CUDA device selects ``paper``, anything else ``book``.
``CI``
    set to ``true`` by continuous integration.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

PROFILES: tuple[str, ...] = ("quick", "book", "paper")


def get_device() -> torch.device:
    """The device every tensor of the package follows.

    ``INFOVAE_DEVICE`` if set (validated, so a typo is an error rather than a silent CPU
    run), else CUDA, else Apple's MPS, else the CPU.
    """
    name = os.environ.get("INFOVAE_DEVICE", "").strip()
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise ValueError(
                f"INFOVAE_DEVICE={name!r} is not a torch device name "
                "(expected e.g. 'cpu', 'cuda', 'cuda:0' or 'mps')"
            ) from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"INFOVAE_DEVICE={name!r} but CUDA is not available here")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(
                f"INFOVAE_DEVICE={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"INFOVAE_DEVICE={name!r} but MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile() -> str:
    """The scale of every experiment: ``"quick"``, ``"book"`` or ``"paper"``.

    ``INFOVAE_PROFILE`` if set; otherwise ``quick`` under CI (``CI=true``), ``paper``
    where CUDA is present, and ``book`` elsewhere.
    """
    name = os.environ.get("INFOVAE_PROFILE", "").strip().lower()
    if name:
        if name not in PROFILES:
            raise ValueError(
                f"INFOVAE_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}"
            )
        return name
    if os.environ.get("CI", "").strip().lower() == "true":
        return "quick"
    if torch.cuda.is_available():
        return "paper"
    return "book"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators (all devices).

    Returns a fresh CPU ``torch.Generator`` seeded with ``seed`` for code that prefers an
    explicit generator.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)
