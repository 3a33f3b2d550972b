"""The MNIST classifier of the class-distribution metric: training, accuracy, weights-only cache."""

import pytest
import torch

import infovae as iv
from infovae import classifier as clf


def test_a_few_steps_learn_something():
    x, y = iv.load_mnist("valid")
    model = clf.train_classifier(40, batch_size=64, device="cpu", progress=False, data=(x[:2000], y[:2000]))
    assert model(x[:3]).shape == (3, 10)
    assert clf.classifier_accuracy(model, x[5000:6000], y[5000:6000]) > 0.3  # chance is 0.1


def test_load_classifier_trains_once_then_reads_the_cache(tmp_path, monkeypatch):
    iv.load_mnist("test")  # MNIST is cached per process before the cache directory moves
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setitem(clf.CLASSIFIER_STEPS, "quick", 3)
    first = clf.load_classifier("quick", device="cpu", progress=False)
    path = clf.classifier_path(3)
    assert path.is_file() and path.parent == tmp_path / "infovae"
    assert torch.load(path, weights_only=True)["test_accuracy"] == first.test_accuracy
    second = clf.load_classifier("quick", device="cpu")
    assert second.test_accuracy == first.test_accuracy
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="profile"):
        clf.load_classifier("huge")
    with pytest.raises(ValueError, match="28"):
        first(torch.zeros(2, 784))


def test_random_shift_matches_a_per_image_loop():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 2, 9, 7, dtype=torch.float64)
    out = clf.random_shift(x, 2, g)
    offsets = torch.randint(0, 5, (6, 2), generator=torch.Generator().manual_seed(3)) - 2  # the same draws
    for img, shifted, (dr, dc) in zip(x, out, offsets.tolist()):
        expected = torch.zeros_like(img)  # output pixel (i, j) shows input pixel (i + dr, j + dc)
        for i in range(9):
            for j in range(7):
                if 0 <= i + dr < 9 and 0 <= j + dc < 7:
                    expected[:, i, j] = img[:, i + dr, j + dc]
        assert torch.equal(shifted, expected)
    assert clf.random_shift(x, 0, g) is x
    with pytest.raises(ValueError, match="max_shift"):
        clf.random_shift(x, -1, g)
