"""COURSE_SEED moves every seed; seed 0 keeps the historical defaults."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import gd, seeds, startup


def test_course_seed_zero_keeps_defaults_and_other_seeds_move_them():
    assert seeds.course_seed() == 0 and seeds.derive(3) == 3 and seeds.resolve(None, 1) == 1
    os.environ["COURSE_SEED"] = "2"
    assert seeds.course_seed() == 2 and seeds.derive(3) == 3 + 2 * seeds.STRIDE
    assert seeds.resolve(5) == 5  # an explicit seed always wins


def test_helper_defaults_follow_course_seed():
    order0 = gd.batch_order(20, 5, 4)
    assert all(np.array_equal(a, b) for a, b in zip(order0, gd.batch_order(20, 5, 4, seed=0), strict=True))
    os.environ["COURSE_SEED"] = "1"
    order1 = gd.batch_order(20, 5, 4)
    assert not all(np.array_equal(a, b) for a, b in zip(order0, order1, strict=True))


def test_setup_reads_and_writes_course_seed(capsys):
    os.environ["COURSE_SEED"] = "4"
    s = startup.setup(threads=1)
    assert s.seed == 4 and "seed 4" in capsys.readouterr().out
    assert s.seed_for(7) == 7 + 4 * seeds.STRIDE
    startup.setup(seed=6, threads=1, verbose=False)
    assert os.environ["COURSE_SEED"] == "6" and seeds.derive(0) == 6 * seeds.STRIDE


@pytest.mark.parametrize("raw", ["-1", "one", "1.5"])
def test_bad_course_seed_is_a_clear_error(raw):
    os.environ["COURSE_SEED"] = raw
    with pytest.raises(ValueError, match="COURSE_SEED"):
        seeds.course_seed()


def test_bad_explicit_seed_is_a_clear_error():
    with pytest.raises(ValueError, match="seed must be >= 0"):
        seeds.resolve(-3)
    with pytest.raises(TypeError, match="seed must be an int"):
        seeds.resolve("3")
