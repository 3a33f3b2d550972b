"""Citations are author-year everywhere: the configuration and the label style, without a build.

_config.yml selects the styles that book/_ext/author_year_citations.py registers: in the text
"(Zhao et al., 2019)", in the bibliography the label "Zhao et al., 2019" (no "[ZSE19]").
"""

import importlib.util
import re
import sys
from pathlib import Path

import pybtex.plugin
import yaml
from pybtex.database import BibliographyData, Entry, Person, parse_file
from sphinxcontrib.bibtex.plugin import find_plugin as find_sphinx_plugin

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def _extension():
    """Import the local extension the way jupyter-book does: by name, from the configured folder."""
    name = "author_year_citations"
    folder = CONFIG["sphinx"]["local_extensions"][name]
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


EXT = _extension()


def _labels(entries):
    style = pybtex.plugin.find_plugin("pybtex.style.formatting", CONFIG["sphinx"]["config"]["bibtex_default_style"])()
    return {e.key: e.label for e in style.format_entries(entries)}


def test_config_selects_the_author_year_styles_of_the_extension():
    sphinx_config = CONFIG["sphinx"]["config"]
    assert sphinx_config["bibtex_reference_style"] == EXT.REFERENCE_STYLE
    assert sphinx_config["bibtex_default_style"] == EXT.NAME
    assert CONFIG["bibtex_bibfiles"] == ["book/references.bib"]
    # the in-text style is sphinxcontrib-bibtex's author_year, in round brackets
    reference_style = find_sphinx_plugin("sphinxcontrib.bibtex.style.referencing", EXT.REFERENCE_STYLE)()
    for bracket in (reference_style.bracket_parenthetical, reference_style.bracket_textual):
        assert (bracket.left, bracket.right) == ("(", ")")
    assert reference_style.author_year_sep == ", "


def test_bibliography_labels_read_like_the_citations_in_the_text():
    bib = parse_file(ROOT / "book/references.bib")
    labels = _labels(bib.entries.values())
    assert labels["zhao2019infovae"] == "Zhao et al., 2019"
    assert labels["zhao2017infovae"] == "Zhao et al., 2017"
    assert labels["kingma2014vae"] == "Kingma and Welling, 2014"
    # two works of van den Oord et al. in 2016 (Gated PixelCNN, Pixel RNN): letters, as in the text
    assert {labels["vandenoord2016pixelcnn"], labels["vandenoord2016pixelrnn"]} == {
        "van\u00a0den Oord et al., 2016a", "van\u00a0den Oord et al., 2016b"}
    assert len(set(labels.values())) == len(labels)  # every entry has its own label
    for label in labels.values():
        assert not re.fullmatch(r"[A-Z][A-Za-z]{0,3}\+?\d{2}[a-z]?", label), label  # no alpha "ZSE19"
        assert re.fullmatch(r"\S.* \d{4}[a-z]?", label), label


def test_equal_author_year_labels_get_letters_and_missing_fields_fall_back():
    def entry(title, year=None, **persons):
        fields = {"title": title} | ({"year": year} if year else {})
        return Entry("article", fields=fields, persons={r: [Person(p) for p in ps] for r, ps in persons.items()})

    bib = BibliographyData(
        {
            "one": entry("A", "2020", author=["Doe, Jane"]),
            "two": entry("B", "2020", author=["Doe, Jane"]),
            "eds": entry("C", "2001", editor=["Roe, Rick", "Poe, Pat", "Moe, Max"]),
            "others": entry("D", "2002", author=["Sch{\\\"o}lkopf, Bernhard", "others"]),
            "nodate": entry("E", author=["Doe, John", "Roe, Rick"]),
        }
    )
    label_style = pybtex.plugin.find_plugin("pybtex.style.labels", EXT.NAME)()
    labels = dict(zip(bib.entries, label_style.format_labels(bib.entries.values())))
    assert labels == {
        "one": "Doe, 2020a",
        "two": "Doe, 2020b",
        "eds": "Roe et al., 2001",
        "others": "Schölkopf et al., 2002",
        "nodate": "Doe and Roe, n.d.",
    }
