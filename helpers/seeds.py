"""The course seed: one number, ``COURSE_SEED`` (default 0), that moves every seed in the course.

Every seeded helper takes ``seed: int | None = None``; ``None`` means "derive it from the course
seed", via :func:`resolve`. With ``COURSE_SEED=0`` the derived seeds are the helpers' historical
defaults, so stored notebook outputs are unchanged; any other value shifts every one of them, so
a claim that held only by seed luck fails. ``helpers.setup(seed=k)`` sets ``COURSE_SEED=k`` in
the environment, so spawned processes (pipeline ranks) follow too.
"""

from __future__ import annotations

import os

#: distance between the seed families of consecutive course seeds (a prime, so offsets rarely meet)
STRIDE = 10_007


def course_seed() -> int:
    """``COURSE_SEED`` from the environment (default 0), validated."""
    raw = os.environ.get("COURSE_SEED", "").strip()
    if raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"environment variable COURSE_SEED={raw!r}: expected a non-negative integer")
    return value


def family(course: int, offset: int = 0) -> int:
    """The seed of experiment ``offset`` under course seed ``course`` (``offset`` when it is 0)."""
    return offset + STRIDE * course


def derive(offset: int = 0) -> int:
    """The seed for one experiment under the environment's course seed."""
    return family(course_seed(), offset)


def resolve(seed: int | None, offset: int = 0) -> int:
    """``seed`` when given (validated), else :func:`derive` (``offset``)."""
    if seed is None:
        return derive(offset)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int >= 0 or None (COURSE_SEED's), got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    return seed
