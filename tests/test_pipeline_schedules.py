"""Schedules as data, the validator and the simulator: theory asserted (no processes)."""

from __future__ import annotations

import math
import time

import pytest

from helpers.pipeline import schedules as S
from helpers.pipeline.schedules import (
    Action,
    PipelineSchedule,
    ScheduleError,
    make_schedule,
)
from helpers.pipeline.simulate import check_schedule, simulate

# Convention: every stage costs forward = 1; backward = 2 (two matmuls per forward matmul) or 1.
BACKWARD_COSTS = (2.0, 1.0)


def all_cases():
    for p in range(1, 7):
        for m in range(1, 11):
            yield "gpipe", p, m, 1
            if m >= p:
                yield "1f1b", p, m, 1
            for v in (2, 3):
                if m % p == 0:
                    yield "interleaved", p, m, v


@pytest.mark.parametrize("name,p,m,v", list(all_cases()))
def test_every_schedule_is_valid_and_complete(name, p, m, v):
    sched = check_schedule(make_schedule(name, p, m, v))
    assert len(sched) == 2 * m * p * v
    for r, acts in enumerate(sched.ranks):
        assert all(sched.rank_of(a.stage) == r for a in acts)


@pytest.mark.parametrize("backward", BACKWARD_COSTS)
@pytest.mark.parametrize("name,p,m,v", list(all_cases()))
def test_bubble_matches_theory(name, p, m, v, backward):
    sched = make_schedule(name, p, m, v)
    tl = simulate(sched, forward=1.0, backward=backward)
    expected = (p - 1) / (v * m + p - 1) if name == "interleaved" else (p - 1) / (m + p - 1)
    assert math.isclose(tl.bubble, expected, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(tl.bubble, S.bubble_formula(name, p, m, v), abs_tol=1e-12)
    # makespan: (m + p - 1) rank-steps of forward + backward for the plain schedules
    if name != "interleaved":
        assert math.isclose(tl.makespan, (m + p - 1) * (1 + backward))


@pytest.mark.parametrize("p,m", [(1, 1), (2, 5), (4, 8), (5, 12)])
def test_peak_in_flight(p, m):
    assert simulate(S.gpipe(p, m)).peak_in_flight() == [m] * p
    assert S.one_f_one_b(p, m).peak_in_flight() == [p - r for r in range(p)]  # p - r on stage r


def test_interleaved_matches_torch_order():
    """Our interleaved order is torch.distributed.pipelining's ScheduleInterleaved1F1B order."""
    from torch.distributed.pipelining.schedules import (
        _ComputationType,
        _get_1f1b_rank_ops,
        _get_warmup_ops,
    )

    p, m, v = 4, 8, 2
    ours = S.interleaved_1f1b(p, m, v)
    for rank in range(p):
        warm = _get_warmup_ops(rank, v, p, p, m, 2)
        total = v * m

        def f_idx(step, rank=rank):
            return ((step // p) % v) * p + rank

        def b_idx(step, rank=rank, warm=warm):
            return (v - 1 - ((step - warm) // p) % v) * p + rank

        ops = _get_1f1b_rank_ops(v, p, warm, total - warm, warm, rank, f_idx, b_idx)
        theirs = [Action("F" if o.computation_type == _ComputationType.FORWARD else "B",
                         o.microbatch_index, o.stage_index) for o in ops if o is not None]
        assert list(ours.ranks[rank]) == theirs


def test_simulator_is_fast_at_scale():
    sched = make_schedule("1f1b", 64, 512)  # 65 536 actions
    t = time.process_time()  # CPU time: other programs on the machine do not count
    tl = simulate(sched)
    elapsed = time.process_time() - t
    assert elapsed < 1.0, f"simulating p=64, m=512 took {elapsed:.2f} s of CPU"
    assert math.isclose(tl.bubble, 63 / (512 + 63), rel_tol=1e-9)


def test_costs_per_stage_callable_and_comm():
    sched = S.gpipe(3, 4)
    base = simulate(sched, 1.0, 2.0)
    slow_middle = simulate(sched, [1.0, 3.0, 1.0], [2.0, 6.0, 2.0])
    assert slow_middle.makespan > base.makespan and slow_middle.bubble > base.bubble
    same = simulate(sched, lambda s, mb: 1.0, lambda s, mb: 2.0)
    assert same.makespan == base.makespan
    with_comm = simulate(sched, 1.0, 2.0, comm=0.5)
    # every hop costs 0.5: the first micro-batch's forward and the last backward cross 2 hops each
    assert math.isclose(with_comm.makespan, base.makespan + 4 * 0.5)
    assert with_comm.bubble > base.bubble


def test_timeline_events_respect_dependencies():
    sched = S.interleaved_1f1b(2, 4, 2)
    tl = simulate(sched, 1.0, 2.0, comm=0.25)
    end = {(e.action): e.end for e in tl.events()}
    for e in tl.events():
        for dep in S.dependencies(e.action, sched.n_stages):
            assert e.start >= end[dep] - 1e-12


def _mutate(sched: PipelineSchedule, rank: int, actions: list[Action]) -> PipelineSchedule:
    ranks = list(sched.ranks)
    ranks[rank] = tuple(actions)
    return PipelineSchedule(sched.name, sched.p, sched.m, sched.v, tuple(ranks))


def test_validator_catches_errors():
    good = S.gpipe(2, 2)
    r1 = list(good.ranks[1])
    with pytest.raises(ScheduleError, match="more than once"):
        check_schedule(_mutate(good, 1, r1 + [r1[0]]))
    with pytest.raises(ScheduleError, match="missing"):
        check_schedule(_mutate(good, 1, r1[:-1]))
    with pytest.raises(ScheduleError, match="belongs on rank 0"):
        check_schedule(_mutate(good, 1, r1 + [Action("F", 0, 0)]))
    with pytest.raises(ScheduleError, match="out of range"):
        check_schedule(_mutate(good, 1, r1 + [Action("F", 5, 1)]))
    # backward of micro-batch 0 on rank 0 placed before its own forward: can never run
    r0 = [Action("B", 0, 0), *[a for a in good.ranks[0] if a != Action("B", 0, 0)]]
    with pytest.raises(ScheduleError, match="deadlocks: rank 0 waits at B"):
        check_schedule(_mutate(good, 0, r0))
    # cross-rank deadlock: rank 0 waits for B(1, 1) before its F(1, 0), which rank 1 needs first
    r0 = [Action("F", 0, 0), Action("B", 0, 0), Action("B", 1, 0), Action("F", 1, 0)]
    with pytest.raises(ScheduleError, match="deadlocks"):
        check_schedule(_mutate(good, 0, r0))
    with pytest.raises(TypeError, match="PipelineSchedule"):
        check_schedule("gpipe")  # type: ignore[arg-type]


@pytest.mark.parametrize("call, err, match", [
    (lambda: make_schedule("pipedream", 2, 4), ValueError, "schedule must be one of"),
    (lambda: make_schedule("1f1b", 4, 3), ValueError, "m=3 < p=4"),
    (lambda: make_schedule("interleaved", 4, 6, 2), ValueError, "multiple of p"),
    (lambda: make_schedule("gpipe", 2, 4, 2), ValueError, "needs schedule='interleaved'"),
    (lambda: make_schedule("gpipe", 0, 4), ValueError, "p must be >= 1"),
    (lambda: make_schedule("gpipe", 2, 2.5), TypeError, "m must be an int"),
    (lambda: simulate(S.gpipe(2, 2), forward=[1.0]), ValueError, "one per stage"),
    (lambda: simulate(S.gpipe(2, 2), forward=-1.0), ValueError, ">= 0"),
    (lambda: simulate(S.gpipe(2, 2), comm=-1.0), ValueError, "comm"),
    (lambda: simulate(S.gpipe(2, 2), forward="1"), TypeError, "cost must be"),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_draw_and_widget_view():
    import matplotlib

    matplotlib.use("Agg")
    from helpers.pipeline.draw import draw_timeline
    from helpers.pipeline.widgets import schedule_view, schedule_widget

    view = schedule_view(4, 8, "interleaved", 2)
    assert math.isclose(view.bubble, 3 / (2 * 8 + 3)) and view.bubble == pytest.approx(view.formula)
    assert "bubble 0.158" in view.text and len(view.figure.axes[0].collections) > 0
    ax = draw_timeline(simulate(S.one_f_one_b(2, 2)))
    assert len(ax.texts) == 8  # one label per action
    box = schedule_widget(p=2, m=4, schedule="gpipe")
    sliders = {c.description: c for row in box.children[:2] for c in row.children}
    assert set(sliders) == {"p", "m", "schedule", "v"}
    label, image = box.children[2], box.children[3]
    assert "p=2, m=4" in label.value and bytes(image.value).startswith(b"\x89PNG")
    before = bytes(image.value)
    sliders["m"].value = 6
    assert "p=2, m=6" in label.value and bytes(image.value) != before  # the timeline was redrawn
    sliders["schedule"].value = "1f1b"
    sliders["p"].value = 8  # 1f1b needs m >= p: the widget says so instead of raising
    assert "not possible" in label.value
