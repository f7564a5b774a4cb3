"""A discrete-event simulator for pipeline schedules, the timeline type shared with the real
executors (their measured timestamps make a :class:`Timeline` too), and :func:`check_schedule`, which
checks a schedule and runs it here to prove it cannot deadlock.

Each rank runs its actions in the schedule's order; an action starts when its rank is free and
its dependencies (see :func:`helpers.pipeline.schedules.dependencies`) have finished, plus
``comm`` when the dependency ran on another rank. The simulation is event driven: a rank that
waits is woken by the action it waits for, so the cost is linear in the number of actions
(p = 64, m = 512: 65 536 actions in well under a second).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from helpers.pipeline.schedules import (
    BACKWARD,
    FORWARD,
    WEIGHT,
    Action,
    PipelineSchedule,
    ScheduleError,
    bubble_formula,
    dependencies,
)

Cost = float | Sequence[float] | Callable[[int, int], float]


@dataclass(frozen=True)
class Event:
    """One action on one rank, with its start and end time."""

    rank: int
    action: Action
    start: float
    end: float


@dataclass
class Timeline:
    """When every action of a schedule ran: ``starts[r][i]``/``ends[r][i]`` belong to
    ``schedule.ranks[r][i]``. Times are in any unit (simulated cost units, or seconds)."""

    schedule: PipelineSchedule
    starts: list[list[float]]
    ends: list[list[float]]
    source: str = "simulated"

    def __post_init__(self) -> None:
        for r, acts in enumerate(self.schedule.ranks):
            if len(self.starts[r]) != len(acts) or len(self.ends[r]) != len(acts):
                raise ValueError(f"rank {r}: {len(acts)} actions but "
                                 f"{len(self.starts[r])} starts / {len(self.ends[r])} ends")

    @property
    def t0(self) -> float:
        return min((s[0] for s in self.starts if s), default=0.0)

    @property
    def makespan(self) -> float:
        """From the first start to the last end over all ranks."""
        return max((e[-1] for e in self.ends if e), default=0.0) - self.t0

    def busy(self, rank: int) -> float:
        """Time rank ``rank`` spent computing."""
        return sum(e - s for s, e in zip(self.starts[rank], self.ends[rank], strict=True))

    @property
    def bubble(self) -> float:
        """Idle share of all ranks' time: ``1 - sum(busy) / (p * makespan)``."""
        span = self.makespan
        if span <= 0:
            return 0.0
        return 1.0 - sum(self.busy(r) for r in range(self.schedule.p)) / (self.schedule.p * span)

    def idle(self, rank: int | None = None) -> float:
        """Idle time of ``rank`` (None: summed over all ranks) within the makespan."""
        ranks = range(self.schedule.p) if rank is None else [rank]
        return sum(self.makespan - self.busy(r) for r in ranks)

    @property
    def formula(self) -> float | None:
        """The textbook bubble for this schedule's p, m, v (see ``bubble_formula``; None for
        schedules without a closed form)."""
        s = self.schedule
        return bubble_formula(s.name, s.p, s.m, s.v)

    def peak_in_flight(self) -> list[int]:
        return self.schedule.peak_in_flight()

    def events(self) -> list[Event]:
        """Every action as an :class:`Event`, times relative to the first start."""
        t0 = self.t0
        return [
            Event(r, a, s - t0, e - t0)
            for r, acts in enumerate(self.schedule.ranks)
            for a, s, e in zip(acts, self.starts[r], self.ends[r], strict=True)
        ]

    def summary(self) -> str:
        s = self.schedule
        v = f", v={s.v}" if s.v > 1 else ""
        f = self.formula
        formula = "no closed form" if f is None else f"formula {f:.3f}"
        return f"{s.name} p={s.p} m={s.m}{v} ({self.source}): bubble {self.bubble:.3f} ({formula})"


def _cost_table(cost: Cost, n_stages: int, what: str) -> Callable[[int, int], float] | list[float]:
    if callable(cost):
        return cost
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        if cost < 0:
            raise ValueError(f"{what} cost must be >= 0, got {cost!r}")
        return [float(cost)] * n_stages
    if isinstance(cost, Sequence) and not isinstance(cost, str):
        if len(cost) != n_stages:
            raise ValueError(f"{what} costs: need one per stage ({n_stages}), got {len(cost)}")
        out = [float(c) for c in cost]
        if min(out) < 0:
            raise ValueError(f"{what} costs must be >= 0, got {list(cost)!r}")
        return out
    raise TypeError(f"{what} cost must be a number, a per-stage sequence or a callable "
                    f"(stage, mb) -> float, got {type(cost).__name__}")


def _halve(cost: Cost) -> Cost:
    if callable(cost):
        return lambda s, i: cost(s, i) / 2  # type: ignore[operator]
    if isinstance(cost, Sequence) and not isinstance(cost, str):
        return [c / 2 for c in cost]
    return cost / 2  # type: ignore[operator]


def simulate(schedule: PipelineSchedule, forward: Cost = 1.0, backward: Cost = 2.0,
             comm: float = 0.0, weight: Cost | None = None) -> Timeline:
    """Run ``schedule`` in simulated time; raise :class:`ScheduleError` if it deadlocks.

    ``forward``/``backward``/``weight``: cost of one action, as a number, a per-stage list, or
    a function ``(stage, mb) -> cost``. ``comm``: delay added when a dependency ran on another
    rank. The course convention is backward = 2 x forward (two matmuls per forward matmul).
    For a split-backward schedule ``backward`` is the cost of ``B`` (input gradient) and
    ``weight`` that of ``W``; with ``weight=None`` the whole backward ``backward`` is shared
    equally between them (F = B = W = 1 by default, the setting of Qi et al. 2023)."""
    S, p = schedule.n_stages, schedule.p
    if schedule.split_backward and weight is None:
        backward = weight = _halve(backward)
    fcost = _cost_table(forward, S, "forward")
    bcost = _cost_table(backward, S, "backward")
    wcost = _cost_table(weight if weight is not None else 0.0, S, "weight")
    if comm < 0:
        raise ValueError(f"comm must be >= 0, got {comm!r}")
    tables = {FORWARD: fcost, BACKWARD: bcost, WEIGHT: wcost}
    done: dict[Action, float] = {}
    waiting: dict[Action, list[int]] = {}
    pos = [0] * p
    free = [0.0] * p
    starts: list[list[float]] = [[] for _ in range(p)]
    ends: list[list[float]] = [[] for _ in range(p)]
    ready = list(range(p - 1, -1, -1))
    while ready:
        r = ready.pop()
        acts = schedule.ranks[r]
        i, t = pos[r], free[r]
        st, en = starts[r], ends[r]
        n = len(acts)
        while i < n:
            a = acts[i]
            start, dep = _earliest_start(a, t, done, schedule, comm if p > 1 else 0.0)
            if start is None:
                break
            t = start
            table = tables[a.kind]
            cost = table[a.stage] if isinstance(table, list) else table(a.stage, a.mb)
            st.append(t)
            t += cost
            en.append(t)
            done[a] = t
            woken = waiting.pop(a, None)
            if woken:
                ready.extend(woken)
            i += 1
        pos[r], free[r] = i, t
        if i < n:
            waiting.setdefault(dep, []).append(r)
    _raise_if_stuck(schedule, pos)
    return Timeline(schedule, starts, ends)


def _earliest_start(a: Action, t: float, done: dict[Action, float], schedule: PipelineSchedule,
                    comm: float) -> tuple[float | None, Action | None]:
    """When ``a`` can start on a rank free at ``t``: (time, None), or (None, the dependency it
    waits for). A dependency that ran on another rank arrives ``comm`` later (a stage boundary
    inside one rank -- the turn of a V -- costs no message)."""
    for dep in dependencies(a, schedule.n_stages):  # the schedule's own rule, nothing re-derived here
        d = done.get(dep)
        if d is None:
            return None, dep
        if schedule.rank_of(dep.stage) != schedule.rank_of(a.stage):
            d += comm
        t = max(t, d)
    return t, None


def _raise_if_stuck(schedule: PipelineSchedule, pos: list[int]) -> None:
    stuck = [(r, schedule.ranks[r][pos[r]]) for r in range(schedule.p) if pos[r] < len(schedule.ranks[r])]
    if stuck:
        detail = "; ".join(f"rank {r} waits at {a}" for r, a in stuck[:4])
        raise ScheduleError(f"schedule {schedule.name!r} deadlocks: {detail}")


def check_schedule(schedule: PipelineSchedule) -> PipelineSchedule:
    """Check ``schedule``; return it unchanged or raise :class:`ScheduleError` saying what is wrong.

    Checks: one action list per rank; every action is well formed and on the rank holding its
    stage; every forward and backward (and, when the backward is split, weight gradient) of
    every (micro-batch, stage) appears exactly once; and the per-rank orders can run to
    completion (no rank waits for something that never comes)."""
    if not isinstance(schedule, PipelineSchedule):
        raise TypeError(f"schedule must be a PipelineSchedule, got {type(schedule).__name__}")
    p, m, S = schedule.p, schedule.m, schedule.n_stages
    if len(schedule.ranks) != p:
        raise ScheduleError(f"schedule has {len(schedule.ranks)} rank lists for p={p} ranks")
    kinds = (FORWARD, BACKWARD, WEIGHT) if schedule.split_backward else (FORWARD, BACKWARD)
    seen: dict[Action, int] = {}
    for r, actions in enumerate(schedule.ranks):
        for a in actions:
            if not isinstance(a, Action) or a.kind not in kinds:
                raise ScheduleError(f"rank {r}: {a!r} is not an Action with kind in {kinds}"
                                    + ("" if schedule.split_backward else
                                       " (W needs a schedule with split_backward=True)"))
            if not (0 <= a.mb < m and 0 <= a.stage < S):
                raise ScheduleError(f"rank {r}: {a} is out of range (m={m}, stages={S})")
            if schedule.rank_of(a.stage) != r:
                raise ScheduleError(f"rank {r}: {a} belongs on rank {schedule.rank_of(a.stage)}")
            if a in seen:
                raise ScheduleError(f"rank {r}: {a} appears more than once")
            seen[a] = r
    if len(seen) != len(kinds) * m * S:
        missing = next(
            Action(k, i, s) for k in kinds for i in range(m) for s in range(S)
            if Action(k, i, s) not in seen
        )
        raise ScheduleError(f"{len(kinds) * m * S - len(seen)} actions are missing, e.g. {missing}")
    simulate(schedule, forward=1.0, backward=1.0)  # runs the orders; raises on a deadlock
    return schedule
