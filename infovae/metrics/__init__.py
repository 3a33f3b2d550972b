"""The paper's metrics (chapters 7-9 of the book).

Every function documents the quantity it estimates, its estimator's bias and variance and
its cost. Model-based metrics take an ``infovae.VAE`` (anything with ``encode``,
``decode`` and ``prior``) on the device of the data, run in eval mode under
``torch.inference_mode`` and restore the model's mode afterwards.

* :mod:`~infovae.metrics.importance`: log p(x) by importance sampling (Table 1) and
  samples of the true posterior p(z|x) (Fig. 4);
* :mod:`~infovae.metrics.latent`: the aggregate posterior q(z) against p(z) (full-batch
  MMD, log det Cov) and the information in z (mutual information, shuffled codes,
  active units) (Figs. 2 and 6 A, B);
* :mod:`~infovae.metrics.downstream`: the class distribution of samples and
  semi-supervised error (Fig. 6 C, E).
"""

from .downstream import (
    ClassDistribution,
    SemiSupervisedError,
    class_distribution_cross_entropy,
    semi_supervised_error,
)
from .importance import (
    LogLikelihood,
    PosteriorSamples,
    log_likelihood,
    log_likelihood_with_error,
    posterior_samples,
    precision_error,
)
from .latent import (
    ActiveUnits,
    LogDetCovariance,
    active_units,
    encode_codes,
    full_batch_mmd,
    full_batch_mmd_floor,
    log_det_covariance,
    mutual_information,
    shuffled_code_gap,
)

__all__ = [
    "ActiveUnits",
    "ClassDistribution",
    "LogDetCovariance",
    "LogLikelihood",
    "PosteriorSamples",
    "SemiSupervisedError",
    "active_units",
    "class_distribution_cross_entropy",
    "encode_codes",
    "full_batch_mmd",
    "full_batch_mmd_floor",
    "log_det_covariance",
    "log_likelihood",
    "log_likelihood_with_error",
    "mutual_information",
    "posterior_samples",
    "precision_error",
    "semi_supervised_error",
    "shuffled_code_gap",
]
