"""Where and at what scale the code runs: device, profile and seeds.

Three environment variables steer every chapter and command of the book:

``INFOVAE_DEVICE``
    a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``xpu``); unset, the
    fastest available device is used. A device that does not exist here is an error that
    names the fix, never a silent fall-back to the CPU.
``INFOVAE_PROFILE``
    ``quick`` (CI smoke scale), ``light`` (the reader's: every chapter from scratch within
    ~20 minutes on a 2-core CPU), ``book`` (the committed outputs: Part II trained to a
    plateau, hours of a CPU, cached) or ``paper`` (the paper's constants: hours to days even on
    a GPU). Unset, ``CI=true`` selects ``quick`` and anything else ``light``.
``CI``
    set to ``true`` by continuous integration.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

PROFILES: tuple[str, ...] = ("quick", "light", "book", "paper")


_FIX = "unset INFOVAE_DEVICE to use the fastest available device, or set it to 'cpu'"


def _accelerator(kind: str):
    """The torch module of an accelerator type (``torch.cuda``, ``torch.backends.mps``, ``torch.xpu``)."""
    return {"cuda": torch.cuda, "mps": torch.backends.mps, "xpu": getattr(torch, "xpu", None)}[kind]


def _device_count(kind: str) -> int:
    """How many devices of an accelerator type this machine has (0 where it has none)."""
    module = _accelerator(kind)
    if module is None or not module.is_available():
        return 0
    return module.device_count() if hasattr(module, "device_count") else 1


def get_device() -> torch.device:
    """The device every tensor of the package follows.

    ``INFOVAE_DEVICE`` if set, else CUDA, else Apple's MPS, else the CPU. The variable is
    validated, so that a typo or a device this machine lacks is an error naming the fix
    rather than a silent CPU run or a failure deep inside a chapter.

    Raises:
        ValueError: ``INFOVAE_DEVICE`` is not a device name; names a device type that cannot
            hold the package's tensors (``meta``, which has no data, or an unsupported
            backend); names an accelerator that is not available here; or has an index that
            does not exist (``cpu:3``, ``cuda:2`` on a one-GPU machine).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from infovae.runtime import get_device
        >>> get_device().type in ("cpu", "cuda", "mps", "xpu")
        True
        >>> with mock.patch.dict(os.environ, {"INFOVAE_DEVICE": "cpu"}):
        ...     get_device()
        device(type='cpu')
    """
    name = os.environ.get("INFOVAE_DEVICE", "").strip()
    if name:
        return _validated_device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _validated_device(name: str, what: str = "INFOVAE_DEVICE", fix: str = _FIX) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"{what}={name!r} is not a torch device name "
            f"(expected e.g. 'cpu', 'cuda', 'cuda:0' or 'mps'); {fix}"
        ) from err
    kind, index = device.type, device.index
    if kind == "meta":
        raise ValueError(
            f"{what}={name!r}: the meta device holds shapes but no data, so nothing can be "
            f"trained or measured on it; {fix}"
        )
    if kind == "cpu":
        if index not in (None, 0):
            raise ValueError(
                f"{what}={name!r}: torch has one CPU device, 'cpu' (index 0); set it to 'cpu' "
                "(torch.set_num_threads chooses how many cores it uses)"
            )
        return device
    if kind not in ("cuda", "mps", "xpu"):
        raise ValueError(
            f"{what}={name!r}: the package runs on 'cpu', 'cuda', 'mps' or 'xpu', not {kind!r}; {fix}"
        )
    count = _device_count(kind)
    if count == 0:
        hint = {
            "cuda": f"this torch ({torch.__version__}) was built without CUDA"
            if torch.version.cuda is None
            else "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES; in Colab choose "
            "Runtime > Change runtime type > GPU)",
            "mps": "MPS needs Apple silicon and a torch built with MPS",
            "xpu": "no Intel GPU is visible to this torch",
        }[kind]
        raise ValueError(f"{what}={name!r} but {kind.upper()} is not available here ({hint}); {fix}")
    if index is not None and index >= count:
        raise ValueError(
            f"{what}={name!r} but only {count} {kind.upper()} device(s) exist here "
            f"(indices 0 to {count - 1}); set it to one of those, e.g. '{kind}:0', or {fix}"
        )
    return device


def resolve_device(device: torch.device | str | None, what: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists here (``None``: ``get_device()``), or a clear error.

    Raises:
        ValueError: not a device name, the meta device, or a device this machine or this
            torch build does not have (a CUDA device on a CPU-only torch, say), with the fix.

    Example:
        >>> from infovae.runtime import resolve_device
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        ValueError: device='tpu' is not a torch device name (expected e.g. 'cpu', 'cuda', 'cuda:0' or 'mps'); pass device='cpu', or None for the fastest available device
    """
    if device is None:
        return get_device()
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{what} must be a torch.device, a device name such as 'cpu' or 'cuda', or None; got {device!r}")
    return _validated_device(str(device), what, f"pass {what}='cpu', or None for the fastest available device")


def get_profile() -> str:
    """The scale of every experiment: ``"quick"``, ``"light"``, ``"book"`` or ``"paper"``.

    * ``quick``: CI's smoke scale (the whole book in minutes);
    * ``light``: the reader's profile: every chapter from scratch in at most ~20 minutes on a
      2-core laptop CPU (smaller and shorter-trained models for Part II's PixelCNN chapters; the
      book profile's sizes everywhere else);
    * ``book``: the committed outputs, Part II's models trained to a plateau (hours of a CPU,
      paid once and cached; ``python -m infovae queue``);
    * ``paper``: the paper's constants, for a GPU (hours to days).

    ``INFOVAE_PROFILE`` if set; otherwise ``quick`` under CI (``CI=true``) and ``light``
    everywhere else: ``book`` and ``paper`` train for hours, so they run only when asked for
    (the book's reproduction appendix gives the costs per profile and device).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from infovae.runtime import get_profile
        >>> with mock.patch.dict(os.environ, {"INFOVAE_PROFILE": "quick"}):
        ...     get_profile()
        'quick'
        >>> with mock.patch.dict(os.environ, {"INFOVAE_PROFILE": "", "CI": "true"}):
        ...     get_profile()
        'quick'
        >>> with mock.patch.dict(os.environ, {"INFOVAE_PROFILE": "", "CI": ""}):
        ...     get_profile()
        'light'
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
    return "light"


def profile_sizes(sizes: dict[str, Any], profile: str | None = None) -> Any:
    """``sizes[profile]`` for the current (or given) profile, where ``light`` falls back to
    ``book``'s entry when ``sizes`` has none (the light profile departs from the book's sizes
    only where the book profile would take more than ~20 minutes a chapter on a laptop CPU).

    Example:
        >>> from infovae.runtime import profile_sizes
        >>> profile_sizes({"quick": 10, "book": 100, "paper": 1000}, "light")
        100
        >>> profile_sizes({"quick": 10, "light": 30, "book": 100, "paper": 1000}, "light")
        30
    """
    profile = get_profile() if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if profile == "light" and "light" not in sizes:
        profile = "book"
    if profile not in sizes:
        raise ValueError(f"no sizes for profile {profile!r}: the table has {', '.join(sizes)}")
    return sizes[profile]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators (all devices).

    Returns a fresh CPU ``torch.Generator`` seeded with ``seed`` for code that prefers an
    explicit generator.

    Example:
        >>> import torch
        >>> from infovae.runtime import seed_everything
        >>> generator = seed_everything(0)
        >>> a = torch.rand(2)
        >>> _ = seed_everything(0)
        >>> torch.equal(a, torch.rand(2)), generator.initial_seed()
        (True, 0)
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block on freshly seeded torch generators and restore them afterwards.

    For code that needs the same random draws every time it runs (an evaluation inside a
    training loop, a measurement that must not depend on what ran before) without touching
    anyone else's random stream. ``torch.manual_seed`` inside ``fork_rng(devices=[])`` is not
    that: it reseeds every CUDA device and restores none. Here the CPU generator and, where
    ``device`` is an accelerator, that one device's generator are seeded on entry and put back
    on exit; other devices are never touched.

    Args:
        seed: a non-negative integer.
        device: the device whose generator the block draws from besides the CPU's
            (default ``get_device()``).

    Example:
        >>> import torch
        >>> from infovae.runtime import seeded
        >>> before = torch.random.get_rng_state()
        >>> with seeded(0, "cpu"):
        ...     a = torch.rand(2)
        >>> with seeded(0, "cpu"):
        ...     b = torch.rand(2)
        >>> torch.equal(a, b), torch.equal(before, torch.random.get_rng_state())
        (True, True)
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    device = get_device() if device is None else torch.device(device)
    kind = device.type
    if kind == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            yield
        return
    if kind == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.default_generator.manual_seed(int(seed))
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
            yield
        return
    module = getattr(torch, kind)  # mps, xpu: one generator, saved and restored by hand
    state = module.get_rng_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            module.manual_seed(int(seed))
            yield
    finally:
        module.set_rng_state(state)

# The version of the numerics of training: what a trained model's weights are, given its
# configuration. The keys of cached trained models (``experiments.base.trained_model_path``) and
# of the cached classifier are their configuration plus this number, never the source text, so
# moving, renaming or documenting code keeps every trained model. A change that alters the
# numbers (an initialisation, an estimator, a network, what runs in bf16, the trainer's random
# streams) must bump it: tests/test_numerics.py trains the first steps of small models of every
# kind and compares them with tests/golden/numerics.json, and fails on such a change until the
# golden file is regenerated (``python tests/test_numerics.py --regenerate``) and this bumped.
NUMERICS_VERSION = 1
