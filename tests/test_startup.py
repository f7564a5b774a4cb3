import random

import numpy as np
import pytest
import torch

from helpers import checks, environment, startup


def test_setup_seeds_everything_and_prints_one_line(capsys):
    s = startup.setup(seed=3, threads=1)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    startup.setup(seed=3, threads=1)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    assert s.device in ("cpu", "cuda") and torch.get_num_threads() == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and ("No GPU found" in out[0] or "GPU found" in out[0])


def test_full_flag(monkeypatch):
    monkeypatch.setenv("COURSE_FULL", "1")
    assert startup.setup(verbose=False).pick(1, 2) == 2
    monkeypatch.setenv("COURSE_FULL", "0")
    assert startup.setup(verbose=False).pick(1, 2) == 1
    monkeypatch.setenv("COURSE_FULL", "maybe")
    with pytest.raises(ValueError, match="COURSE_FULL"):
        startup.setup(verbose=False)


@pytest.mark.parametrize("kwargs, match", [({"seed": -1}, "seed"), ({"threads": 0}, "threads"),
                                           ({"device": "tpu"}, "device")])
def test_setup_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        startup.setup(verbose=False, **kwargs)


def test_noise_filters_are_precise():
    import warnings

    startup.setup(verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        from helpers import noise

        noise.quiet_third_party()
        warnings.warn_explicit("something remember_data", FutureWarning, "x.py", 1, module="sktime.base")
        warnings.warn_explicit("something remember_data", FutureWarning, "x.py", 1, module="mycode")
    assert [str(w.message) for w in caught] == ["something remember_data"]  # only mycode's got through


def test_checks_never_reveal_answer(capsys):
    ex = checks.numeric("q", 42.0, hint="think of the meaning of life")
    assert not checks.check(ex, 41)
    assert checks.check(ex, 42.1)
    text = checks.choice("word", checks.hash_answer("Recompute"), hint="what happens in backward?")
    assert checks.check(text, " recompute ")
    assert not checks.check(text, "store")
    out = capsys.readouterr().out
    assert "42" not in out and "recompute" not in out.lower().replace("hint", "")
    with pytest.raises(TypeError, match="number"):
        checks.check(ex, "42")


def test_environment_check_passes_here():
    rows, ok = environment.check_environment("cpu")
    assert ok, [r for r in rows if not r.ok]


def test_versions_are_checked_against_the_declared_requirements():
    from packaging.requirements import Requirement

    from helpers import environment

    assert environment.satisfies("2.13.0+cpu", Requirement("torch==2.13.0"))  # local label ignored
    assert environment.satisfies("2.13.1", Requirement("torch==2.13.0"))  # a pin is a minimum
    assert not environment.satisfies("2.12.0", Requirement("torch==2.13.0"))
    assert not environment.satisfies("2.4.0", Requirement("numpy>=2.0,<2.4"))  # upper bounds hold
    assert not environment.satisfies("missing", None) and environment.satisfies("1.0", None)
    declared = environment.requirements()
    assert {"torch", "numpy", "sktime", "jupyterlab"} <= set(declared)  # read from the metadata
    assert environment.python_requirement().contains("3.11.7")
