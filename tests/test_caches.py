"""Trained-model and classifier caches: keyed by the code and torch, corrupt files retrained."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import infovae.classifier as clf
from infovae.experiments import base
from infovae.runtime import _code_only


def test_cache_keys_carry_the_code_and_torch(monkeypatch):
    fingerprint = base.code_fingerprint()
    assert fingerprint["torch"] == torch.__version__ and len(fingerprint["source"]) == 16
    path = base.trained_model_path("f", "m", {"n": 1})
    monkeypatch.setattr(base, "code_fingerprint", lambda: {**fingerprint, "source": "changed"})
    assert base.trained_model_path("f", "m", {"n": 1}) != path  # other code: another file


def test_the_code_key_ignores_docstrings_and_comments_only():
    code = 'def f(x):\n    """Doc."""\n    return x + 1  # note\n'
    assert _code_only(code) == _code_only('def f(x):\n    """Other words."""\n\n    return x + 1\n')
    assert _code_only(code) == _code_only("def f(x):\n    return x + 1\n")
    assert _code_only(code) != _code_only('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert _code_only('X = "a"\n') != _code_only('X = "b"\n')  # strings that are values count


def test_the_classifier_cache_is_keyed_by_its_code_and_torch(monkeypatch):
    path = clf.classifier_path(300)
    assert path.name.startswith("classifier-v2-300steps-seed0-") and path == clf.classifier_path(300)
    monkeypatch.setattr(clf, "code_digest", lambda *modules: "other code")
    assert clf.classifier_path(300) != path
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
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
