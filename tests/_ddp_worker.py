"""The script that tests/test_distributed.py starts under ``torchrun --nproc_per_node=N`` (gloo, CPU).

    torchrun --standalone --nproc_per_node=2 tests/_ddp_worker.py steps OUT       # 1 and 20 steps of each objective,
                                                                                  # then an MMD-VAE run of 10 (OUT/whole)
    torchrun --standalone --nproc_per_node=2 tests/_ddp_worker.py train OUT STEPS [--kill-at K] [--resume]

It uses the Trainer exactly as a user's script would (nothing distributed in it: the Trainer joins
the process group torchrun describes). Every rank writes what it saw to ``OUT/rank<r>.pt``.
The models, data and settings are defined here once and imported by the test for its reference.
"""

from __future__ import annotations

import os
import sys

import torch

import infovae as iv
from infovae.train import Callback, TrainConfig, Trainer

SEED, BATCH, SHAPE, LATENT = 3, 16, (1, 6, 6), 2
OBJECTIVES = {  # name -> loss factory (float64, small critics)
    "elbo": lambda: iv.InfoVAELoss.elbo(),
    "mmd-vae": lambda: iv.InfoVAELoss.mmd_vae(lam=100.0, num_prior_samples=30),
    "stein-vae": lambda: iv.InfoVAELoss.stein_vae(lam=10.0, alpha=0.5),
    "adversarial": lambda: iv.InfoVAELoss.adversarial(latent_dim=LATENT, critic_hidden=16, critic_lr=1e-3),
}


def data() -> torch.Tensor:
    """96 binary 6 x 6 images, float64 (the batches are used as given: binarize=None)."""
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(96, *SHAPE, generator=g, dtype=torch.float64), generator=g)


def model() -> iv.VAE:
    return iv.build_vae("mlp", LATENT, shape=SHAPE, seed=1).double()


def loss(name: str):  # type: ignore[no-untyped-def]
    with iv.runtime.seeded(5):  # the critic's initial weights, the same in every process
        return OBJECTIVES[name]().double()


def config(**options) -> TrainConfig:  # type: ignore[no-untyped-def]
    return TrainConfig(**{"iterations": 20, "batch_size": BATCH, "lr": 1e-3, "seed": SEED, "progress": False,
                          "log_every": 1, **options})


class Kill(Callback):
    """Ends the process abruptly (as a kill would) after step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_step(self, trainer, values):  # type: ignore[no-untyped-def]
        if trainer.step == self.at:
            sys.stdout.flush()
            os._exit(3)


def train(out: str, steps: int, rank: int, kill: int | None = None, resume: bool = False) -> None:
    """MMD-VAE for ``steps`` steps with a checkpoint every 4 (killed after step ``kill``, or resumed)."""
    cfg = config(iterations=steps, checkpoint=os.path.join(out, "checkpoint.pt"), checkpoint_every=4)
    trainer = Trainer(model(), loss("mmd-vae"), data(), cfg, device="cpu", callbacks=[Kill(kill)] if kill else [])
    if resume:
        trainer.resume()
    trainer.run()
    record = {"params": trainer.model.state_dict(), "history": trainer.history.series, "step": trainer.step}
    torch.save(record, os.path.join(out, f"rank{rank}.pt"))


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    record: dict = {}
    if mode == "steps":
        for name in OBJECTIVES:
            loss_fn, seen = loss(name), []
            # the rank's own loss in float64 (the history holds float32 values): the mean over the ranks is the loss
            hook = loss_fn.register_forward_hook(lambda module, args, out: seen.append(out.loss.detach().clone()))
            trainer = Trainer(model(), loss_fn, data(), config(), device="cpu")
            values = trainer.train_step()
            hook.remove()
            whole = seen[0] / int(os.environ["WORLD_SIZE"])
            torch.distributed.all_reduce(whole)
            record[name] = {
                "loss": float(whole),
                "logged_loss": values["loss"],
                "grads": {k: p.grad.clone() for k, p in trainer.model.named_parameters()},
                "critic_1": {k: v.clone() for k, v in trainer.loss_fn.state_dict().items()},
            }
            trainer.run()
            record[name]["params"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            record[name]["critic"] = {k: v.clone() for k, v in trainer.loss_fn.state_dict().items()}
            record[name]["history"] = trainer.history.series
        torch.save(record, os.path.join(out, f"rank{rank}.pt"))
        os.makedirs(os.path.join(out, "whole"), exist_ok=True)
        train(os.path.join(out, "whole"), 10, rank)
    elif mode == "train":
        kill = int(sys.argv[sys.argv.index("--kill-at") + 1]) if "--kill-at" in sys.argv else None
        train(out, int(sys.argv[3]), rank, kill, "--resume" in sys.argv)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
