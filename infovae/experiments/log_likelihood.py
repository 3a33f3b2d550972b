"""Table 1 of the paper (book chapter 9): test log-likelihood of four PixelCNN-decoder models.

ELBO, MMD-VAE, Stein-VAE and the adversarial model of
``infovae.experiments.pixelcnn_models`` with a 5-dim code are trained on dynamically
binarized MNIST (the same training routine, and the same cached models, as Fig. 6), and
their negative log-likelihood -log p(x) is estimated on a fixed stochastic binarization of
the test set by importance sampling (``infovae.metrics.log_likelihood_with_error``):

* with the encoder q(z|x) as proposal (the IWAE estimator, K samples per image), the
  paper's estimate;
* with the prior p(z) as proposal, the cross-check (unbiased for p(x), high variance).

Both are lower bounds of log p(x) in expectation, so the NLLs are upper bounds in
expectation. Each comes with two standard errors: over the test images (the sample of
images) and the Monte Carlo error of the K samples (delta method, averaged over images).
The paper's numbers (its Table 1) are in ``PAPER_TABLE1``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..data import load_mnist
from ..metrics import log_likelihood_with_error
from ..runtime import get_device
from .base import Outcome, config_for_profile, resolve_config
from .pixelcnn_models import COLORS, LABELS, PixelCNNSetup, check_model_name, setup_for_profile, train_pixelcnn_model

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
        models: which of ``TABLE1_MODELS`` to train and evaluate.
        setup: networks and training (``PixelCNNSetup``), shared with Fig. 6.
        num_test: test images evaluated (paper: all 10,000).
        num_samples: K, importance samples per image with q(z|x) as proposal (paper: 5000).
        num_prior_samples: K with p(z) as proposal (the cross-check).
        chunk_size: (image, sample) pairs per decoder call.
        seed: seed of the test binarization and of the importance samples.
    """

    latent_dim: int = 5
    models: tuple[str, ...] = TABLE1_MODELS
    setup: PixelCNNSetup = field(default_factory=PixelCNNSetup)
    num_test: int = 10_000
    num_samples: int = 5000
    num_prior_samples: int = 5000
    chunk_size: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.models:
            check_model_name(name)
            if name not in TABLE1_MODELS:
                raise ValueError(f"Table 1 has no model {name!r}; choose from {', '.join(TABLE1_MODELS)}")
        if not 1 <= self.num_test <= 10_000:
            raise ValueError(f"num_test must be between 1 and 10000, got {self.num_test}")
        if self.num_samples < 2 or self.num_prior_samples < 2:
            raise ValueError("num_samples and num_prior_samples must be at least 2 (for a standard error)")

    @classmethod
    def for_profile(cls, profile: str) -> "LogLikelihoodConfig":
        """The configuration of a profile: ``quick`` (CI), ``book`` (2-core CPU) or ``paper`` (GPU)."""
        return config_for_profile(cls, profile, {
            "quick": dict(
                setup=setup_for_profile("quick"),
                num_test=50, num_samples=20, num_prior_samples=20,
            ),
            "book": dict(setup=setup_for_profile("book"), num_test=100, num_samples=50, num_prior_samples=200),
            "paper": dict(),
        })


def negative_log_likelihood(
    model, x: torch.Tensor, num_samples: int, proposal: str, chunk_size: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Mean -log p(x) over the images ``x`` by importance sampling, with its standard errors.

    Returns a summary and the per-image estimates ``[n]`` (float64, nats). The summary holds
    ``nll`` (nats), ``stderr_images`` (standard deviation of the per-image estimates over
    sqrt(n): the uncertainty from the choice of test images), ``stderr_mc`` (Monte Carlo
    error of the mean over images, sqrt(sum s_i^2) / n from the per-image delta-method
    errors s_i) and ``stderr`` (both combined).
    """
    est = log_likelihood_with_error(model, x, num_samples, proposal=proposal, chunk_size=chunk_size)
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
    results: dict = {"models": {}, "paper": dict(PAPER_TABLE1), "references": dict(REFERENCES)}
    best_per_image = {}
    for name in config.models:
        model, history = train_pixelcnn_model(name, config.latent_dim, config.setup, cache=cache, progress=progress)
        torch.manual_seed(config.seed)
        encoder, encoder_values = negative_log_likelihood(model, x_test, config.num_samples, "encoder", config.chunk_size)
        prior, prior_values = negative_log_likelihood(model, x_test, config.num_prior_samples, "prior", config.chunk_size)
        best_per_image[name] = encoder_values if encoder["nll"] <= prior["nll"] else prior_values
        results["models"][name] = {
            "iwae": encoder,
            "prior": prior,
            "final_train_reconstruction": history["reconstruction"][1][-1],
            "training_seconds": history["seconds"][1][0],
        }
    # each model's best estimate: both are stochastic lower bounds of log p(x), so the lower NLL is the tighter
    best = {name: min(r["iwae"]["nll"], r["prior"]["nll"]) for name, r in results["models"].items()}
    results["best_nll"] = best
    # every pair of models on the same test images: "a - b" < 0 means a has the lower NLL
    results["paired_differences"] = {
        f"{a} - {b}": paired_difference(best_per_image[a], best_per_image[b])
        for i, a in enumerate(config.models)
        for b in config.models[i + 1 :]
    }
    results["ranking"] = sorted(best, key=best.get)
    results["paper_ranking"] = sorted(config.models, key=PAPER_TABLE1.get)
    return Outcome("table1", config, results, {"table1": plot_table1(results, config)}, seconds=time.perf_counter() - start)


def plot_table1(results: dict, config: LogLikelihoodConfig) -> Figure:
    """Negative log-likelihood per model: ours (both proposals, 2 standard errors), each model
    against the first paired on the same images, and the paper's Table 1."""
    names = list(results["models"])
    x = np.arange(len(names))
    fig, (ax, ax_diff, ax_paper) = plt.subplots(1, 3, figsize=(15, 4.2))
    for offset, key, marker in ((-0.12, "iwae", "o"), (0.12, "prior", "s")):
        values = [results["models"][n][key]["nll"] for n in names]
        errors = [2 * results["models"][n][key]["stderr"] for n in names]
        label = "q(z|x) proposal (IWAE)" if key == "iwae" else "p(z) proposal"
        ax.errorbar(x + offset, values, yerr=errors, fmt=marker, capsize=4, label=label)
    ax.set_xticks(x, [LABELS[n] for n in names])
    ax.set(ylabel="-log p(x), nats (lower is better)", title=f"ours: z = {config.latent_dim}, {config.num_test} test images")
    ax.legend(fontsize=8)
    base = names[0]
    ours = [0.0] + [-results["paired_differences"][f"{base} - {n}"]["mean"] for n in names[1:]]
    errs = [0.0] + [2 * results["paired_differences"][f"{base} - {n}"]["stderr"] for n in names[1:]]
    paper = [PAPER_TABLE1[n] - PAPER_TABLE1[base] for n in names]
    ax_diff.errorbar(x - 0.1, ours, yerr=errs, fmt="o", capsize=4, label="ours (best estimate, paired, ±2 s.e.)")
    ax_diff.plot(x + 0.1, paper, "D", mfc="none", label="paper")
    ax_diff.axhline(0, color="k", lw=0.8)
    ax_diff.set_xticks(x, [LABELS[n] for n in names])
    ax_diff.set(ylabel=f"NLL minus {LABELS[base]}'s, nats", title="differences on the same test images")
    ax_diff.legend(fontsize=8, loc="lower right")
    paper_nll = [PAPER_TABLE1[n] for n in names]
    ax_paper.bar(x, paper_nll, color=[COLORS[n] for n in names], alpha=0.7)
    for xi, v in zip(x, paper_nll):
        ax_paper.text(xi, v + 0.05, f"{v:.2f}", ha="center", fontsize=9)
    ax_paper.set_xticks(x, [LABELS[n] for n in names])
    ax_paper.set(ylim=(min(paper_nll) - 1.5, max(paper_nll) + 0.8), ylabel="nats", title="the paper's Table 1 (GPU, full scale)")
    s = config.setup
    fig.suptitle(
        f"Table 1 reproduced: PixelCNN decoder ({s.layers} layers x {s.channels} maps), {s.iterations} steps of batch {s.batch_size}"
    )
    fig.tight_layout()
    return fig
