"""Data-parallel training under torchrun (gloo, 2 CPU processes) equals one process on the same global batch.

The reference is written here, in one process, independently of the trainer's step: the same
global batches (the trainer's seeded shuffle), each shard's codes and prior samples drawn from that
rank's stream (``parallel.rank_seed``), the terms of Eq. (6) computed directly (reconstruction and
KL means over the whole batch, the divergence on the concatenated codes and prior samples), one
backward, the same optimiser, and the critic trained on all codes. In float64 the two agree to
rounding (measured about 1e-16 relative); the assertions allow 1e-6 after one step (loss and every
gradient) and 1e-5 after 20 steps (every parameter, the critic's included). Then: a run killed
mid-way resumes bit for bit at the same world size, is refused at another, and the command line
under ``torchrun -m infovae train`` does the same.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import kl_divergence

import infovae as iv
from infovae.divergences import mmd, stein_loss
from infovae.train import load_checkpoint, make_optimizer
from infovae.train.parallel import rank_seed

sys.path.insert(0, str(Path(__file__).parent))
import _ddp_worker as worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
# the command-line test on other devices and world sizes (tools/gpu_check.py: NCCL on every visible GPU)
CLI_DEVICE, CLI_WORLD = os.environ.get("INFOVAE_DDP_DEVICE", "cpu"), int(os.environ.get("INFOVAE_DDP_WORLD", "2"))


def torchrun(*args: str, check: bool = True, timeout: int = 120, device: str = "cpu", world: int = WORLD
             ) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFOVAE_DEVICE": device}
    env.pop("WORLD_SIZE", None)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
                          *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"torchrun {' '.join(args)} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run


def reference(name: str, steps: int) -> list[dict]:
    """``steps`` steps of one process on the global batches, with the ranks' draws; per step the loss,
    the gradients, and afterwards the parameters."""
    model, loss_fn, x = worker.model(), worker.loss(name), worker.data()
    config = worker.config()
    optimizer = make_optimizer(list(model.parameters()), config, torch.device("cpu"))
    order_generator = torch.Generator().manual_seed(config.seed)
    order, cursor = torch.randperm(len(x), generator=order_generator), 0
    streams = [torch.Generator().manual_seed(rank_seed(config.seed, r, WORLD, 0)).get_state() for r in range(WORLD)]
    cfg, shard = loss_fn.config, config.batch_size // WORLD
    records = []

    def on_stream(r, draw):  # a draw from rank r's stream, which then moves on
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(streams[r])
            value = draw()
            streams[r] = torch.get_rng_state()
        return value

    for _ in range(steps):
        if cursor + config.batch_size > len(x):
            order, cursor = torch.randperm(len(x), generator=order_generator), 0
        idx = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        prior = model.prior()
        recon, kl, codes, samples = [], [], [], []
        per_rank = -(-cfg.num_prior_samples // WORLD)
        for r in range(WORLD):
            xr = x[idx[r * shard : (r + 1) * shard]]
            qz, z, px = on_stream(r, lambda: model(xr))
            recon.append(-px.log_prob(xr))
            kl.append(kl_divergence(qz, prior))
            codes.append(z)
            if cfg.divergence in ("mmd", "js", "wgan-gp"):
                samples.append(on_stream(r, lambda: prior.sample((per_rank,))))
        z_all = torch.cat(codes)
        loss = torch.cat(recon).mean()
        if cfg.kl_weight:
            loss = loss + cfg.kl_weight * torch.cat(kl).mean()
        if cfg.divergence == "mmd":
            loss = loss + cfg.divergence_weight * mmd(z_all, torch.cat(samples)[: cfg.num_prior_samples])
        elif cfg.divergence == "stein":
            loss = loss + cfg.divergence_weight * stein_loss(z_all)
        elif cfg.divergence == "js":
            loss = loss + cfg.divergence_weight * loss_fn.critic(z_all, torch.cat(samples)[: cfg.num_prior_samples])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        records.append({"loss": float(loss.detach()), "grads": {k: p.grad.clone() for k, p in model.named_parameters()}})
        if loss_fn.has_auxiliary:
            fresh = [on_stream(r, lambda: prior.sample((per_rank,))) for r in range(WORLD)]
            loss_fn.critic.step(z_all.detach(), torch.cat(fresh)[: cfg.num_prior_samples])
        optimizer.step()
    records[-1]["params"] = model.state_dict()
    records[-1]["critic"] = loss_fn.state_dict()
    return records


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((float((a[k] - b[k]).abs().max()) for k in a), default=0.0)


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Path:
    """One launch: 1 and 20 steps of each objective (OUT/rank<r>.pt), then 10 uninterrupted MMD-VAE steps (OUT/whole)."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun("tests/_ddp_worker.py", "steps", str(out))
    return out


@pytest.fixture(scope="module")
def ranks(launched) -> list[dict]:
    return [torch.load(launched / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(worker.OBJECTIVES))
def test_one_step_and_twenty_steps_equal_one_process_on_the_global_batch(ranks, name):
    ref = reference(name, 20)
    got = ranks[0][name]
    loss_gap = abs(got["loss"] - ref[0]["loss"])
    grad_gap = max_difference(got["grads"], ref[0]["grads"])
    print(f"{name}: loss {ref[0]['loss']:.6f}, |loss difference| {loss_gap:.2e}, max |gradient difference| {grad_gap:.2e}")
    assert loss_gap < 1e-6 and grad_gap < 1e-6, (loss_gap, grad_gap)
    assert abs(got["logged_loss"] - ref[0]["loss"]) < 1e-6 * abs(ref[0]["loss"])  # the history's (float32) value
    print(f"  after 20 steps: max |parameter difference| {max_difference(got['params'], ref[-1]['params']):.2e}, "
          f"critic {max_difference(got['critic'], ref[-1]['critic']):.2e}")
    assert max_difference(got["params"], ref[-1]["params"]) < 1e-5
    assert max_difference(got["critic"], ref[-1]["critic"]) < 1e-5  # the adversarial critic (empty for the others)
    for r in range(1, WORLD):  # every rank holds the same model and critic, bit for bit
        assert max_difference(ranks[r][name]["params"], got["params"]) == 0
        assert max_difference(ranks[r][name]["critic"], got["critic"]) == 0
    assert all(math.isfinite(v) for v in got["history"]["loss"][1])


def test_a_killed_run_resumes_bit_for_bit_and_another_world_size_is_refused(launched, tmp_path):
    whole, broken = launched / "whole", tmp_path / "broken"
    broken.mkdir()
    killed = torchrun("tests/_ddp_worker.py", "train", str(broken), "10", "--kill-at", "6", check=False)
    assert killed.returncode != 0 and not (broken / "rank0.pt").exists()
    state = load_checkpoint(broken / "checkpoint.pt")
    assert state["step"] == 4 and state["world_size"] == WORLD and len(state["rank_rng"]) == WORLD
    torchrun("tests/_ddp_worker.py", "train", str(broken), "10", "--resume")
    a, b = (torch.load(folder / "rank0.pt", weights_only=True) for folder in (whole, broken))
    assert b["step"] == 10 and max_difference(a["params"], b["params"]) == 0 and a["history"] == b["history"]
    trainer = iv.train.Trainer(worker.model(), worker.loss("mmd-vae"), worker.data(),
                               worker.config(checkpoint=str(broken / "checkpoint.pt")), device="cpu")
    with pytest.raises(ValueError, match=r"processes \(world size\): checkpoint 2, now 1.*--nproc_per_node=2"):
        trainer.resume()


def test_the_command_line_under_torchrun_resumes_exactly_and_refuses_one_process(tmp_path):
    common = ["--model", "toy", "--latent-dim", "1", "--train-size", "200", "--batch-size", "20", "--checkpoint-every",
              "3", "--no-progress", "--profile", "quick"]  # the two-point model: no MNIST to load in each process
    whole, part = tmp_path / "whole", tmp_path / "part"
    launch = dict(device=CLI_DEVICE, world=CLI_WORLD)
    run = torchrun("-m", "infovae", "train", *common, "--iterations", "6", "--out", str(whole), **launch)
    assert run.stdout.count("wrote ") == 1  # rank 0 speaks, once
    torchrun("-m", "infovae", "train", *common, "--iterations", "3", "--out", str(part), **launch)
    torchrun("-m", "infovae", "train", *common, "--iterations", "6", "--out", str(part), "--resume", **launch)
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    assert a["step"] == b["step"] == 6 and a["world_size"] == CLI_WORLD
    assert max_difference(a["model"], b["model"]) == 0 and a["history"] == b["history"]
    single = subprocess.run([sys.executable, "-m", "infovae", "train", *common, "--iterations", "9", "--out", str(part),
                             "--resume"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "INFOVAE_DEVICE": "cpu"})
    assert single.returncode == 2 and f"world size): checkpoint {CLI_WORLD}, now 1" in single.stderr
