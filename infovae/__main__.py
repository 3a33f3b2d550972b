"""The command line: ``python -m infovae`` (or ``infovae``) train | evaluate | reproduce | queue.

* ``train`` trains one model of the book (architecture, objective preset, latent dimension,
  data set, optimiser...) and writes ``checkpoint.pt`` (resumable) and ``history.json`` to
  ``--out``; defaults follow the paper and its authors' code for the chosen architecture.
* ``evaluate`` reads such a checkpoint and reports the loss terms (nats per image) on a
  split of MNIST, and optionally the importance-sampled log-likelihood (Table 1).
* ``reproduce <figure>`` regenerates a figure or table of the paper at the chosen profile;
  ``reproduce --list`` shows which are available.
* ``queue`` trains every PixelCNN-decoder model of chapters 8 and 9 at the chosen profile,
  resumably (``queue --status``: what is done, in progress and left).

``--profile``, ``--device``, ``--seed`` and ``--out`` work with every command; ``--profile``
and ``--device`` set ``INFOVAE_PROFILE`` and ``INFOVAE_DEVICE`` for everything the command runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .networks import ARCHITECTURES, MODELS
from .objective import ADVERSARIAL, PRESETS
from .precision import TRAINING_PRECISIONS
from .runtime import PROFILES
from .train import OPTIMIZERS, SCHEDULERS


# What `reproduce` offers: the experiments of infovae.experiments.EXPERIMENTS, by name.
REPRODUCTIONS: dict[str, str] = {
    "fig1": "two data points: q(z|x) and p(x|z) of ELBO vs InfoVAE (chapter 6)",
    "fig2-5": "MNIST, ELBO vs MMD-VAE: log det Cov[q(z)] against training-set size, q(z) contours, "
    "true vs approximate posteriors, samples vs reconstructions (chapter 7)",
    "fig6": "PixelCNN decoders: MMD, log det, class CE, MMD vs iterations, SVM (chapter 8)",
    "information-preference": "does the ELBO ignore z? ELBO, MMD-VAE and the authors' weighting over seeds on "
    "14x14 digits, beta and decoder-depth sweeps (chapter 8)",
    "table1": "importance-sampled log-likelihood of a 5-dim latent (chapter 9)",
}


# Optimiser, learning rate, clipping, batch size and binarization of each architecture (the paper and
# its authors' code): the model registry's.
ARCHITECTURE_DEFAULTS: dict[str, dict] = {name: dict(entry.training) for name, entry in MODELS.items()}
ITERATIONS: dict[str, int] = {"quick": 200, "book": 5000, "paper": 100_000}
# Presets whose alpha/lambda are fixed by definition (beta-vae takes --beta).
FIXED_WEIGHTS: tuple[str, ...] = ("elbo", "autoencoder", "beta-vae")


def _integer(minimum: int):  # type: ignore[no-untyped-def]
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {'positive' if minimum == 1 else f'>= {minimum}'}, got {value}")
        return value

    return parse


def _number(positive: bool):  # type: ignore[no-untyped-def]
    """An argparse type: a finite number (> 0 if ``positive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or (positive and value <= 0):
            raise argparse.ArgumentTypeError(f"must be a {'positive ' if positive else ''}finite number, got {text}")
        return value

    return parse


def _options(text: str) -> dict:
    """An argparse type: keyword arguments as a JSON object, e.g. '{"momentum": 0.9}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"T_max\": 1000}}', got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object (keyword arguments), got {text!r}")
    return value


POSITIVE_INT, NON_NEGATIVE_INT = _integer(1), _integer(0)
POSITIVE_FLOAT, FINITE_FLOAT = _number(True), _number(False)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--profile", choices=PROFILES, help="scale of the run (sets INFOVAE_PROFILE; default: from the environment)")
    group.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1, mps (sets INFOVAE_DEVICE; default: the fastest available)")
    group.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="random seed (default: %(default)s)")
    group.add_argument("--out", type=Path, default=Path("runs/infovae"), help="output directory (default: %(default)s)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m infovae``."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="python -m infovae",
        description="InfoVAE (Zhao, Song & Ermon, AAAI 2019): train and evaluate the book's models, reproduce its figures.",
        epilog="Every command takes --profile {quick,book,paper}, --device, --seed and --out after its name; "
        "see `python -m infovae COMMAND --help`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", parents=[common], help="train a model and write OUT/checkpoint.pt and OUT/history.json",
        description="Train one model of the book; an interrupted run continues with --resume.",
    )
    train.add_argument("--model", choices=ARCHITECTURES, default="dcgan",
                       help="networks: toy (Fig. 1 MLPs, two-point data), mlp, dcgan (Figs. 2-5), pixelcnn (Fig. 6); default: %(default)s")
    train.add_argument("--preset", choices=list(PRESETS), default="mmd-vae", help="objective of Eq. 6 (default: %(default)s)")
    train.add_argument("--alpha", type=FINITE_FLOAT,
                       help="override the preset's alpha (information preference; not for elbo, autoencoder, beta-vae)")
    train.add_argument("--lam", type=POSITIVE_FLOAT,
                       help="override the preset's lambda (weight of the divergence; not for elbo, autoencoder, beta-vae)")
    train.add_argument("--beta", type=POSITIVE_FLOAT, help="beta of the beta-vae preset (default: 1)")
    train.add_argument("--divergence", choices=ADVERSARIAL,
                       help="discriminator of the adversarial preset (default: js)")
    train.add_argument("--latent-dim", type=POSITIVE_INT, default=10, help="dimension of z (default: %(default)s)")
    train.add_argument("--deterministic", action="store_true", help="point-mass encoder (implied by the autoencoder preset)")
    train.add_argument("--train-size", type=POSITIVE_INT, help="first N images of a seeded shuffle of the 50k training digits (default: all)")
    train.add_argument("--iterations", type=POSITIVE_INT, help="optimiser steps (default by profile: " + ", ".join(f"{k} {v}" for k, v in ITERATIONS.items()) + ")")
    train.add_argument("--batch-size", type=POSITIVE_INT, help="default: per model, as in the paper")
    train.add_argument("--optimizer", choices=OPTIMIZERS, metavar="NAME",
                       help="a torch.optim optimiser, lower case (" + ", ".join(OPTIMIZERS) + "; default: rmsprop for pixelcnn, else adam)")
    train.add_argument("--optimizer-options", type=_options, default={}, metavar="JSON",
                       help='its keyword arguments other than lr, e.g. \'{"betas": [0.5, 0.999]}\'')
    train.add_argument("--scheduler", choices=SCHEDULERS, metavar="NAME",
                       help="a torch.optim.lr_scheduler class, lower case, stepped every step (" + ", ".join(SCHEDULERS) + "; default: none)")
    train.add_argument("--scheduler-options", type=_options, default={}, metavar="JSON",
                       help='its keyword arguments, e.g. \'{"T_max": 10000}\'')
    train.add_argument("--lr", type=POSITIVE_FLOAT, help="learning rate (default: per model)")
    train.add_argument("--clip", choices=["value", "norm", "none"], help="gradient clipping (default: value to [-1, 1] for pixelcnn, else none)")
    train.add_argument("--log-every", type=POSITIVE_INT, default=100, help="steps per history entry (default: %(default)s)")
    train.add_argument("--checkpoint-every", type=NON_NEGATIVE_INT, default=1000, help="steps between checkpoints (default: %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--precision", choices=TRAINING_PRECISIONS, default="fp32",
                       help="networks in bf16 or fp16 (with a gradient scaler); auto: bf16 where native, else fp16 on "
                       "CUDA, else fp32 (default: %(default)s)")
    train.add_argument("--compile", action="store_true", help="torch.compile the networks (checkpoints stay plain)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="loss terms (and log-likelihood) of a trained checkpoint",
        description="Evaluate a checkpoint written by `train` on stochastically binarized MNIST (fixed draw from --seed).",
    )
    evaluate.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by `train`")
    evaluate.add_argument("--split", choices=["train", "valid", "test"], default="test", help="default: %(default)s")
    evaluate.add_argument("--size", type=POSITIVE_INT, help="first N images of the split (default: all)")
    evaluate.add_argument("--iwae-samples", type=NON_NEGATIVE_INT, default=0,
                          help="importance samples per image for log p(x) (Table 1 uses 5000; default 0: skip)")

    reproduce = commands.add_parser(
        "reproduce", parents=[common], help="regenerate a figure or table of the paper",
        description="Regenerate a figure or table of the paper at --profile, writing its results (JSON) and "
        "figures (PNG) to --out. The seeds are those of the profile's configuration (--seed is not used).",
    )
    reproduce.add_argument("figure", nargs="?", choices=list(REPRODUCTIONS), help="which one")
    reproduce.add_argument("--list", action="store_true", help="list the figures and whether each is available")

    queue = commands.add_parser(
        "queue", parents=[common], help="train every PixelCNN model of chapters 8 and 9 (resumable)",
        description="Train the PixelCNN-decoder models of Fig. 6 and Table 1 at --profile one after another, "
        "each resumable from its checkpoint in the model cache (stop at any time, run again to continue), "
        "recording each finished model's measurements in RESULTS/pixelcnn-queue-PROFILE.json.",
    )
    queue.add_argument("--status", action="store_true", help="list the models done, in progress and left, "
                       "with the measured time per step and an estimate of the time left")
    queue.add_argument("--results", type=Path, default=Path("book/results"),
                       help="folder of the results file (default: %(default)s)")
    queue.add_argument("--only", type=POSITIVE_INT, help="stop after training this many models")
    queue.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def _check_spec(spec: dict) -> None:
    """Refuse options that the chosen preset would ignore."""
    preset = spec["preset"]
    ignored = [f"--{k}" for k in ("alpha", "lam") if spec.get(k) is not None and preset in FIXED_WEIGHTS]
    if spec.get("beta") is not None and preset != "beta-vae":
        ignored.append("--beta")
    if spec.get("divergence") is not None and preset != "adversarial":
        ignored.append("--divergence")
    if ignored:
        raise ValueError(f"the {preset} preset does not use {', '.join(ignored)}")


def _loss_from(spec: dict):  # type: ignore[no-untyped-def]
    from .objective import InfoVAELoss

    kwargs = {k: spec[k] for k in ("alpha", "lam") if spec.get(k) is not None}
    if spec["preset"] == "beta-vae":
        kwargs = {"beta": 1.0 if spec.get("beta") is None else spec["beta"]}
    elif spec["preset"] == "adversarial":
        kwargs |= {"divergence": spec.get("divergence") or "js", "latent_dim": spec["latent_dim"]}
    elif spec["preset"] in ("elbo", "autoencoder"):
        kwargs = {}
    return InfoVAELoss.preset(spec["preset"], **kwargs)


def _model_from(spec: dict):
    from .networks import build_vae

    return build_vae(spec["model"], spec["latent_dim"], deterministic=spec["deterministic"], seed=spec.get("seed"))


def _train_data(spec: dict):
    from .data import load_mnist, training_subset, two_point_data

    if spec["model"] == "toy":
        return two_point_data(10_000 if spec["train_size"] is None else spec["train_size"], seed=spec["seed"])
    if spec["train_size"] is not None:
        return training_subset(spec["train_size"], seed=spec["seed"])[0]
    return load_mnist("train")[0]


def cmd_train(args: argparse.Namespace) -> int:
    from .runtime import get_profile, profile_sizes
    from .train import TrainConfig, Trainer

    defaults = ARCHITECTURE_DEFAULTS[args.model]
    spec = {
        "model": args.model, "preset": args.preset, "alpha": args.alpha, "lam": args.lam, "beta": args.beta,
        "divergence": args.divergence, "latent_dim": args.latent_dim,
        "deterministic": args.deterministic or args.preset == "autoencoder",
        "train_size": args.train_size, "seed": args.seed,
    }
    _check_spec(spec)

    def given(value, default):  # type: ignore[no-untyped-def]
        return default if value is None else value

    clip = given(args.clip, defaults["clip"])
    config = TrainConfig(
        iterations=given(args.iterations, profile_sizes(ITERATIONS, get_profile())),
        batch_size=given(args.batch_size, defaults["batch_size"]),
        optimizer=given(args.optimizer, defaults["optimizer"]),
        optimizer_options=args.optimizer_options,
        lr=given(args.lr, defaults["lr"]),
        scheduler=args.scheduler,
        scheduler_options=args.scheduler_options,
        clip=None if clip == "none" else clip,
        binarize=defaults["binarize"],
        seed=args.seed,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        checkpoint=str(args.out / "checkpoint.pt"),
        progress=not args.no_progress,
        precision=args.precision,
        compile=args.compile,
    )
    if args.resume and not Path(config.checkpoint).is_file():  # type: ignore[arg-type]
        raise FileNotFoundError(f"--resume: no checkpoint at {config.checkpoint}")
    loss_fn, data = _loss_from(spec), _train_data(spec)
    args.out.mkdir(parents=True, exist_ok=True)
    # the model is built from --seed (build_vae(seed=...)): the same command gives the same weights
    trainer = Trainer(_model_from(spec), loss_fn, data, config, meta=spec)
    if args.resume:
        trainer.resume()
        if trainer.is_main:
            print(f"resumed from {config.checkpoint} at step {trainer.step}")
    history = trainer.run()
    if trainer.is_main:  # under torchrun: rank 0 writes and speaks
        (args.out / "history.json").write_text(json.dumps(history.series))
        summary = {name: history[name][-1] for name in history.names if history[name]}
        processes = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
        print(f"trained {args.model} ({args.preset}, z = {args.latent_dim}) for {trainer.step} steps on "
              f"{trainer.device}{processes}; last logged: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
        print(f"wrote {config.checkpoint} and {args.out / 'history.json'}")
    if trainer.world_size > 1:
        import torch.distributed

        torch.distributed.destroy_process_group()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data import load_mnist
    from .metrics import log_likelihood_with_error
    from .metrics.importance import MAX_SAMPLES
    from .runtime import get_device
    from .train import evaluate, load_checkpoint

    if args.iwae_samples > MAX_SAMPLES:
        raise ValueError(f"--iwae-samples must be at most {MAX_SAMPLES:,} (the paper uses 5000), got {args.iwae_samples:,}")
    device = get_device()
    state = load_checkpoint(args.checkpoint, map_location=device)
    spec = state.get("meta")
    if not isinstance(spec, dict) or "model" not in spec or "preset" not in spec:
        raise ValueError(f"{args.checkpoint} was not written by `python -m infovae train` (no model description)")
    if spec.get("model") == "toy":
        raise ValueError("evaluate works on MNIST models; the two-point model has no test split")
    model = _model_from(spec).to(device)
    model.load_state_dict(state["model"])
    loss_fn = _loss_from(spec).to(device)
    loss_fn.load_state_dict(state["loss_fn"])
    x = load_mnist(args.split, binarize="stochastic", seed=args.seed)[0][: args.size]
    torch.manual_seed(args.seed)
    results = evaluate(model, loss_fn, x)
    if args.iwae_samples:
        ll = log_likelihood_with_error(model.eval(), x.to(device), args.iwae_samples)
        results["log_likelihood"] = float(ll.estimate.mean())
        results["log_likelihood_sem"] = float(ll.estimate.std() / len(x) ** 0.5)  # over images
    print(f"{args.checkpoint} (step {state['step']}, {spec['model']}, {spec['preset']}) on {len(x)} {args.split} images:")
    for name, value in results.items():
        print(f"  {name:>22}: {value:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps(results, indent=1))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS

    if args.list or args.figure is None:
        for name, description in REPRODUCTIONS.items():
            status = "available" if name in EXPERIMENTS else "not implemented yet"
            print(f"{name:{max(map(len, REPRODUCTIONS))}} {status:20} {description}")
        return 0 if args.list else 2
    if args.figure not in EXPERIMENTS:
        print(f"reproduce {args.figure}: not implemented yet ({REPRODUCTIONS[args.figure]})", file=sys.stderr)
        return 2
    outcome = EXPERIMENTS[args.figure]()  # the configuration of the profile, its seed included
    for path in outcome.save(args.out):
        print(path)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from .experiments import training_queue
    from .runtime import get_profile

    profile = get_profile()
    if args.status:
        training_queue.print_status(profile)
        return 0
    if args.results.exists() and not args.results.is_dir():
        print(f"error: --results {args.results} is a file, not a folder", file=sys.stderr)
        return 2
    training_queue.run_queue(profile, args.results, only=args.only, progress=not args.no_progress)
    training_queue.print_status(profile)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m infovae`` and of the ``infovae`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.profile:
        os.environ["INFOVAE_PROFILE"] = args.profile
    if args.device:
        os.environ["INFOVAE_DEVICE"] = args.device
    from .runtime import get_device

    try:
        get_device()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} is a file, not a folder", file=sys.stderr)
        return 2
    from .train import NonFiniteLossError

    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "reproduce": cmd_reproduce, "queue": cmd_queue}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
