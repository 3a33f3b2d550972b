"""Author-year citations for the whole book: in the text and in the bibliography.

A local Sphinx extension (listed under ``sphinx: local_extensions`` in ``_config.yml``). It
registers three plugins, one for each place a citation is printed:

* ``author_year_round`` (sphinxcontrib-bibtex referencing style, ``bibtex_reference_style``):
  sphinxcontrib-bibtex's ``author_year`` with round brackets, so ``{cite}`key``` (= ``{cite:p}``)
  prints "(Zhao et al., 2019)" and ``{cite:t}`key``` prints "Zhao et al. (2019)".
* ``author_year`` (pybtex label style): the bibliography label of an entry is the same text,
  "Zhao et al., 2019" (one author: "Kingma, 2014"; two: "Kingma and Welling, 2014"), with
  "a", "b", ... appended to the year when two entries would get the same label.
* ``author_year`` (pybtex formatting style, ``bibtex_default_style``): pybtex's unsrt entry
  format with those labels, sorted by author, year and title.

Names are the last names printed by sphinxcontrib-bibtex's own ``last`` name style (von parts
kept and tied by a no-break space, LaTeX accents decoded: "van den Oord", "Pólya"), so a label
reads exactly like the citation that links to it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pybtex.plugin
from pybtex.backends.plaintext import Backend as PlaintextBackend
from pybtex.database import Entry, Person
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.plugin import register_plugin as register_sphinx_plugin
from sphinxcontrib.bibtex.style.names.last import LastNameStyle
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

NAME = "author_year"  # the pybtex label and formatting style
REFERENCE_STYLE = "author_year_round"  # the sphinxcontrib-bibtex referencing style


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")")


@dataclasses.dataclass
class RoundAuthorYearReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author-year references, in round brackets."""

    bracket_textual: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_author: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_label: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_year: BracketStyle = dataclasses.field(default_factory=_round)


class _PlainText(PlaintextBackend):
    """Plain text that keeps pybtex's ties as no-break spaces, as the HTML citations do ("van~den")."""

    symbols = MappingProxyType({**PlaintextBackend.symbols, "nbsp": "\u00a0"})


def _last_name(person: Person) -> str:
    return str(LastNameStyle().format(person).format().render(_PlainText()))


def _persons(entry: Entry) -> list[Person]:
    for role in ("author", "editor"):
        if entry.persons.get(role):
            return list(entry.persons[role])
    return []


def author_year_label(entry: Entry) -> str:
    """The label of one entry, without the "a"/"b" suffix: "Zhao et al., 2019".

    The names follow the rule of the in-text citations (sphinxcontrib-bibtex's PersonStyle):
    one or two last names, "First et al." for three or more (or for "and others"); the editors
    when there is no author, the key when there is neither; "n.d." when there is no year.
    """
    persons = _persons(entry)
    others = bool(persons) and _last_name(persons[-1]) == "others"
    if others:
        persons = persons[:-1]
    names = [_last_name(p) for p in persons]
    if not names:
        who = entry.key
    elif len(names) >= 3 or others:
        who = f"{names[0]} et al."
    else:
        who = " and ".join(names)
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """pybtex label style: "Zhao et al., 2019"; equal labels get "a", "b", ... in sorted order."""

    def format_labels(self, sorted_entries: Iterable[Entry]) -> Iterator[str]:
        labels = [author_year_label(entry) for entry in sorted_entries]
        count = Counter(labels)
        seen: Counter[str] = Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1


class AuthorYearStyle(UnsrtStyle):
    """pybtex formatting style: unsrt entries, author-year labels, sorted by author-year-title."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"


def register() -> None:
    """Register the three plugins (idempotent: a second call changes nothing)."""
    pybtex.plugin.register_plugin("pybtex.style.labels", NAME, AuthorYearLabelStyle, force=True)
    pybtex.plugin.register_plugin("pybtex.style.formatting", NAME, AuthorYearStyle, force=True)
    register_sphinx_plugin(
        "sphinxcontrib.bibtex.style.referencing", REFERENCE_STYLE, RoundAuthorYearReferenceStyle, force=True
    )


register()


def _add_static(app: Any) -> None:
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: the plugins are registered on import, before any document is read;
    a style sheet drops the square brackets around the bibliography's labels."""
    register()
    app.connect("builder-inited", _add_static)
    app.add_css_file("author_year_citations.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
