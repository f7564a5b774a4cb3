"""Lesson 05's exercises: each reference passes, typical wrong answers fail, nothing leaks."""

from __future__ import annotations

from helpers.lessons import pipeline_exercises as px
from helpers.pipeline import schedules


def test_zb_h1_reference_is_the_schedule():
    for p, m in ((2, 4), (4, 8), (3, 7)):
        sched = schedules.zb_h1(p, m)
        for r in range(p):
            assert px.zb_h1_rank(r, p, m) == [f"{a.kind}{a.mb}" for a in sched.ranks[r]]


def test_exercises_accept_the_reference_and_reject_wrong_answers(capsys):
    ex = px.lesson05()
    assert ex["zb-h1 order"].check(px.zb_h1_rank)

    def w_right_after_b(r, p, m):  # the usual mistake: no lag, so not ZB-H1
        out = [f"F{i}" for i in range(p - r - 1)]
        for k in range(m):
            if k + p - r - 1 < m:
                out.append(f"F{k + p - r - 1}")
            out += [f"B{k}", f"W{k}"]
        return out

    assert not ex["zb-h1 order"].check(w_right_after_b)
    assert not ex["zb-h1 order"].check(lambda r, p, m: None)
    assert ex["deadlock"].check(px.deadlocking_1f1b)
    one_f = lambda p, m: [[f"{a.kind}{a.mb}" for a in acts] for acts in schedules.one_f_one_b(p, m).ranks]  # noqa: E731
    assert not ex["deadlock"].check(one_f)  # runs to the end
    assert not ex["deadlock"].check(lambda p, m: [["F0"], ["B0"]])  # actions missing
    assert not ex["deadlock"].check(None)
    assert ex["bubble"].check(1 / 25) and not ex["bubble"].check(1 / 9)
    out = capsys.readouterr().out
    assert "correct!" in out and "runs to the end" in out and "deadlocks" in out
    assert "0.04" not in out  # the answer is never printed
    ex["deadlock"].solution()
    assert "def deadlocking_1f1b" in capsys.readouterr().out
