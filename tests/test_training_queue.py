"""The Part II training queue: learning curves, the plateau rule, exact resume after an
interruption, the results file and ``python -m infovae queue --status``."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from infovae.__main__ import main
from infovae.experiments import pixelcnn_models as pm
from infovae.experiments import preference_trajectories as pt
from infovae.experiments import training_queue as tq
from infovae.train import Trainer, load_checkpoint

TINY = pm.PixelCNNSetup(
    layers=1, channels=4, encoder_hidden=16, iterations=12, batch_size=20, adversarial="js",
    critic_hidden=8, critic_lr=1e-3, train_images=200, track_every=2, track_images=40,
    curve_every=2, curve_images=6, curve_samples=3, curve_elbo_images=12,
)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("INFOVAE_DEVICE", "cpu")
    return tmp_path


def test_plateau_slope_is_the_least_squares_slope():
    """Against numpy's polyfit on the last window's points; ``None`` before a full window."""
    setup = replace(TINY, plateau_slope=0.5, plateau_window=6, min_iterations=4)
    steps = [2, 4, 6, 8, 10, 12]
    values = [100.0, 96.0, 95.0, 94.9, 94.85, 94.84]
    result = pm.plateau(steps, values, setup)
    window = [(s, v) for s, v in zip(steps, values) if s >= 6]
    expected = np.polyfit([s for s, _ in window], [v for _, v in window], 1)[0] * 1000
    assert result["slope_per_1000"] == pytest.approx(expected, abs=1e-5)
    assert result["reached"] is bool(-expected < 0.5) is False  # still falling 26.5 nats per 1,000 steps
    assert pm.plateau(steps[:3], values[:3], setup) is None  # 2..6 spans only 4 steps
    assert pm.plateau([2, 4, 6, 8], [10.0, 10.0, 10.0, 10.0], replace(setup, min_iterations=100))["reached"] is False


def test_a_bad_plateau_rule_is_refused():
    with pytest.raises(ValueError, match="needs a learning curve"):
        replace(TINY, curve_every=0, plateau_slope=0.5)
    with pytest.raises(ValueError, match="multiple of curve_every"):
        replace(TINY, plateau_slope=0.5, plateau_window=3)
    with pytest.raises(ValueError, match="plateau_slope"):
        replace(TINY, plateau_slope=-1.0)


def test_the_learning_curve_is_recorded(cache_dir):
    model, history = pm.train_pixelcnn_model("mmd", 2, replace(TINY, iterations=4), progress=False)
    for key in ("curve_nll", "curve_neg_elbo", "curve_reconstruction", "curve_kl", "curve_mutual_information"):
        assert history[key][0] == [2, 4], key
    # -ELBO = reconstruction + KL at every point, and the NLL estimate is a tighter bound than -ELBO in expectation
    for elbo, rec, kl in zip(history["curve_neg_elbo"][1], history["curve_reconstruction"][1], history["curve_kl"][1]):
        assert elbo == pytest.approx(rec + kl, rel=1e-5)
    # the point is deterministic: recomputing it from the trained model gives the same numbers
    x = pm.load_mnist("valid", binarize="stochastic", seed=pm.CURVE_SEED)[0][:12]
    again = pm.learning_curve(model, "mmd", replace(TINY, iterations=4), x)
    assert again["curve_nll"] == pytest.approx(history["curve_nll"][1][-1], rel=1e-6)
    _, ae = pm.train_pixelcnn_model("autoencoder", 2, replace(TINY, iterations=2), progress=False)
    assert "curve_reconstruction" in ae and "curve_nll" not in ae  # a point-mass encoder has no likelihood bound


def test_training_stops_at_the_plateau(cache_dir):
    # an (almost) flat criterion of 1e9 nats per 1,000 steps is met at the first full window after min_iterations
    setup = replace(TINY, plateau_slope=1e9, plateau_window=4, min_iterations=6)
    _, history = pm.train_pixelcnn_model("elbo", 2, setup, progress=False)
    assert history["seconds"][0] == [6] and history["plateau"][0] == [6] and history["plateau"][1][1] == 1.0
    # a criterion never met: the whole budget, with the last slope recorded as not reached
    _, history = pm.train_pixelcnn_model("elbo", 2, replace(setup, plateau_slope=1e-12), progress=False)
    assert history["seconds"][0] == [12] and history["plateau"][1][1] == 0.0


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_exactly(cache_dir, monkeypatch):
    """Killed after its second chunk, the run continues from its checkpoint to the very same
    weights and history as the run that was never interrupted."""
    setup = replace(TINY, plateau_slope=1e-12, plateau_window=4, min_iterations=4, iterations=8)
    straight, history = pm.train_pixelcnn_model("mmd", 2, setup, cache=False, progress=False)

    calls = {"n": 0}
    run = Trainer.run

    def dying_run(self, iterations=None):
        calls["n"] += 1
        if calls["n"] == 3:
            self.run_partial = run(self, 1)  # one step past the checkpoint, then the machine goes away
            self.save()
            raise Interrupted
        return run(self, iterations)

    monkeypatch.setattr(Trainer, "run", dying_run)
    with pytest.raises(Interrupted):
        pm.train_pixelcnn_model("mmd", 2, setup, progress=False, checkpoint_every=1)
    partial = pm.partial_path("mmd", 2, setup)
    assert partial.is_file() and not pm.model_path("mmd", 2, setup).is_file()
    assert load_checkpoint(partial)["meta"]["seconds"] > 0  # a mid-chunk checkpoint carries the time spent so far
    assert tq.job_status(tq.PixelCNNJob("mmd", 2, setup))["state"] == "in progress"
    monkeypatch.setattr(Trainer, "run", run)
    resumed, history2 = pm.train_pixelcnn_model("mmd", 2, setup, progress=False)
    assert not partial.is_file() and pm.model_path("mmd", 2, setup).is_file()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    history.pop("seconds"), history2.pop("seconds")
    assert history2 == history


def test_an_unusable_checkpoint_is_named_and_training_starts_again(cache_dir):
    setup = replace(TINY, iterations=2)
    partial = pm.partial_path("elbo", 2, setup)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable.*moved to"):
        _, history = pm.train_pixelcnn_model("elbo", 2, setup, progress=False)
    assert history["seconds"][0] == [2] and not partial.is_file()
    kept = partial.with_name(f"{partial.stem}.unusable-0.pt")
    assert kept.read_bytes() == b"not a checkpoint"  # never deleted: moved aside


def test_the_queue_trains_what_is_left_and_records_it(cache_dir, tmp_path, monkeypatch, capsys):
    jobs = [tq.PixelCNNJob("elbo", 2, replace(TINY, iterations=2)), tq.PixelCNNJob("mmd", 2, replace(TINY, iterations=2, seed=1))]
    monkeypatch.setattr(tq, "queue_jobs", lambda profile: jobs)
    results = tmp_path / "results"
    assert tq.run_queue("quick", results, only=1, progress=False) == jobs[:1]
    rows, totals = tq.status_table("quick")
    assert [r["state"] for r in rows] == ["done", "left"] and totals["done"] == 1 and totals["seconds_per_step"]["pixelcnn"] > 0
    data = json.loads(tq.results_path("quick", results).read_text())
    assert list(data["models"]) == ["pixelcnn/elbo-z2-s0"]
    record = data["models"]["pixelcnn/elbo-z2-s0"]
    assert record["steps"] == 2 and record["curve"]["curve_nll"][0] == [2]
    assert tq.run_queue("quick", results, progress=False) == jobs[1:]  # the first is not trained again
    assert list(json.loads(tq.results_path("quick", results).read_text())["models"]) == ["pixelcnn/elbo-z2-s0", "pixelcnn/mmd-z2-s1"]
    capsys.readouterr()
    assert main(["queue", "--profile", "quick", "--status"]) == 0
    out = capsys.readouterr().out
    assert "elbo z=2 seed 0" in out and "2 of 2 models done" in out


def test_the_queue_covers_the_chapters_models():
    """Every model chapters 8 and 9 train at a profile is a job of its queue, with the same setup."""
    from infovae.experiments.flexible_decoders import FlexibleDecodersConfig
    from infovae.experiments.log_likelihood import LogLikelihoodConfig

    for profile in ("quick", "light", "book"):
        pixelcnn = [j for j in tq.queue_jobs(profile) if isinstance(j, tq.PixelCNNJob)]
        jobs = {(j.name, j.latent_dim, j.setup) for j in pixelcnn}
        fig6, table1 = FlexibleDecodersConfig.for_profile(profile), LogLikelihoodConfig.for_profile(profile)
        for name in table1.models:
            for seed in table1.seeds:
                assert (name, table1.latent_dim, replace(table1.setup, seed=seed)) in jobs
        for dim in fig6.latent_dims:
            for name in fig6.models:
                assert (name, dim, fig6.sweep) in jobs
                if dim == fig6.focus_dim:
                    assert (name, dim, fig6.setup) in jobs
        assert len(jobs) == len(pixelcnn)  # no job twice
        trajectories = [j.run for j in tq.queue_jobs(profile) if isinstance(j, tq.TrajectoryJob)]
        assert trajectories and sorted(trajectories, key=str) == sorted(pt.runs(pt.TrajectoryConfig.for_profile(profile)), key=str)
    labels = [j.label for j in tq.queue_jobs("book")]
    assert labels[:6] == [f"{n} z=5 seed 0" for n in ("elbo", "mmd", "stein", "adversarial", "elbo-authors", "autoencoder")]
    assert labels[6] == "trajectory beta 1, 6 layers, seed 0" and labels[10] == "trajectory beta 1, 3 layers, seed 0"
    assert labels.index("elbo z=5 seed 1") > labels.index("trajectory beta 1, 12 layers, spatial z, seed 0")


def test_plateau_of_a_trajectory_needs_both_kl_and_elbo_flat():
    config = pt.TrajectoryConfig(curve_every=500, min_epochs=2, window_epochs=2, kl_slope=0.02, elbo_slope=0.05)
    assert config.steps_per_epoch == 500
    steps = [500, 1000, 1500]
    flat = {"traj_kl": [steps, [2.0, 2.01, 2.0]], "traj_neg_elbo": [steps, [40.0, 39.99, 39.98]]}
    assert pt.plateau_reached(flat, config)["reached"] is True
    rising_kl = {**flat, "traj_kl": [steps, [2.0, 2.1, 2.2]]}  # +0.1 nats per epoch
    result = pt.plateau_reached(rising_kl, config)
    assert result["reached"] is False and result["kl_slope_per_epoch"] == pytest.approx(0.1)
    falling_elbo = {**flat, "traj_neg_elbo": [steps, [40.0, 39.8, 39.6]]}
    assert pt.plateau_reached(falling_elbo, config)["reached"] is False
    assert pt.plateau_reached({k: [v[0][:2], v[1][:2]] for k, v in flat.items()}, config) is None


def test_a_trajectory_is_recorded_and_resumes(cache_dir):
    """The quick profile's first run end to end: its points every curve_every steps, KL >= I_q
    (the KL bounds the information), the plateau record, and a second call loads the cache."""
    config = pt.TrajectoryConfig.for_profile("quick")
    run = pt.runs(config)[0]
    x_train, x_test = pt.training_images(config), pt.load_test_images(config)
    model, history = pt.train_run(config, run, x_train, x_test, progress=False)
    steps = history["traj_kl"][0]
    assert steps == list(range(config.curve_every, history["seconds"][0][0] + 1, config.curve_every))
    for kl, mi in zip(history["traj_kl"][1], history["traj_mutual_information"][1]):
        assert mi <= kl + 0.05  # I_q <= E KL(q(z|x)||p(z)); 0.05: Monte Carlo error of the I_q estimate
    assert len(history["plateau"][1]) == 3
    final = pt.final_measures(model, config, run, x_test, history)
    assert final["mutual_information_ceiling"] == pytest.approx(math.log(config.num_info_images))
    _, again = pt.train_run(config, run, x_train, x_test, progress=False)
    assert again == history
