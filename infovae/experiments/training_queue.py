"""The training queue of Part II: every PixelCNN-decoder model of chapters 8 and 9, trained once.

At the book profile the models of Fig. 6 and Table 1 (``pixelcnn_models``) are the paper's
decoder trained to a plateau: hours of a CPU in all, more than one sitting. The queue trains
them one after another in a fixed order, each resumable from its checkpoint
(``train_pixelcnn_model`` writes one every few minutes and continues from it exactly), so it
can be stopped at any moment and started again on another day, and it runs unchanged on CUDA.
The moment a model finishes, its measurements (steps, seconds, plateau test and learning
curve) are written to a small results file (``book/results/pixelcnn-queue-<profile>.json``
in the repository) that can be committed then; the trained weights stay in the model cache,
where the chapters find them.

The order: one model of each objective at z = 5 with the first seed (their learning curves set
how long every model needs), then the other seeds of the z = 5 models (Table 1 and Fig. 6's
focus dimension), then Fig. 6's other latent dimensions with the first seed.

From the shell::

    python -m infovae queue --profile book            # train what is left (resumes)
    python -m infovae queue --profile book --status   # done, in progress, left; time per step, estimate

Example:
    >>> from infovae.experiments.training_queue import queue_jobs
    >>> [job.label for job in queue_jobs("quick")][:2]
    ['elbo z=5 seed 0', 'mmd z=5 seed 0']
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..runtime import get_device
from ..train import load_checkpoint
from .base import _jsonable
from .flexible_decoders import FlexibleDecodersConfig
from .log_likelihood import LogLikelihoodConfig
from .pixelcnn_models import AUTHORS_ELBO, PixelCNNSetup, curve_series, model_path, partial_path, train_pixelcnn_model


@dataclass(frozen=True)
class Job:
    """One model of the queue: objective ``name``, latent dimension, and its setup (seed included)."""

    name: str
    latent_dim: int
    setup: PixelCNNSetup

    @property
    def label(self) -> str:
        return f"{self.name} z={self.latent_dim} seed {self.setup.seed}"

    @property
    def key(self) -> str:
        """The job's name in the results file: ``<name>-z<dim>-s<seed>``."""
        return f"{self.name}-z{self.latent_dim}-s{self.setup.seed}"


def queue_jobs(profile: str) -> list[Job]:
    """Every PixelCNN-decoder model that chapters 8 and 9 train at ``profile``, in the queue's order.

    The same setups as ``FlexibleDecodersConfig.for_profile`` and ``LogLikelihoodConfig.for_profile``,
    so a model the queue trained is the one the chapters load from the cache.
    """
    fig6, table1 = FlexibleDecodersConfig.for_profile(profile), LogLikelihoodConfig.for_profile(profile)
    if fig6.setup != replace(table1.setup, seed=fig6.setup.seed):
        raise ValueError("Fig. 6 and Table 1 use different setups at this profile: the queue covers one")
    dim = fig6.focus_dim
    names = list(fig6.models) + ([AUTHORS_ELBO] if fig6.authors_weighting and "elbo" in fig6.models else [])
    names += [n for n in table1.models if n not in names]
    seeds = list(dict.fromkeys([*fig6.focus_seeds, *table1.seeds]))
    first = [n for n in ("elbo", "mmd", "stein", "adversarial", AUTHORS_ELBO, "autoencoder") if n in names]
    names = first + [n for n in names if n not in first]
    jobs: list[Job] = []
    for seed in seeds:  # seed by seed: the first seed of every objective comes first
        for name in names:
            in_fig6 = name in fig6.models or name == AUTHORS_ELBO
            wanted = (in_fig6 and seed in fig6.focus_seeds) or (name in table1.models and seed in table1.seeds)
            if wanted and table1.latent_dim == dim:
                jobs.append(Job(name, dim, replace(fig6.setup, seed=seed)))
    for other in fig6.latent_dims:
        if other != dim:
            jobs += [Job(name, other, fig6.setup) for name in fig6.models]
    return list(dict.fromkeys(jobs))


def results_path(profile: str, folder: str | Path = "book/results") -> Path:
    """The results file of the queue at ``profile``."""
    return Path(folder) / f"pixelcnn-queue-{profile}.json"


def job_record(job: Job, history: dict[str, list]) -> dict[str, Any]:
    """What the results file keeps of a finished model: steps, seconds, seconds per step, the
    plateau test, and the learning curve (every ``curve_*`` series) and loss terms."""
    steps, seconds = history["seconds"][0][0], history["seconds"][1][0]
    record: dict[str, Any] = {
        "name": job.name, "latent_dim": job.latent_dim, "seed": job.setup.seed, "steps": steps,
        "seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(steps, 1), 4),
        "budget": job.setup.iterations, "device": str(get_device()),
    }
    if "plateau" in history:
        slope, reached = history["plateau"][1]
        record["plateau"] = {"slope_per_1000": slope, "reached": bool(reached), "criterion": job.setup.plateau_slope,
                             "window": job.setup.plateau_window, "series": curve_series(job.name)}
    record["curve"] = {k: history[k] for k in sorted(history) if k.startswith("curve_") or k == "full_batch_mmd"}
    record["losses"] = {k: history[k] for k in ("loss", "reconstruction", "kl", "divergence") if k in history}
    return record


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record_result(path: Path, profile: str, job: Job, history: dict[str, list]) -> None:
    """Add (or replace) ``job``'s record in the results file at ``path`` (written atomically)."""
    data = _read(path) or {"profile": profile, "setup": None, "models": {}}
    data["setup"] = _jsonable(asdict(replace(job.setup, seed=0)))  # the shared setup (seed per model)
    data["models"][job.key] = _jsonable(job_record(job, history))
    data["models"] = dict(sorted(data["models"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def job_status(job: Job) -> dict[str, Any]:
    """``{"state": "done" | "in progress" | "left", "step": int, "seconds": float}`` of one job,
    from the model cache (a finished model, or the checkpoint of the run in progress)."""
    done, partial = model_path(job.name, job.latent_dim, job.setup), partial_path(job.name, job.latent_dim, job.setup)
    for state, path in (("done", done), ("in progress", partial)):
        if path.is_file():
            try:
                checkpoint = load_checkpoint(path)
            except (ValueError, OSError):
                continue
            if state == "done":
                steps, seconds = checkpoint["history"]["seconds"]
                return {"state": state, "step": int(steps[0]), "seconds": float(seconds[0])}
            return {"state": state, "step": int(checkpoint["step"]), "seconds": float(checkpoint["meta"].get("seconds", 0.0))}
    return {"state": "left", "step": 0, "seconds": 0.0}


def status_table(profile: str) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every job's state, and the totals: models done, steps done, measured seconds per step
    and an estimate of the hours left (each unfinished model at its step budget, which the
    plateau rule may shorten: an upper estimate)."""
    rows = [{"job": job, **job_status(job)} for job in queue_jobs(profile)]
    measured = [(r["step"], r["seconds"]) for r in rows if r["step"] and r["seconds"]]
    per_step = sum(s for _, s in measured) / sum(n for n, _ in measured) if measured else math.nan
    left = sum(r["job"].setup.iterations - r["step"] for r in rows if r["state"] != "done")
    return rows, {"done": sum(r["state"] == "done" for r in rows), "models": len(rows),
                  "seconds_per_step": per_step, "hours_left_at_most": left * per_step / 3600}


def print_status(profile: str) -> None:
    """The ``--status`` report of ``python -m infovae queue``."""
    rows, totals = status_table(profile)
    for r in rows:
        job = r["job"]
        rate = f"{r['seconds'] / r['step']:.3f} s/step" if r["step"] and r["seconds"] else ""
        print(f"{job.label:28} {r['state']:12} {r['step']:>6} / {job.setup.iterations} steps  {rate}")
    per_step = totals["seconds_per_step"]
    print(f"{totals['done']} of {totals['models']} models done; "
          + (f"{per_step:.3f} s per step measured, at most {totals['hours_left_at_most']:.1f} h left "
             f"on {get_device()} (the plateau rule stops most models earlier)" if math.isfinite(per_step)
             else "no step measured yet"))


def run_queue(profile: str, results: str | Path | None = "book/results", *, only: int | None = None,
              progress: bool = True) -> list[Job]:
    """Train every job of the queue that is not done (resuming one in progress), recording each
    finished model's measurements in ``results_path(profile, results)`` (``None``: nowhere).
    ``only``: stop after that many models were trained. Returns the jobs trained now."""
    trained: list[Job] = []
    for job in queue_jobs(profile):
        if only is not None and len(trained) >= only:
            break
        already = job_status(job)["state"] == "done"
        start = time.perf_counter()
        _, history = train_pixelcnn_model(job.name, job.latent_dim, job.setup, progress=progress)
        if results is not None:
            record_result(results_path(profile, results), profile, job, history)
        if not already:
            trained.append(job)
            print(f"{job.label}: {history['seconds'][0][0]} steps, {history['seconds'][1][0] / 60:.1f} min "
                  f"(this sitting {(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    return trained


__all__ = ["Job", "job_status", "print_status", "queue_jobs", "record_result", "results_path", "run_queue", "status_table"]
