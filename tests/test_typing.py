"""The package type-checks: `mypy infovae` (configured in pyproject.toml) reports no error."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_type_checks():
    run = subprocess.run([sys.executable, "-m", "mypy", "infovae"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Success: no issues found" in run.stdout
