"""Table 1 of the paper (book chapter 9): test log-likelihood of four PixelCNN-decoder models.

ELBO, MMD-VAE, Stein-VAE and the adversarial model of
``infovae.experiments.pixelcnn_models`` with a 5-dim code are trained on dynamically
binarized MNIST (the same training routine, and the same cached models, as Fig. 6), and
over ``seeds`` training seeds (plus the ELBO with the authors' per-pixel weighting,
``"elbo-authors"``), and their negative log-likelihood -log p(x) is estimated on a fixed
stochastic binarization of the test set by importance sampling
(``infovae.metrics.log_likelihood_with_error``):

* the main estimate, for every model and seed: the defensive mixture 0.5 q(z|x) + 0.5 p(z)
  as proposal (K = ``num_samples``), robust to the narrow encoders alpha = 1 models learn;
* for the first seed, the two classic ones: the encoder q(z|x) (the IWAE estimator, the
  paper's) and the prior p(z) (the cross-check the paper's authors used at dim 5);
* a convergence check of the prior estimate on ``convergence_images`` test images with
  K = ``convergence_ks`` (MMD-VAE, first seed).

All are lower bounds of log p(x) in expectation, so the NLLs are upper bounds in
expectation. Each comes with two standard errors: over the test images (the sample of
images) and the Monte Carlo error of the K samples (delta method, averaged over images);
across seeds, the mean of the per-seed NLLs with a standard error that adds the spread
over seeds. The paper's numbers (its Table 1) are in ``PAPER_TABLE1``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..data import load_mnist
from ..metrics import log_likelihood_with_error, precision_error
from ..precision import PRECISIONS, resolve_precision
from ..runtime import get_device, seeded
from .base import Outcome, cached_evaluation, config_for_profile, resolve_config
from .pixelcnn_models import (
    AUTHORS_ELBO,
    COLORS,
    LABELS,
    PixelCNNSetup,
    check_model_name,
    model_path,
    setup_for_profile,
    train_pixelcnn_model,
)

TABLE1_MODELS: tuple[str, ...] = ("elbo", "mmd", "stein", "adversarial")
# Table 1 of Zhao, Song & Ermon (AAAI 2019): negative log-likelihood on binarized MNIST, nats.
PAPER_TABLE1: dict[str, float] = {"elbo": 82.75, "mmd": 80.76, "stein": 81.47, "adversarial": 82.21}
# Published references on binarized MNIST (nats).
REFERENCES: dict[str, float] = {"PixelCNN": 81.30, "VAE, one stochastic layer (MLP)": 86.76, "IWAE, k = 50": 84.78}


@dataclass
class LogLikelihoodConfig:
    """Sizes of the Table 1 experiment (the paper's constants by default).

    Attributes:
        latent_dim: dimension of z (paper: 5).
        models: which of ``TABLE1_MODELS`` (and ``"elbo-authors"``) to train and evaluate.
        setup: networks and training (``PixelCNNSetup``), shared with Fig. 6.
        seeds: training seeds of every model (``setup.seed`` replaced by each).
        num_test: test images evaluated (paper: all 10,000).
        num_samples: K of the main (mixture) estimate and of the IWAE estimate (paper: 5000).
        num_prior_samples: K with p(z) as proposal (the cross-check).
        convergence_ks: K of the prior estimate's convergence check.
        convergence_images: test images of that check.
        classic_images: test images of the IWAE and prior estimates (first seed; ``None``: all).
        chunk_size: (image, sample) rows per decoder call (``benchmarks/bench_metrics.py``:
            256 was fastest for the book's PixelCNN on a CPU).
        precision: ``"fp32"``, or ``"bf16"``/``"auto"`` to evaluate the networks in bf16 where
            that is native *and* measured to be harmless: per model and seed, the bf16 and
            float32 estimates on ``precision_images`` test images (same codes) must differ by
            less than ``precision_tolerance`` nats for every image, or that model is evaluated
            in float32.
        precision_images: test images of that check (at most ``num_test`` are used).
        precision_tolerance: the largest accepted absolute difference of the bf16 and float32 estimates of an image, nats.
        seed: seed of the test binarization and of the importance samples.
    """

    latent_dim: int = 5
    models: tuple[str, ...] = (*TABLE1_MODELS, AUTHORS_ELBO)
    setup: PixelCNNSetup = field(default_factory=PixelCNNSetup)
    seeds: tuple[int, ...] = (0, 1, 2)
    num_test: int = 10_000
    num_samples: int = 5000
    num_prior_samples: int = 5000
    convergence_ks: tuple[int, ...] = (200, 2000, 20_000)
    convergence_images: int = 100
    classic_images: int | None = None
    chunk_size: int = 256
    precision: str = "fp32"
    precision_images: int = 50
    precision_tolerance: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.models:
            check_model_name(name)
            if name not in (*TABLE1_MODELS, AUTHORS_ELBO):
                raise ValueError(f"Table 1 has no model {name!r}; choose from {', '.join((*TABLE1_MODELS, AUTHORS_ELBO))}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        if not 1 <= self.convergence_images <= self.num_test:
            raise ValueError(f"convergence_images must be between 1 and num_test, got {self.convergence_images}")
        if not 1 <= self.num_test <= 10_000:
            raise ValueError(f"num_test must be between 1 and 10000, got {self.num_test}")
        if self.classic_images is not None and not 1 <= self.classic_images <= self.num_test:
            raise ValueError(f"classic_images must be None or between 1 and num_test, got {self.classic_images}")
        if self.precision_images < 1:
            raise ValueError(f"precision_images must be positive, got {self.precision_images}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.num_samples < 2 or self.num_prior_samples < 2:
            raise ValueError("num_samples and num_prior_samples must be at least 2 (for a standard error)")

    @classmethod
    def for_profile(cls, profile: str) -> "LogLikelihoodConfig":
        """The configuration of a profile: ``quick`` (CI), ``book`` (2-core CPU) or ``paper`` (GPU)."""
        return config_for_profile(cls, profile, {
            "quick": dict(
                setup=setup_for_profile("quick"), seeds=(0,),
                num_test=50, num_samples=20, num_prior_samples=20, convergence_ks=(20, 200), convergence_images=5,
            ),
            # 1000 images, K = 50 (mixture) for every model and seed; the IWAE (K = 50) and prior (K = 100)
            # estimates of the first seed on 300 of them; bf16 where measured harmless
            "light": dict(setup=setup_for_profile("light"), seeds=(0,), num_test=300, num_samples=50, num_prior_samples=100,
                          convergence_ks=(200, 2000), convergence_images=5, classic_images=100, precision="auto"),
            "book": dict(setup=setup_for_profile("book"), num_test=1000, num_samples=50, num_prior_samples=100,
                         convergence_ks=(200, 2000, 20_000), convergence_images=5, classic_images=300,
                         precision="auto"),
            "paper": dict(),
        })


def negative_log_likelihood(
    model, x: torch.Tensor, num_samples: int, proposal: str, chunk_size: int, precision: str = "fp32"
) -> tuple[dict[str, float], torch.Tensor]:
    """Mean -log p(x) over the images ``x`` by importance sampling, with its standard errors.

    Returns a summary and the per-image estimates ``[n]`` (float64, nats). The summary holds
    ``nll`` (nats), ``stderr_images`` (standard deviation of the per-image estimates over
    sqrt(n): the uncertainty from the choice of test images), ``stderr_mc`` (Monte Carlo
    error of the mean over images, sqrt(sum s_i^2) / n from the per-image delta-method
    errors s_i) and ``stderr`` (both combined).
    """
    est = log_likelihood_with_error(model, x, num_samples, proposal=proposal, chunk_size=chunk_size, precision=precision)
    n = len(x)
    values = -est.estimate.double()
    stderr_images = float(values.std() / math.sqrt(n)) if n > 1 else math.nan
    stderr_mc = float(est.stderr.double().square().sum().sqrt() / n)
    summary = {
        "nll": float(values.mean()),
        "stderr_images": stderr_images,
        "stderr_mc": stderr_mc,
        "stderr": math.hypot(stderr_images, stderr_mc) if n > 1 else stderr_mc,
    }
    return summary, values.cpu()


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean of ``a - b`` over the same images and its standard error (per-image NLLs of two models).

    Pairing removes the variation between images that both models share, so the difference of
    two models is known far more precisely than either NLL alone.
    """
    d = (a - b).double()
    return {"mean": float(d.mean()), "stderr": float(d.std() / math.sqrt(len(d))) if len(d) > 1 else math.nan}


def run(config: LogLikelihoodConfig | str | None = None, progress: bool = True, cache: bool = True) -> Outcome:
    """Train the Table 1 models (or load them from the cache) and estimate their test NLL."""
    config = resolve_config(config, LogLikelihoodConfig)
    start = time.perf_counter()
    x_test = load_mnist("test", binarize="stochastic", seed=config.seed)[0][: config.num_test].to(get_device())
    results: dict = {"models": {}, "paper": dict(PAPER_TABLE1), "references": dict(REFERENCES), "num_test": config.num_test,
                     "classic_images": config.classic_images or config.num_test}
    per_image: dict[str, list[torch.Tensor]] = {}
    cost = {"fp32": [0.0, 0], "bf16": [0.0, 0]}  # seconds and (image, sample) rows evaluated, by precision
    first = config.seeds[0]
    for name in config.models:
        entry: dict = {"seeds": [], "per_seed": []}
        per_image[name] = []
        for seed in config.seeds:
            setup = replace(config.setup, seed=seed)
            model, history = train_pixelcnn_model(name, config.latent_dim, setup, cache=cache, progress=progress)

            path = model_path(name, config.latent_dim, setup)

            def cached(description: dict, compute: Callable[[], dict]) -> dict:
                return cached_evaluation(path, description, compute) if cache else compute()

            # bf16 only where native and measured harmless for this model (same codes, every image)
            precision = resolve_precision(config.precision, x_test.device)
            if precision == "bf16":
                x_check = x_test[: config.precision_images]
                check = cached({"v": 1, "check": "precision", "k": config.num_samples, "n": len(x_check),
                                "seed": config.seed, "chunk_size": config.chunk_size},
                               lambda: _precision_check(model, x_check, config))
                precision = "bf16" if check["max_abs"] < config.precision_tolerance else "fp32"
            else:
                check = None

            def estimate(k: int, proposal: str, x: torch.Tensor = x_test) -> tuple[dict, torch.Tensor]:
                """``negative_log_likelihood`` from a fixed seed, cached beside the model."""
                def compute() -> dict:
                    began = time.perf_counter()
                    with seeded(config.seed, x.device):
                        summary, values = negative_log_likelihood(model, x, k, proposal, config.chunk_size, precision)
                    return {"summary": summary, "values": values.tolist(), "seconds": time.perf_counter() - began}
                description = {"v": 2, "k": k, "proposal": proposal, "n": len(x), "seed": config.seed,
                               "chunk_size": config.chunk_size, "precision": precision}
                out = cached(description, compute)
                cost[precision][0] += out["seconds"]
                cost[precision][1] += len(x) * k
                return out["summary"], torch.tensor(out["values"], dtype=torch.float64)

            mixture, values = estimate(config.num_samples, "mixture")
            per_image[name].append(values)
            entry["seeds"].append(mixture["nll"])
            entry["per_seed"].append({"seed": seed, "mixture": mixture, "training_seconds": history["seconds"][1][0],
                                      "final_train_reconstruction": history["reconstruction"][1][-1],
                                      "precision": precision, "precision_check": check})
            if seed == first:  # the classic estimators, on the first seed (and the mixture on the same images)
                x_classic = x_test[: config.classic_images or config.num_test]
                entry["iwae"] = estimate(config.num_samples, "encoder", x_classic)[0]
                entry["prior"] = estimate(config.num_prior_samples, "prior", x_classic)[0]
                entry["mixture_classic"] = estimate(config.num_samples, "mixture", x_classic)[0]
                if name == "mmd":  # the prior estimate's convergence on a few images
                    x_few = x_test[: config.convergence_images]
                    results["prior_convergence"] = {str(k): estimate(k, "prior", x_few)[0] for k in config.convergence_ks}
        entry.update(across_seeds(per_image[name], [r["mixture"]["stderr_mc"] for r in entry["per_seed"]]))
        results["models"][name] = entry
    best = {name: r["nll"] for name, r in results["models"].items()}
    results["best_nll"] = best
    # the cost of the estimates (measured when computed, kept in the evaluation cache)
    results["evaluation_cost"] = {p: {"seconds": t, "rows": n, "ms_per_row": 1000 * t / n if n else None}
                                  for p, (t, n) in cost.items()}
    # every pair of models on the same test images and seeds: "a - b" < 0 means a has the lower NLL
    results["paired_differences"] = {
        f"{a} - {b}": paired_difference_over_seeds(per_image[a], per_image[b])
        for i, a in enumerate(config.models)
        for b in config.models[i + 1 :]
    }
    table1 = [n for n in config.models if n in TABLE1_MODELS]
    results["ranking"] = sorted(table1, key=lambda n: best[n])
    results["paper_ranking"] = sorted(table1, key=lambda n: PAPER_TABLE1[n])
    results["epochs"] = config.setup.iterations * config.setup.batch_size / 50_000
    return Outcome("table1", config, results, {"table1": plot_table1(results, config)}, seconds=time.perf_counter() - start)


def _precision_check(model, x: torch.Tensor, config: LogLikelihoodConfig) -> dict:
    """bf16 - fp32 estimates (mixture proposal, K = ``num_samples``, the same codes) per image."""
    diff = precision_error(model, x, config.num_samples, proposal="mixture", chunk_size=config.chunk_size,
                           precision="bf16", seed=config.seed).double()
    return {"max_abs": float(diff.abs().max()), "mean": float(diff.mean()), "mean_abs": float(diff.abs().mean()),
            "n": len(x), "tolerance": config.precision_tolerance}


def across_seeds(per_image: list[torch.Tensor], stderrs_mc: list[float] | None = None) -> dict[str, float]:
    """Mean over seeds and test images of per-image values ``per_image[s][i]`` (every seed on the
    *same* images), with its standard error for a new draw of training seeds and test images.

    With y_si = mu + a_s + b_i + e_si (seed effects a, image effects b), the grand mean's variance
    is Var(a)/S + Var(b)/N + Var(e)/(SN). The seeds' part is estimated from the spread of the
    seed means (``stderr_seeds``); the images' part from the spread of the image means over seeds
    (``stderr_images``: the images are shared, so it does *not* shrink with the number of seeds,
    which adding per-seed image errors as if independent would wrongly assume); the Monte Carlo
    error of the importance sampling, independent across seeds, adds ``stderr_mc`` =
    sqrt(sum_s mc_s^2) / S. ``stderr`` combines the three; ``stderr_within`` is the images' and
    Monte Carlo part together.

    Example:
        >>> import torch
        >>> from infovae.experiments.log_likelihood import across_seeds
        >>> r = across_seeds([torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])])
        >>> r["nll"], round(r["stderr_seeds"], 3), round(r["stderr_images"], 3)
        (2.5, 0.5, 1.0)
    """
    values = torch.stack([v.double() for v in per_image])  # [S, N]
    s, n = values.shape
    seed_means, image_means = values.mean(1), values.mean(0)
    se_seeds = float(seed_means.std() / math.sqrt(s)) if s > 1 else 0.0
    se_images = float(image_means.std() / math.sqrt(n)) if n > 1 else 0.0
    se_mc = float(np.sqrt(np.sum(np.square(stderrs_mc))) / s) if stderrs_mc else 0.0
    se_within = math.hypot(se_images, se_mc)
    return {"nll": float(values.mean()), "stderr_seeds": se_seeds, "stderr_images": se_images, "stderr_mc": se_mc,
            "stderr_within": se_within, "stderr": math.hypot(se_seeds, se_within)}


def paired_difference_over_seeds(a: list[torch.Tensor], b: list[torch.Tensor]) -> dict[str, float | list[float]]:
    """Mean of a - b over seeds (seed s of a paired with seed s of b) and the same test images,
    with a standard error from the spread over seeds and over images (``across_seeds`` of the
    per-image differences)."""
    diffs = [x.double() - y.double() for x, y in zip(a, b, strict=True)]
    return {**across_seeds(diffs), "per_seed": [float(d.mean()) for d in diffs]}


def plot_table1(results: dict, config: LogLikelihoodConfig) -> Figure:
    """Left: NLL per model, ours (mean over seeds +- 2 s.e., seeds as dots; the first seed's IWAE
    and prior estimates) beside the paper's. Right: each model minus the ELBO on the same
    images and seeds, ours and the paper's."""
    names = list(results["models"])
    x = np.arange(len(names))
    fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(7, 3.4), layout="constrained")
    for i, n in enumerate(names):
        r = results["models"][n]
        ax.errorbar(i, r["nll"], yerr=2 * r["stderr"], fmt="o", color=COLORS[n], capsize=4, zorder=3)
        ax.plot([i - 0.15] * len(r["seeds"]), r["seeds"], ".", color=COLORS[n], alpha=0.6)
        # the classic estimators on the first seed and its first ``classic_images`` test images, beside the
        # mixture on the same images (the main estimate above is on all of them, so it sits elsewhere)
        few = f"seed 1, {results['classic_images']} images"
        ax.plot(i + 0.15, r["iwae"]["nll"], "v", color="0.4", ms=5, label=f"IWAE, q(z|x) ({few})" if i == 0 else None)
        ax.plot(i + 0.15, r["prior"]["nll"], "^", color="0.6", ms=5, label=f"prior, p(z) ({few})" if i == 0 else None)
        ax.plot(i + 0.15, r["mixture_classic"]["nll"], "x", color="0.2", ms=5, label=f"mixture ({few})" if i == 0 else None)
        paper = PAPER_TABLE1.get("elbo" if n == AUTHORS_ELBO else n)
        ax.plot(i + 0.3, paper, "D", mfc="none", color=COLORS[n], label="paper" if i == 0 else None)
    ax.set_xticks(x, [LABELS[n].replace(" (", "\n(") for n in names], fontsize=7)
    ax.set_ylabel("-log p(x), nats")
    ax.legend(fontsize=7)
    base = names[0]
    others = names[1:]
    ours = [results["paired_differences"][f"{base} - {n}"] for n in others]
    ax_diff.errorbar(np.arange(len(others)) - 0.1, [-d["nll"] for d in ours], yerr=[2 * d["stderr"] for d in ours],
                     fmt="o", capsize=4, label="ours (paired, +-2 s.e.)")
    paper_diffs = [PAPER_TABLE1["elbo" if n == AUTHORS_ELBO else n] - PAPER_TABLE1[base] for n in others]
    ax_diff.plot(np.arange(len(others)) + 0.1, paper_diffs, "D", mfc="none", label="paper")
    ax_diff.axhline(0, color="k", lw=0.8)
    ax_diff.set_xticks(np.arange(len(others)), [LABELS[n].replace(" (", "\n(") for n in others], fontsize=7)
    ax_diff.set_ylabel(f"NLL minus {LABELS[base]}'s, nats")
    ax_diff.legend(fontsize=7)
    return fig
