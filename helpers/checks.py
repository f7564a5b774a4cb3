"""Answer checking for "check yourself" exercises.

The notebook registers nothing secret: each exercise stores a *hash* of the canonical answer
(or a tolerance check), so the checker can say right or wrong and give a hint without ever
printing the answer. A :class:`CodeExercise` runs the learner's *function* on hidden cases
against a reference implementation, and prints the reference only when ``solution()`` is called.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np


def _digest(value: str) -> str:
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Exercise:
    """One exercise: either a numeric answer with a relative tolerance, or a hashed text answer."""

    name: str
    hint: str
    target: float | None = None
    rel_tol: float = 1e-2
    answer_hash: str | None = None

    def check(self, answer: object) -> bool:
        if self.target is not None:
            if isinstance(answer, bool) or not isinstance(answer, Real):
                raise TypeError(f"{self.name}: answer must be a number, got {type(answer).__name__}")
            ok = math.isclose(float(answer), self.target, rel_tol=self.rel_tol, abs_tol=1e-12)
        else:
            ok = _digest(str(answer)) == self.answer_hash
        print(f"{self.name}: correct!" if ok else f"{self.name}: not quite. Hint: {self.hint}")
        return ok


def numeric(name: str, target: float, hint: str, rel_tol: float = 1e-2) -> Exercise:
    """An exercise whose answer is a number within ``rel_tol`` of ``target``."""
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be > 0, got {rel_tol!r}")
    return Exercise(name=name, hint=hint, target=float(target), rel_tol=rel_tol)


def choice(name: str, answer_hash: str, hint: str) -> Exercise:
    """An exercise whose answer is a word/phrase, stored only as :func:`hash_answer` of it."""
    return Exercise(name=name, hint=hint, answer_hash=answer_hash)


def hash_answer(answer: str) -> str:
    """The hash stored for a text answer (case- and surrounding-space-insensitive)."""
    return _digest(answer)


def check(exercise: Exercise, answer: object) -> bool:
    """Say whether ``answer`` is right (with a hint when it is not); never reveals the answer."""
    return exercise.check(answer)


def _same(got: object, want: object, rtol: float, atol: float) -> bool:
    """Equal within tolerance, element by element, through tuples and lists (text: exactly)."""
    if isinstance(want, str):
        return isinstance(got, str) and got == want
    if isinstance(want, tuple | list):
        return (isinstance(got, tuple | list) and len(got) == len(want)
                and all(_same(g, w, rtol, atol) for g, w in zip(got, want, strict=True)))
    try:
        g, w = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    except (TypeError, ValueError):
        return False
    return g.shape == w.shape and bool(np.allclose(g, w, rtol=rtol, atol=atol))


@dataclass(frozen=True)
class CodeExercise:
    """Write a function: :meth:`check` calls it on hidden cases and compares with ``reference``.

    ``cases`` are argument tuples; answers may be numbers, arrays or tuples of them. The checker
    says right, or on which case (k of n) it went wrong and a hint; it never prints the expected
    values. :meth:`solution` prints the reference's source.
    """

    name: str
    reference: Callable
    cases: tuple[tuple, ...]
    hint: str
    rtol: float = 1e-7
    atol: float = 1e-10

    def __post_init__(self) -> None:
        if not callable(self.reference):
            raise TypeError(f"reference must be callable, got {type(self.reference).__name__}")
        if not self.cases or not all(isinstance(c, tuple) for c in self.cases):
            raise ValueError(f"cases must be a non-empty sequence of argument tuples, got {self.cases!r}")

    def check(self, fn: Callable | None) -> bool:
        """Run ``fn`` on every case; print 'correct' or the first failing case and the hint."""
        if fn is None:
            print(f"{self.name}: waiting for your function")
            return False
        if not callable(fn):
            raise TypeError(f"{self.name}: pass your function itself (not its result), got {type(fn).__name__}")
        for k, case in enumerate(self.cases, 1):
            want = self.reference(*_copy(case))
            try:
                got = fn(*_copy(case))
            except Exception as exc:
                print(f"{self.name}: case {k} of {len(self.cases)} raised {type(exc).__name__}: {exc}. Hint: {self.hint}")
                return False
            if got is None and k == 1:
                print(f"{self.name}: waiting for your code (the function returns None)")
                return False
            if not _same(got, want, self.rtol, self.atol):
                print(f"{self.name}: not quite (case {k} of {len(self.cases)} differs). Hint: {self.hint}")
                return False
        print(f"{self.name}: correct! ({len(self.cases)} hidden cases)")
        return True

    def solution(self) -> None:
        """Print the reference solution (only when asked)."""
        print(textwrap.dedent(inspect.getsource(self.reference)).rstrip())


def _copy(case: tuple) -> tuple:
    """Fresh copies of array arguments, so an in-place update cannot leak between calls."""
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in case)


def code(name: str, reference: Callable, cases: Sequence[tuple], hint: str, rtol: float = 1e-7,
         atol: float = 1e-10) -> CodeExercise:
    """An exercise whose answer is a function, checked against ``reference`` on ``cases``."""
    return CodeExercise(name=name, reference=reference, cases=tuple(cases), hint=hint, rtol=rtol, atol=atol)
