"""The paper's experiments (Part II of the book), one module each.

``EXPERIMENTS`` maps the name of a figure or table to its function ``run(config) -> Outcome``
(see ``infovae.experiments.base``): the chapter calls it, and so does
``python -m infovae reproduce <name> --out DIR``, which saves the outcome's JSON and PNGs.
"""

from collections.abc import Callable

from . import flexible_decoders, information_preference, log_likelihood, mnist_inference, two_points
from .base import Outcome

EXPERIMENTS: dict[str, Callable[..., Outcome]] = {
    "fig1": two_points.run,
    "fig2-5": mnist_inference.run,
    "fig6": flexible_decoders.run,
    "information-preference": information_preference.run,
    "table1": log_likelihood.run,
}

__all__ = ["EXPERIMENTS", "Outcome"]
