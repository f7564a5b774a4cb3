"""Argument checks shared by every module: each raises a TypeError or ValueError that names the
argument and what is allowed, and returns the value in its canonical type."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import TypeVar

T = TypeVar("T")


def integer(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """An int (numpy ints too, never a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            allowed = f">= {low}"
        elif low is None:
            allowed = f"<= {high}"
        else:
            allowed = f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def positive_int(name: str, value: object) -> int:
    """An int >= 1 (numpy ints too, never a bool)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise (ValueError if isinstance(value, Integral) and not isinstance(value, bool) else TypeError)(
            f"{name} must be a positive int, got {value!r}")
    return int(value)


def number(name: str, value: object) -> float:
    """A real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def positive_finite(name: str, value: object) -> float:
    """A finite number > 0."""
    v = number(name, value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def optional_positive(name: str, value: object) -> float | None:
    """None, or a finite number > 0."""
    return None if value is None else positive_finite(name, value)


def unit_interval(name: str, value: object, allow_zero: bool = True) -> float:
    """A number in [0, 1) (or (0, 1) with ``allow_zero=False``)."""
    v = number(name, value)
    if not ((0.0 <= v < 1.0) if allow_zero else (0.0 < v < 1.0)):
        raise ValueError(f"{name} must be in {'[0, 1)' if allow_zero else '(0, 1)'}, got {value!r}")
    return v


def boolean(name: str, value: object) -> bool:
    """A bool (not merely truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def choice(name: str, value: T, allowed: Sequence[T]) -> T:
    """One of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value
