"""The simulator calibrated to a measured run: per-stage F/B/W costs and the per-message cost,
taken from the run's own timelines, then simulated and compared with the measured time.

- :func:`measured_costs`: the median duration of every (kind, stage) over the chosen steps, and
  the message cost -- the median gap between the end of an action on one rank and the start of
  the action on another rank that waited for it (the receive's wait: latency plus copy);
- :func:`predict`: the simulated makespan with those costs, against the measured one;
- :func:`calibration_table`: that for several runs, as rows (medians and spreads over steps).

What the textbook formula leaves out, the calibrated model puts back: unequal stages (the
first holds the embedding, the last the head and the loss), the cost of each message, and the
fixed cost per action that makes many small micro-batches slower per row.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from helpers.pipeline.job import PipelineRun
from helpers.pipeline.schedules import BACKWARD, FORWARD, WEIGHT, dependencies
from helpers.pipeline.simulate import Timeline, simulate


@dataclass(frozen=True)
class Costs:
    """Per-stage median action costs (seconds) and the per-message cost."""

    forward: list[float]
    backward: list[float]
    weight: list[float] | None  # split-backward schedules only
    comm: float
    n_gaps: int  # how many waits the message cost was measured from


def _steps(run: PipelineRun, skip_first: bool) -> range:
    n = len(run.ranks[0].starts)
    if n == 0:
        raise ValueError("the run recorded no timeline: run it with record=True")
    return range(1 if skip_first and n > 1 else 0, n)


def measured_costs(run: PipelineRun, skip_first: bool = True) -> Costs:
    """Median cost of each action kind per stage, and of one message, from ``run``'s timelines."""
    sched = run.schedule
    S = sched.n_stages
    durations: dict[tuple[str, int], list[float]] = defaultdict(list)
    gaps: list[float] = []
    for step in _steps(run, skip_first):
        tl = run.timeline(step)
        end = {}
        for r, acts in enumerate(sched.ranks):
            for a, s, e in zip(acts, tl.starts[r], tl.ends[r], strict=True):
                durations[(a.kind, a.stage)].append(e - s)
                end[a] = e
        for r, acts in enumerate(sched.ranks):
            for i, a in enumerate(acts):
                for d in dependencies(a, S):
                    # the rank was idle, waiting for this message from another rank
                    if sched.rank_of(d.stage) != r and i > 0 and end[d] > tl.ends[r][i - 1]:
                        gaps.append(max(0.0, tl.starts[r][i] - end[d]))
    med = {k: statistics.median(v) for k, v in durations.items()}
    weight = [med[(WEIGHT, s)] for s in range(S)] if sched.split_backward else None
    return Costs([med[(FORWARD, s)] for s in range(S)], [med[(BACKWARD, s)] for s in range(S)],
                 weight, statistics.median(gaps) if gaps else 0.0, len(gaps))


def simulated(run: PipelineRun, costs: Costs | None = None) -> Timeline:
    """The run's schedule simulated with its measured costs."""
    c = costs or measured_costs(run)
    return simulate(run.schedule, c.forward, c.backward, comm=c.comm, weight=c.weight)


@dataclass(frozen=True)
class Prediction:
    """Measured against calibrated-simulated step makespan (first action start to last end)."""

    name: str
    measured_s: float  # median over steps
    spread_s: tuple[float, float]  # min and max over steps
    predicted_s: float
    measured_bubble: float  # median over steps
    predicted_bubble: float
    formula: float | None
    costs: Costs
    steps: int

    @property
    def error(self) -> float:
        """Relative error of the prediction: (predicted - measured) / measured."""
        return self.predicted_s / self.measured_s - 1.0


def predict(run: PipelineRun, name: str | None = None, skip_first: bool = True) -> Prediction:
    """Calibrate on ``run`` and compare the simulated makespan with the measured one."""
    costs = measured_costs(run, skip_first)
    sim = simulated(run, costs)
    steps = list(_steps(run, skip_first))
    spans = [run.timeline(k).makespan for k in steps]
    bubbles = [run.timeline(k).bubble for k in steps]
    return Prediction(name or run.job.name or run.job.schedule, statistics.median(spans),
                      (min(spans), max(spans)), sim.makespan, statistics.median(bubbles), sim.bubble,
                      sim.formula, costs, len(steps))


def calibration_table(runs: Sequence[PipelineRun]) -> list[dict[str, object]]:
    """One row per run: measured and predicted step makespan (ms), error, bubbles."""
    rows = []
    for run in runs:
        p = predict(run)
        rows.append({"run": p.name, "steps": p.steps,
                     "measured ms (median)": round(1e3 * p.measured_s, 1),
                     "min-max ms": f"{1e3 * p.spread_s[0]:.1f}-{1e3 * p.spread_s[1]:.1f}",
                     "calibrated sim ms": round(1e3 * p.predicted_s, 1),
                     "error": f"{100 * p.error:+.0f}%",
                     "bubble measured": round(p.measured_bubble, 3),
                     "bubble calibrated": round(p.predicted_bubble, 3),
                     "bubble formula": None if p.formula is None else round(p.formula, 3)})
    return rows
