"""The lesson 06 coding exercise: the reference names the true orders of every hidden case,
typical mistakes fail, and the checker never prints the answers."""

import contextlib
import io

from helpers.lessons import forecasting_exercises as fx


def test_reference_recovers_the_true_orders():
    for (ar, ma, seed) in fx.ARMA_CASES:
        assert fx.identify_arma(fx.simulate_arma(ar, ma, seed)) == (len(ar), len(ma))


def test_check_accepts_reference_and_rejects_mistakes():
    e = fx.lesson06()["arma orders"]
    swapped = lambda x: fx.identify_arma(x)[::-1]  # noqa: E731  ACF and PACF roles swapped
    always_ar1 = lambda x: (1, 0)  # noqa: E731
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert e.check(e.reference)
        assert not e.check(swapped)
        assert not e.check(always_ar1)
        assert not e.check(None)
    text = out.getvalue()
    assert "correct!" in text and "Hint:" in text and "(1, 0)" not in text
