"""Every public function and class of the package documents itself with a runnable example.

* each one (defined in its module, listed in ``__all__``, or not starting with ``_`` where
  there is no ``__all__``) has a docstring with an ``Example:`` section of ``>>>`` lines;
* those examples run, with ``doctest.testmod`` and the flags ELLIPSIS and NORMALIZE_WHITESPACE
  (they use tiny sizes and fixed seeds, so the whole file takes seconds on one CPU thread);
* every equation label of the book that a docstring names (``ch4-eq6``, ...) exists in the book.

The global random generators (Python's, NumPy's, torch's) are restored after each module's
examples, so running them leaves no trace on the tests that follow.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    "infovae.vae",
    "infovae.objective",
    "infovae.divergences",
    "infovae.networks",
    "infovae.pixelcnn",
    "infovae.train.config",
    "infovae.train.checkpoint",
    "infovae.train.evaluation",
    "infovae.train.loop",
    "infovae.train.parallel",
    "infovae.train.callbacks",
    "infovae.distributed",
    "infovae.validation",
    "infovae.metrics.importance",
    "infovae.metrics.latent",
    "infovae.metrics.downstream",
    "infovae.tuning",
    "infovae.data",
    "infovae.runtime",
    "infovae.precision",
    "infovae.linear_gaussian",
    "infovae.finite",
    "infovae.classifier",
    "infovae.book",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
EXAMPLE_SECTION = re.compile(r"^\s*Examples?:\s*$", re.MULTILINE)
LABEL = re.compile(r"\bch\d+-[a-z0-9]+(?:-[a-z0-9]+)*\b")


def public_objects(module: ModuleType) -> dict[str, object]:
    """The functions and classes that ``module`` defines and exports."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    return {
        name: obj
        for name in names
        if (inspect.isfunction(obj := getattr(module, name)) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    }


@contextlib.contextmanager
def global_random_state_restored() -> Iterator[None]:
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


@pytest.mark.parametrize("name", MODULES)
def test_every_public_object_has_an_example(name):
    module = importlib.import_module(name)
    objects = public_objects(module)
    assert objects, f"{name} exports no function or class"
    missing = [
        obj_name for obj_name, obj in objects.items()
        if ">>>" not in (obj.__doc__ or "") or not EXAMPLE_SECTION.search(obj.__doc__ or "")
    ]
    assert not missing, f"{name}: no 'Example:' section with '>>>' lines in the docstring of {', '.join(missing)}"


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    report = io.StringIO()
    with global_random_state_restored(), contextlib.redirect_stdout(report):
        result = doctest.testmod(module, optionflags=FLAGS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed:\n{report.getvalue()}"


def test_named_equation_labels_exist_in_the_book():
    defined = set()
    for notebook in (ROOT / "book").glob("*.ipynb"):
        text = notebook.read_text()
        defined.update(re.findall(r"\$\$\s*\((ch\d+-[a-z0-9-]+)\)", text))
        defined.update(re.findall(r":label: (ch\d+-[a-z0-9-]+)", text))
    assert {"ch1-elbo", "ch4-eq6", "ch5-mmd-v"} <= defined  # the pattern still finds the book's labels
    unknown = {}
    for name in MODULES:
        source = Path(importlib.import_module(name).__file__).read_text()
        for label in set(LABEL.findall(source)) - defined:
            unknown.setdefault(label, []).append(name)
    assert not unknown, f"docstrings name equation labels that the book does not define: {unknown}"
