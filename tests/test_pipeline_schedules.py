"""Schedules as data, the validator and the simulator: theory asserted (no processes)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest

from helpers.pipeline import schedules as S
from helpers.pipeline.schedules import (
    Action,
    PipelineSchedule,
    ScheduleError,
    bubble_formula,
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


# --------------------------------------------------------------------------- zero bubble
@pytest.mark.parametrize("p,m", [(2, 8), (4, 8), (4, 16), (8, 32)])
def test_zb_h1_idles_a_third_of_1f1b_at_the_same_peak(p, m):
    """Qi et al. 2023, section 2.1: with F = B = W, ZB-H1 idles (p-1)(F+B-W) per rank where
    1F1B idles (p-1)(F+B+W) -- a third -- holding 1F1B's peak of p micro-batches in flight."""
    one_f, zb = simulate(S.one_f_one_b(p, m)), simulate(S.zb_h1(p, m))  # F=1, B+W=2 (B=W=1)
    assert zb.idle() / one_f.idle() == pytest.approx(1 / 3, rel=1e-12)
    for r in range(p):
        assert zb.idle(r) == pytest.approx((p - 1) * (1 + 1 - 1))
        assert one_f.idle(r) == pytest.approx((p - 1) * (1 + 2))
    assert zb.bubble == pytest.approx(zb.formula) and zb.formula == pytest.approx((p - 1) / (3 * m + p - 1))
    assert S.zb_h1(p, m).peak_in_flight_per_rank() == [p] * p
    assert max(S.one_f_one_b(p, m).peak_in_flight_per_rank()) == p
    assert check_schedule(S.zb_h1(p, m))


def test_zb_h1_rank_orders():
    sched = S.zb_h1(4, 6)
    text = [" ".join(f"{a.kind}{a.mb}" for a in acts) for acts in sched.ranks]
    assert text[0] == "F0 F1 F2 F3 B0 W0 F4 B1 W1 F5 B2 W2 B3 W3 B4 W4 B5 W5"
    assert text[3] == "F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 W3 W4 W5"


@pytest.mark.parametrize("p,m", [(2, 8), (4, 8), (4, 3), (3, 10)])
def test_zbv_matches_torch_order(p, m):
    from torch.distributed.pipelining.schedules import (  # torch's own order, to compare
        ScheduleZBVZeroBubble,
        _ComputationType,
    )

    kinds = {_ComputationType.FORWARD: "F", _ComputationType.BACKWARD_INPUT: "B",
             _ComputationType.BACKWARD_WEIGHT: "W"}
    ours = S.zbv(p, m)
    theirs = object.__new__(ScheduleZBVZeroBubble)  # only the order, no stages or processes
    theirs.pp_group_size, theirs.num_stages, theirs._n_microbatches = p, 2 * p, m
    for r in range(p):
        ops = [Action(kinds[o.computation_type], o.microbatch_index, o.stage_index)
               for o in theirs._calculate_single_rank_operations(r) if o is not None]
        assert list(ours.ranks[r]) == ops
    assert ours.stages_of(0) == [0, 2 * p - 1] and ours.rank_of(p) == p - 1
    assert check_schedule(ours)


def test_zbv_beats_zb_h1_at_equal_work_and_memory():
    """ZB-V's chunks are half-stages: at the same work per rank it idles less than ZB-H1, and
    its 2p half-stage micro-batches in flight are ZB-H1's p whole ones."""
    p, m = 4, 8
    zb, v = simulate(S.zb_h1(p, m)), simulate(S.zbv(p, m), forward=0.5, backward=1.0)
    assert sum(v.busy(r) for r in range(p)) == pytest.approx(sum(zb.busy(r) for r in range(p)))
    assert v.makespan < zb.makespan and v.bubble < zb.bubble
    assert S.zbv(p, m).peak_in_flight_per_rank() == [2 * p] * p
    assert bubble_formula("zbv", p, m) is None


def test_validator_understands_w():
    good = S.zb_h1(2, 4)
    no_w = [tuple(a for a in acts if a.kind != "W") for acts in good.ranks]
    with pytest.raises(ScheduleError, match="actions are missing"):
        check_schedule(replace(good, ranks=tuple(no_w)))
    early_w = list(good.ranks[1])
    early_w.remove(Action("W", 0, 1))
    early_w.insert(0, Action("W", 0, 1))  # W before its own B: the rank waits forever
    with pytest.raises(ScheduleError, match="deadlocks"):
        check_schedule(replace(good, ranks=(good.ranks[0], tuple(early_w))))
    w_in_fused = S.one_f_one_b(2, 4)
    with pytest.raises(ScheduleError, match="W needs a schedule with split_backward=True"):
        check_schedule(replace(w_in_fused, ranks=(w_in_fused.ranks[0] + (Action("W", 0, 0),),
                                                  w_in_fused.ranks[1])))


def test_bubble_conventions_and_messages():
    p, m = 4, 8
    share = bubble_formula("1f1b", p, m)
    assert S.bubble_over_ideal(share) == pytest.approx((p - 1) / m)  # Megatron's (p-1)/m
    assert make_schedule("1f1b", p, m).messages() == {"activations": 24, "gradients": 24, "total": 48}
    assert make_schedule("interleaved", p, m, 2).messages()["total"] == 2 * 7 * m  # vp - 1 = 7 boundaries
    assert make_schedule("zbv", p, m).messages()["total"] == 2 * 6 * m  # the V's turn stays on rank 3
    with pytest.raises(ValueError, match="share must be in"):
        S.bubble_over_ideal(1.0)


def test_zero_bubble_bad_input():
    with pytest.raises(ValueError, match="zbh1 needs at least as many micro-batches"):
        S.zb_h1(4, 2)
    with pytest.raises(ValueError, match="zbv has 2 chunks per rank"):
        make_schedule("zbv", 2, 4, 3)
    with pytest.raises(ValueError, match="placement must be one of"):
        S.PipelineSchedule("x", 2, 2, 1, ((), ()), placement="ring")


def test_no_message_cost_inside_a_rank():
    """ZB-V's turn (stage p-1 to p) stays on rank p-1: the simulator charges no message there."""
    tl = simulate(S.zbv(2, 1), forward=1.0, backward=1.0, weight=1.0, comm=0.25)
    start = {a: s for acts, starts in zip(tl.schedule.ranks, tl.starts, strict=True) for a, s in zip(acts, starts, strict=True)}
    end = {a: e for acts, ends in zip(tl.schedule.ranks, tl.ends, strict=True) for a, e in zip(acts, ends, strict=True)}
    assert start[Action("F", 0, 1)] == end[Action("F", 0, 0)] + 0.25  # rank 0 -> rank 1: a message
    assert start[Action("F", 0, 2)] == end[Action("F", 0, 1)]  # stage 1 -> 2 on rank 1: none
