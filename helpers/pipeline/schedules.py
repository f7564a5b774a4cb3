"""Pipeline schedules as data: for every rank, the ordered list of actions it runs.

An :class:`Action` is ``F`` (forward) or ``B`` (backward) of micro-batch ``mb`` on stage ``stage``.
With ``p`` ranks and ``v`` model chunks per rank there are ``p * v`` stages; stage ``s`` lives on
rank ``s % p`` (for ``v = 1`` stage ``s`` is rank ``s``). The dependencies are those of the
model: ``F(i, s)`` needs ``F(i, s-1)``; ``B(i, s)`` needs ``B(i, s+1)`` (the last stage needs its
own ``F(i, S-1)``, where the loss is computed) and ``F(i, s)`` on its own rank.

Schedules (all "flush" schedules: one optimiser step after all micro-batches):

- ``gpipe``       all forwards, then all backwards (Huang et al. 2019);
- ``1f1b``        PipeDream-flush: ``p - r - 1`` warm-up forwards on rank ``r``, then one
  forward / one backward alternately, then the remaining backwards (Narayanan et al. 2021);
- ``interleaved`` interleaved 1F1B with ``v`` chunks per rank (Megatron-LM; same order as
  ``torch.distributed.pipelining.ScheduleInterleaved1F1B``).

:func:`helpers.pipeline.simulate.check_schedule` checks a schedule (each action exactly once, on the right rank, dependencies
satisfiable in the given order); :mod:`helpers.pipeline.simulate` times it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from helpers import validate

SCHEDULES = ("gpipe", "1f1b", "interleaved")
FORWARD, BACKWARD = "F", "B"


class ScheduleError(ValueError):
    """A schedule is invalid: a missing/duplicate action, a wrong rank, or a deadlock."""


class Action(NamedTuple):
    """One unit of work: forward (``"F"``) or backward (``"B"``) of micro-batch ``mb`` on ``stage``."""

    kind: str
    mb: int
    stage: int

    def __str__(self) -> str:
        word = "forward" if self.kind == FORWARD else "backward"
        return f"{self.kind}(mb={self.mb}, stage={self.stage}) [{word}]"


@dataclass(frozen=True)
class PipelineSchedule:
    """A pipeline schedule: ``ranks[r]`` is the ordered tuple of actions rank ``r`` runs."""

    name: str
    p: int
    m: int
    v: int
    ranks: tuple[tuple[Action, ...], ...]

    @property
    def n_stages(self) -> int:
        return self.p * self.v

    def rank_of(self, stage: int) -> int:
        """The rank that holds ``stage`` (stages are dealt round-robin: ``stage % p``)."""
        return stage % self.p

    def stages_of(self, rank: int) -> list[int]:
        """The stages rank ``rank`` holds, in model order."""
        return list(range(rank, self.n_stages, self.p))

    def peak_in_flight(self) -> list[int]:
        """Per stage: the most micro-batches whose forward has run and backward has not.

        Each of them holds its saved activations, so this times one micro-batch's activation
        memory is the stage's activation peak. It depends only on each rank's order."""
        peak = [0] * self.n_stages
        live = [0] * self.n_stages
        for actions in self.ranks:
            for a in actions:
                if a.kind == FORWARD:
                    live[a.stage] += 1
                    peak[a.stage] = max(peak[a.stage], live[a.stage])
                else:
                    live[a.stage] -= 1
        return peak

    def peak_in_flight_per_rank(self) -> list[int]:
        """Per rank: the most (micro-batch, stage) pairs alive at once over all its stages."""
        out = []
        for actions in self.ranks:
            live = best = 0
            for a in actions:
                live += 1 if a.kind == FORWARD else -1
                best = max(best, live)
            out.append(best)
        return out

    def __len__(self) -> int:
        return sum(len(r) for r in self.ranks)


# --------------------------------------------------------------------------- argument checks
def _check_int(name: str, value: object, minimum: int = 1) -> int:
    return validate.integer(name, value, minimum)


def check_schedule_name(name: object) -> str:
    """Return ``name`` if it is a known schedule, else raise a ValueError listing them."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
    return name  # type: ignore[return-value]


# --------------------------------------------------------------------------- the schedules
def gpipe(p: int, m: int) -> PipelineSchedule:
    """GPipe: every rank runs all ``m`` forwards, then all ``m`` backwards (in micro-batch order)."""
    _check_int("p", p)
    _check_int("m", m)
    ranks = tuple(
        tuple(Action(FORWARD, i, r) for i in range(m)) + tuple(Action(BACKWARD, i, r) for i in range(m))
        for r in range(p)
    )
    return PipelineSchedule("gpipe", p, m, 1, ranks)


def one_f_one_b(p: int, m: int) -> PipelineSchedule:
    """1F1B (PipeDream-flush): ``p-r-1`` warm-up forwards, then F/B alternately, then the rest."""
    _check_int("p", p)
    _check_int("m", m)
    if m < p:
        raise ValueError(
            f"1f1b needs at least as many micro-batches as stages: m={m} < p={p}; "
            "use m >= p or schedule='gpipe'"
        )
    ranks = []
    for r in range(p):
        warmup = p - r - 1
        acts = [Action(FORWARD, i, r) for i in range(warmup)]
        for i in range(m - warmup):
            acts += [Action(FORWARD, warmup + i, r), Action(BACKWARD, i, r)]
        acts += [Action(BACKWARD, i, r) for i in range(m - warmup, m)]
        ranks.append(tuple(acts))
    return PipelineSchedule("1f1b", p, m, 1, tuple(ranks))


def interleaved_1f1b(p: int, m: int, v: int = 2) -> PipelineSchedule:
    """Interleaved 1F1B (Megatron-LM): ``v`` model chunks per rank, stage ``c*p + r`` on rank ``r``.

    Needs ``m`` to be a multiple of ``p``: micro-batches enter in groups of ``p``, each group
    passes through chunk 0, then chunk 1, ... on every rank ("depth first")."""
    _check_int("p", p)
    _check_int("m", m)
    _check_int("v", v)
    if m % p:
        raise ValueError(f"interleaved needs m to be a multiple of p: m={m}, p={p}")
    total = m * v
    ranks = []
    for r in range(p):
        warmup = min((v - 1) * p + 2 * (p - 1 - r), total)

        def fwd(k: int, r: int = r) -> Action:
            chunk = (k // p) % v
            return Action(FORWARD, (k // (p * v)) * p + k % p, chunk * p + r)

        def bwd(k: int, r: int = r) -> Action:
            chunk = v - 1 - (k // p) % v
            return Action(BACKWARD, (k // (p * v)) * p + k % p, chunk * p + r)

        acts = [fwd(k) for k in range(warmup)]
        for k in range(total - warmup):
            acts += [fwd(warmup + k), bwd(k)]
        acts += [bwd(k) for k in range(total - warmup, total)]
        ranks.append(tuple(acts))
    return PipelineSchedule("interleaved", p, m, v, tuple(ranks))


def make_schedule(name: str, p: int, m: int, v: int = 1) -> PipelineSchedule:
    """Build schedule ``name`` (one of :data:`SCHEDULES`) for ``p`` ranks and ``m`` micro-batches.

    ``v`` (model chunks per rank) is used by ``interleaved`` and must be 1 for the others."""
    check_schedule_name(name)
    _check_int("v", v)
    if name != "interleaved" and v != 1:
        raise ValueError(f"v={v} chunks per rank needs schedule='interleaved'; {name!r} uses v=1")
    if name == "gpipe":
        return gpipe(p, m)
    if name == "1f1b":
        return one_f_one_b(p, m)
    return interleaved_1f1b(p, m, v)


def bubble_formula(name: str, p: int, m: int, v: int = 1) -> float:
    """Idle fraction of the ideal pipeline: ``(p-1)/(m+p-1)``, interleaved ``(p-1)/(v*m+p-1)``.

    Exact for equal stage costs and free communication (any forward/backward cost ratio)."""
    check_schedule_name(name)
    v = v if name == "interleaved" else 1
    return (p - 1) / (v * m + p - 1)


# --------------------------------------------------------------------------- validation
def dependencies(action: Action, n_stages: int) -> tuple[Action, ...]:
    """The actions ``action`` needs finished before it can start."""
    kind, mb, s = action
    if kind == FORWARD:
        return (Action(FORWARD, mb, s - 1),) if s > 0 else ()
    if s == n_stages - 1:
        return (Action(FORWARD, mb, s),)
    return (Action(BACKWARD, mb, s + 1), Action(FORWARD, mb, s))
