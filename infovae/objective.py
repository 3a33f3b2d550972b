"""The InfoVAE objective, Eq. (6) of the book (chapter 4, ``ch4-eq6``), in nats per image.

    loss = -E log p(x|z) + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) D(q(z) || p(z))

averaged over the batch (book Eq. ``ch5-eq6``, the negative of ``ch4-eq6``). ``alpha`` weighs the mutual information between x and z,
``lam`` (lambda) the divergence between the aggregate posterior q(z) and the prior;
``D`` is one of the sample-based divergences of ``infovae.divergences`` (chapter 5):

* ``"mmd"``: MMD between the batch codes and fresh prior samples (200 by default);
* ``"stein"``: Stein variational gradient on KL(q(z) || p(z));
* ``"js"``: Jensen-Shannon through a discriminator; ``"wgan-gp"``: Wasserstein through a
  WGAN-GP critic. These two hold a network trained by ``auxiliary_step`` with its own
  optimiser (the trainer calls it before each model step; ``has_auxiliary`` says so);
* ``"none"``: no D term (its weight is then reported as 0).

A term whose weight is 0 is not computed (its field in the output is ``None``). The KL
term is closed form where torch.distributions has one (Gaussian q(z|x)) and a one-sample
Monte Carlo estimate log q(z|x) - log p(z) otherwise; a point-mass encoder (plain
autoencoder) must use alpha = 1, which removes the KL term.

Named presets: ``InfoVAELoss.elbo()``, ``.beta_vae(beta)``, ``.mmd_vae()``, ``.stein_vae()``,
``.adversarial()``, ``.autoencoder()``; ``InfoVAELoss.preset(name, **kwargs)`` by name.
``InfoVAELoss.authors_weighting("elbo" | "mmd", latent_dim)`` is the per-pixel weighting of
the authors' PixelCNN code (beta = 784/d for their ELBO, lambda = 784 for their MMD model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from . import validation
from .distributed import gather, gather_samples
from .divergences import ESTIMATORS, KERNELS, JSDiscriminator, WGANCritic, mmd, resolve_bandwidth, stein_loss
from .vae import VAE, check_decoder_output, check_encoder_output

DIVERGENCES: tuple[str, ...] = ("mmd", "stein", "js", "wgan-gp", "none")
ADVERSARIAL: tuple[str, ...] = ("js", "wgan-gp")


@dataclass
class InfoVAEOutput:
    """The value of Eq. (6) on one batch and its parts (nats per image).

    ``loss`` is book Eq. ``ch5-eq6`` (the negative of book Eq. ``ch4-eq6``, to minimise).

    Attributes:
        loss: scalar to minimise: reconstruction.mean() + kl_weight * kl.mean()
            + divergence_weight * divergence.
        reconstruction: ``[B]`` -log p(x|z) at the sampled codes.
        kl: ``[B]`` KL(q(z|x) || p(z)), or ``None`` when ``kl_weight`` is 0.
        divergence: scalar estimate of D(q(z) || p(z)) (for ``"stein"`` the kernel Stein
            discrepancy), or ``None`` when ``divergence_weight`` is 0.
        z: ``[B, dim]`` the sampled codes (with gradient).
        kl_weight: 1 - alpha.
        divergence_weight: alpha + lambda - 1 (0 for ``divergence="none"``).

    Example:
        >>> import torch
        >>> from infovae.networks import build_vae
        >>> from infovae.objective import InfoVAELoss
        >>> _ = torch.manual_seed(0)
        >>> x = torch.tensor([[-1.0], [1.0], [1.0], [-1.0]])
        >>> out = InfoVAELoss.mmd_vae(lam=10.0)(build_vae("toy", 1), x)
        >>> out.reconstruction.shape, out.kl.shape, out.divergence.shape, out.z.shape
        (torch.Size([4]), torch.Size([4]), torch.Size([]), torch.Size([4, 1]))
        >>> out.kl_weight, out.divergence_weight
        (1.0, 9.0)
        >>> total = out.reconstruction.mean() + out.kl_weight * out.kl.mean() + out.divergence_weight * out.divergence
        >>> bool(torch.isclose(out.loss, total))
        True
    """

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor | None
    divergence: Tensor | None
    z: Tensor
    kl_weight: float
    divergence_weight: float


@dataclass(frozen=True)
class ObjectiveConfig:
    """Every setting of an ``InfoVAELoss``, validated, as plain values: the one home of its settings.

    ``InfoVAELoss(config)`` builds the loss, ``loss_fn.config`` gives it back, and training
    checkpoints store ``config.as_dict()``. The presets are constructors of this class
    (``ObjectiveConfig.mmd_vae()``, ...; by name: ``ObjectiveConfig.preset(name, ...)`` and
    ``OBJECTIVES``). Bad settings are refused here, with a message that names them.

    Attributes:
        alpha: information preference; the KL weight is 1 - alpha (alpha <= 1).
        lam: lambda > 0; the weight of the divergence term is alpha + lambda - 1.
        divergence: ``"mmd"``, ``"stein"``, ``"js"``, ``"wgan-gp"`` or ``"none"``.
        kernel: the MMD's kernel (``infovae.divergences.mmd``).
        bandwidth: its bandwidth (``None``: the latent dimension); also the Stein kernel's.
        estimator: ``"biased"`` (the V-statistic) or ``"unbiased"`` MMD.
        num_prior_samples: fresh prior samples per batch for MMD and the adversarial terms.
        critic_hidden: width of the adversarial network's two hidden layers.
        critic_lr: its Adam learning rate (authors' code: 2e-5).
        critic_betas: its Adam betas (authors' code: (0.5, 0.9)).
        gp_weight: the WGAN-GP gradient-penalty weight (authors' code: 10).
        allow_negative_weights: accept alpha > 1 or alpha + lambda < 1, which put a
            negative weight on a divergence (the objective then rewards a mismatch).

    Example:
        >>> from infovae.objective import InfoVAELoss, ObjectiveConfig
        >>> cfg = ObjectiveConfig.mmd_vae(lam=500.0)
        >>> cfg.alpha, cfg.lam, cfg.divergence, cfg.num_prior_samples, cfg.kl_weight, cfg.divergence_weight
        (0.0, 500.0, 'mmd', 200, 1.0, 499.0)
        >>> InfoVAELoss(cfg).config == cfg == InfoVAELoss.mmd_vae(lam=500.0).config  # the same objective
        True
        >>> cfg.as_dict()["critic_betas"]
        [0.5, 0.9]
        >>> ObjectiveConfig(lam=0.0)
        Traceback (most recent call last):
        ...
        ValueError: lam (lambda) must be positive, got 0.0
    """

    alpha: float = 0.0
    lam: float = 1.0
    divergence: str = "mmd"
    kernel: str = "rbf"
    bandwidth: float | None = None
    estimator: str = "biased"
    num_prior_samples: int = 200
    critic_hidden: int = 512
    critic_lr: float = 2e-5
    critic_betas: tuple[float, float] = (0.5, 0.9)
    gp_weight: float = 10.0
    allow_negative_weights: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:  # a frozen dataclass: normalised values set once, here
            object.__setattr__(self, name, value)

        put("alpha", validation.number("alpha", self.alpha))
        put("lam", validation.number("lam", self.lam))
        if self.lam <= 0:
            raise ValueError(f"lam (lambda) must be positive, got {self.lam}")
        put("divergence", "none" if self.divergence is None else self.divergence)
        for name, choices in (("divergence", DIVERGENCES), ("kernel", KERNELS), ("estimator", ESTIMATORS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        if self.bandwidth is not None:
            put("bandwidth", resolve_bandwidth(self.bandwidth, 1))
        validation.integer("num_prior_samples", self.num_prior_samples, minimum=2)
        validation.integer("critic_hidden", self.critic_hidden, minimum=1)
        put("critic_lr", validation.number("critic_lr", self.critic_lr, positive=True))
        put("gp_weight", validation.number("gp_weight", self.gp_weight, minimum=0))
        betas = self.critic_betas
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"critic_betas must be a pair (beta1, beta2), got {betas!r}")
        put("critic_betas", tuple(validation.number("critic_betas", b, minimum=0, maximum=1) for b in betas))
        if not isinstance(self.allow_negative_weights, bool):
            raise TypeError(f"allow_negative_weights must be True or False, got {self.allow_negative_weights!r}")
        if not self.allow_negative_weights:
            if self.kl_weight < 0:
                raise ValueError(
                    f"alpha = {self.alpha} > 1 gives KL(q(z|x)||p(z)) the negative weight {self.kl_weight:g}; "
                    "pass allow_negative_weights=True if that is intended"
                )
            if self.divergence_weight < 0:
                raise ValueError(
                    f"alpha + lambda - 1 = {self.divergence_weight:g} < 0 puts a negative weight on "
                    "D(q(z)||p(z)), which maximises the mismatch; pass allow_negative_weights=True "
                    "if that is intended"
                )

    @property
    def kl_weight(self) -> float:
        """1 - alpha, the weight of KL(q(z|x) || p(z))."""
        return 1.0 - self.alpha

    @property
    def divergence_weight(self) -> float:
        """alpha + lambda - 1, the weight of D(q(z) || p(z)) (0 for ``divergence="none"``)."""
        return 0.0 if self.divergence == "none" else self.alpha + self.lam - 1.0

    def as_dict(self) -> dict:
        """Plain values (lists for tuples), e.g. for a checkpoint or JSON."""
        out = asdict(self)
        out["critic_betas"] = list(out["critic_betas"])
        return out

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> "ObjectiveConfig":
        """The config of ``as_dict()`` (e.g. read from a checkpoint); unknown names are refused."""
        if not isinstance(settings, Mapping):
            raise TypeError(f"settings must be a dict of objective settings, got {type(settings).__name__}")
        unknown = set(settings) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown objective settings: {', '.join(sorted(unknown))}; "
                             f"the settings are {', '.join(cls.__dataclass_fields__)}")
        kwargs = dict(settings)
        if "critic_betas" in kwargs:
            kwargs["critic_betas"] = tuple(kwargs["critic_betas"])
        return cls(**kwargs)

    # --------------------------------------------------------------- presets

    @classmethod
    def elbo(cls, **settings: Any) -> "ObjectiveConfig":
        """The negative ELBO: alpha = 0, lambda = 1 (no divergence term)."""
        return cls(alpha=0.0, lam=1.0, divergence="none", **settings)

    @classmethod
    def beta_vae(cls, beta: float, **settings: Any) -> "ObjectiveConfig":
        """beta-VAE (Higgins et al. 2017): alpha = 1 - beta, lambda = beta, so D has weight 0."""
        beta = validation.number("beta", beta, positive=True)
        return cls(alpha=1.0 - beta, lam=beta, divergence="none", **settings)

    @classmethod
    def mmd_vae(cls, lam: float = 1000.0, alpha: float = 0.0, **settings: Any) -> "ObjectiveConfig":
        """MMD-VAE: lambda = 1000 and alpha = 0 (Figs. 2-5); use alpha = 1 for PixelCNN decoders (Fig. 6)."""
        return cls(alpha=alpha, lam=lam, divergence="mmd", **settings)

    @classmethod
    def stein_vae(cls, lam: float = 1000.0, alpha: float = 1.0, **settings: Any) -> "ObjectiveConfig":
        """Stein-VAE (Fig. 6, Table 1): Stein variational gradient, lambda = 1000, alpha = 1."""
        return cls(alpha=alpha, lam=lam, divergence="stein", **settings)

    @classmethod
    def adversarial(cls, lam: float = 1.0, alpha: float = 1.0, divergence: str = "js", **settings: Any) -> "ObjectiveConfig":
        """Adversarial autoencoder: alpha = 1, lambda = 1, Jensen-Shannon (or ``"wgan-gp"``)."""
        if divergence not in ADVERSARIAL:
            raise ValueError(f"an adversarial divergence is one of {', '.join(ADVERSARIAL)}, got {divergence!r}")
        return cls(alpha=alpha, lam=lam, divergence=divergence, **settings)

    @classmethod
    def autoencoder(cls, **settings: Any) -> "ObjectiveConfig":
        """Plain (unregularised) autoencoder: reconstruction only (alpha = 1, no divergence)."""
        return cls(alpha=1.0, lam=1.0, divergence="none", **settings)

    @classmethod
    def authors_weighting(cls, objective: str, latent_dim: int, num_pixels: int = 784, **settings: Any) -> "ObjectiveConfig":
        """The per-pixel loss of the authors' PixelCNN code, on this module's nats-per-image scale.

        Their TensorFlow code (ShengjiaZhao/PixelCNN, ``models.py``) averages the reconstruction
        over the ``num_pixels`` pixels and the Gaussian KL over the ``latent_dim`` dimensions.
        Multiplied by ``num_pixels`` (which leaves the optimum unchanged) that is:

        * ``"elbo"``: -log p(x|z) + (num_pixels / latent_dim) KL(q(z|x)||p(z)), a beta-VAE with
          beta = num_pixels / latent_dim (156.8 for MNIST at latent_dim = 5);
        * ``"mmd"``: -log p(x|z) + num_pixels MMD(q(z), p(z)), MMD-VAE with alpha = 1 and
          lambda = num_pixels (784 for MNIST, against the paper's stated 1000).

        ``loss / num_pixels`` equals their per-pixel loss (book chapter 8; tested).
        """
        if objective not in ("elbo", "mmd"):
            raise ValueError(f"the authors' weighting is defined for 'elbo' and 'mmd', got {objective!r}")
        validation.integer("latent_dim", latent_dim, minimum=1)
        validation.integer("num_pixels", num_pixels, minimum=1)
        if objective == "elbo":
            return cls.beta_vae(num_pixels / latent_dim, **settings)
        return cls.mmd_vae(lam=float(num_pixels), alpha=1.0, **settings)

    @classmethod
    def authors_elbo(cls, latent_dim: int, num_pixels: int = 784, **settings: Any) -> "ObjectiveConfig":
        """The ELBO with the authors' per-pixel weighting: ``authors_weighting("elbo", latent_dim, num_pixels)``."""
        return cls.authors_weighting("elbo", latent_dim, num_pixels, **settings)

    @classmethod
    def preset(cls, name: str, **settings: Any) -> "ObjectiveConfig":
        """A preset by name: one of ``OBJECTIVES`` (``"elbo"``, ``"beta-vae"``, ``"mmd-vae"``, ...)."""
        if name not in OBJECTIVES:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(OBJECTIVES)}")
        return OBJECTIVES[name](**settings)


def _is_standard_normal(prior: Distribution) -> bool:
    base = prior.base_dist if isinstance(prior, Independent) else prior
    return (
        isinstance(base, Normal)
        and bool((base.loc == 0).all())
        and bool((base.scale == 1).all())
    )


def prior_score(prior: Distribution, z: Tensor) -> Tensor | None:
    """grad_z log p(z) at the codes ``z`` (treated as constants), or ``None`` for N(0, I),
    whose score -z the Stein functions of ``infovae.divergences`` use by default.

    The score is the grad log p of the Stein variational gradient, book Eq. ``ch5-svgd``.

    Example:
        >>> import torch
        >>> from torch.distributions import Independent, Normal
        >>> from infovae.objective import prior_score
        >>> z = torch.tensor([[1.0, -2.0]])
        >>> prior_score(Independent(Normal(torch.zeros(2), torch.ones(2)), 1), z) is None
        True
        >>> prior_score(Independent(Normal(torch.zeros(2), 2.0 * torch.ones(2)), 1), z)  # -z / 4
        tensor([[-0.2500,  0.5000]])
    """
    if _is_standard_normal(prior):
        return None
    zd = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (score,) = torch.autograd.grad(prior.log_prob(zd).sum(), zd)
    return score


class InfoVAELoss(nn.Module):
    """Eq. (6): the InfoVAE objective in nats per image, called as ``loss_fn(model, x)``.

    It minimises book Eq. ``ch5-eq6``, the negative of book Eq. ``ch4-eq6`` with the KL
    between q(z) and p(z) replaced by the divergence D; the MMD is book Eq. ``ch5-mmd-v``
    (or its unbiased form), the Stein term follows book Eq. ``ch5-svgd``, the adversarial
    ones book Eqs. ``ch5-js`` and ``ch5-wgan``.

    Built from an ``ObjectiveConfig`` (``InfoVAELoss(config)``), which holds every setting, or
    from its fields as keywords (``InfoVAELoss(alpha=0.0, lam=1000.0, divergence="mmd")``,
    which builds that config); the presets (``InfoVAELoss.mmd_vae()``, ...) are those of
    ``ObjectiveConfig``. The settings are read back as attributes (``loss_fn.alpha``, ...).

    Args:
        alpha: an ``ObjectiveConfig``, or the information preference alpha (see there for
            ``lam``, ``divergence`` and the keyword settings).
        latent_dim: for ``"js"``/``"wgan-gp"``, builds the network now (else on first use,
            on the codes' device and dtype).

    Example:
        >>> import torch
        >>> from infovae.networks import build_vae
        >>> from infovae.objective import InfoVAELoss, ObjectiveConfig
        >>> _ = torch.manual_seed(0)
        >>> model = build_vae("toy", latent_dim=1)
        >>> x = torch.tensor([[-1.0], [1.0]]).repeat(4, 1)
        >>> loss_fn = InfoVAELoss(alpha=0.0, lam=500.0, divergence="mmd")
        >>> out = loss_fn(model, x)
        >>> out.loss.shape, out.kl_weight, out.divergence_weight
        (torch.Size([]), 1.0, 499.0)
        >>> out.loss.backward()  # gradients for the model's optimiser
        >>> InfoVAELoss.elbo().divergence_weight, InfoVAELoss.beta_vae(4.0).kl_weight
        (0.0, 4.0)
        >>> InfoVAELoss.preset("stein-vae")
        InfoVAELoss(alpha=1, lam=1000, divergence='stein')
        >>> InfoVAELoss(ObjectiveConfig.beta_vae(4.0)).kl_weight
        4.0
    """

    def __init__(
        self,
        alpha: float | ObjectiveConfig = 0.0,
        lam: float = 1.0,
        divergence: str | None = "mmd",
        *,
        latent_dim: int | None = None,
        **settings: Any,
    ):
        super().__init__()
        if isinstance(alpha, ObjectiveConfig):
            given = [name for name, value, default in (("lam", lam, 1.0), ("divergence", divergence, "mmd"))
                     if value != default]
            if given or settings:
                raise TypeError(f"InfoVAELoss(config) takes its settings from the config; got {given + sorted(settings)} "
                                "besides it (use dataclasses.replace(config, ...))")
            config = alpha
        else:
            unknown = sorted(set(settings) - set(ObjectiveConfig.__dataclass_fields__))
            if unknown:
                raise TypeError(f"InfoVAELoss got unknown settings {unknown}; the settings are those of "
                                f"ObjectiveConfig: {', '.join(ObjectiveConfig.__dataclass_fields__)}")
            config = ObjectiveConfig(alpha=alpha, lam=lam, divergence="none" if divergence is None else divergence, **settings)
        self.config = config
        self.critic: JSDiscriminator | WGANCritic | None = None
        self._prior: Distribution | None = None
        if latent_dim is not None:
            validation.integer("latent_dim", latent_dim, minimum=1)
            if self.has_auxiliary:
                self._build_critic(latent_dim, None, None)

    # the settings, read from the config (their one home)
    alpha = property(lambda self: self.config.alpha, doc="alpha of Eq. (6).")
    lam = property(lambda self: self.config.lam, doc="lambda of Eq. (6).")
    divergence = property(lambda self: self.config.divergence, doc="the divergence D.")
    kernel = property(lambda self: self.config.kernel, doc="the MMD kernel.")
    bandwidth = property(lambda self: self.config.bandwidth, doc="the kernel bandwidth; None means the code dimension.")
    estimator = property(lambda self: self.config.estimator, doc="the MMD estimator.")
    num_prior_samples = property(lambda self: self.config.num_prior_samples, doc="prior samples per batch.")
    kl_weight = property(lambda self: self.config.kl_weight, doc="1 - alpha.")
    divergence_weight = property(lambda self: self.config.divergence_weight, doc="alpha + lambda - 1, or 0 without D.")

    @classmethod
    def from_config(cls, config: ObjectiveConfig | Mapping[str, Any], latent_dim: int | None = None) -> "InfoVAELoss":
        """The loss of an ``ObjectiveConfig`` (or of its ``as_dict()``, e.g. from a checkpoint)."""
        if not isinstance(config, ObjectiveConfig):
            config = ObjectiveConfig.from_dict(config)
        return cls(config, latent_dim=latent_dim)

    # --------------------------------------------------------------- presets (those of ObjectiveConfig)

    @classmethod
    def elbo(cls, latent_dim: int | None = None, **settings: Any) -> "InfoVAELoss":
        """The negative ELBO: alpha = 0, lambda = 1 (no divergence term)."""
        return cls(ObjectiveConfig.elbo(**settings), latent_dim=latent_dim)

    @classmethod
    def beta_vae(cls, beta: float, latent_dim: int | None = None, **settings: Any) -> "InfoVAELoss":
        """beta-VAE (Higgins et al. 2017): alpha = 1 - beta, lambda = beta, so D has weight 0."""
        return cls(ObjectiveConfig.beta_vae(beta, **settings), latent_dim=latent_dim)

    @classmethod
    def mmd_vae(cls, lam: float = 1000.0, alpha: float = 0.0, latent_dim: int | None = None, **settings: Any) -> "InfoVAELoss":
        """MMD-VAE: lambda = 1000 and alpha = 0 (Figs. 2-5); use alpha = 1 for PixelCNN decoders (Fig. 6)."""
        return cls(ObjectiveConfig.mmd_vae(lam, alpha, **settings), latent_dim=latent_dim)

    @classmethod
    def stein_vae(cls, lam: float = 1000.0, alpha: float = 1.0, latent_dim: int | None = None, **settings: Any) -> "InfoVAELoss":
        """Stein-VAE (Fig. 6, Table 1): Stein variational gradient, lambda = 1000, alpha = 1."""
        return cls(ObjectiveConfig.stein_vae(lam, alpha, **settings), latent_dim=latent_dim)

    @classmethod
    def adversarial(cls, lam: float = 1.0, alpha: float = 1.0, divergence: str = "js", latent_dim: int | None = None,
                    **settings: Any) -> "InfoVAELoss":
        """Adversarial autoencoder: alpha = 1, lambda = 1, Jensen-Shannon (or ``"wgan-gp"``)."""
        return cls(ObjectiveConfig.adversarial(lam, alpha, divergence, **settings), latent_dim=latent_dim)

    @classmethod
    def autoencoder(cls, latent_dim: int | None = None, **settings: Any) -> "InfoVAELoss":
        """Plain (unregularised) autoencoder: reconstruction only (alpha = 1, no divergence)."""
        return cls(ObjectiveConfig.autoencoder(**settings), latent_dim=latent_dim)

    @classmethod
    def authors_weighting(cls, objective: str, latent_dim: int, num_pixels: int = 784, **settings: Any) -> "InfoVAELoss":
        """The per-pixel loss of the authors' PixelCNN code (``ObjectiveConfig.authors_weighting``)."""
        return cls(ObjectiveConfig.authors_weighting(objective, latent_dim, num_pixels, **settings))

    @classmethod
    def preset(cls, name: str, latent_dim: int | None = None, **settings: Any) -> "InfoVAELoss":
        """A preset by name: one of ``OBJECTIVES`` (``"elbo"``, ``"beta-vae"``, ...)."""
        return cls(ObjectiveConfig.preset(name, **settings), latent_dim=latent_dim)

    # --------------------------------------------------------------- adversarial network

    @property
    def has_auxiliary(self) -> bool:
        """True when the divergence has a network that ``auxiliary_step`` must train."""
        return self.divergence in ADVERSARIAL and self.divergence_weight != 0

    def _build_critic(self, dim: int, device, dtype) -> JSDiscriminator | WGANCritic:
        cls: type[JSDiscriminator] | type[WGANCritic] = JSDiscriminator if self.divergence == "js" else WGANCritic
        c = self.config
        extra = {"gp_weight": c.gp_weight} if self.divergence == "wgan-gp" else {}
        critic = cls(dim, c.critic_hidden, c.critic_lr, c.critic_betas, device=device, dtype=dtype, **extra)
        self.critic = critic
        return critic

    def _get_critic(self, z: Tensor) -> JSDiscriminator | WGANCritic:
        if self.critic is None:
            return self._build_critic(z.shape[1], z.device, z.dtype)
        return self.critic

    def _prior_samples(self, n: int, like: Tensor) -> Tensor:
        """``n`` fresh prior samples (under data parallelism: drawn by all ranks, ``infovae.distributed``)."""
        prior = self._prior
        if prior is None:
            return gather_samples(n, lambda k: torch.randn(k, like.shape[1], device=like.device, dtype=like.dtype))
        return gather_samples(n, lambda k: prior.sample((k,)).to(like.dtype))

    def auxiliary_step(self, z: Tensor) -> dict[str, float]:
        """Train the discriminator/critic once on detached codes ``z`` vs fresh prior samples.

        Uses the prior of the model last passed to ``forward`` (N(0, I) before that). Under data
        parallelism (``infovae.distributed.whole_batch``) it trains on the codes of every rank and
        every rank makes the same update. Returns the step's logged numbers; ``{}`` when the
        divergence is not adversarial.
        """
        if not self.has_auxiliary:
            return {}
        z = gather(z.detach())
        return self._get_critic(z).step(z, self._prior_samples(self.num_prior_samples, z))

    # --------------------------------------------------------------- the objective

    def _kl(self, qz: Distribution, z: Tensor, prior: Distribution) -> Tensor:
        try:
            return kl_divergence(qz, prior)
        except NotImplementedError:
            pass
        try:
            point_mass = bool((qz.variance == 0).all())
        except NotImplementedError:
            point_mass = False
        if point_mass:
            raise ValueError(
                "the encoder returns a point mass, whose KL(q(z|x)||p(z)) is infinite: use alpha = 1 "
                "(e.g. InfoVAELoss.autoencoder() or an alpha = 1 MMD/Stein/adversarial loss)"
            )
        return qz.log_prob(z) - prior.log_prob(z)

    def _divergence(self, z: Tensor, prior: Distribution) -> Tensor:
        z = gather(z)  # the codes of the whole batch (those of every rank under data parallelism)
        if self.divergence == "mmd":
            w = self._prior_samples(self.num_prior_samples, z)
            return mmd(z, w, self.kernel, self.bandwidth, self.estimator)
        if self.divergence == "stein":
            return stein_loss(z, prior_score(prior, z), self.bandwidth)
        critic = self._get_critic(z)
        return critic(z, self._prior_samples(self.num_prior_samples, z))

    def forward(self, model: VAE, x: Tensor) -> InfoVAEOutput:
        """Eq. (6) on the batch ``x`` for ``model`` (an ``infovae.VAE``)."""
        if not isinstance(model, nn.Module) or not callable(getattr(model, "prior", None)):
            raise TypeError(f"model must be an infovae.VAE-like module (encoder, decoder, prior), got {type(model).__name__}")
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values")
        qz, z, px = model(x)
        prior = model.prior()
        self._prior = prior
        check_encoder_output(qz, x)
        check_decoder_output(px, x)  # the one contract check (a per-pixel decoder is refused)
        if self.divergence_weight != 0 and len(z) < 2:
            raise ValueError("the divergence D(q(z)||p(z)) needs a batch of at least 2 codes")
        reconstruction = -px.log_prob(x)
        loss = reconstruction.mean()
        kl = divergence = None
        if self.kl_weight != 0:
            kl = self._kl(qz, z, prior)
            loss = loss + self.kl_weight * kl.mean()
        if self.divergence_weight != 0:
            divergence = self._divergence(z, prior)
            loss = loss + self.divergence_weight * divergence
        return InfoVAEOutput(loss, reconstruction, kl, divergence, z, self.kl_weight, self.divergence_weight)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, lam={self.lam:g}, divergence={self.divergence!r}"


# The one registry from names to objectives: each name's constructor of an ObjectiveConfig (its
# parameters are what the name takes). The CLI, the experiments and InfoVAELoss.preset use it.
OBJECTIVES: dict[str, Callable[..., ObjectiveConfig]] = {
    "elbo": ObjectiveConfig.elbo,
    "beta-vae": ObjectiveConfig.beta_vae,
    "mmd-vae": ObjectiveConfig.mmd_vae,
    "stein-vae": ObjectiveConfig.stein_vae,
    "adversarial": ObjectiveConfig.adversarial,
    "autoencoder": ObjectiveConfig.autoencoder,
    "elbo-authors": ObjectiveConfig.authors_elbo,
}
# The presets by name, as before (name -> the InfoVAELoss classmethod): the registry's names.
PRESETS: dict[str, str] = {name: OBJECTIVES[name].__name__ for name in OBJECTIVES if name != "elbo-authors"}
