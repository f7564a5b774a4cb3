"""Learning-rate schedules: the factor multiplying the base rate at each step (lessons 01-02
define and compare them; lessons 05 and 08 train the transformer with them through torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from helpers import validate

if TYPE_CHECKING:
    import torch

LR_SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine", "warmup")


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule: the factor multiplying the base rate at step t = 0, 1, ...

    - ``constant``: 1
    - ``step``: ``gamma ** (t // step_size)``                 (torch ``StepLR``)
    - ``exponential``: ``gamma ** t``                         (torch ``ExponentialLR``)
    - ``inverse_time``: ``1 / (1 + decay * t)``               (the classic 1/t decay)
    - ``cosine``: ``m + (1 - m)(1 + cos(pi t / T)) / 2``      (torch ``CosineAnnealingLR``, T = steps)
    - ``warmup``: linear warm-up only (then constant)

    ``warmup`` > 0 prepends a linear warm-up ``(t + 1) / warmup`` (torch ``LinearLR``) to any
    schedule, which then starts counting after the warm-up.
    """

    name: str = "constant"
    """One of LR_SCHEDULES."""
    gamma: float = 0.5
    """Decay factor of 'step' (per ``step_size`` steps) and 'exponential' (per step)."""
    step_size: int = 100
    """Steps between decays of 'step'."""
    decay: float = 0.01
    """The rate of 'inverse_time'."""
    min_factor: float = 0.0
    """The floor m of 'cosine', in [0, 1)."""
    warmup: int = 0
    """Linear warm-up steps before the schedule starts."""

    def __post_init__(self) -> None:
        if self.name not in LR_SCHEDULES:
            raise ValueError(f"schedule={self.name!r} is not known; allowed: "
                             f"{', '.join(map(repr, LR_SCHEDULES))}")
        validate.positive_finite("gamma", self.gamma)
        validate.integer("step_size", self.step_size, 1)
        validate.positive_finite("decay", self.decay)
        validate.unit_interval("min_factor", self.min_factor)
        validate.integer("warmup", self.warmup, 0)
        if self.name == "warmup" and self.warmup < 1:
            raise ValueError("schedule 'warmup' needs warmup >= 1 steps")

    def factors(self, steps: int) -> np.ndarray:
        """The factor for each of ``steps`` steps (shape (steps,))."""
        steps = validate.integer("steps", steps, 1)
        w = min(self.warmup, steps)
        t = np.arange(steps - w, dtype=float)
        if self.name in ("constant", "warmup"):
            main = np.ones_like(t)
        elif self.name == "step":
            main = self.gamma ** np.floor(t / self.step_size)
        elif self.name == "exponential":
            main = self.gamma**t
        elif self.name == "inverse_time":
            main = 1.0 / (1.0 + self.decay * t)
        else:  # cosine
            T = max(steps - w, 1)
            main = self.min_factor + (1 - self.min_factor) * (1 + np.cos(np.pi * t / T)) / 2
        warm = (np.arange(w, dtype=float) + 1) / max(self.warmup, 1)
        return np.concatenate([warm, main])

    def to_torch(self, optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        """A ``torch.optim.lr_scheduler.LambdaLR`` giving these factors over ``steps`` steps (the
        last factor after that); call its ``step()`` after each optimiser step."""
        import torch  # heavy: lessons 01-02 use the schedules with NumPy only

        factors = self.factors(steps)
        last = len(factors) - 1
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: float(factors[min(t, last)]))


def as_lr_schedule(schedule: str | LRSchedule | None) -> LRSchedule:
    """A name, an :class:`LRSchedule` or None (constant) as an :class:`LRSchedule`."""
    if schedule is None:
        return LRSchedule()
    if isinstance(schedule, LRSchedule):
        return schedule
    if isinstance(schedule, str):
        return LRSchedule(schedule)
    raise TypeError(f"schedule must be a name ({', '.join(LR_SCHEDULES)}) or an LRSchedule, got {schedule!r}")
