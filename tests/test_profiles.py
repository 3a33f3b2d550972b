"""Every profile runs every chapter: profile tables go through ``profile_sizes``.

A chapter that picks its sizes with ``{"quick": ..., "book": ..., "paper": ...}[iv.get_profile()]``
breaks with a KeyError under the reader's ``light`` profile (the default outside CI), which the
notebook tests (quick profile) never see. This test reads every chapter's code cells and refuses
a subscript of a literal dict by a profile; ``iv.runtime.profile_sizes`` (light falls back to the
book's sizes) is the one way to choose sizes by profile.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from infovae.runtime import PROFILES

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def _profile_expression(node: ast.AST) -> bool:
    """``iv.get_profile()``, ``get_profile()``, ``profile`` or ``chapter.profile``."""
    if isinstance(node, ast.Call):
        func = node.func
        return (isinstance(func, ast.Attribute) and func.attr == "get_profile") or (
            isinstance(func, ast.Name) and func.id == "get_profile")
    return (isinstance(node, ast.Name) and node.id == "profile") or (
        isinstance(node, ast.Attribute) and node.attr == "profile")


def profile_lookups(source: str) -> list[str]:
    """The lines of ``source`` that index a literal dict by the profile."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: strip them and try again
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return [ast.get_source_segment(source, node) or "?" for node in ast.walk(tree)
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict) and _profile_expression(node.slice)]


def test_the_check_sees_a_profile_table():
    assert profile_lookups('x = {"quick": 1, "book": 2}[iv.get_profile()]')
    assert profile_lookups('x = {"quick": 1}[chapter.profile]')
    assert not profile_lookups('x = iv.runtime.profile_sizes({"quick": 1, "book": 2})')


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_choose_sizes_through_profile_sizes(path):
    cells = json.loads(path.read_text())["cells"]
    found = [hit for c in cells if c["cell_type"] == "code" for hit in profile_lookups("".join(c["source"]))]
    assert not found, f"{path.name} indexes a dict by the profile (KeyError under 'light'): use iv.runtime.profile_sizes"


def test_every_profile_is_named_in_the_docs():
    """The README and the runtime's docstring name every profile."""
    readme = (ROOT / "README.md").read_text()
    for name in PROFILES:
        assert f"`{name}`" in readme, name
