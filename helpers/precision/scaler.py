"""Dynamic loss scaling written out (:class:`LossScaler`), with the interface and the decisions of
``torch.amp.GradScaler`` (scale, check for inf/NaN, unscale, skip, back off, grow), tested
against it, so either can drive :func:`helpers.precision.amp.amp_step`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from helpers import validate
from helpers.precision.formats import check_device


# ----------------------------------------------------------------------------- loss scaling
def _f32(x: float) -> float:
    """Round a Python float to float32 (the scale lives in a float32 tensor in torch)."""
    return float(torch.tensor(x, dtype=torch.float64).to(torch.float32))


@dataclass(frozen=True)
class ScalerEvent:
    """What one :meth:`LossScaler.update` decided."""

    scale: float       # the scale the step's loss was multiplied by
    found_inf: bool    # an inf/NaN was found in the gradients
    skipped: bool      # optimizer.step() was skipped (same as found_inf)
    new_scale: float   # the scale for the next step


class LossScaler:
    """Dynamic loss scaling, from scratch, with ``torch.amp.GradScaler``'s interface and rules.

    Per step: ``scale(loss).backward()`` (gradients come out multiplied by S), ``unscale_(opt)``
    (divide by S, note any inf/NaN), ``step(opt)`` (skip the optimizer if any), ``update()``:

    - inf/NaN found  -> S <- S * backoff_factor, and the count of good steps restarts;
    - otherwise      -> after ``growth_interval`` consecutive good steps, S <- S * growth_factor
      (unless that overflows fp32).

    The scale is kept in fp32 and unscaling multiplies by fp32(1/S), as GradScaler does, so
    both produce bit-identical gradients and the same scale sequence.
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> None:
        validate.positive_finite("init_scale", init_scale)
        if not isinstance(growth_factor, (int, float)) or not growth_factor > 1.0:
            raise ValueError(f"growth_factor must be > 1.0, got {growth_factor!r}")
        if not isinstance(backoff_factor, (int, float)) or not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        validate.positive_int("growth_interval", growth_interval)
        self.enabled = bool(enabled)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self._scale = _f32(float(init_scale))
        self._growth_tracker = 0  # consecutive steps without inf/NaN
        self._found_inf: dict[int, bool] = {}  # per optimizer, this iteration
        self._stepped: set[int] = set()
        self.history: list[ScalerEvent] = []

    # -- the interface of torch.amp.GradScaler
    def get_scale(self) -> float:
        return self._scale if self.enabled else 1.0

    def is_enabled(self) -> bool:
        return self.enabled

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss * S`` (S as a float32 tensor, like GradScaler)."""
        if not torch.is_tensor(loss):
            raise TypeError(f"loss must be a tensor, got {type(loss).__name__}")
        if not self.enabled:
            return loss
        return loss * torch.tensor(self._scale, dtype=torch.float32, device=loss.device)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide the optimizer's gradients by S in place; return whether any is inf/NaN."""
        if not self.enabled:
            return False
        key = id(optimizer)
        if key in self._stepped:
            raise RuntimeError("unscale_() is being called after step().")
        if key in self._found_inf:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        inv_scale = _f32(1.0 / self._scale)  # fp32(1/S), the reciprocal taken in float64
        found_inf = False
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.dtype == torch.float16:
                        raise TypeError(
                            "refusing to unscale float16 gradients: keep fp32 master weights "
                            "(autocast on an fp32 model) so gradients are fp32")
                    if not bool(torch.isfinite(p.grad).all()):
                        found_inf = True
                    p.grad.mul_(inv_scale)
        self._found_inf[key] = found_inf
        return found_inf

    def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> bool:
        """Unscale (if not done yet) and run ``optimizer.step()`` unless an inf/NaN was found.
        Returns True when the optimizer stepped."""
        if not self.enabled:
            optimizer.step(*args, **kwargs)
            return True
        key = id(optimizer)
        if key in self._stepped:
            raise RuntimeError("step() has already been called since the last update().")
        if key not in self._found_inf:
            self.unscale_(optimizer)
        self._stepped.add(key)
        if self._found_inf[key]:
            return False
        optimizer.step(*args, **kwargs)
        return True

    def update(self) -> ScalerEvent | None:
        """Back off after an inf/NaN, grow after ``growth_interval`` good steps; log the decision."""
        if not self.enabled:
            return None
        if not self._found_inf:
            raise RuntimeError("update() called before unscale_() or step() in this iteration")
        found_inf = any(self._found_inf.values())
        old = self._scale
        if found_inf:
            self._scale = _f32(self._scale * self.backoff_factor)
            self._growth_tracker = 0
        else:
            good = self._growth_tracker + 1
            if good == self.growth_interval:
                grown = _f32(self._scale * self.growth_factor)
                if math.isfinite(grown):  # never grow past fp32's range
                    self._scale = grown
                self._growth_tracker = 0
            else:
                self._growth_tracker = good
        self._found_inf, self._stepped = {}, set()
        event = ScalerEvent(scale=old, found_inf=found_inf, skipped=found_inf, new_scale=self._scale)
        self.history.append(event)
        return event

    def state_dict(self) -> dict[str, float | int]:
        return {"scale": self._scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self._scale = _f32(float(state["scale"]))
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self._growth_tracker = int(state["_growth_tracker"])


def make_scaler(kind: str, device: str = "cpu", **kwargs: Any) -> LossScaler | torch.amp.GradScaler:
    """``kind='course'`` -> :class:`LossScaler`; ``'torch'`` -> ``torch.amp.GradScaler(device)``.
    ``kwargs``: init_scale, growth_factor, backoff_factor, growth_interval (validated by ours)."""
    if kind not in ("course", "torch"):
        raise ValueError(f"scaler kind must be 'course' or 'torch', got {kind!r}")
    check_device(device)
    ours = LossScaler(**kwargs)  # validates the arguments for both kinds
    if kind == "course":
        return ours
    return torch.amp.GradScaler(device, **kwargs)
