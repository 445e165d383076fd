"""Checks of user input, run before any work: numbers, layer lists, slices, output folders.

Each check raises :class:`~autosteer_interp.errors.InvalidInputError` saying what was wrong, what was received
and what is allowed, under the name the user knows the value by (``--epsilon`` on the command line,
``epsilon`` in Python). The command line and the public functions share them, so both refuse the same values.

Example:
    >>> finite_number(0.1, "epsilon", low=0, low_open=True)
    0.1
    >>> finite_number(float("nan"), "epsilon", low=0, low_open=True)
    Traceback (most recent call last):
    ...
    autosteer_interp.errors.InvalidInputError: epsilon must be a finite number > 0, got nan.
"""

import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

__all__ = ["check_new_folder", "check_window", "finite_number", "layer_list", "non_negative_int", "positive_int"]


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int >= 1`` (booleans and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def non_negative_int(value: Any, name: str) -> int:
    """``value`` as an ``int >= 0`` (booleans and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0, got {value!r}.")
    return int(value)


def finite_number(
    value: Any,
    name: str,
    low: float | int | None = None,
    high: float | int | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (``low_open``: ``> low``; else ``>= low``; same for high)."""
    allowed = _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a finite number{allowed}, got {value!r}.")
    number = float(value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if not math.isfinite(number) or below or above:
        raise InvalidInputError(f"{name} must be a finite number{allowed}, got {value!r}.")
    return number


def _interval(low: float | int | None, high: float | int | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def layer_list(layers: Any, name: str, n_layers: int | None = None) -> list[int]:
    """A non-empty list of distinct decoder-layer indices ``0 <= layer < n_layers`` (``n_layers`` if known)."""
    allowed = f"distinct integers in 0..{n_layers - 1}" if n_layers is not None else "distinct integers >= 0"
    if isinstance(layers, str | bytes) or not isinstance(layers, Sequence):
        raise InvalidInputError(f"{name} must be a list of layer indices ({allowed}), got {layers!r}.")
    values = list(layers)
    if not values:
        raise InvalidInputError(f"{name} is empty; give at least one layer ({allowed}).")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0]
    bad += [v for v in values if n_layers is not None and v not in bad and v >= n_layers]
    if bad:
        raise InvalidInputError(f"{name} holds {bad}, outside the allowed {allowed}; got {values}.")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise InvalidInputError(f"{name} repeats layers {repeated}; give {allowed}, got {values}.")
    return [int(v) for v in values]


def check_window(window: slice, size: int, name: str, what: str) -> None:
    """Refuse a slice whose bounds run past ``size`` items (Python bounds: ``-size <= bound <= size``) or select none.

    Args:
        window: The slice (``step`` unused).
        size: How many items there are.
        name: The option, e.g. ``"--range 0:1600"``.
        what: The data, e.g. ``"--pairs data/vlsafe (1799 pairs)"``.
    """
    for bound in (window.start, window.stop):
        if bound is not None and not -size <= bound <= size:
            raise InvalidInputError(
                f"{name} runs past the data: {what} holds {size} items, so bounds must be in -{size}..{size}."
            )
    if not range(size)[window]:
        raise InvalidInputError(f"{name} selects nothing: {what} holds {size} items.")


def check_new_folder(path: str | Path, name: str) -> Path:
    """Refuse an output folder that exists and is not empty, or that cannot be created and written.

    Nothing is created: the nearest existing parent is checked for being a writable directory (by making and
    removing a temporary folder in it).
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise InvalidInputError(f"{name} {path} exists and is a file; give a new directory.")
        if any(path.iterdir()):
            raise InvalidInputError(f"{name} {path} exists and is not empty; choose a new directory.")
    parent = next((p for p in [path, *path.absolute().parents] if p.exists()), Path("/"))
    if not parent.is_dir():
        raise InvalidInputError(f"{name} {path} cannot be created: {parent} is a file, not a directory.")
    try:
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(f"no write permission on {parent}")
        os.rmdir(tempfile.mkdtemp(prefix=".autosteer-write-check-", dir=parent))
    except OSError as error:
        raise InvalidInputError(
            f"{name} {path} cannot be created: {parent} is not writable ({error.strerror or error})."
        ) from error
    return path
