"""Pipeline schedules as data: for every rank, the ordered list of actions it runs.

An :class:`Action` is ``F`` (forward), ``B`` (backward) or ``W`` (weight gradient) of micro-batch
``mb`` on stage ``stage``. With ``p`` ranks and ``v`` model chunks per rank there are ``p * v``
stages. Stage ``s`` lives on rank ``s % p`` ("loop" placement; for ``v = 1`` stage ``s`` is rank
``s``), or, for the V-shaped schedules, on rank ``s`` for ``s < p`` and ``2p - 1 - s`` after
("v" placement: rank 0 holds the first and the last stage). The dependencies are those of the
model: ``F(i, s)`` needs ``F(i, s-1)``; ``B(i, s)`` needs ``B(i, s+1)`` (the last stage needs its
own ``F(i, S-1)``, where the loss is computed) and ``F(i, s)`` on its own rank; ``W(i, s)``
needs ``B(i, s)``.

In the classic schedules ``B`` is the whole backward of a stage. The zero-bubble schedules
(Qi et al. 2023, "Zero Bubble Pipeline Parallelism", arXiv:2401.10241, section 2) split it:
``B`` computes only the gradient of the stage's *input* (what the previous stage waits for) and
``W`` the gradient of its *weights* (which nobody waits for, so it can fill idle time).

Schedules (all "flush" schedules: one optimiser step after all micro-batches):

- ``gpipe``       all forwards, then all backwards (Huang et al. 2019);
- ``1f1b``        PipeDream-flush: ``p - r - 1`` warm-up forwards on rank ``r``, then one
  forward / one backward alternately, then the remaining backwards (Narayanan et al. 2021);
- ``interleaved`` interleaved 1F1B with ``v`` chunks per rank (Megatron-LM; same order as
  ``torch.distributed.pipelining.ScheduleInterleaved1F1B``);
- ``zbh1``        ZB-H1 (Qi et al. 2023, section 2.1): 1F1B's order with every backward split,
  rank ``r``'s weight gradients delayed by ``r`` micro-batches, so every rank keeps ``p``
  micro-batches in flight (1F1B's peak) and the bubble is a third of 1F1B's;
- ``zbv``         ZB-V (Qi et al. 2024, "Pipeline Parallelism with Controllable Memory",
  arXiv:2405.15362): two chunks per rank in a V, split backward; the same order as
  ``torch.distributed.pipelining.ScheduleZBVZeroBubble``.

:func:`helpers.pipeline.simulate.check_schedule` checks a schedule (each action exactly once, on the right rank, dependencies
satisfiable in the given order); :mod:`helpers.pipeline.simulate` times it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from helpers import validate

SCHEDULES = ("gpipe", "1f1b", "interleaved", "zbh1", "zbv")
SPLIT_BACKWARD = ("zbh1", "zbv")  # schedules whose backward is B (input) + W (weights)
FORWARD, BACKWARD, WEIGHT = "F", "B", "W"
KINDS = (FORWARD, BACKWARD, WEIGHT)
PLACEMENTS = ("loop", "v")
_WORDS = {FORWARD: "forward", BACKWARD: "backward", WEIGHT: "weight gradient"}


class ScheduleError(ValueError):
    """A schedule is invalid: a missing/duplicate action, a wrong rank, or a deadlock."""


class Action(NamedTuple):
    """One unit of work: forward (``"F"``), backward (``"B"``) or weight gradient (``"W"``) of
    micro-batch ``mb`` on ``stage``."""

    kind: str
    mb: int
    stage: int

    def __str__(self) -> str:
        return f"{self.kind}(mb={self.mb}, stage={self.stage}) [{_WORDS.get(self.kind, '?')}]"


@dataclass(frozen=True)
class PipelineSchedule:
    """A pipeline schedule: ``ranks[r]`` is the ordered tuple of actions rank ``r`` runs."""

    name: str
    p: int
    m: int
    v: int
    ranks: tuple[tuple[Action, ...], ...]
    placement: str = "loop"
    """'loop': stage ``s`` on rank ``s % p``; 'v': rank ``s`` for ``s < p``, else ``2p - 1 - s``."""
    split_backward: bool = False
    """True: every backward is ``B`` (input gradient) + ``W`` (weight gradient)."""

    def __post_init__(self) -> None:
        validate.choice("placement", self.placement, PLACEMENTS)
        if self.placement == "v" and self.v != 2:
            raise ValueError(f"placement='v' needs v=2 chunks per rank, got v={self.v}")

    @property
    def n_stages(self) -> int:
        return self.p * self.v

    def rank_of(self, stage: int) -> int:
        """The rank that holds ``stage``."""
        if self.placement == "v":
            return stage if stage < self.p else 2 * self.p - 1 - stage
        return stage % self.p

    def stages_of(self, rank: int) -> list[int]:
        """The stages rank ``rank`` holds, in model order."""
        return [s for s in range(self.n_stages) if self.rank_of(s) == rank]

    def chunk_of(self, stage: int) -> int:
        """Which of its rank's chunks ``stage`` is (0 for the first in model order)."""
        return self.stages_of(self.rank_of(stage)).index(stage)

    @property
    def release(self) -> str:
        """The action that frees a micro-batch's saved activations: ``W`` if split, else ``B``."""
        return WEIGHT if self.split_backward else BACKWARD

    def peak_in_flight(self) -> list[int]:
        """Per stage: the most micro-batches whose forward has run and whose backward (``W``
        when the backward is split: it still needs the layers' inputs) has not.

        Each of them holds its saved activations, so this times one micro-batch's activation
        memory is the stage's activation peak. It depends only on each rank's order."""
        peak = [0] * self.n_stages
        live = [0] * self.n_stages
        for actions in self.ranks:
            for a in actions:
                if a.kind == FORWARD:
                    live[a.stage] += 1
                    peak[a.stage] = max(peak[a.stage], live[a.stage])
                elif a.kind == self.release:
                    live[a.stage] -= 1
        return peak

    def peak_in_flight_per_rank(self) -> list[int]:
        """Per rank: the most (micro-batch, stage) pairs alive at once over all its stages."""
        out = []
        for actions in self.ranks:
            live = best = 0
            for a in actions:
                live += 1 if a.kind == FORWARD else -1 if a.kind == self.release else 0
                best = max(best, live)
            out.append(best)
        return out

    def messages(self) -> dict[str, int]:
        """Point-to-point messages of one step between different ranks: activations sent
        forward and gradients sent backward (each stage boundary carries ``m`` of each)."""
        S, act, grad = self.n_stages, 0, 0
        for s in range(S - 1):
            if self.rank_of(s) != self.rank_of(s + 1):
                act += self.m
                grad += self.m
        return {"activations": act, "gradients": grad, "total": act + grad}

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


def zb_h1(p: int, m: int) -> PipelineSchedule:
    """ZB-H1 (Qi et al. 2023, section 2.1): 1F1B with each backward split into ``B`` and ``W``.

    Rank ``r`` runs 1F1B's ``p-r-1`` warm-up forwards, then for each micro-batch ``k``: the next
    forward, ``B(k)``, and ``W(k - r)`` -- its weight gradients lag ``r`` micro-batches behind,
    so every rank holds ``p`` micro-batches in flight (1F1B's peak, on rank 0) -- and finally the
    ``r`` weight gradients still owed, which fill the time 1F1B spends waiting at the end."""
    _check_int("p", p)
    _check_int("m", m)
    if m < p:
        raise ValueError(f"zbh1 needs at least as many micro-batches as stages: m={m} < p={p}")
    ranks = []
    for r in range(p):
        warmup = p - r - 1
        acts = [Action(FORWARD, i, r) for i in range(warmup)]
        for k in range(m):
            if k + warmup < m:
                acts.append(Action(FORWARD, k + warmup, r))
            acts.append(Action(BACKWARD, k, r))
            if k >= r:
                acts.append(Action(WEIGHT, k - r, r))
        acts += [Action(WEIGHT, i, r) for i in range(m - r, m)]
        ranks.append(tuple(acts))
    return PipelineSchedule("zbh1", p, m, 1, tuple(ranks), split_backward=True)


def zbv(p: int, m: int) -> PipelineSchedule:
    """ZB-V: two chunks per rank placed in a V (rank ``r`` holds stages ``r`` and ``2p-1-r``),
    split backward; the order of ``torch.distributed.pipelining.ScheduleZBVZeroBubble``
    (warm-up of chunk-0 forwards, then chunk-1 forwards each followed by its B and W, a steady
    phase cycling F/B/W over both chunks, and a cool-down that defers weight gradients)."""
    _check_int("p", p)
    _check_int("m", m)
    S, n = 2 * p, max(2 * p - 1, m)  # like torch: plan for enough micro-batches, drop the rest
    ranks = []
    for r in range(p):
        chunk = (r, S - 1 - r)  # stage of chunk 0 and of chunk 1
        acts: list[Action] = []
        count = {(k, c): 0 for k in KINDS for c in (0, 1)}  # next micro-batch per kind and chunk

        def do(kind: str, c: int, acts: list[Action] = acts, count: dict = count,
               chunk: tuple[int, int] = chunk) -> None:
            acts.append(Action(kind, count[(kind, c)], chunk[c]))
            count[(kind, c)] += 1

        for _ in range(2 * (p - r) - 1):
            do(FORWARD, 0)
        for _ in range(r):
            do(FORWARD, 1)
            do(FORWARD, 0)
        for _ in range(p - r):
            do(FORWARD, 1), do(BACKWARD, 1), do(WEIGHT, 1)
        while count[(FORWARD, 1)] < count[(FORWARD, 0)] or count[(FORWARD, 0)] < n:
            if count[(FORWARD, 0)] < n:
                do(FORWARD, 0)
            do(BACKWARD, 0), do(WEIGHT, 0)
            do(FORWARD, 1), do(BACKWARD, 1), do(WEIGHT, 1)
        for _ in range(r):
            do(BACKWARD, 0), do(BACKWARD, 1)
        for _ in range(p - r):
            do(BACKWARD, 0), do(WEIGHT, 0)
        for c in (1, 0):  # the weight gradients still owed, chunk 1 first
            while count[(WEIGHT, c)] < count[(BACKWARD, c)]:
                do(WEIGHT, c)
        ranks.append(tuple(a for a in acts if a.mb < m))
    return PipelineSchedule("zbv", p, m, 2, tuple(ranks), placement="v", split_backward=True)


def make_schedule(name: str, p: int, m: int, v: int = 1) -> PipelineSchedule:
    """Build schedule ``name`` (one of :data:`SCHEDULES`) for ``p`` ranks and ``m`` micro-batches.

    ``v`` (model chunks per rank) is used by ``interleaved``; ``zbv`` always has 2 and the
    others 1 (pass ``v=1`` or the schedule's own number)."""
    check_schedule_name(name)
    _check_int("v", v)
    if name == "zbv":
        if v not in (1, 2):
            raise ValueError(f"zbv has 2 chunks per rank (a V), got v={v}")
        return zbv(p, m)
    if name != "interleaved" and v != 1:
        raise ValueError(f"v={v} chunks per rank needs schedule='interleaved'; {name!r} uses v=1")
    if name == "gpipe":
        return gpipe(p, m)
    if name == "1f1b":
        return one_f_one_b(p, m)
    if name == "zbh1":
        return zb_h1(p, m)
    return interleaved_1f1b(p, m, v)


def chunks_of(name: str, v: int = 1) -> int:
    """Model chunks per rank that schedule ``name`` uses (``v`` for interleaved)."""
    return 2 if name == "zbv" else v if name == "interleaved" else 1


def bubble_formula(name: str, p: int, m: int, v: int = 1) -> float | None:
    """Idle fraction in the textbook's setting (equal stages, free communication):

    - GPipe, 1F1B: ``(p-1)/(m+p-1)`` (any backward/forward cost ratio), interleaved
      ``(p-1)/(v*m+p-1)``;
    - ZB-H1 with equal F, B, W costs: ``(p-1)/(3m+p-1)`` -- each rank idles ``(p-1)(F+B-W)``
      instead of 1F1B's ``(p-1)(F+B+W)`` (Qi et al. 2023, section 2.1: a third);
    - ZB-V: None (no closed form; simulate it).

    These are idle shares of the *whole* step. Megatron-LM and the Ultra-Scale Playbook quote
    the bubble relative to the *ideal* time instead: ``(p-1)/m`` for 1F1B; see
    :func:`bubble_over_ideal`."""
    check_schedule_name(name)
    if name == "zbv":
        return None
    if name == "zbh1":
        return (p - 1) / (3 * m + p - 1)
    v = v if name == "interleaved" else 1
    return (p - 1) / (v * m + p - 1)


def bubble_over_ideal(share: float) -> float:
    """Convert an idle share of the step, ``b = idle / total``, into Megatron's convention,
    idle over ideal time ``idle / (total - idle) = b / (1 - b)``: ``(p-1)/(m+p-1)`` becomes
    ``(p-1)/m``."""
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share!r}")
    return share / (1 - share)


# --------------------------------------------------------------------------- validation
def dependencies(action: Action, n_stages: int) -> tuple[Action, ...]:
    """The actions ``action`` needs finished before it can start."""
    kind, mb, s = action
    if kind == WEIGHT:
        return (Action(BACKWARD, mb, s),)
    if kind == FORWARD:
        return (Action(FORWARD, mb, s - 1),) if s > 0 else ()
    if s == n_stages - 1:
        return (Action(FORWARD, mb, s),)
    return (Action(BACKWARD, mb, s + 1), Action(FORWARD, mb, s))
