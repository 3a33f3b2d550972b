"""Metrics that use labels: the class distribution of samples and semi-supervised error (Fig. 6 C, E).

* ``class_distribution_cross_entropy``: a correct generative model produces each digit
  class as often as the data does; the paper measures the deviation with
  l_ce(c, c_hat) = -c^T (log c_hat - log c) = KL(c || c_hat), c the data's class
  distribution and c_hat that of model samples labelled by a trained classifier.
* ``semi_supervised_error``: test error of an RBF support vector machine trained on latent
  features of only 1000 labelled images (the M1 setting of Kingma et al. 2014).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ._common import check_count, check_images, evaluating


class ClassDistribution(NamedTuple):
    """``cross_entropy`` KL(reference || smoothed histogram) in nats; ``histogram`` ``[K]``
    the raw fraction of samples assigned to each class.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from infovae.metrics.downstream import ClassDistribution, class_distribution_cross_entropy
        >>> logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> class_distribution_cross_entropy(nn.Identity(), logits, num_classes=2)  # balanced classes
        ClassDistribution(cross_entropy=0.0, histogram=tensor([0.5000, 0.5000], dtype=torch.float64))
    """

    cross_entropy: float
    histogram: torch.Tensor


class SemiSupervisedError(NamedTuple):
    """Test error over ``num_draws`` draws of the labelled set: ``mean``, ``std`` (across
    draws), every draw's ``errors`` and the ``params`` (gamma, C) chosen for it.

    Example:
        >>> from infovae.metrics.downstream import SemiSupervisedError
        >>> result = SemiSupervisedError(0.05, 0.01, (0.04, 0.06), ({"gamma": 0.5, "C": 10.0},) * 2)
        >>> result.mean, len(result.errors), result.params[0]["C"]
        (0.05, 2, 10.0)
    """

    mean: float
    std: float
    errors: tuple[float, ...]
    params: tuple[dict, ...]


@torch.inference_mode()
def class_distribution_cross_entropy(
    classifier: nn.Module,
    images: torch.Tensor,
    *,
    num_classes: int = 10,
    reference: torch.Tensor | None = None,
    pseudo_count: float = 1.0,
    batch_size: int = 1000,
) -> ClassDistribution:
    """Cross-entropy between the class distribution of model samples and the data's (Fig. 6 C).

    Each image gets the classifier's most likely class; with n_k images in class k out of n,
    c_hat_k = (n_k + a) / (n + K a) with pseudo-count a = ``pseudo_count``, and the metric is
    l_ce = -sum_k c_k (log c_hat_k - log c_k) = KL(c || c_hat).

    Convention for an empty class: the pseudo-count keeps c_hat_k > 0, so l_ce stays finite
    and a missing class costs about c_k log(c_k (n + K a) / a) (0.69 nats for n = 10k,
    K = 10, uniform c). The paper's authors' code computes KL(uniform || c_hat) without
    smoothing, infinite when a class is missing; the default reference here is also
    uniform (the digit classes of MNIST are close to it).

    Bias and variance: with n samples from a model whose classes are exactly c, l_ce is
    about chi^2_{K-1} / (2 n) (mean (K-1)/(2n) = 4.5e-4 for n = 10k, K = 10), the floor under
    which differences mean nothing; the pseudo-count shrinks c_hat towards uniform by
    O(K a / n). Cost: one classifier pass over the images.

    Args:
        classifier: module mapping images ``[b, ...]`` to logits ``[b, num_classes]``.
        images: samples of the model ``[n, ...]`` (e.g. ``model.sample(10_000)``), on the
            classifier's device.
        num_classes: K.
        reference: c, class probabilities ``[K]`` (default uniform).
        pseudo_count: a > 0 added to every class count.
        batch_size: images per classifier call.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from infovae.metrics.downstream import class_distribution_cross_entropy
        >>> logits = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # nn.Identity() reads them as logits: class 0 twice
        >>> result = class_distribution_cross_entropy(nn.Identity(), logits, num_classes=2)
        >>> round(result.cross_entropy, 4), result.histogram  # KL((1/2, 1/2) || (3/4, 1/4))
        (0.1438, tensor([1., 0.], dtype=torch.float64))
    """
    check_images(images, "images")
    check_count("num_classes", num_classes)
    check_count("batch_size", batch_size)
    if isinstance(pseudo_count, bool) or not isinstance(pseudo_count, (int, float)):
        raise TypeError(f"pseudo_count must be a number, got {pseudo_count!r}")
    if not pseudo_count > 0:
        raise ValueError(f"pseudo_count must be positive, got {pseudo_count}")
    c = (
        torch.full((num_classes,), 1 / num_classes, dtype=torch.float64)
        if reference is None
        else torch.as_tensor(reference, dtype=torch.float64).cpu()
    )
    if c.shape != (num_classes,) or (c < 0).any() or not math.isclose(float(c.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"reference must be {num_classes} non-negative probabilities summing to 1, got {c.tolist()}"
        )
    with evaluating(classifier):
        logits = torch.cat([classifier(xb) for xb in images.split(batch_size)])
    if logits.shape != (images.shape[0], num_classes):
        raise ValueError(
            f"the classifier returned shape {tuple(logits.shape)}, "
            f"expected logits [{images.shape[0]}, {num_classes}]"
        )
    counts = torch.bincount(logits.argmax(1).cpu(), minlength=num_classes).double()
    c_hat = (counts + pseudo_count) / (counts.sum() + num_classes * pseudo_count)
    cross_entropy = torch.where(c > 0, c * (c.log() - c_hat.log()), 0.0).sum()
    return ClassDistribution(float(cross_entropy), counts / counts.sum())


def semi_supervised_error(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    *,
    num_labels: int = 1000,
    num_draws: int = 10,
    gammas: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0),
    Cs: Sequence[float] = (1.0, 10.0, 100.0),
    folds: int = 3,
    seed: int = 0,
) -> SemiSupervisedError:
    """Test error of an RBF SVM on latent features with ``num_labels`` labels (Fig. 6 E).

    For each of ``num_draws`` draws: pick ``num_labels`` labelled training points at random,
    standardise the features, choose gamma and C by ``folds``-fold stratified
    cross-validation on those labelled points only (the test set never takes part in
    any choice), refit on all of them and measure the error on the test set. Gammas are
    multiples of 1 / dim (scikit-learn's ``"scale"`` for standardised features).

    Bias and variance: each error is unbiased for the chosen classifier's error rate, with
    binomial s.d. sqrt(e (1-e) / n_test); ``std`` across draws adds the variability of the
    1000 labels and of the selection. Cost: ``num_draws * (len(gammas) len(Cs) folds + 1)``
    SVM fits on ``num_labels`` points, plus predicting the test set.

    Args:
        features, labels: labelled pool ``[N, dim]`` and ``[N]`` (e.g. encoder means of the
            training set), of which ``num_labels`` are used per draw.
        test_features, test_labels: ``[M, dim]`` and ``[M]``.
        num_labels: labelled points per draw (the paper: 1000).
        num_draws: repeated draws of the labelled set.
        gammas: kernel widths, in units of 1 / dim.
        Cs: SVM penalties.
        folds: cross-validation folds for choosing (gamma, C).
        seed: seed of the draws.

    Returns:
        ``SemiSupervisedError(mean, std, errors, params)``; ``std`` is 0 for one draw.

    Example:
        >>> import torch
        >>> from infovae.metrics.downstream import semi_supervised_error
        >>> y = torch.arange(40) % 2
        >>> features = 4.0 * y[:, None].float() + torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
        >>> result = semi_supervised_error(features, y, features, y, num_labels=20, num_draws=2,
        ...                                gammas=(1.0,), Cs=(1.0,), folds=2)
        >>> result.mean, result.errors, result.params[0]
        (0.0, (0.0, 0.0), {'gamma': 0.5, 'C': 1.0})
    """
    x, y = _as_numpy(features, labels, "features")
    x_test, y_test = _as_numpy(test_features, test_labels, "test_features")
    check_count("num_labels", num_labels)
    check_count("num_draws", num_draws)
    check_count("folds", folds)
    if x.shape[1] != x_test.shape[1]:
        raise ValueError(f"features have {x.shape[1]} dims, test_features {x_test.shape[1]}")
    if num_labels > len(x):
        raise ValueError(f"num_labels={num_labels} exceeds the {len(x)} labelled features")
    if not gammas or not Cs or any(not (g > 0 and math.isfinite(g)) for g in (*gammas, *Cs)):
        raise ValueError(f"gammas and Cs must be non-empty sequences of positive numbers, got {list(gammas)}, {list(Cs)}")
    from sklearn.model_selection import GridSearchCV, StratifiedKFold  # imported here: scikit-learn takes ~1 s
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    grid = {"svc__gamma": [g / x.shape[1] for g in gammas], "svc__C": list(Cs)}
    rng = np.random.default_rng(seed)
    errors, params = [], []
    for _ in range(num_draws):
        pick = rng.choice(len(x), num_labels, replace=False)
        cv = StratifiedKFold(folds, shuffle=True, random_state=int(rng.integers(2**31)))
        search = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")), grid, cv=cv)
        search.fit(x[pick], y[pick])
        errors.append(float(np.mean(search.predict(x_test) != y_test)))
        params.append({"gamma": search.best_params_["svc__gamma"], "C": search.best_params_["svc__C"]})
    return SemiSupervisedError(float(np.mean(errors)), float(np.std(errors)), tuple(errors), tuple(params))


def _as_numpy(features, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, dim]`` as float64 and labels ``[N]`` as int64 numpy arrays."""
    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty [N, dim] array, got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"labels for {name} must have shape [{len(x)}], got {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x.astype(np.float64), y.astype(np.int64)
