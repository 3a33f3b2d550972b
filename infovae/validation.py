"""Checks of plain argument values (counts, sizes, rates, names), one home for the whole package.

Every public function of the package refuses a bad argument with a message that names the
argument, what it must be and what it got. The checks here are those messages, so that
``latent_dim=0`` reads the same wherever it is passed:

* ``integer(name, value, minimum=..., maximum=...)``: a Python ``int`` (not a ``bool``) in range;
* ``number(name, value, minimum=..., positive=..., maximum=...)``: a finite ``int`` or ``float``;
* ``choice(name, value, choices)``: one of a tuple of names;
* ``plain(name, value)``: only str, numbers, None, lists and str-keyed dicts (what a checkpoint
  stores with ``torch.load(weights_only=True)``).

A value of the wrong type raises ``ArgumentTypeError``, which is both a ``TypeError`` and a
``ValueError`` (callers catching either see it); a value out of range raises ``ValueError``.
A tensor where a number is expected is named as such, with the fix (``.item()``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError``, and a ``ValueError`` for callers that catch that).

    Example:
        >>> from infovae.validation import ArgumentTypeError, integer
        >>> try:
        ...     integer("latent_dim", "10", minimum=1)
        ... except ValueError as err:
        ...     print(type(err).__name__, err)
        ArgumentTypeError latent_dim must be a positive integer, got '10' (a str)
    """


def _got(value: Any) -> str:
    if _is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}; pass a Python number (e.g. t.item())"
    return f"{value!r} (a {type(value).__name__})"


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "shape")


def _integer_description(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer between {minimum} and {maximum}"
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def integer(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) within ``[minimum, maximum]``; else a clear error.

    Integers of other libraries (``numpy.int64``) are accepted and returned as ``int``.

    Raises:
        ArgumentTypeError: not an integer (a float, a string, a bool, a tensor...).
        ValueError: out of range.

    Example:
        >>> from infovae.validation import integer
        >>> integer("batch_size", 100, minimum=1)
        100
        >>> integer("latent_dim", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: latent_dim must be a positive integer, got 0
        >>> integer("n", 2.5, minimum=1, maximum=10)
        Traceback (most recent call last):
        ...
        infovae.validation.ArgumentTypeError: n must be an integer between 1 and 10, got 2.5 (a float)
    """
    what = _integer_description(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {what}, got {_got(value)}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    """``value`` as a finite ``float`` (an int or float, not a bool), optionally bounded; else a clear error.

    Args:
        name: the argument's name, for the message.
        value: what was passed.
        minimum, maximum: inclusive bounds (``None``: none).
        positive: require ``value > 0``.

    Raises:
        ArgumentTypeError: not a number (a string, a bool, a tensor...).
        ValueError: NaN, infinite or out of range.

    Example:
        >>> from infovae.validation import number
        >>> number("lr", 1e-3, positive=True)
        0.001
        >>> number("alpha", 2.0, maximum=1.0)
        Traceback (most recent call last):
        ...
        ValueError: alpha must be a finite number <= 1.0, got 2.0
        >>> import torch
        >>> number("lam", torch.tensor(3.0))
        Traceback (most recent call last):
        ...
        infovae.validation.ArgumentTypeError: lam must be a finite number, got a tensor of shape (); pass a Python number (e.g. t.item())
    """
    parts = ["a positive finite number" if positive else
             "a non-negative finite number" if minimum == 0 else "a finite number"]
    if minimum is not None and minimum != 0:
        parts.append(f">= {minimum}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    what = " ".join(parts)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {what}, got {_got(value)}")
    value = float(value)
    if (not math.isfinite(value) or (positive and value <= 0)
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum)):
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def choice(name: str, value: T, choices: Sequence[T], hint: str = "") -> T:
    """``value`` if it is one of ``choices``; else a ``ValueError`` listing them (and ``hint``, if given).

    Example:
        >>> from infovae.validation import choice
        >>> choice("precision", "bf16", ("fp32", "bf16", "auto"))
        'bf16'
        >>> choice("divergence", "kl", ("mmd", "stein"))
        Traceback (most recent call last):
        ...
        ValueError: divergence must be one of 'mmd', 'stein', got 'kl'
    """
    try:
        known = value in choices
    except TypeError:  # an unhashable value against a dict's keys
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}{hint}, got {value!r}")
    return value


def plain(name: str, value: Any) -> None:
    """Refuse anything but str, int, float, bool, None, lists/tuples and str-keyed dicts of them.

    Such values survive ``torch.load(weights_only=True)`` and JSON; checkpoints store only them.

    Example:
        >>> from infovae.validation import plain
        >>> plain("meta", {"model": "dcgan", "sizes": [1, 2]})
        >>> plain("meta", {"model": object()})
        Traceback (most recent call last):
        ...
        TypeError: meta['model'] must hold plain values (str, numbers, None, lists, dicts), got object
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            plain(name, item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} must have str keys, got {key!r}")
            plain(f"{name}[{key!r}]", item)
        return
    raise TypeError(f"{name} must hold plain values (str, numbers, None, lists, dicts), got {type(value).__name__}")


__all__ = ["ArgumentTypeError", "choice", "integer", "number", "plain"]
