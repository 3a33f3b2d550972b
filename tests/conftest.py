"""Shared fixtures: one strict build of the book per test session."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use small tensors: threads gain nothing there, and on a shared CPU they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """Build the book once, warnings as errors, into a temporary folder; returns its html dir."""
    out = tmp_path_factory.mktemp("book")
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run(
        [jb, "build", "-W", "-n", "--keep-going", str(ROOT), "--path-output", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the book build failed:\n{log[-6000:]}"
    assert "build succeeded" in log and "WARNING" not in log, log[-6000:]
    return out / "_build" / "html"
