"""Fig. 6 of the paper (book chapter 8): flexible PixelCNN decoders, five objectives, several dims.

The models of ``infovae.experiments.pixelcnn_models`` (ELBO, MMD-VAE, Stein-VAE,
adversarial, unregularized autoencoder; alpha = 1 and lambda = 1000 for the InfoVAE
models) are trained for every latent dimension of the configuration and measured:

* (A) full-batch MMD^2 between codes z ~ q(z|x) of ``num_codes`` training images and as
  many prior samples (Gaussian kernel, bandwidth dim; 0 when q(z) = p(z));
* (B) log det Cov[q(z)] from the same codes (0 when q(z) = p(z) = N(0, I)), the total over
  dimensions: the paper's values are totals, not the per-dimension values its text names
  (``panel_b_consistency`` checks it against panel A);
* (C) the class-distribution cross-entropy KL(c || c_hat) of ``num_class_samples``
  ancestral samples labelled by the package's MNIST classifier (``infovae.classifier``);
* (D) the full-batch MMD of panel A along training (every ``setup.track_every`` steps);
* (E) the test error of an RBF SVM trained on sampled codes z ~ q(z|x) of 1000 labelled
  training images (hyper-parameters chosen by cross-validation on those 1000 only);
* and how much z says about x: the mutual information I_q(x; z) over ``num_info_images``
  test images, and the nats of log p(x|z) that the decoder loses when each test image gets
  another image's code (about 0 when the decoder ignores z).

The paper's values (from the authors' plotting code) are in ``PAPER_FIG6``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..classifier import load_classifier
from ..data import load_mnist
from ..metrics import (
    class_distribution_cross_entropy,
    encode_codes,
    full_batch_mmd,
    full_batch_mmd_floor,
    log_det_covariance,
    mutual_information,
    semi_supervised_error,
    shuffled_code_gap,
)
from ..runtime import PROFILES, get_device, seeded
from ..vae import VAE
from .base import Outcome, cached_evaluation, config_for_profile, resolve_config, seed_summary
from .pixelcnn_models import (
    AUTHORS_ELBO,
    COLORS,
    LABELS,
    MODELS,
    PixelCNNSetup,
    check_model_name,
    model_path,
    setup_for_profile,
    train_pixelcnn_model,
)

PAPER_DIMS: tuple[int, ...] = (2, 5, 10, 20, 40)
# Fig. 6 of Zhao, Song & Ermon (AAAI 2019), values at latent dims 2, 5, 10, 20, 40 as given in
# the authors' plotting code. Semi-supervised *accuracy* there; we plot error.
PAPER_FIG6: dict[str, dict[str, tuple[float, ...]]] = {
    "full_batch_mmd": {
        "stein": (2e-4, 8e-4, 1.15e-3, 4e-3, 1.4e-2),
        "mmd": (2e-4, 7e-4, 5e-4, 8e-4, 1.08e-3),
        "adversarial": (0.052, 0.045, 0.0093, 0.008, 0.015),
        "elbo": (2.7e-5, 3e-5, 4.9e-5, 3.9e-5, 4e-5),
    },
    # the paper's text says panel B is log det / dim, but these values behave as totals
    # (``panel_b_consistency``, chapter 8): stored and compared as totals
    "log_det_total": {
        "stein": (-0.123, -0.7, -1.32, -5, -17.92),
        "mmd": (-0.088, 0.121, -0.22, -0.36, -2.341),
        "adversarial": (-8.0, -7.394, -7.6, -7.4, -13.7),
        "elbo": (-3.3e-3, -0.013, -3.1e-3, -0.04, -0.13),
    },
    "class_cross_entropy": {
        "stein": (0.027, 0.027, 0.039, 0.049, 0.057),
        "mmd": (0.015, 0.017, 0.019, 0.022, 0.036),
        "adversarial": (0.078, 0.042, 0.035, 0.028, 0.021),
        "elbo": (0.028, 0.031, 0.028, 0.030, 0.033),
    },
    "semi_supervised_accuracy": {
        "stein": (0.462, 0.681, 0.845, 0.839, 0.842),
        "mmd": (0.58, 0.895, 0.956, 0.972, 0.975),
        "adversarial": (0.34, 0.37, 0.88, 0.901, 0.845),
        "elbo": (0.1, 0.098, 0.1, 0.102, 0.11),
        "autoencoder": (0.916, 0.923, 0.954, 0.967, 0.968),
    },
}


@dataclass
class FlexibleDecodersConfig:
    """Sizes of the Fig. 6 experiment (the paper's constants by default).

    Attributes:
        latent_dims: dimensions of z (paper: 2, 5, 10, 20, 40).
        models: which of ``MODELS`` to train.
        setup: networks and training (``PixelCNNSetup``) of the models at ``focus_dim``, shared with Table 1.
        sweep_setup: the setup of the sweep over ``latent_dims`` (every dimension, ``focus_dim``
            included, so the panels compare dimensions at one setup), when the budget cannot
            afford ``setup`` at every dimension; ``None``: ``setup`` (the sweep's models at
            ``focus_dim`` are then the focus models of the first seed).
        num_codes: training images whose codes give panels A and B (paper: 40k).
        num_class_samples: ancestral samples labelled for panel C (paper: 10k).
        classifier_profile: profile of the cached MNIST classifier (its training length).
        svm_pool: training images whose sampled codes form the labelled pool of panel E.
        svm_test: test images on which the SVM error is measured.
        svm_draws: repeated draws of the 1000 labels.
        num_labels: labelled images per draw (paper: 1000).
        num_info_images: test images for the mutual information and the shuffled codes.
        focus_dim: the latent dimension that the chapter discusses model by model (the
            paper's headline numbers and Table 1 use 5); one of ``latent_dims``.
        focus_seeds: training seeds of every model at ``focus_dim`` (the first is also the
            seed of the other dims); the chapter reports mean and standard error over them.
        authors_weighting: also train the ELBO with the authors' per-pixel weighting
            (beta = 784/d, ``"elbo-authors"``) at ``focus_dim``, over ``focus_seeds``.
        seed: seed of the evaluation (codes, prior samples, samples, label draws).
    """

    latent_dims: tuple[int, ...] = PAPER_DIMS
    models: tuple[str, ...] = MODELS
    setup: PixelCNNSetup = field(default_factory=PixelCNNSetup)
    sweep_setup: PixelCNNSetup | None = None
    num_codes: int = 40_000
    num_class_samples: int = 10_000
    classifier_profile: str = "paper"
    svm_pool: int = 50_000
    svm_test: int = 10_000
    svm_draws: int = 10
    num_labels: int = 1000
    num_info_images: int = 10_000
    focus_dim: int = 5
    focus_seeds: tuple[int, ...] = (0, 1, 2)
    authors_weighting: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.models:
            check_model_name(name)
        if not self.latent_dims or min(self.latent_dims) < 1:
            raise ValueError(f"latent_dims must be positive, got {self.latent_dims}")
        if self.focus_dim not in self.latent_dims:
            raise ValueError(f"focus_dim={self.focus_dim} is not one of latent_dims={self.latent_dims}")
        if self.classifier_profile not in PROFILES:
            raise ValueError(f"classifier_profile must be one of {PROFILES}, got {self.classifier_profile!r}")
        if self.num_labels > self.svm_pool:
            raise ValueError(f"num_labels={self.num_labels} exceeds svm_pool={self.svm_pool}")

    @property
    def sweep(self) -> PixelCNNSetup:
        """The setup of the sweep over ``latent_dims`` (``sweep_setup``, or ``setup``)."""
        return self.sweep_setup if self.sweep_setup is not None else self.setup

    @classmethod
    def for_profile(cls, profile: str) -> "FlexibleDecodersConfig":
        """The configuration of a profile: ``quick`` (CI), ``book`` (2-core CPU) or ``paper`` (GPU)."""
        return config_for_profile(cls, profile, {
            "quick": dict(
                latent_dims=(5,),
                setup=setup_for_profile("quick"),
                num_codes=500, num_class_samples=100, classifier_profile="quick", svm_pool=1000, svm_test=500,
                svm_draws=1, num_labels=300, num_info_images=300, focus_seeds=(0,),
            ),
            "light": dict(
                latent_dims=(2, 5, 10),
                setup=setup_for_profile("light"),
                num_codes=5000, num_class_samples=1000, classifier_profile="book", svm_pool=5000, svm_test=2000,
                svm_draws=3, num_info_images=1000, focus_seeds=(0,),
            ),
            # the paper's decoder at z = 5 (Table 1's models, 3 seeds, hours); the sweep over the five
            # dimensions at the light profile's 4 x 16 decoder trained to its own plateau (or 3,000 steps)
            "book": dict(
                latent_dims=(2, 5, 10, 20, 40),
                setup=setup_for_profile("book"),
                sweep_setup=setup_for_profile("light", iterations=3000, track_every=250, curve_every=250,
                                              plateau_slope=0.5, plateau_window=1500, min_iterations=1500),
                num_codes=5000, num_class_samples=1000, classifier_profile="book", svm_pool=5000, svm_test=2000,
                svm_draws=3, num_info_images=1000,
            ),
            "paper": dict(),
        })


@torch.inference_mode()
def evaluate_model(
    model: VAE,
    name: str,
    config: FlexibleDecodersConfig,
    data: dict[str, torch.Tensor],
    classifier: torch.nn.Module,
) -> tuple[dict, torch.Tensor]:
    """Every Fig. 6 metric of one trained model; returns them and the ancestral samples."""
    with seeded(config.seed, data["x_codes"].device):
        return _evaluate_model(model, name, config, data, classifier)


def _evaluate_model(model: VAE, name: str, config: FlexibleDecodersConfig, data: dict[str, torch.Tensor],
                    classifier: torch.nn.Module) -> tuple[dict, torch.Tensor]:
    z = encode_codes(model, data["x_codes"])
    out: dict[str, float | list[float] | None] = {
        "full_batch_mmd": full_batch_mmd(z, model.prior()),
        "log_det_total": log_det_covariance(z).total,
    }
    samples = model.sample(config.num_class_samples)
    ce = class_distribution_cross_entropy(classifier, samples)
    out["class_cross_entropy"] = ce.cross_entropy
    out["class_histogram"] = ce.histogram.tolist()
    out["class_confidence"] = sample_confidence(classifier, samples)
    out.update(information_metrics(model, name, config, data))
    return out, samples[:32].cpu()


def evaluate_cached(model: VAE, name: str, dim: int, setup: PixelCNNSetup, config: FlexibleDecodersConfig,
                    data: dict[str, torch.Tensor], classifier: torch.nn.Module, cache: bool) -> tuple[dict, torch.Tensor]:
    """``evaluate_model``, its result cached beside the trained model (deterministic: seeded)."""
    if not cache:
        return evaluate_model(model, name, config, data, classifier)
    settings = {k: getattr(config, k) for k in ("num_codes", "num_class_samples", "classifier_profile", "svm_pool",
                                                 "svm_test", "svm_draws", "num_labels", "num_info_images", "seed")}
    settings["classifier_accuracy"] = getattr(classifier, "test_accuracy", None)

    def compute() -> dict:
        metrics, samples = evaluate_model(model, name, config, data, classifier)
        return {"metrics": metrics, "samples": samples}

    out = cached_evaluation(model_path(name, dim, setup), {"v": 1, "dim": dim, **settings}, compute)
    return out["metrics"], torch.tensor(out["samples"])


@torch.inference_mode()
def sample_confidence(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean probability the classifier gives its chosen class: near 1 on real digits, low on
    samples that are not digits (panel C's class histogram then means little)."""
    classifier.eval()
    probs = torch.cat([classifier(xb).softmax(1).amax(1) for xb in images.split(batch_size)])
    return float(probs.mean())


@torch.inference_mode()
def information_metrics(model: VAE, name: str, config: FlexibleDecodersConfig, data: dict[str, torch.Tensor]) -> dict:
    """How much z says about x: semi-supervised SVM error (panel E), I_q(x; z), shuffled-code gap."""
    with seeded(config.seed + 1, data["x_pool"].device):
        return _information_metrics(model, name, config, data)


def _information_metrics(model: VAE, name: str, config: FlexibleDecodersConfig, data: dict[str, torch.Tensor]) -> dict:
    out: dict[str, float | None] = {}
    # sampled codes, as in the authors' code: they carry exactly the information z has about x
    # (encoder means of a collapsed posterior can still vary with x, by amounts that q(z|x) drowns)
    features = encode_codes(model, data["x_pool"])
    test_features = encode_codes(model, data["x_svm_test"])
    svm = semi_supervised_error(
        features, data["y_pool"], test_features, data["y_svm_test"],
        num_labels=config.num_labels, num_draws=config.svm_draws, seed=config.seed,
    )
    out["semi_supervised_error"], out["semi_supervised_error_std"] = svm.mean, svm.std
    x_info = data["x_info"]
    # a point-mass encoder has no density: its I(x; z) is the entropy of the data set, log N
    out["mutual_information"] = None if name == "autoencoder" else mutual_information(model, x_info)
    out["shuffled_gap"] = shuffled_code_gap(model, x_info)
    return out


def load_evaluation_data(config: FlexibleDecodersConfig) -> dict[str, torch.Tensor]:
    """Fixed stochastic binarizations of the images that every model is measured on."""
    device = get_device()
    x_train, y_train = load_mnist("train", binarize="stochastic", seed=config.seed + 1)
    x_test, y_test = load_mnist("test", binarize="stochastic", seed=config.seed + 1)
    n = max(config.num_codes, config.svm_pool)
    if n > len(x_train) or max(config.svm_test, config.num_info_images) > len(x_test):
        raise ValueError("num_codes/svm_pool exceed 50000 training images or svm_test/num_info_images 10000 test images")
    return {
        "x_codes": x_train[: config.num_codes].to(device),
        "x_pool": x_train[: config.svm_pool].to(device),
        "y_pool": y_train[: config.svm_pool],
        "x_svm_test": x_test[: config.svm_test].to(device),
        "y_svm_test": y_test[: config.svm_test],
        "x_info": x_test[: config.num_info_images].to(device),
    }


def run(
    config: FlexibleDecodersConfig | str | None = None,
    progress: bool = True,
    cache: bool = True,
    classifier: torch.nn.Module | None = None,
) -> Outcome:
    """Train every (model, latent dim) of ``config`` (or load it from the cache) and measure Fig. 6.

    Args:
        config: a ``FlexibleDecodersConfig`` or a profile name (``None``: the current profile).
        progress: show progress bars.
        cache: reuse and store trained models in the user's cache directory.
        classifier: labels the samples of panel C; default the package's MNIST classifier of
            ``config.classifier_profile`` (``infovae.classifier.load_classifier``).
    """
    config = resolve_config(config, FlexibleDecodersConfig)
    start = time.perf_counter()
    if classifier is None:
        classifier = load_classifier(config.classifier_profile, progress=progress)
    data = load_evaluation_data(config)
    results: dict = {
        "latent_dims": list(config.latent_dims),
        "metrics": {name: {} for name in config.models},
        "tracking": {name: {} for name in config.models},
        "training_seconds": {name: {} for name in config.models},
        "classifier_test_accuracy": getattr(classifier, "test_accuracy", None),
        "classifier_confidence_on_digits": sample_confidence(classifier, data["x_svm_test"]),
        "panel_b_consistency": panel_b_consistency(),
        "mutual_information_bound": math.log(config.num_info_images),  # I_q(x; z) <= log N on N images
        # panel A's floor: the biased MMD^2 expected when q(z) is exactly the prior, ours and the paper's (40k codes)
        "full_batch_mmd_floor": {str(d): full_batch_mmd_floor(config.num_codes, d) for d in config.latent_dims},
        "paper_full_batch_mmd_floor": {str(d): full_batch_mmd_floor(40_000, d) for d in PAPER_DIMS},
        "paper": {"latent_dims": list(PAPER_DIMS), **PAPER_FIG6},
    }
    samples = {}
    for dim in config.latent_dims:
        for name in config.models:
            model, history = train_pixelcnn_model(name, dim, config.sweep, cache=cache, progress=progress)
            metrics, shown = evaluate_cached(model, name, dim, config.sweep, config, data, classifier, cache)
            results["metrics"][name][str(dim)] = metrics
            track: dict[str, list] = {"steps": history["loss"][0],
                                      **{k: history[k][1] for k in ("reconstruction", "kl") if k in history}}
            if "full_batch_mmd" in history:
                track.update(mmd_steps=history["full_batch_mmd"][0], mmd=history["full_batch_mmd"][1])
            results["tracking"][name][str(dim)] = track
            results["training_seconds"][name][str(dim)] = history["seconds"][1][0]
            samples[(name, dim)] = shown
    results.update(focus_seed_runs(config, data, classifier, results, cache=cache, progress=progress))
    figures = {"fig6": plot_fig6(results, config), "samples": plot_samples(samples, config)}
    return Outcome("fig6", config, results, figures, seconds=time.perf_counter() - start)


def focus_seed_runs(config: FlexibleDecodersConfig, data: dict[str, torch.Tensor], classifier: torch.nn.Module,
                    results: dict, cache: bool = True, progress: bool = True) -> dict:
    """Every model at ``focus_dim`` over ``focus_seeds`` (and the authors'-weighted ELBO): the
    per-seed metrics and their mean and standard error (``base.seed_summary``)."""
    dim, numbers = config.focus_dim, ("full_batch_mmd", "log_det_total", "class_cross_entropy",
                                      "class_confidence", "semi_supervised_error", "mutual_information", "shuffled_gap")
    names = list(config.models) + ([AUTHORS_ELBO] if config.authors_weighting and "elbo" in config.models else [])
    per_seed: dict[str, list[dict]] = {}
    for name in names:
        per_seed[name] = []
        for seed in config.focus_seeds:
            if name in config.models and seed == config.setup.seed and config.sweep == config.setup:
                metrics = results["metrics"][name][str(dim)]  # trained above
            else:
                setup = replace(config.setup, seed=seed)
                model, _ = train_pixelcnn_model(name, dim, setup, cache=cache, progress=progress)
                metrics, _ = evaluate_cached(model, name, dim, setup, config, data, classifier, cache)
            per_seed[name].append({"seed": seed, **{q: metrics.get(q) for q in numbers}})
    summary = {
        name: {q: seed_summary([r[q] for r in runs]) for q in numbers if all(r[q] is not None for r in runs)}
        for name, runs in per_seed.items()
    }
    return {"focus_seeds": per_seed, "focus_summary": summary}


def isotropic_mmd(log_det_total: float, dim: int) -> float:
    """MMD^2 between N(0, s^2 I) and N(0, I) under the evaluation kernel
    ``exp(-|a - b|^2 / (2 dim))``, in closed form, with s^2 chosen so that log det Cov equals
    ``log_det_total``.

    For ``a - b ~ N(0, v I)``, ``E exp(-|a - b|^2 / (2 h)) = (1 + v / h)^(-dim / 2)``; MMD^2 is
    ``E k(q, q') + E k(p, p') - 2 E k(q, p)``, with v = 2 s^2, 2 and s^2 + 1, and h = dim.
    """
    s2 = math.exp(log_det_total / dim)
    e = lambda v: (1 + v / dim) ** (-dim / 2)  # noqa: E731
    return e(2 * s2) + e(2.0) - 2 * e(s2 + 1)


def panel_b_consistency() -> dict[str, dict[str, list[float]]]:
    """Panel A's MMD^2 predicted from panel B's log det for an isotropic Gaussian q(z), reading
    the paper's values as totals and as per-dimension values, beside the MMD^2 it reports
    (Stein and MMD-VAE, whose q(z) the paper shows near-Gaussian)."""
    out = {}
    for name in ("stein", "mmd"):
        ld, reported = PAPER_FIG6["log_det_total"][name], PAPER_FIG6["full_batch_mmd"][name]
        out[name] = {
            "reported": list(reported),
            "as_total": [isotropic_mmd(v, d) for v, d in zip(ld, PAPER_DIMS)],
            "as_per_dim": [isotropic_mmd(v * d, d) for v, d in zip(ld, PAPER_DIMS)],
        }
    return out


def _paper_series(quantity: str, name: str) -> tuple[float, ...] | None:
    if quantity == "semi_supervised_error":
        acc = PAPER_FIG6["semi_supervised_accuracy"].get(name)
        return None if acc is None else tuple(1 - a for a in acc)
    return PAPER_FIG6.get(quantity, {}).get(name)


def plot_fig6(results: dict, config: FlexibleDecodersConfig) -> Figure:
    """Panels A-E of Fig. 6 and the shuffled-code gap (3 x 2, page width): ours (filled, solid)
    and the paper's (hollow, dashed)."""
    fig, axes = plt.subplots(3, 2, figsize=(7, 9.2), layout="constrained")
    dims = config.latent_dims
    panels = [
        ("full_batch_mmd", "A. full-batch MMD$^2$, q(z) vs p(z)", "log"),
        ("log_det_total", "B. log det Cov[q(z)]", "symlog"),
        ("class_cross_entropy", "C. class-distribution CE", "log"),
        ("semi_supervised_error", "E. SVM error (1000 labels)", "linear"),
        ("shuffled_gap", "nats lost with shuffled z", "symlog"),
    ]
    axes_by_panel = [axes[0, 0], axes[0, 1], axes[1, 0], axes[2, 0], axes[2, 1]]
    for ax, (quantity, title, scale) in zip(axes_by_panel, panels):
        for name in config.models:
            ours = [results["metrics"][name][str(d)][quantity] for d in dims]
            ax.plot(dims, ours, "-o", ms=4, color=COLORS[name], label=f"{LABELS[name]} (ours)")
            paper = _paper_series(quantity, name)
            if paper is not None:
                ax.plot(PAPER_DIMS, paper, "--o", ms=4, mfc="none", color=COLORS[name], alpha=0.6,
                        label=f"{LABELS[name]} (paper)")
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=0.1)
        else:
            ax.set_yscale(scale)
        ax.set(xscale="log", xlabel="latent dimension")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(PAPER_DIMS, [str(d) for d in PAPER_DIMS])
        ax.xaxis.set_minor_locator(NullLocator())
    axes[2, 0].axhline(0.9, color="k", lw=0.8, ls=":", label="chance (0.9)")
    axes[0, 1].axhline(0.0, color="tab:purple", lw=0.8, ls=":")
    ax = axes[1, 1]
    dim = config.focus_dim
    for name in config.models:
        track = results["tracking"][name][str(dim)]
        if "mmd" in track:
            ax.plot(track["mmd_steps"], track["mmd"], color=COLORS[name], label=LABELS[name])
    ax.set(yscale="log", xlabel="training step")
    ax.set_title(f"D. full-batch MMD$^2$ in training (z = {dim})", fontsize=10)
    handles, labels = axes[2, 0].get_legend_handles_labels()  # panel E has every model, ours and the paper's
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def plot_samples(samples: dict[tuple[str, int], torch.Tensor], config: FlexibleDecodersConfig) -> Figure:
    """Ancestral samples x ~ p(x|z), z ~ p(z) of every model (columns) and latent dim (rows)."""
    dims, models = config.latent_dims, config.models
    fig, axes = plt.subplots(len(dims), len(models), figsize=(7, 1.45 * len(dims) + 0.3), squeeze=False,
                             layout="constrained")
    for i, dim in enumerate(dims):
        for j, name in enumerate(models):
            grid = np.ones((4 * 28, 4 * 28))
            for k, img in enumerate(samples[(name, dim)][:16]):
                r, c = divmod(k, 4)
                grid[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28] = img[0].numpy()
            axes[i, j].imshow(grid, cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].set(xticks=[], yticks=[])
            if i == 0:
                axes[i, j].set_title(LABELS[name], fontsize=8)
        axes[i, 0].set_ylabel(f"z = {dim}")
    return fig
