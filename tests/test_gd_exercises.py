"""The lesson 01-02 coding exercises: every reference solution passes, typical mistakes fail,
and the checker never prints the expected values."""

import contextlib
import io

import numpy as np
import pytest

from helpers import checks
from helpers.lessons import gd_exercises as ex

EXERCISES = ex.lesson01() | ex.lesson02()

WRONG = {
    "contraction": lambda lam, lr: abs(1 - lr * np.max(lam)),  # only the steep direction
    "optimal step": lambda lam: 2 / np.max(lam),  # the cliff, not the optimum
    "condition number": lambda X: np.linalg.cond(X),  # singular values: the square root of kappa
    "gradient descent": lambda grad, w0, lr, steps: w0 + lr * steps * grad(w0),  # one frozen gradient
    "nesterov": lambda w, g, lr, buf, beta: (w - lr * (beta * buf + g), beta * buf + g),  # heavy ball
    "adam": lambda w, g, lr, m, v, t, b1=0.9, b2=0.999, eps=1e-8: (
        w - lr * (b1 * m + (1 - b1) * g) / (np.sqrt(b2 * v + (1 - b2) * g**2) + eps),
        b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2),  # no bias correction
    "batch curvature": lambda X, idx: float(np.mean(2 * np.sum(X[idx] ** 2, axis=1))),  # mean, not top
    "heavy-ball rate": lambda lr, beta, lam: abs(1 - lr * lam),  # plain GD's factor
}


def test_at_least_four_code_exercises_per_lesson():
    assert len(ex.lesson01()) >= 4 and len(ex.lesson02()) >= 4
    assert set(WRONG) == set(EXERCISES)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_reference_passes_and_a_typical_mistake_fails(name):
    e = EXERCISES[name]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert e.check(e.reference)
        assert not e.check(WRONG[name])
    text = out.getvalue()
    assert "correct!" in text and "Hint:" in text
    for case in e.cases[:2]:  # the expected answers are never printed
        want = np.ravel(np.asarray(e.reference(*case)[0] if isinstance(e.reference(*case), tuple)
                                   else e.reference(*case), dtype=float))
        assert f"{want[0]:.6g}" not in text


def test_errors_in_learner_code_are_reported_not_raised():
    e = EXERCISES["optimal step"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert not e.check(lambda lam: 1 / 0)
        assert not e.check(None)
    assert "raised ZeroDivisionError" in out.getvalue() and "waiting for your function" in out.getvalue()
    with pytest.raises(TypeError, match="pass your function itself"):
        e.check(0.5)


def test_solution_prints_the_reference_only_when_asked():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        EXERCISES["nesterov"].solution()
    assert "def nesterov_step" in out.getvalue() and "beta * buf + g" in out.getvalue()


def test_bad_exercise_definitions():
    with pytest.raises(ValueError, match="cases must be"):
        checks.code("x", abs, [], hint="")
    with pytest.raises(TypeError, match="reference must be callable"):
        checks.code("x", 3, [(1,)], hint="")
