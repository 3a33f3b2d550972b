"""Helpers that the chapters of the book share: numbers glued into the prose, provenance.

``glue(name, value)`` stores a value in the executed notebook so that the prose can show
it with the MyST role ``{glue:text}`name:.3f` `` (Jupyter Book inserts it at build
time); the text never types a computed number by hand. It writes the same display data as
``myst_nb.glue`` without needing myst-nb at run time (so Colab runs need nothing extra).

``table(rows, columns)`` shows a results table that renders as a real table both in Jupyter
and in the HTML book (the book parses ``text/markdown`` outputs as MyST), and
``figure(name, fig)`` glues a matplotlib figure for a numbered ``{glue:figure}`` caption.

``Chapter`` records how a chapter was executed: profile, device, package versions and
wall time, shown at the end of every chapter.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import torch

from .runtime import get_device, get_profile

GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Record ``value`` under ``name`` for ``{glue:text}`` / ``{glue}`` roles in the prose.

    Floats are glued as floats so the prose can format them (``{glue:text}`x:.2e` ``).
    Returns ``value`` so that a cell can glue and use a number in one line.

    Example:
        >>> import contextlib, io
        >>> from infovae.book import glue
        >>> with contextlib.redirect_stdout(io.StringIO()):  # outside Jupyter the display is plain text
        ...     gap = glue("demo_gap", 0.25)  # in the prose: {glue:text}`demo_gap:.2f`
        >>> gap
        0.25
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    return value


Format = Union[str, Callable[[Any], str]]


def _cell(value: Any, fmt: Format) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float) or (hasattr(value, "item") and not isinstance(value, (str, int))):
        value = float(value)
        text = fmt(value) if callable(fmt) else fmt.format(value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    fmt: Format | Mapping[str, Format] = "{:.3g}",
    index: str = "",
):
    """A results table that renders as a table in Jupyter, in Colab and in the HTML book.

    Args:
        rows: one entry per table row, ``{row label: {column: value}}``; a missing or ``None``
            value shows as "-".
        columns: the columns to show, in order (default: every column of the first row).
        fmt: how floats are written: a format string (``"{:.2f}"``), a function, or a dict
            of either per column (columns not in it use ``"{:.3g}"``). Other values use ``str``.
        index: the heading of the row-label column.

    Returns:
        An ``IPython.display.Markdown`` pipe table (``|`` inside cells escaped). Show it with
        ``display(table(...))`` or as the last expression of a cell.

    Example:
        >>> from infovae.book import table
        >>> rows = {"ELBO": {"nll": 90.123, "kl": 25.0}, "MMD-VAE": {"nll": 89.5, "kl": None}}
        >>> print(table(rows, fmt={"nll": "{:.1f}"}, index="model").data)
        | model | nll | kl |
        | --- | --- | --- |
        | ELBO | 90.1 | 25 |
        | MMD-VAE | 89.5 | - |
    """
    from IPython.display import Markdown

    if not rows:
        raise ValueError("table: rows is empty")
    columns = list(columns if columns is not None else next(iter(rows.values())).keys())
    formats = {c: (fmt.get(c, "{:.3g}") if isinstance(fmt, Mapping) else fmt) for c in columns}
    line = lambda cells: "| " + " | ".join(cells) + " |"
    lines = [line([_cell(index, "")] + [_cell(c, "") for c in columns]), line(["---"] * (len(columns) + 1))]
    for label, row in rows.items():
        lines.append(line([_cell(label, "")] + [_cell(row.get(c), formats[c]) for c in columns]))
    return Markdown("\n".join(lines))


def figure(name: str, fig: Any) -> None:
    """Show a matplotlib figure in the notebook and glue it for a numbered caption in the book.

    The prose shows it with ``{glue:figure}`` and a caption (``:name:`` makes it numbered and
    referable); tag the cell ``remove-output`` so the HTML shows the figure once, captioned.
    The figure is closed, so the inline backend does not show it a second time.

    Example:
        >>> import contextlib, io
        >>> import matplotlib.pyplot as plt
        >>> from infovae.book import figure
        >>> fig, ax = plt.subplots()
        >>> with contextlib.redirect_stdout(io.StringIO()):  # outside Jupyter the display is plain text
        ...     figure("demo-figure", fig)
        >>> plt.fignum_exists(fig.number)
        False
    """
    import matplotlib.pyplot as plt

    glue(name, fig, display=True)
    plt.close(fig)


@dataclass
class Chapter:
    """Provenance of one execution of a chapter.

    ``chapter = Chapter.start()`` in the first cells; ``chapter.finish()`` at the end prints
    the record (profile, device, versions, wall time) and returns it as a dict.

    Example:
        >>> from infovae.book import Chapter
        >>> chapter = Chapter.start()
        profile: ..., device: ...
        >>> record = chapter.finish()
        profile ...
        wall time (s) ...
        >>> sorted(record)
        ['device', 'infovae', 'profile', 'python', 'torch', 'wall time (s)']
    """

    profile: str = field(default_factory=get_profile)
    device: str = field(default_factory=lambda: str(get_device()))
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls) -> "Chapter":
        """Begin timing and print the profile and device that this execution uses."""
        record = cls()
        print(f"profile: {record.profile}, device: {record.device}")
        return record

    def finish(self) -> dict[str, Any]:
        """Print and return the provenance record of this execution."""
        from . import __version__

        device_name = self.device
        if self.device.startswith("cuda"):
            device_name += f" ({torch.cuda.get_device_name(torch.device(self.device))})"
        record = {
            "profile": self.profile,
            "device": device_name,
            "infovae": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "wall time (s)": round(time.perf_counter() - self.started, 1),
        }
        width = max(map(len, record))
        print("\n".join(f"{k:<{width}}  {v}" for k, v in record.items()))
        return record
