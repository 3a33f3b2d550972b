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
    cells = {path.name: setup_cell(path) for path in chapters()}
    assert len(cells) >= 10
    different = sorted(name for name, cell in cells.items() if cell != expected)
    assert not different, f"set-up cells that differ from CONVENTIONS.md: {different}"


def test_the_setup_installs_from_the_configured_repository_only():
    found = set().union(*(addresses(setup_cell(path)) for path in chapters()))
    assert found == {REPO_URL}, found
    readme = addresses((ROOT / "README.md").read_text())
    assert readme <= {REPO_URL} and readme, readme
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    for name, url in urls.items():
        if "github.com" in url:
            assert url.rstrip("/").removesuffix(".git").startswith(REPO_URL), (name, url)
