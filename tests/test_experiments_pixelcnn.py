"""Fig. 6 and Table 1 experiments (chapters 8 and 9): configurations and a tiny end-to-end run.

The paper profile is checked field by field against SPEC section 4 (it is not run here:
it needs a GPU); the experiment functions run at a size of seconds, with the model cache
in a temporary folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

import infovae as iv

from infovae.experiments import EXPERIMENTS
from infovae.experiments.flexible_decoders import PAPER_DIMS, PAPER_FIG6, FlexibleDecodersConfig
from infovae.experiments.flexible_decoders import run as run_fig6
from infovae.experiments.log_likelihood import PAPER_TABLE1, LogLikelihoodConfig, negative_log_likelihood, paired_difference_over_seeds
from infovae.experiments.log_likelihood import run as run_table1
from infovae.experiments.pixelcnn_models import (
    MODELS,
    PixelCNNSetup,
    build_model,
    make_loss,
    setup_for_profile,
    train_pixelcnn_model,
)
from infovae.metrics import log_likelihood_with_error
from infovae.networks import PointMass

TINY = PixelCNNSetup(
    layers=1, channels=4, encoder_hidden=16, iterations=4, batch_size=20, adversarial="js",
    critic_hidden=8, critic_lr=1e-3, train_images=200, track_every=2, track_images=40,
)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


class ConstantClassifier(torch.nn.Module):
    """Puts every image in class 3: the class-distribution metric is then known exactly."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 3] = 1.0
        return logits


def test_registered():
    assert EXPERIMENTS["fig6"] is run_fig6
    assert EXPERIMENTS["table1"] is run_table1


def test_paper_profile_is_spec_section_4():
    fig6 = FlexibleDecodersConfig.for_profile("paper")
    s = fig6.setup
    assert (s.layers, s.channels, s.encoder_hidden) == (12, 32, 512)
    assert (s.batch_size, s.lr, s.clip_value, s.lam) == (100, 1e-3, 1.0, 1000.0)
    assert (s.adversarial, s.critic_hidden, s.critic_lr, s.train_images) == ("wgan-gp", 512, 2e-5, 50_000)
    assert fig6.latent_dims == PAPER_DIMS == (2, 5, 10, 20, 40)
    assert fig6.models == MODELS
    assert (fig6.num_codes, fig6.num_class_samples, fig6.num_labels, fig6.classifier_profile) == (40_000, 10_000, 1000, "paper")
    table1 = LogLikelihoodConfig.for_profile("paper")
    assert table1.setup == s  # the same models as Fig. 6
    assert (table1.latent_dim, table1.num_samples, table1.num_test) == (5, 5000, 10_000)
    assert table1.models == ("elbo", "mmd", "stein", "adversarial", "elbo-authors")  # Table 1 and the authors' ELBO


def test_paper_values_are_spec_section_5():
    assert PAPER_TABLE1 == {"elbo": 82.75, "mmd": 80.76, "stein": 81.47, "adversarial": 82.21}
    for quantity, by_model in PAPER_FIG6.items():
        for name, values in by_model.items():
            assert len(values) == len(PAPER_DIMS), (quantity, name)
    assert PAPER_FIG6["semi_supervised_accuracy"]["elbo"][0] == 0.1
    assert PAPER_FIG6["full_batch_mmd"]["mmd"][-1] == 1.08e-3


@pytest.mark.parametrize("profile", ["quick", "light", "book"])
def test_small_profiles_share_models_between_chapters(profile):
    fig6, table1 = FlexibleDecodersConfig.for_profile(profile), LogLikelihoodConfig.for_profile(profile)
    assert fig6.setup == table1.setup == setup_for_profile(profile)
    assert fig6.setup.cache_key("mmd", 5) == table1.setup.cache_key("mmd", 5)
    assert fig6.focus_dim == table1.latent_dim == 5  # chapter 8 discusses the models that chapter 9 measures
    with pytest.raises(ValueError, match="focus_dim"):
        replace(fig6, focus_dim=3)


def test_models_and_objectives():
    setup = setup_for_profile("quick")
    for name in MODELS:
        model, loss = build_model(name, 3, setup), make_loss(name, 3, setup)
        x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
        qz = model.encode(x)
        assert isinstance(qz, PointMass) == (name == "autoencoder")
        expected_weights = {"elbo": (1.0, 0.0), "mmd": (0.0, 1000.0), "stein": (0.0, 1000.0),
                            "adversarial": (0.0, 1000.0), "autoencoder": (0.0, 0.0)}[name]
        assert (loss.kl_weight, loss.divergence_weight) == expected_weights
        assert torch.isfinite(loss(model, x).loss)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vae", 2, setup)
    with pytest.raises(ValueError, match="adversarial"):
        PixelCNNSetup(adversarial="gan")


def test_cache_key_and_reuse(cache_dir):
    assert TINY.cache_key("mmd", 2) != TINY.cache_key("mmd", 3) != TINY.cache_key("elbo", 3)
    assert TINY.cache_key("mmd", 2) != replace(TINY, iterations=5).cache_key("mmd", 2)
    model, history = train_pixelcnn_model("mmd", 2, TINY, progress=False)
    assert history["full_batch_mmd"][0] == [2, 4]
    assert len(list((cache_dir / "infovae" / "pixelcnn-models").iterdir())) == 1
    again, history2 = train_pixelcnn_model("mmd", 2, TINY, progress=False)
    assert history2 == history
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    fresh, _ = train_pixelcnn_model("mmd", 2, TINY, progress=False, cache=False)  # same seed: same weights
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.allclose(a, b)


def test_fig6_tiny_run(cache_dir):
    config = FlexibleDecodersConfig(
        latent_dims=(2,), focus_dim=2, setup=TINY, num_codes=60, num_class_samples=8, classifier_profile="quick",
        svm_pool=200, svm_test=50, svm_draws=1, num_labels=100, num_info_images=30, focus_seeds=(0, 1),
    )
    outcome = run_fig6(config, progress=False, classifier=ConstantClassifier())
    json.dumps(outcome.to_json())
    assert set(outcome.figures) == {"fig6", "samples"}
    seeds = outcome.results["focus_seeds"]
    assert set(seeds) == {*MODELS, "elbo-authors"}
    for name, runs in seeds.items():
        assert [r["seed"] for r in runs] == [0, 1]
        if name in MODELS:  # the first seed is the run of the main loop
            assert runs[0]["semi_supervised_error"] == outcome.results["metrics"][name]["2"]["semi_supervised_error"]
        summary = outcome.results["focus_summary"][name]["semi_supervised_error"]
        errors = [r["semi_supervised_error"] for r in runs]
        assert math.isclose(summary["mean"], sum(errors) / 2)
        assert math.isclose(summary["se"], abs(errors[0] - errors[1]) / 2, abs_tol=1e-12)  # s.d./sqrt(2) for n = 2
    assert outcome.results["mutual_information_bound"] == math.log(30)
    assert outcome.results["full_batch_mmd_floor"]["2"] == pytest.approx(2 / 60 * (1 - 0.5))  # n = 60 codes, d = 2
    for name in MODELS:
        m = outcome.results["metrics"][name]["2"]
        # every sample is labelled 3: KL(uniform || c_hat) with c_hat = (8 + 1) / 18 there, 1/18 elsewhere
        assert math.isclose(m["class_cross_entropy"], 0.1 * (math.log(0.1 * 18 / 9) + 9 * math.log(0.1 * 18)), rel_tol=1e-9)
        assert m["full_batch_mmd"] >= 0 and math.isfinite(m["log_det_total"])
        assert math.isclose(m["class_confidence"], math.e / (math.e + 9), rel_tol=1e-6)  # softmax of (0,..,1,..,0)
        assert 0 <= m["semi_supervised_error"] <= 1
        assert math.isfinite(m["shuffled_gap"])
        assert (m["mutual_information"] is None) == (name == "autoencoder")
        track = outcome.results["tracking"][name]["2"]
        assert track["mmd_steps"] == [2, 4] and track["steps"] == [1, 2, 3, 4]
        assert ("kl" in track) == (name == "elbo")


def test_table1_tiny_run(cache_dir):
    config = LogLikelihoodConfig(latent_dim=2, models=("elbo", "mmd", "elbo-authors"), setup=TINY, seeds=(0, 1), num_test=6,
                                 num_samples=4, num_prior_samples=4, convergence_ks=(4, 8), convergence_images=3,
                                 classic_images=4, precision="auto", precision_tolerance=1e-9)
    outcome = run_table1(config, progress=False)
    json.dumps(outcome.to_json())
    results = outcome.results
    assert results["num_test"] == 6
    assert sorted(results["ranking"]) == ["elbo", "mmd"]  # Table 1's models only
    assert results["paper_ranking"] == ["mmd", "elbo"]
    assert set(results["prior_convergence"]) == {"4", "8"}
    for name in config.models:
        r = results["models"][name]
        assert len(r["seeds"]) == 2 and all(v > 0 for v in r["seeds"])
        assert math.isclose(r["nll"], sum(r["seeds"]) / 2)
        assert math.isclose(r["stderr_seeds"], abs(r["seeds"][0] - r["seeds"][1]) / 2, abs_tol=1e-9)
        assert r["stderr"] >= max(r["stderr_seeds"], r["stderr_within"])
        for key in ("iwae", "prior", "mixture_classic"):
            assert r[key]["nll"] > 0 and r[key]["stderr"] >= r[key]["stderr_images"] > 0
        for seed in r["per_seed"]:
            # bf16 where native only if it moved no image by 1e-9 nats (it does move them): float32
            assert seed["precision"] == "fp32"
            if iv.precision.native_bf16("cpu"):
                assert seed["precision_check"]["n"] == 6 and seed["precision_check"]["max_abs"] > 1e-9
            else:
                assert seed["precision_check"] is None
    # every (image, sample) row counted once: per model 2 seeds x 6 images x K = 4 (mixture), and on the first
    # seed 4 images x 4 for each of IWAE, prior and mixture; the convergence check 3 images x (4 + 8)
    cost = results["evaluation_cost"]
    assert cost["fp32"]["rows"] == 3 * (2 * 6 * 4 + 3 * 4 * 4) + 3 * (4 + 8) and cost["bf16"]["rows"] == 0
    assert cost["fp32"]["seconds"] > 0 and cost["bf16"]["ms_per_row"] is None
    diff = results["paired_differences"]["elbo - mmd"]
    per_seed = [a - b for a, b in zip(results["models"]["elbo"]["seeds"], results["models"]["mmd"]["seeds"])]
    assert all(math.isclose(d, e, abs_tol=1e-6) for d, e in zip(diff["per_seed"], per_seed))
    assert math.isclose(diff["nll"], sum(per_seed) / 2, abs_tol=1e-6) and diff["stderr"] >= 0


def test_negative_log_likelihood_aggregates_per_image_estimates():
    torch.manual_seed(0)
    model = build_model("elbo", 2, TINY).eval()
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.2))
    torch.manual_seed(1)
    r, values = negative_log_likelihood(model, x, 6, "encoder", 4096)
    torch.manual_seed(1)
    est = log_likelihood_with_error(model, x, 6, proposal="encoder")
    per_image = [-float(v) for v in est.estimate]
    mean = sum(per_image) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_image) / 4)
    mc = math.sqrt(sum(float(s) ** 2 for s in est.stderr)) / 5
    assert math.isclose(r["nll"], mean, rel_tol=1e-6)
    assert torch.allclose(values, -est.estimate.double())
    assert math.isclose(r["stderr_images"], sd / math.sqrt(5), rel_tol=1e-5)
    assert math.isclose(r["stderr_mc"], mc, rel_tol=1e-5)
    assert math.isclose(r["stderr"], math.hypot(sd / math.sqrt(5), mc), rel_tol=1e-5)


def test_the_light_profile_is_smaller_than_the_book_one():
    """The reader's profile: Part II's PixelCNN chapters at a fraction of the book profile's
    training (the book profile trains the paper's decoder to a plateau: hours)."""
    light, book = setup_for_profile("light"), setup_for_profile("book")
    assert light.layers * light.channels < book.layers * book.channels and light.iterations < book.iterations / 10
    assert FlexibleDecodersConfig.for_profile("light").focus_seeds == (0,)
    assert LogLikelihoodConfig.for_profile("light").seeds == (0,)


def test_the_across_seeds_standard_error_is_calibrated_for_shared_test_images():
    """Simulation with a known answer: y_si = a_s + b_i + e_si, every seed on the same images, with
    sd(a) = 0.3, sd(b) = 5 (images differ far more than seeds) and sd(e) = 0.5, S = 3 seeds and
    N = 200 images. The true s.e. of the grand mean is sqrt(0.3^2/3 + 5^2/200 + 0.5^2/600) = 0.3956.
    Over 2,000 simulated tables (fixed seed) the mean reported s.e. must be within 5% of the
    empirical spread of the grand mean (Monte Carlo error of that spread ~1.6%; failure rate
    below 1e-3); the old formula, which treated the images of different seeds as independent,
    reported ~sqrt(3) too little on the images' part."""
    from infovae.experiments.log_likelihood import across_seeds

    g = torch.Generator().manual_seed(0)
    reps, s, n = 2000, 3, 200
    means, ses = [], []
    for _ in range(reps):
        table = 0.3 * torch.randn(s, 1, generator=g) + 5.0 * torch.randn(1, n, generator=g) \
            + 0.5 * torch.randn(s, n, generator=g)
        r = across_seeds(list(table))
        means.append(r["nll"]), ses.append(r["stderr"])
    true = math.sqrt(0.3**2 / 3 + 25 / 200 + 0.25 / 600)
    empirical = float(torch.tensor(means).std())
    assert abs(empirical / true - 1) < 0.05  # the simulation itself
    assert abs(float(torch.tensor(ses).mean()) / empirical - 1) < 0.05
    # paired differences over the same images and seeds: image effects cancel
    a = [torch.tensor([10.0, 20.0, 30.0]), torch.tensor([11.0, 21.0, 31.0])]
    b = [torch.tensor([9.0, 19.0, 29.0]), torch.tensor([9.0, 19.0, 29.0])]
    d = paired_difference_over_seeds(a, b)
    assert d["per_seed"] == [1.0, 2.0] and d["nll"] == 1.5 and d["stderr_images"] == 0.0
