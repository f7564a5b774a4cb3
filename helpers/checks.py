"""Answer checking for "check yourself" exercises.

The notebook registers nothing secret: each exercise stores a *hash* of the canonical answer
(or a tolerance check), so the checker can say right or wrong and give a hint without ever
printing the answer.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from numbers import Real


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
