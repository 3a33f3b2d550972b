"""The reader's book on every screen: layout, numbering and links that the theme does not give.

A local Sphinx extension (listed under ``sphinx: local_extensions`` in ``_config.yml``):

* a style sheet and a script (``static/reader_layout.css``, ``static/reader_layout.js``): the
  chapter-list and page-contents buttons open their sidebars on a phone (the theme binds its
  handlers to a hidden duplicate of each button, pydata-sphinx-theme 0.17 with
  sphinx-book-theme 1.3); display equations, tables and printed outputs wider than the column
  scroll inside it with a visible cue (a faded edge on the side that has more); code wraps
  within the column; every figure opens at full size on click; search results show math as
  text, not as raw LaTeX;
* figures, tables and listings numbered per chapter, "Figure 8.3", "Table 9.1" (the preface's
  "P.1", the appendix's "A.1"); equations keep the book-wide numbers that the prose cites;
* captions for the results tables that code cells print (``iv.book.table``): a code cell's
  metadata ``table_captions`` lists one ``{"caption": ..., "name": ...}`` per table of its
  output, in order; the caption numbers the table and ``name`` makes it referable with
  ``{numref}``; ``"merge_paper_columns": true`` folds each column "X (paper)" into the column
  "X" before it ("0.0536 (2.7e-05)"), which halves a table that sets our numbers beside the paper's;
* in the API reference, the equation labels that docstrings name (````ch4-eq6````) become
  links printed with the book's equation numbers, "Eq. (21)";
* each script and inline script of a page emitted once (sphinx-thebe registers its
  configuration twice, and the browser then refuses the second ``const THEBE_JS_URL``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.transforms import SphinxTransform

STATIC = Path(__file__).parent / "static"
# per-chapter numbers: book/NN_name -> NN; the front and back matter get a letter
CHAPTER = re.compile(r"(?:^|/)(\d+)_[^/]+$")
LETTERED = {"book/preface": "P", "book/appendix_reproduction": "A"}
NUMBERED_PER_CHAPTER = ("figure", "table", "code-block")
# an equation label of the book named in a docstring: ``ch4-eq6``
DOCSTRING_LABEL = re.compile(r"``(ch\d+-[a-z0-9]+(?:-[a-z0-9]+)*)``")


def chapter_of(docname: str) -> int | str | None:
    """The number (or letter) that prefixes the figure and table numbers of a document."""
    match = CHAPTER.search(docname)
    return int(match.group(1)) if match else LETTERED.get(docname)


def number_per_chapter(app: Any, env: Any) -> list[str]:
    """Renumber figures, tables and listings of every chapter (N, 1), (N, 2), ... in page order.

    Runs after Sphinx has numbered them across the whole book (``env-get-updated``); returns
    the documents whose numbers changed, so that they are written again.
    """
    changed = []
    for docname, by_type in env.toc_fignumbers.items():
        prefix = chapter_of(docname)
        if prefix is None:
            continue
        for figtype in NUMBERED_PER_CHAPTER:
            numbers = by_type.get(figtype)
            if not numbers:
                continue
            in_order = sorted(numbers, key=lambda node_id: numbers[node_id][-1:])
            renumbered = {node_id: (prefix, i + 1) for i, node_id in enumerate(in_order)}
            if renumbered != numbers:
                by_type[figtype] = renumbered
                changed.append(docname)
    return sorted(set(changed))


def _caption_nodes(text: str) -> list[nodes.Node]:
    """A caption's text as docutils nodes: ``$...$`` becomes inline math, the rest plain text."""
    parts = re.split(r"(?<!\\)\$(.+?)(?<!\\)\$", text)
    out: list[nodes.Node] = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(nodes.math(part, part))
        elif part:
            out.append(nodes.Text(part))
    return out


def merge_paper_columns(table: nodes.table) -> None:
    """Fold every column "X (paper)" into the column "X" before it: the cell reads "ours (paper's)",
    or just "ours" where the paper gives no value ("-"). Halves the width of a table that sets
    each of our numbers beside the paper's."""
    tgroup = next(iter(table.findall(nodes.tgroup)))
    rows = list(tgroup.findall(nodes.row))
    header = [entry.astext().strip() for entry in rows[0].children]
    pairs = [i for i in range(1, len(header)) if header[i] == f"{header[i - 1]} (paper)"]
    if not pairs:
        return
    for row in rows[1:]:
        entries = list(row.children)
        for i in pairs:
            paper = entries[i].astext().strip()
            if paper and paper != "-":
                target = next(iter(entries[i - 1].findall(nodes.paragraph)), None) or entries[i - 1]
                target += nodes.Text(f" ({paper})")
    drop = set(pairs)
    for row in rows:
        for i, entry in reversed(list(enumerate(row.children))):
            if i in drop:
                row.remove(entry)
    colspecs = list(tgroup.findall(nodes.colspec))
    for i in sorted(drop, reverse=True):
        tgroup.remove(colspecs[i])
    tgroup["cols"] = len(colspecs) - len(drop)


class OutputTableCaptions(SphinxTransform):
    """Caption (and so number) the tables of code-cell outputs from the cell's ``table_captions``."""

    default_priority = 500

    def apply(self, **kwargs: Any) -> None:
        cells = [n for n in self.document.findall(nodes.container) if n.get("nb_element") == "cell_code"]
        for cell in cells:
            captions = (cell.get("cell_metadata") or {}).get("table_captions")
            if not captions:
                continue
            tables = list(cell.findall(nodes.table))
            if len(tables) != len(captions):
                self.document.reporter.warning(
                    f"table_captions lists {len(captions)} captions for {len(tables)} tables "
                    f"(cell {cell.get('cell_index')})", base_node=cell)
            for table, spec in zip(tables, captions):
                if spec.get("merge_paper_columns"):
                    merge_paper_columns(table)
                title = nodes.title(spec["caption"], "", *_caption_nodes(spec["caption"]))
                table.insert(0, title)
                name = spec.get("name")
                if name:
                    table["names"].append(nodes.fully_normalize_name(name))
                    table["ids"].append(nodes.make_id(name))
                    self.document.note_explicit_target(table, table)
                else:
                    # numbering needs an id; an anonymous one does
                    table["ids"].append(self.document.set_id(table))


def _link_labels(text: str) -> str:
    out, last = [], 0
    for match in DOCSTRING_LABEL.finditer(text):
        before = text[last:match.start()]
        so_far = "".join(out) + before
        worded = re.search(r"Eqs?\.\s$", so_far)
        listed = re.search(r"`\)?(,\s|\s(and|or)\s)$", so_far)
        out.append(before + ("" if worded or listed else "Eq. ") + f":eq:`{match.group(1)}`")
        last = match.end()
    return "".join(out) + text[last:]


def link_docstring_equations(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """````ch4-eq6```` in a docstring becomes :eq:`ch4-eq6`, printed "(21)" and linked; a number that
    would stand without its word ("book ``ch4-eq5``", "chapter 4, ``ch4-eq6``") gets "Eq. " in front,
    unless it continues a list ("Eqs. ``a``, ``b`` and ``c``"). Doctest lines stay as written."""
    doctest = lambda line: line.lstrip().startswith((">>>", "..."))
    result, prose = [], []
    for line in lines + [">>>"]:  # a sentinel flushes the last run of prose
        if doctest(line):
            if prose:
                result += _link_labels("\n".join(prose)).split("\n")
                prose = []
            result.append(line)
        else:
            prose.append(line)
    lines[:] = result[:-1]


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Emit each script (file or inline body) and style sheet of a page once.

    An inline script registered with ``filename=None`` and again with ``""`` (what Sphinx's
    registry replays) counts as one: sphinx-thebe's configuration arrives both ways."""
    for key in ("script_files", "css_files"):
        seen, kept = set(), []
        for asset in context.get(key, []):
            filename = getattr(asset, "filename", asset) or ""
            attributes = getattr(asset, "attributes", {})
            ident = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
            if ident not in seen:
                seen.add(ident)
                kept.append(asset)
        context[key] = kept


def _add_static(app: Any) -> None:
    if str(STATIC) not in map(str, app.config.html_static_path):
        app.config.html_static_path.append(str(STATIC))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _add_static)
    app.add_css_file("reader_layout.css")
    app.add_js_file("reader_layout.js")
    app.add_transform(OutputTableCaptions)
    app.connect("env-get-updated", number_per_chapter, priority=900)
    app.connect("autodoc-process-docstring", link_docstring_equations)
    app.connect("html-page-context", unique_scripts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
