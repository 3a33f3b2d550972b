"""The training queue of Part II: every long-trained model of chapters 8 and 9, trained once.

At the book profile the models of Fig. 6 and Table 1 (``pixelcnn_models``) are the paper's
decoder trained to a plateau, and the information-preference trajectories
(``preference_trajectories``) run until their KL and -ELBO stop moving: hours of a CPU in all,
more than one sitting. The queue trains them one after another in a fixed order, each
resumable from its checkpoint (written every few minutes; an interrupted run continues from it
exactly, ``base.train_resumable``), so it can be stopped at any moment and started again on
another day, and it runs unchanged on CUDA. The moment a model finishes, its measurements
(steps, seconds, plateau test, learning curve or trajectory) are written to a small results
file (``book/results/training-queue-<profile>.json`` in the repository) that can be committed
then; the trained weights stay in the model cache, where the chapters find them.

The order (``queue_jobs``): the first seed of every PixelCNN objective at z = 5 (their learning
curves set how long every model needs), the first seed of the trajectories, the other seeds of
the z = 5 models (Table 1 and Fig. 6's focus dimension), the other seeds of the trajectories,
then Fig. 6's sweep over latent dimensions (with the first seed, at the sweep's setup).

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
from .preference_trajectories import (
    Run,
    TrajectoryConfig,
    final_measures,
    load_test_images,
    run_path,
    runs,
    train_run,
    training_images,
)


@dataclass(frozen=True)
class PixelCNNJob:
    """A PixelCNN-decoder model of Fig. 6 / Table 1: objective ``name``, latent dimension, setup
    (seed included), and ``sweep`` for the models of Fig. 6's sweep over dimensions when it has a
    setup of its own."""

    name: str
    latent_dim: int
    setup: PixelCNNSetup
    sweep: bool = False
    kind = "pixelcnn"

    @property
    def label(self) -> str:
        return f"{self.name} z={self.latent_dim} seed {self.setup.seed}" + (" (dimension sweep)" if self.sweep else "")

    @property
    def key(self) -> str:
        """The job's name in the results file: ``pixelcnn/<name>-z<dim>-s<seed>`` (``pixelcnn-sweep/...``)."""
        return f"pixelcnn{'-sweep' if self.sweep else ''}/{self.name}-z{self.latent_dim}-s{self.setup.seed}"

    @property
    def budget(self) -> int:
        return self.setup.iterations

    def paths(self) -> tuple[Path, Path]:
        """The finished model's file and the checkpoint of the run in progress."""
        return model_path(self.name, self.latent_dim, self.setup), partial_path(self.name, self.latent_dim, self.setup)

    def train(self, progress: bool = True) -> dict[str, list]:
        return train_pixelcnn_model(self.name, self.latent_dim, self.setup, progress=progress)[1]

    def record(self, history: dict[str, list]) -> dict[str, Any]:
        record = _common_record(self, history)
        record.update(name=self.name, latent_dim=self.latent_dim, seed=self.setup.seed)
        if "plateau" in history:
            slope, reached = history["plateau"][1]
            record["plateau"] = {"slope_per_1000": slope, "reached": bool(reached), "criterion": self.setup.plateau_slope,
                                 "window": self.setup.plateau_window, "series": curve_series(self.name)}
        record["curve"] = {k: history[k] for k in sorted(history) if k.startswith("curve_") or k == "full_batch_mmd"}
        record["losses"] = {k: history[k] for k in ("loss", "reconstruction", "kl", "divergence") if k in history}
        return record


@dataclass(frozen=True)
class TrajectoryJob:
    """A run of the information-preference trajectories (``preference_trajectories``)."""

    config: TrajectoryConfig
    run: Run
    kind = "trajectory"

    @property
    def label(self) -> str:
        spatial = ", spatial z" if self.run.conditioning == "spatial" else ""
        return f"trajectory beta {self.run.beta:g}, {self.run.layers} layers{spatial}, seed {self.run.seed}"

    @property
    def key(self) -> str:
        return f"trajectory/{self.run.key}"

    @property
    def budget(self) -> int:
        return self.config.max_epochs * self.config.steps_per_epoch

    def paths(self) -> tuple[Path, Path]:
        path = run_path(self.config, self.run)
        return path, path.with_name(path.stem + "-partial.pt")

    def train(self, progress: bool = True) -> dict[str, list]:
        x_train, x_test = training_images(self.config), load_test_images(self.config)
        model, history = train_run(self.config, self.run, x_train, x_test, progress=progress)
        history["final"] = final_measures(model, self.config, self.run, x_test, history)  # type: ignore[assignment]
        return history

    def record(self, history: dict[str, list]) -> dict[str, Any]:
        record = _common_record(self, history)
        record.update(run=asdict(self.run), final=history.get("final"))
        record["trajectory"] = {k: history[k] for k in sorted(history) if k.startswith("traj_")}
        return record


Job = PixelCNNJob | TrajectoryJob


def _common_record(job: Job, history: dict[str, list]) -> dict[str, Any]:
    steps, seconds = history["seconds"][0][0], history["seconds"][1][0]
    return {"kind": job.kind, "steps": steps, "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(steps, 1), 4), "budget": job.budget, "device": str(get_device())}


def queue_jobs(profile: str) -> list[Job]:
    """Every model that chapters 8 and 9 train at ``profile``, in the queue's order.

    The same setups as ``FlexibleDecodersConfig.for_profile``, ``LogLikelihoodConfig.for_profile``
    and ``TrajectoryConfig.for_profile``, so a model the queue trained is the one the chapters
    load from the cache. Order: the first seed of every PixelCNN objective at z = 5 (their
    learning curves set the step count), the first seed of the trajectories, the other seeds of
    the z = 5 models, the other seeds of the trajectories, then Fig. 6's sweep over latent dimensions.
    """
    fig6, table1 = FlexibleDecodersConfig.for_profile(profile), LogLikelihoodConfig.for_profile(profile)
    trajectories = TrajectoryConfig.for_profile(profile)
    if fig6.setup != replace(table1.setup, seed=fig6.setup.seed):
        raise ValueError("Fig. 6 and Table 1 use different setups at this profile: the queue covers one")
    dim = fig6.focus_dim
    names = list(fig6.models) + ([AUTHORS_ELBO] if fig6.authors_weighting and "elbo" in fig6.models else [])
    names += [n for n in table1.models if n not in names]
    first = [n for n in ("elbo", "mmd", "stein", "adversarial", AUTHORS_ELBO, "autoencoder") if n in names]
    names = first + [n for n in names if n not in first]
    seeds = list(dict.fromkeys([*fig6.focus_seeds, *table1.seeds]))

    def pixelcnn(seed: int) -> list[Job]:
        jobs: list[Job] = []
        for name in names:
            in_fig6 = name in fig6.models or name == AUTHORS_ELBO
            wanted = (in_fig6 and seed in fig6.focus_seeds) or (name in table1.models and seed in table1.seeds)
            if wanted and table1.latent_dim == dim:
                jobs.append(PixelCNNJob(name, dim, replace(fig6.setup, seed=seed)))
        return jobs

    all_runs = runs(trajectories)
    run_seeds = list(dict.fromkeys(r.seed for r in all_runs))
    jobs: list[Job] = pixelcnn(seeds[0]) + [TrajectoryJob(trajectories, r) for r in all_runs if r.seed == run_seeds[0]]
    for seed in seeds[1:]:
        jobs += pixelcnn(seed)
    jobs += [TrajectoryJob(trajectories, r) for r in all_runs if r.seed != run_seeds[0]]
    for other in fig6.latent_dims:  # the sweep over dimensions (at its own setup, where it has one)
        if other != dim or fig6.sweep != fig6.setup:
            jobs += [PixelCNNJob(name, other, fig6.sweep, sweep=fig6.sweep != fig6.setup) for name in fig6.models]
    return list(dict.fromkeys(jobs))


def results_path(profile: str, folder: str | Path = "book/results") -> Path:
    """The results file of the queue at ``profile``."""
    return Path(folder) / f"training-queue-{profile}.json"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record_result(path: Path, profile: str, job: Job, history: dict[str, list]) -> None:
    """Add (or replace) ``job``'s record in the results file at ``path`` (written atomically)."""
    data = _read(path) or {"profile": profile, "setups": {}, "models": {}}
    setup = asdict(replace(job.setup, seed=0)) if isinstance(job, PixelCNNJob) else asdict(job.config)
    data.setdefault("setups", {})[job.kind] = _jsonable(setup)  # the shared setup (seed per model)
    data["models"][job.key] = _jsonable(job.record(history))
    data["models"] = dict(sorted(data["models"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def job_status(job: Job) -> dict[str, Any]:
    """``{"state": "done" | "in progress" | "left", "step": int, "seconds": float}`` of one job,
    from the model cache (a finished model, or the checkpoint of the run in progress)."""
    done, partial = job.paths()
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


def status_table(profile: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every job's state, and the totals: models done, the measured seconds per step of each
    kind of job, and an estimate of the hours left (each unfinished model at its step budget,
    which the plateau rule may shorten: an upper estimate; a kind with no measured step yet is
    left out of it and named in ``unmeasured``)."""
    rows = [{"job": job, **job_status(job)} for job in queue_jobs(profile)]
    per_step: dict[str, float] = {}
    for kind in dict.fromkeys(r["job"].kind for r in rows):
        measured = [(r["step"], r["seconds"]) for r in rows if r["job"].kind == kind and r["step"] and r["seconds"]]
        if measured:
            per_step[kind] = sum(s for _, s in measured) / sum(n for n, _ in measured)
    left = [(r["job"].kind, r["job"].budget - r["step"]) for r in rows if r["state"] != "done"]
    hours = sum(n * per_step[k] for k, n in left if k in per_step) / 3600
    return rows, {"done": sum(r["state"] == "done" for r in rows), "models": len(rows), "seconds_per_step": per_step,
                  "hours_left_at_most": hours, "unmeasured": sorted({k for k, _ in left if k not in per_step})}


def print_status(profile: str) -> None:
    """The ``--status`` report of ``python -m infovae queue``."""
    rows, totals = status_table(profile)
    for r in rows:
        job = r["job"]
        rate = f"{r['seconds'] / r['step']:.3f} s/step" if r["step"] and r["seconds"] else ""
        print(f"{job.label:44} {r['state']:12} {r['step']:>6} / {job.budget} steps  {rate}")
    rates = ", ".join(f"{kind} {rate:.3f} s" for kind, rate in totals["seconds_per_step"].items())
    print(f"{totals['done']} of {totals['models']} models done; "
          + (f"per step measured: {rates}; at most {totals['hours_left_at_most']:.1f} h left on {get_device()} "
             "(the plateau rules stop most models earlier)" if rates else "no step measured yet")
          + (f"; not yet measured: {', '.join(totals['unmeasured'])}" if totals["unmeasured"] else ""))


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
        history = job.train(progress=progress)
        if results is not None:
            record_result(results_path(profile, results), profile, job, history)
        if not already:
            trained.append(job)
            print(f"{job.label}: {history['seconds'][0][0]} steps, {history['seconds'][1][0] / 60:.1f} min "
                  f"(this sitting {(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    return trained


__all__ = ["Job", "PixelCNNJob", "TrajectoryJob", "job_status", "print_status", "queue_jobs", "record_result", "results_path", "run_queue", "status_table"]
