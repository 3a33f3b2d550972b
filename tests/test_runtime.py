"""Runtime helpers of SPEC section 6: device, profile and seeds."""

import random

import numpy as np
import pytest
import torch

import infovae as iv


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("INFOVAE_DEVICE", "INFOVAE_PROFILE", "CI"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_device_defaults_to_the_best_available(clean_env):
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert iv.get_device().type == expected


def test_device_override(clean_env):
    clean_env.setenv("INFOVAE_DEVICE", "cpu")
    assert iv.get_device() == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu0", "not-a-device", "cuda:banana"])
def test_invalid_device_name_is_a_clear_error(clean_env, name):
    clean_env.setenv("INFOVAE_DEVICE", name)
    with pytest.raises(ValueError, match="INFOVAE_DEVICE"):
        iv.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_requested_without_cuda_is_a_clear_error(clean_env, name):
    clean_env.setenv("INFOVAE_DEVICE", name)
    with pytest.raises(ValueError, match="CUDA is not available.*unset INFOVAE_DEVICE"):
        iv.get_device()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_mps_requested_without_mps_is_a_clear_error(clean_env):
    clean_env.setenv("INFOVAE_DEVICE", "mps")
    with pytest.raises(ValueError, match="MPS is not available.*unset INFOVAE_DEVICE"):
        iv.get_device()


def test_cuda_index_beyond_the_gpus_is_a_clear_error(clean_env, monkeypatch):
    """A machine with one GPU (simulated) refuses cuda:1 and names the indices that exist."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    clean_env.setenv("INFOVAE_DEVICE", "cuda:1")
    with pytest.raises(ValueError, match=r"only 1 CUDA device\(s\) exist.*'cuda:0'"):
        iv.get_device()
    clean_env.setenv("INFOVAE_DEVICE", "cuda:0")
    assert iv.get_device() == torch.device("cuda:0")


def test_meta_device_is_refused(clean_env):
    clean_env.setenv("INFOVAE_DEVICE", "meta")
    with pytest.raises(ValueError, match="meta device holds shapes but no data.*unset INFOVAE_DEVICE"):
        iv.get_device()


@pytest.mark.parametrize("name", ["cpu:1", "cpu:3"])
def test_cpu_index_other_than_zero_is_refused(clean_env, name):
    clean_env.setenv("INFOVAE_DEVICE", name)
    with pytest.raises(ValueError, match="one CPU device.*set it to 'cpu'"):
        iv.get_device()


def test_cpu_zero_is_the_cpu(clean_env):
    clean_env.setenv("INFOVAE_DEVICE", "cpu:0")
    assert iv.get_device().type == "cpu"


@pytest.mark.parametrize("name", ["hpu", "privateuseone"])
def test_unsupported_device_type_is_refused(clean_env, name):
    clean_env.setenv("INFOVAE_DEVICE", name)
    with pytest.raises(ValueError, match="runs on 'cpu', 'cuda', 'mps' or 'xpu'"):
        iv.get_device()


@pytest.mark.parametrize("name", ["quick", "book", "paper", " Book "])
def test_profile_override(clean_env, name):
    clean_env.setenv("INFOVAE_PROFILE", name)
    assert iv.get_profile() == name.strip().lower()


def test_ci_selects_quick(clean_env):
    clean_env.setenv("CI", "true")
    assert iv.get_profile() == "quick"


def test_explicit_profile_wins_over_ci(clean_env):
    clean_env.setenv("CI", "true")
    clean_env.setenv("INFOVAE_PROFILE", "book")
    assert iv.get_profile() == "book"


def test_default_profile_is_the_light_one_even_with_a_gpu(clean_env, monkeypatch):
    """The book and paper profiles train for hours (the book's once, cached): they run only when
    asked for; a reader's default keeps every chapter within ~20 minutes on a laptop CPU."""
    assert iv.get_profile() == "light"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert iv.get_profile() == "light"


def test_light_falls_back_to_the_book_sizes_where_it_has_none():
    from infovae.runtime import profile_sizes

    assert profile_sizes({"quick": 1, "book": 2, "paper": 3}, "light") == 2
    assert profile_sizes({"quick": 1, "light": 5, "book": 2, "paper": 3}, "light") == 5
    with pytest.raises(ValueError, match="no sizes for profile 'paper'"):
        profile_sizes({"quick": 1, "book": 2}, "paper")
    with pytest.raises(ValueError, match="unknown profile"):
        profile_sizes({"quick": 1}, "fast")


def test_invalid_profile_is_a_clear_error(clean_env):
    clean_env.setenv("INFOVAE_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick, light, book, paper"):
        iv.get_profile()


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    iv.seed_everything(123)
    a = draw()
    iv.seed_everything(123)
    b = draw()
    iv.seed_everything(124)
    c = draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert a[0] != c[0] and not torch.equal(a[2], c[2])
    g = iv.seed_everything(5)
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match="seed"):
        iv.seed_everything(seed)


def test_seeded_block_draws_the_same_numbers_and_restores_the_generator():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    with iv.runtime.seeded(3, "cpu"):
        a = torch.rand(4)
    with iv.runtime.seeded(3, "cpu"):
        b = torch.rand(4)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before), "the global CPU stream is left as it was"
    assert torch.equal(torch.rand(4), (torch.manual_seed(7), torch.rand(4))[1])


def test_seeded_block_on_the_cpu_never_reseeds_cuda(monkeypatch):
    """torch.manual_seed would reseed every CUDA device (recorded here without a GPU)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    with iv.runtime.seeded(5, "cpu"):
        torch.rand(2)
    assert calls == []


@pytest.mark.parametrize("seed", [-1, 2.0, True])
def test_seeded_needs_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match="seed"):
        with iv.runtime.seeded(seed, "cpu"):
            pass
