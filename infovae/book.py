"""Helpers that the chapters of the book share: numbers glued into the prose, provenance.

``glue(name, value)`` stores a value in the executed notebook so that the prose can show
it with the MyST role ``{glue:text}`name:.3f` `` (Jupyter Book inserts it at build
time); the text never types a computed number by hand. It writes the same display data as
``myst_nb.glue`` without needing myst-nb at run time (so Colab runs need nothing extra).

``Chapter`` records how a chapter was executed: profile, device, package versions and
wall time, shown at the end of every chapter.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .runtime import get_device, get_profile

GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Record ``value`` under ``name`` for ``{glue:text}`` / ``{glue}`` roles in the prose.

    Floats are glued as floats so the prose can format them (``{glue:text}`x:.2e` ``).
    Returns ``value`` so that a cell can glue and use a number in one line.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    return value


@dataclass
class Chapter:
    """Provenance of one execution of a chapter.

    ``chapter = Chapter.start()`` in the first cells; ``chapter.finish()`` at the end prints
    the record (profile, device, versions, wall time) and returns it as a dict.
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
