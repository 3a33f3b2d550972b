"""Chapter 8's information-preference experiment: data, pretraining, objectives and the summary."""

import json
import math

import pytest
import torch

from infovae.experiments import EXPERIMENTS
from infovae.experiments import information_preference as ip


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


TINY = ip.PreferenceConfig(
    layers=2, channels=4, encoder_hidden=16, pretrain_steps=3, steps=4, batch_size=20, seeds=(0, 1),
    objectives=ip.OBJECTIVES, sweep_layers=(1,), betas=(3.0,), num_info_images=30, svm_pool=120, svm_test=40, num_labels=100,
    svm_draws=1, precision="fp32",
)


def test_downsample_is_a_two_by_two_mean():
    x = torch.rand(3, 1, 28, 28)
    naive = torch.stack([torch.stack([x[:, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean((1, 2)) for j in range(14)], 1)
                         for i in range(14)], 1)[:, None]
    torch.testing.assert_close(ip.downsample(x, 14), naive)
    assert ip.downsample(x, 28) is x


def test_objectives_have_their_weights():
    assert (ip.make_loss("elbo", TINY).kl_weight, ip.make_loss("elbo", TINY).divergence_weight) == (1.0, 0.0)
    mmd = ip.make_loss("mmd", TINY)
    assert (mmd.kl_weight, mmd.divergence_weight, mmd.divergence) == (0.0, 1000.0, "mmd")
    assert ip.make_loss("elbo-authors", TINY).kl_weight == pytest.approx(196 / 5)  # 14 x 14 pixels, d = 5
    assert ip.make_loss("beta", TINY, beta=2.0).kl_weight == 2.0
    with pytest.raises(ValueError, match="unknown objective"):
        ip.make_loss("vae", TINY)
    with pytest.raises(ValueError, match="needs a beta"):
        ip.make_loss("beta", TINY)
    with pytest.raises(ValueError, match="objectives"):
        ip.PreferenceConfig(objectives=("elbo", "gan"))


def test_pretraining_trains_the_decoder_without_a_code(cache_dir):
    """z is 0 while the decoder trains alone: the weights that read z never move."""
    data = ip.load_data(TINY)
    torch.manual_seed(0)
    fresh = ip._decoder(TINY, TINY.layers)
    decoder = ip.pretrained_decoder(TINY, TINY.layers, 0, data["x_train"], progress=False)
    for a, b in zip(fresh.layers, decoder.layers):
        assert torch.equal(a.cond.weight, b.cond.weight)  # no gradient reaches them
    assert not torch.equal(fresh.layers[0].v_conv.weight, decoder.layers[0].v_conv.weight)


def test_tiny_run(cache_dir):
    outcome = EXPERIMENTS["information-preference"](TINY, progress=False)
    json.dumps(outcome.to_json())
    results = outcome.results
    runs = results["runs"]
    assert len(runs) == 2 * len(ip.OBJECTIVES) + 1 + 2 + 1  # per seed; the cold start; the depth and beta sweeps
    assert [b for b, _ in ip.beta_points(results, TINY)] == [1.0, 3.0, 196 / 5]
    for r in runs:
        assert set(ip.METRICS) <= set(r)
        assert r["kl"] >= 0 and 0 <= r["svm_error"] <= 1 and r["test_nll_bound"] > 0
        assert r["mutual_information"] <= results["mutual_information_bound"] + 1e-6
        assert r["warm_start"] == (r["objective"] != "elbo-cold")
    for objective in ip.OBJECTIVES:
        values = [r["kl"] for r in runs if r["objective"] == objective and r["layers"] == TINY.layers]
        s = results["summary"][objective]["kl"]
        assert math.isclose(s["mean"], sum(values) / 2) and math.isclose(s["se"], abs(values[0] - values[1]) / 2, abs_tol=1e-12)
    assert results["epochs"] == TINY.steps * TINY.batch_size / 50_000
    assert set(outcome.figures) == {"preference", "sweep", "betas"}


def test_a_rerun_reads_models_and_measurements_from_the_cache(cache_dir, monkeypatch):
    config = ip.PreferenceConfig(**{**TINY.__dict__, "seeds": (0,), "cold_start": False, "sweep_layers": (), "betas": ()})
    first = ip.run(config, progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("measured again although the cache holds it")

    monkeypatch.setattr(ip, "measure", fail)
    monkeypatch.setattr(ip.Trainer, "run", fail)
    again = ip.run(config, progress=False)
    assert again.results["runs"] == first.results["runs"]
