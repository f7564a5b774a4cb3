"""The coding exercises of lesson 05: reference solutions, hidden cases and checkers.

- ``zb_h1_rank``: write rank ``r``'s ZB-H1 order as strings ``"F0" "B0" "W0" ...``
  (:class:`helpers.checks.CodeExercise` against :func:`zb_h1_rank`);
- ``deadlock``: write a schedule that contains every action exactly once on the right rank and
  still deadlocks, and let the validator catch it (:class:`DeadlockExercise`);
- ``bubble``: predict ZB-H1's bubble for ``p = 2, m = 8`` with equal F, B, W, then compare with
  the two processes' measurement (a numeric exercise).
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable

from helpers import checks
from helpers.pipeline.schedules import Action, PipelineSchedule, ScheduleError, bubble_formula
from helpers.pipeline.simulate import check_schedule


def zb_h1_rank(r: int, p: int, m: int) -> list[str]:
    """ZB-H1 on rank r: 1F1B's warm-up, then F, B and a weight gradient that lags r behind."""
    warmup = p - r - 1
    order = [f"F{i}" for i in range(warmup)]
    for k in range(m):
        if k + warmup < m:
            order.append(f"F{k + warmup}")
        order.append(f"B{k}")
        if k >= r:
            order.append(f"W{k - r}")
    return order + [f"W{i}" for i in range(m - r, m)]


def deadlocking_1f1b(p: int, m: int) -> list[list[str]]:
    """A complete, well-placed schedule that deadlocks: 1F1B, except that the last rank runs
    its first backward before its first forward -- the loss it starts from does not exist."""
    orders = []
    for r in range(p):
        warmup = p - r - 1
        acts = [f"F{i}" for i in range(warmup)]
        for i in range(m - warmup):
            acts += [f"F{warmup + i}", f"B{i}"]
        orders.append(acts + [f"B{i}" for i in range(m - warmup, m)])
    last = orders[-1]
    last[0], last[1] = last[1], last[0]  # B0 before F0 on the last stage
    return orders


def _schedule(orders: list[list[str]], p: int, m: int) -> PipelineSchedule:
    ranks = []
    for r, acts in enumerate(orders):
        ranks.append(tuple(Action(a[0], int(a[1:]), r) for a in acts))
    split = any(a.kind == "W" for acts in ranks for a in acts)
    return PipelineSchedule("yours", p, m, 1, tuple(ranks), split_backward=split)


class DeadlockExercise:
    """Write ``fn(p, m)`` returning per-rank orders (lists of ``"F3"``, ``"B0"``, ...) that
    contain every action once and yet deadlock; :meth:`check` hands them to the validator."""

    name = "a schedule that deadlocks"
    hint = ("keep every action exactly once; then make one rank wait for something that only "
            "comes after a thing it has not done yet (e.g. a backward before its forward)")

    def check(self, fn: Callable[[int, int], list[list[str]]] | None, p: int = 2, m: int = 4) -> bool:
        if fn is None:
            print(f"{self.name}: waiting for your function")
            return False
        orders = fn(p, m)
        if orders is None:
            print(f"{self.name}: waiting for your code (the function returns None)")
            return False
        try:
            sched = _schedule(orders, p, m)
            check_schedule(sched)
        except ScheduleError as err:
            if "deadlocks" in str(err):
                print(f"{self.name}: correct! The validator caught it: {err}")
                return True
            print(f"{self.name}: not yet -- the schedule is invalid before it can deadlock: {err}. "
                  f"Hint: {self.hint}")
            return False
        except (TypeError, ValueError, IndexError) as err:
            print(f"{self.name}: could not read your orders ({err}); return one list of strings "
                  "like 'F0', 'B3' per rank")
            return False
        print(f"{self.name}: not yet -- this schedule runs to the end. Hint: {self.hint}")
        return False

    def solution(self) -> None:
        print(textwrap.dedent(inspect.getsource(deadlocking_1f1b)).rstrip())


def lesson05() -> dict[str, object]:
    """The exercises of lesson 05, by name."""
    cases = [(r, p, m) for p, m in ((2, 4), (4, 8), (3, 7), (5, 5)) for r in range(p)]
    return {
        "zb-h1 order": checks.code(
            "ZB-H1 rank order", zb_h1_rank, cases,
            hint="start from 1F1B; after B(k) put W(k - r) (nothing while k < r), and the r "
                 "weight gradients still owed at the very end"),
        "deadlock": DeadlockExercise(),
        "bubble": checks.numeric("ZB-H1 bubble, p=2, m=8, F=B=W", bubble_formula("zbh1", 2, 8),
                                 hint="each rank idles (p-1)(F+B-W) out of m(F+B+W) + (p-1)(F+B-W)",
                                 rel_tol=1e-3),
    }
