"""The simulator calibrated to a measured run: per-stage F/B/W costs and the per-message cost,
taken from the run's own timelines, then simulated and compared with the measured time.

- :func:`measured_costs`: the median duration of every (kind, stage) over the chosen steps, and
  the message cost -- the median gap between the moment an action on one rank finished
  computing and posted its message, and the start of the action on another rank that was idle
  waiting for it (latency plus copy; both ranks on one clock, one machine);
- :func:`predict`: the simulated makespan with those costs, against the measured one -- step by
  step, each step simulated with its own measured costs (a change of machine load between steps
  then moves the prediction and the measurement alike), the error the median over the steps;
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


def measured_costs(run: PipelineRun, skip_first: bool = True, steps: Sequence[int] | None = None) -> Costs:
    """Median cost of each action kind per stage, and of one message, from ``run``'s timelines
    (all measured steps, or only ``steps``)."""
    sched = run.schedule
    S = sched.n_stages
    durations: dict[tuple[str, int], list[float]] = defaultdict(list)
    gaps: list[float] = []
    for step in (_steps(run, skip_first) if steps is None else steps):
        tl = run.timeline(step)
        sent = run.sent_times(step)
        posted = {}
        for r, acts in enumerate(sched.ranks):
            for a, s, e, p in zip(acts, tl.starts[r], tl.ends[r], sent[r], strict=True):
                durations[(a.kind, a.stage)].append(e - s)
                posted[a] = p
        for r, acts in enumerate(sched.ranks):
            for i, a in enumerate(acts):
                for d in dependencies(a, S):
                    # the rank was idle, waiting for this message from another rank: from the
                    # moment it was posted to the moment the receiver could start
                    if sched.rank_of(d.stage) != r and i > 0 and posted[d] > tl.ends[r][i - 1]:
                        gaps.append(tl.starts[r][i] - posted[d])
    med = {k: statistics.median(v) for k, v in durations.items()}
    weight = [med[(WEIGHT, s)] for s in range(S)] if sched.split_backward else None
    return Costs([med[(FORWARD, s)] for s in range(S)], [med[(BACKWARD, s)] for s in range(S)],
                 weight, statistics.median(gaps) if gaps else 0.0, len(gaps))


def simulated(run: PipelineRun, costs: Costs | None = None, uniform: bool = False) -> Timeline:
    """The run's schedule simulated with its measured costs (``costs`` from another run of the
    same split can be given: an out-of-sample prediction). ``uniform=True``: every stage at the
    mean cost and messages free -- what is left when unequal stages and message costs are
    taken out."""
    c = costs or measured_costs(run)
    if uniform:
        mean = statistics.fmean
        return simulate(run.schedule, mean(c.forward), mean(c.backward), comm=0.0,
                        weight=None if c.weight is None else mean(c.weight))
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
    uniform_s: float  # the same costs averaged over stages, messages free

    step_errors: tuple[float, ...] = ()  # per step: simulated with that step's own costs, vs measured
    contention: float = 1.0  # median over steps: wall seconds of all actions / CPU seconds of the ranks

    @property
    def error(self) -> float:
        """Relative error of the prediction: the median over steps of (simulated with the step's
        own measured costs) / (the step's measured makespan) - 1 -- a change of machine load
        between steps moves both alike -- or, for costs from another run, predicted / measured - 1."""
        if self.step_errors:
            return statistics.median(self.step_errors)
        return self.predicted_s / self.measured_s - 1.0

    @property
    def quiet(self) -> bool:
        """True when the ranks got the CPU they computed on: the actions' wall time at most 10%
        above the ranks' CPU time. Above that, other programs preempted them -- time the
        simulator does not model."""
        return self.contention <= 1.10

    @property
    def uniform_error(self) -> float:
        return self.uniform_s / self.measured_s - 1.0


def predict(run: PipelineRun, name: str | None = None, skip_first: bool = True,
            costs: Costs | None = None) -> Prediction:
    """Calibrate on ``run`` (or use ``costs`` measured on another run of the same stages) and
    compare the simulated makespan with the measured one."""
    own = costs is None
    costs = costs or measured_costs(run, skip_first)
    sim = simulated(run, costs)
    steps = list(_steps(run, skip_first))
    spans = [run.timeline(k).makespan for k in steps]
    bubbles = [run.timeline(k).bubble for k in steps]
    per_step = [simulated(run, measured_costs(run, steps=[k])).makespan for k in steps] if own else []
    step_errors = tuple(p / span - 1 for p, span in zip(per_step, spans, strict=True)) if own else ()
    predicted = statistics.median(per_step) if own else sim.makespan
    busy = [sum(run.timeline(k).busy(r) for r in range(run.schedule.p)) for k in steps]
    cpu = [sum(r.cpu_times[k] for r in run.ranks) for k in steps]
    contention = statistics.median(b / c for b, c in zip(busy, cpu, strict=True) if c > 0) if any(cpu) else 1.0
    return Prediction(name or run.job.name or run.job.schedule, statistics.median(spans),
                      (min(spans), max(spans)), predicted, statistics.median(bubbles), sim.bubble,
                      sim.formula, costs, len(steps), simulated(run, costs, uniform=True).makespan,
                      step_errors, contention)


def calibration_table(runs: Sequence[PipelineRun] | Sequence[Prediction]) -> list[dict[str, object]]:
    """One row per run (or prediction): measured and predicted step makespan (ms), error, the
    uniform-cost baseline's error, bubbles."""
    rows = []
    for run in runs:
        p = run if isinstance(run, Prediction) else predict(run)
        rows.append({"run": p.name, "steps": p.steps,
                     "measured ms (median)": round(1e3 * p.measured_s, 1),
                     "min-max ms": f"{1e3 * p.spread_s[0]:.1f}-{1e3 * p.spread_s[1]:.1f}",
                     "calibrated sim ms": round(1e3 * p.predicted_s, 1),
                     "error": f"{100 * p.error:+.0f}%",
                     "uniform, no messages": f"{100 * p.uniform_error:+.0f}%",
                     "bubble measured": round(p.measured_bubble, 3),
                     "bubble calibrated": round(p.predicted_bubble, 3),
                     "bubble formula": None if p.formula is None else round(p.formula, 3)})
    return rows
