"""Trained-model and classifier caches: keyed by their settings and the numerics version, corrupt files retrained."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import infovae
import infovae.classifier as clf
from infovae import runtime
from infovae.experiments import base


def test_cache_keys_are_the_description_and_the_numerics_version(monkeypatch):
    """Not the source text, the package version or torch's: moving code keeps trained models;
    a change of the numbers (guarded by tests/test_numerics.py) bumps the version."""
    path = base.trained_model_path("f", "m", {"n": 1})
    assert path.name.startswith("m-") and path.parent.name == "f"
    assert base.trained_model_path("f", "m", {"n": 2}) != path  # another description: another file
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    monkeypatch.setattr(infovae, "__version__", "9.9.9")
    assert base.trained_model_path("f", "m", {"n": 1}) == path
    monkeypatch.setattr(base, "NUMERICS_VERSION", runtime.NUMERICS_VERSION + 1)
    assert base.trained_model_path("f", "m", {"n": 1}) != path  # other numerics: another file


def test_the_classifier_cache_is_keyed_by_its_settings_and_the_numerics_version(monkeypatch):
    path = clf.classifier_path(300)
    assert path.name == f"classifier-v2-300steps-seed0-n{runtime.NUMERICS_VERSION}.pt"
    assert clf.classifier_path(300, seed=1) != path != clf.classifier_path(301)
    monkeypatch.setattr(clf, "NUMERICS_VERSION", runtime.NUMERICS_VERSION + 1)
    assert clf.classifier_path(300) != path


def test_a_corrupt_model_cache_is_named_and_retrained(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(os.urandom(500))
    with pytest.warns(UserWarning, match="model.pt is unusable"):
        assert base.load_trained_model(path, nn.Linear(2, 2), "cpu") is None
    base.save_trained_model(path, nn.Linear(3, 3), {"loss": [[1], [0.5]]})  # other shapes
    with pytest.warns(UserWarning, match="unusable"):
        assert base.load_trained_model(path, nn.Linear(2, 2), "cpu") is None


def test_a_corrupt_classifier_cache_is_named_and_retrained(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = clf.classifier_path(clf.CLASSIFIER_STEPS["quick"])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    trained = []

    def fake_train(steps, **kwargs):
        trained.append(steps)
        return clf.MNISTClassifier().eval()

    monkeypatch.setattr(clf, "train_classifier", fake_train)
    monkeypatch.setattr(clf, "classifier_accuracy", lambda *a, **k: 0.5)
    monkeypatch.setattr(clf, "load_mnist", lambda *a, **k: (torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)))
    with pytest.warns(UserWarning, match="classifier .* is unreadable"):
        model = clf.load_classifier("quick", device="cpu")
    assert trained == [clf.CLASSIFIER_STEPS["quick"]] and model.test_accuracy == 0.5
