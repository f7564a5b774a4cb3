"""How far each combination's loss curve is from the reference's, and the batch-to-batch scatter
that sizes the tolerance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from helpers import validate
from helpers.lessons.capstone.runs import CurveRun


# --------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """How far a loss curve is from the reference's, step by step."""

    name: str
    steps: int        # steps compared
    max_abs: float    # max over steps of |loss - reference loss|
    mean_abs: float
    final_abs: float  # |difference| at the last step

    def ok(self, tol: float) -> bool:
        return self.max_abs <= tol


def loss_agreement(runs: Mapping[str, CurveRun], reference: str = "plain", steps: int | None = None
                   ) -> dict[str, Agreement]:
    """Compare every run's loss curve with ``reference``'s, step by step (same batches) over
    the steps both ran, or over the first ``steps`` of them."""
    if reference not in runs:
        raise ValueError(f"reference must be one of {list(runs)}, got {reference!r}")
    if steps is not None:
        validate.positive_int("steps", steps)
    ref = runs[reference].losses
    out = {}
    for name, run in runs.items():
        if not run.losses or len(run.losses) > len(ref):
            raise ValueError(f"run {name!r} has {len(run.losses)} losses; need 1..{len(ref)} "
                             f"(the reference's)")
        n = len(run.losses) if steps is None else min(steps, len(run.losses))
        d = [abs(a - b) for a, b in zip(run.losses[:n], ref[:n], strict=True)]
        out[name] = Agreement(name, len(d), max(d), sum(d) / len(d), d[-1])
    return out


def batch_noise(losses: Sequence[float], window: int = 25) -> float:
    """The loss's step-to-step scatter from batch sampling: the standard deviation of
    ``loss - moving average`` over the second half of training (the curve is flat-ish there)."""
    if len(losses) < 2 * window:
        raise ValueError(f"need at least {2 * window} losses for window={window}, got {len(losses)}")
    t = torch.tensor(list(losses), dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool1d(t.view(1, 1, -1), window, stride=1).view(-1)
    resid = t[window // 2 : window // 2 + len(smooth)] - smooth
    return float(resid[len(resid) // 2 :].std())
