"""What every experiment of Part II shares: its outcome and the choice of its configuration.

An experiment is a function ``run(config) -> Outcome`` of a module of this package. Its
configuration is a dataclass with a classmethod ``for_profile(profile)`` giving the sizes
of each profile (``"quick"``, ``"book"``, ``"paper"``, see ``infovae.get_profile``); ``run``
also accepts a profile name, or nothing for the current profile. The chapter of the book
and ``python -m infovae reproduce <name>`` call the same function.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..data import cache_dir
from ..objective import InfoVAELoss
from ..runtime import NUMERICS_VERSION, PROFILES, get_device, get_profile, profile_sizes
from ..train import CHECKPOINT_FORMAT, Callback, Trainer, load_checkpoint, save_checkpoint


C = TypeVar("C")


def config_for_profile(config_class: type[C], profile: str, overrides: dict[str, dict[str, Any]]) -> C:
    """The paper's configuration (the dataclass defaults) with the departures of ``profile``.

    ``overrides`` maps each profile name to the fields it changes (``{}`` for the paper); the
    ``light`` profile uses the ``book`` entry where it has none of its own
    (``infovae.runtime.profile_sizes``).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return replace(cast(Any, config_class()), **profile_sizes(overrides, profile))


def resolve_config(config: C | str | None, config_class: type[C]) -> C:
    """``config`` itself, or ``config_class.for_profile(name)`` for a profile name (``None``:
    the current profile ``iv.get_profile()``)."""
    if config is None:
        config = get_profile()
    if isinstance(config, str):
        if config not in PROFILES:
            raise ValueError(f"unknown profile {config!r}; choose one of {', '.join(PROFILES)}")
        return getattr(config_class, "for_profile")(config)
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__} or a profile name, got {type(config).__name__}")
    return config


def cache_digest(description: dict[str, Any]) -> str:
    """A short SHA-256 digest of ``description`` (JSON-serialisable, key order irrelevant)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


NAMED_OBJECTIVES: tuple[str, ...] = ("elbo", "elbo-authors", "beta", "mmd", "stein", "adversarial", "autoencoder")


def named_objective(
    name: str,
    *,
    alpha: float = 0.0,
    lam: float = 1000.0,
    latent_dim: int | None = None,
    num_pixels: int = 784,
    beta: float | None = None,
    **options: Any,
) -> InfoVAELoss:
    """The experiments' objectives by name: the one place where a name becomes a preset of
    ``InfoVAELoss`` (Eq. (6) of the book, chapter 4, label ``ch4-eq6``).

    * ``"elbo"``, ``"autoencoder"``: the presets (``alpha`` and ``lam`` unused);
    * ``"elbo-authors"``: the ELBO with the authors' per-pixel weighting (``latent_dim``, ``num_pixels``);
    * ``"beta"``: beta-VAE (``beta``);
    * ``"mmd"``, ``"stein"``, ``"adversarial"``: the divergence with ``alpha`` and ``lam``;
      ``options`` go to the preset (e.g. ``num_prior_samples``, or ``divergence``,
      ``latent_dim``, ``critic_hidden``, ``critic_lr`` of the adversarial critic).

    Example:
        >>> from infovae.experiments.base import named_objective
        >>> loss = named_objective("mmd", alpha=1.0, lam=1000.0)
        >>> (loss.config.alpha, loss.config.lam, loss.config.divergence)
        (1.0, 1000.0, 'mmd')
    """
    if name in ("elbo", "autoencoder", "beta", "elbo-authors") and options:
        raise ValueError(f"objective {name!r} takes no options, got {sorted(options)}")
    if name == "elbo":
        return InfoVAELoss.elbo()
    if name == "autoencoder":
        return InfoVAELoss.autoencoder()
    if name == "beta":
        if beta is None:
            raise ValueError("objective 'beta' needs a beta")
        return InfoVAELoss.beta_vae(beta)
    if name == "elbo-authors":
        if latent_dim is None:
            raise ValueError("objective 'elbo-authors' needs latent_dim")
        return InfoVAELoss.authors_weighting("elbo", latent_dim, num_pixels=num_pixels)
    if name == "mmd":
        return InfoVAELoss.mmd_vae(lam=lam, alpha=alpha, **options)
    if name == "stein":
        return InfoVAELoss.stein_vae(lam=lam, alpha=alpha, **options)
    if name == "adversarial":
        return InfoVAELoss.adversarial(lam=lam, alpha=alpha, latent_dim=latent_dim, **options)
    raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(NAMED_OBJECTIVES)}")


def numerics_fingerprint() -> dict[str, int]:
    """What every trained-model cache key holds besides the model's configuration: the
    numerics version (``infovae.runtime.NUMERICS_VERSION``). Not the package or torch version, not the source
    text: a refactor, a new release or a torch upgrade that computes the same numbers keeps the
    trained models; a change of the numbers is caught by the golden test and bumps the version."""
    return {"numerics": NUMERICS_VERSION}


def trained_model_path(folder: str, stem: str, description: dict[str, Any]) -> Path:
    """Where a trained model of an experiment is cached: ``<cache>/<folder>/<stem>-<digest>.pt``.

    ``description`` holds everything that determines the trained weights (model, sizes,
    optimiser, data, seed and a version number), and :func:`numerics_fingerprint` is added to
    it, so a change of any of them, or of the numerics version, is a new file; ``<cache>`` is
    ``iv.data.cache_dir()`` (``$XDG_CACHE_HOME/infovae`` or ``~/.cache/infovae``).
    ``tests/golden/cache-keys.json`` pins the keys of the book profile's models, so that an
    accidental change of a description (a renamed field) fails a test instead of retraining.
    """
    return cache_dir() / folder / f"{stem}-{cache_digest({**description, 'code': numerics_fingerprint()})}.pt"


def load_trained_model(path: Path, model: nn.Module, device: torch.device | str) -> dict | None:
    """Load the weights cached at ``path`` into ``model`` (weights only) and return the training
    history saved with them, or ``None`` when nothing usable is cached there: a corrupt or
    incompatible file is named in a warning (and the caller trains again)."""
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path, map_location=device)
        model.load_state_dict(state["model"])
        return state["history"]
    except (ValueError, RuntimeError, KeyError) as err:
        warnings.warn(f"the cached model {path} is unusable ({str(err)[:200]}); training it again", stacklevel=2)
        return None


def save_trained_model(path: Path, model: nn.Module, history: dict, **extra: Any) -> None:
    """Cache ``model``'s weights with its training ``history`` at ``path`` (atomically; a
    read-only cache only costs retraining next time)."""
    try:
        save_checkpoint({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "history": history, **extra}, path)
    except OSError:
        pass


def window_slope(steps: list[int], values: list[float], window: int) -> float | None:
    """The least-squares slope of ``values`` against ``steps`` over the points of the last
    ``window`` steps (per step); ``None`` before the curve spans a full window.

    Example:
        >>> from infovae.experiments.base import window_slope
        >>> window_slope([0, 500, 1000, 1500], [9.0, 8.0, 7.5, 7.0], 1000)
        -0.001
        >>> window_slope([0, 500], [9.0, 8.0], 1000) is None
        True
    """
    if not steps or steps[-1] - window < steps[0]:
        return None
    points = [(s, v) for s, v in zip(steps, values, strict=True) if s >= steps[-1] - window]
    xs = np.array([s for s, _ in points], dtype=np.float64)
    ys = np.array([v for _, v in points], dtype=np.float64)
    xc = xs - xs.mean()
    return float((xc * (ys - ys.mean())).sum() / np.square(xc).sum())


def train_resumable(
    make_trainer: Callable[[], Trainer], partial: Path | None, chunk: int, finished: Callable[[Trainer], bool]
) -> tuple[Trainer, float]:
    """Train a ``Trainer`` in chunks of ``chunk`` steps until ``finished(trainer)`` or its
    ``config.iterations``, resumable: with a ``partial`` checkpoint file (the trainer's
    ``config.checkpoint``), an interrupted run continues from it exactly (the Trainer's
    bit-for-bit resume), and the checkpoint is rewritten after every chunk with the seconds
    spent so far (``meta["seconds"]``, summed over sittings). ``finished`` is asked after every
    chunk and on resuming, so a run stopped at its criterion is not trained further.

    ``make_trainer()`` builds the model and trainer afresh (seeded); it is called again when the
    checkpoint is unusable (unreadable, or written with other settings): the file is never
    deleted but moved aside to ``<name>.unusable-<n>.pt``, named in a warning, and training starts
    from step 0. Returns the trainer and the seconds of training over all sittings.
    """
    trainer = make_trainer()
    seconds_before = 0.0
    if partial is not None and partial.is_file():
        try:
            trainer.resume(partial)
            seconds_before = float(load_checkpoint(partial)["meta"].get("seconds", 0.0))
        except (ValueError, RuntimeError, KeyError) as err:
            n = 0
            while (aside := partial.with_name(f"{partial.stem}.unusable-{n}.pt")).exists():
                n += 1
            partial.replace(aside)  # kept: a settings mismatch may be a code change to undo, not a corrupt file
            warnings.warn(f"the checkpoint {partial} is unusable ({str(err)[:300]}); it was moved to {aside.name} "
                          "and training starts from step 0", stacklevel=2)
            trainer = make_trainer()
    start = time.perf_counter()

    class Clock(Callback):  # the seconds so far in every checkpoint, those written mid-chunk included
        def on_step(self, trainer: Any, values: Any) -> None:
            trainer.meta["seconds"] = seconds_before + time.perf_counter() - start

    trainer.callbacks.append(Clock())
    end = trainer.config.iterations
    while trainer.step < end and not finished(trainer):
        trainer.run(min(chunk - trainer.step % chunk, end - trainer.step))
        trainer.meta["seconds"] = seconds_before + time.perf_counter() - start
        if partial is not None:
            trainer.save()  # with the time spent so far
    return trainer, seconds_before + time.perf_counter() - start


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean over training seeds, its standard error (sample s.d. / sqrt(n); 0 for one seed),
    min, max and the number of seeds ``n``."""
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "se": se, "min": float(arr.min()), "max": float(arr.max()), "n": len(arr)}


def cached_evaluation(model_path: Path, description: dict[str, Any], compute: Any) -> Any:
    """``compute()`` of a cached model, itself cached beside it as ``<model stem>-eval-<digest>.json``.

    For measurements that are deterministic given the model and ``description`` (every
    evaluation setting and seed): a rerun of a chapter with a warm cache then skips them. The
    digest also covers the model file's name, which carries the code fingerprint. A missing,
    unreadable or unwritable file only costs computing again.
    """
    file = model_path.with_name(f"{model_path.stem}-eval-{cache_digest(description)}.json")
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        pass
    value = _jsonable(compute())
    try:
        file.write_text(json.dumps(value))
    except OSError:
        pass
    return value


def _jsonable(value: Any) -> Any:
    """Plain JSON values from dataclasses, tensors, tuples and numpy scalars (NaN/inf as None)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Outcome:
    """The results of one experiment: numbers (JSON-serialisable) and figures.

    Attributes:
        name: the experiment's name in ``EXPERIMENTS`` (e.g. ``"fig1"``).
        config: the configuration it ran with.
        results: nested dict of plain numbers, lists and strings.
        figures: matplotlib figures by short name.
        device: the device it ran on.
        seconds: wall time of the run.
    """

    name: str
    config: Any
    results: dict[str, Any]
    figures: dict[str, Figure] = field(default_factory=dict)
    device: str = field(default_factory=lambda: str(get_device()))
    seconds: float = 0.0

    def __post_init__(self) -> None:
        # detach the figures from pyplot: a notebook shows them where it asks, not all at once
        for fig in self.figures.values():
            plt.close(fig)

    def to_json(self) -> dict[str, Any]:
        """Results with their provenance (config, device, versions, time) as plain JSON values."""
        from .. import __version__

        return _jsonable(
            {
                "experiment": self.name,
                "config": self.config,
                "device": self.device,
                "infovae": __version__,
                "torch": torch.__version__,
                "seconds": round(self.seconds, 1),
                "results": self.results,
            }
        )

    def save(self, out: str | Path, stem: str | None = None, figures: bool = True) -> list[Path]:
        """Write ``<stem>.json`` and (if ``figures``) one ``<stem>-<figure>.png`` per figure into ``out``.

        ``stem`` defaults to the experiment's name. Returns the paths written.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or self.name
        path = out / f"{stem}.json"
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        written = [path]
        for key, fig in self.figures.items() if figures else ():
            written.append(out / f"{stem}-{key}.png")
            fig.savefig(written[-1], dpi=120, bbox_inches="tight")
        return written

