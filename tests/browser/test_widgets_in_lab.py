"""The course's widgets render and react in a real JupyterLab, in headless Chromium.

nbval proves the notebooks' code runs; only a browser shows that a widget renders in Lab (not
"Loading widget..." or an error) and that moving a control redraws it. Each test opens a lesson
in JupyterLab, runs its cells through the widget's cell (lesson 05: the start-up cells and the
widget's section only, its earlier cells start processes for minutes), checks the controls are
in the page with no error output, moves controls as a learner does and checks that the text
says what the new setting must give and that a new figure is drawn.
Screenshots: artifacts/browser/ (see lab_harness.py). test_harness_can_fail.py shows that these
checks fail on a widget whose callbacks raise.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

import pytest

from .lab_harness import ARTIFACTS, NOTEBOOKS, LabPage

#: slider -> updated picture, median over the moves: the target of issue 14, asserted by
#: `make bench` (COURSE_LATENCY_STRICT=1). Measured 135-146 ms (median) on the course machine,
#: too close to the target for a shared CI machine, where the bound is a guard against the
#: 0.3-0.6 s PNG re-render coming back.
LATENCY_TARGET_MS = 150.0 if os.environ.get("COURSE_LATENCY_STRICT") == "1" else 250.0


def record_latency(key: str, samples: list[float]) -> dict[str, float]:
    """Median and spread of the latencies; written to COURSE_LATENCY_OUT (make bench) or artifacts/."""
    s = sorted(samples)
    summary = {"median_ms": statistics.median(s), "min_ms": s[0], "max_ms": s[-1], "n": len(s),
               "p25_ms": s[len(s) // 4], "p75_ms": s[(3 * len(s)) // 4]}
    out = Path(os.environ.get("COURSE_LATENCY_OUT", ARTIFACTS / "widget_latency.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[key] = summary
    out.write_text(json.dumps(data, indent=2) + "\n")
    return summary


def latencies(lab: LabPage, control: str, values: tuple[float, ...]) -> list[float]:
    """Slider -> painted picture for each value in turn, waiting for the kernel between moves."""
    samples = []
    for value in values:
        samples.append(lab.redraw_latency_ms(control, value))
        lab.wait_idle()
    return samples


pytestmark = pytest.mark.browser


def sum_of_squares(n: int) -> int:
    return n * (n + 1) * (2 * n + 1) // 6


@pytest.mark.timeout(150)
def test_welcome_slider_renders_and_updates_its_label(lab: LabPage) -> None:
    lab.open("00_welcome.ipynb")
    lab.run_through("widgets.IntSlider(", timeout_s=90)
    lab.wait_for_controls("n")
    lab.assert_no_errors()
    lab.wait_for_text(f"sum of squares 1..10 = {sum_of_squares(10)}")
    lab.screenshot("rendered")

    lab.set_control("n", 20)
    lab.wait_for_text(f"sum of squares 1..20 = {sum_of_squares(20)}")
    assert lab.control_value("n") == "20"
    lab.assert_no_errors()
    lab.screenshot("changed")


def lesson(name: str) -> pytest.MarkDecorator:
    """Skip (with the reason) only while the lesson's notebook is not in notebooks/ yet."""
    return pytest.mark.skipif(
        not (NOTEBOOKS / name).is_file(), reason=f"notebooks/{name} is not in the repository yet"
    )


@lesson("01_gradient_descent.ipynb")
@pytest.mark.timeout(240)
def test_learning_rate_widget_redraws_and_marks_divergence(lab: LabPage) -> None:
    lab.open("01_gradient_descent.ipynb")
    lab.run_through("learning_rate_widget(", timeout_s=150)
    rates = [f"rate {i}" for i in range(1, 5)]
    lab.wait_for_controls(*rates, "use 4")
    lab.assert_no_errors()
    lab.screenshot("rendered")

    for i in range(1, 5):  # all four rates in play, so the report's "rate 4" is the slider's
        lab.set_control(f"use {i}", True)
    lab.set_control("rate 4", 0.5)  # below the cliff at 1.0 × 2/L: converges
    text = lab.wait_for_text(r"rate 4 = 0\.5 × 2/L")
    line = next(s for s in text.splitlines() if s.startswith("rate 4 ="))
    assert "diverged" not in line, line
    stable = lab.current_figure()

    lab.set_control("rate 4", 1.5)  # past the cliff: the run must be reported diverged
    lab.wait_for_text(r"rate 4 = 1\.5 × 2/L [^\n]*diverged at step \d+")
    lab.wait_for_new_figure(stable)
    assert float(lab.control_value("rate 4")) == 1.5
    lab.assert_no_errors()
    lab.screenshot("diverged")

    lab.set_control("batch size", "1")  # the stability note depends on the batch size
    lab.wait_for_text(r"sgd, batch 1: mean-square stable below 0\.\d\d × 2/L")
    lab.set_control("batch size", "full")
    lab.wait_for_text(r"sgd, full batch: stable on a quadratic below 1 × 2/L")

    # Latency: 4 rates x 200 steps, slider -> painted picture, over 12 moves (issue 14).
    lab.wait_idle()
    samples = latencies(lab, "rate 3", (0.3, 0.6, 0.9, 0.45, 0.75, 0.2, 0.85, 0.55, 0.35, 0.95, 0.65, 0.4))
    summary = record_latency("lesson 01 learning-rate widget (4 rates x 200 steps)", samples)
    assert summary["median_ms"] <= LATENCY_TARGET_MS, summary
    lab.assert_no_errors()


@lesson("02_sgd_minibatch.ipynb")
@pytest.mark.timeout(240)
def test_batch_widget_answers_fast(lab: LabPage) -> None:
    lab.open("02_sgd_minibatch.ipynb")
    lab.run_through("lr_batch_widget(", timeout_s=150)
    lab.wait_for_controls("rate 1", "batch 1", "epochs")
    lab.assert_no_errors()
    lab.wait_for_text(r"pair 3: η = 0\.16, B = 128")
    lab.current_figure()
    samples = latencies(lab, "rate 1", (0.02, 0.005, 0.03, 0.008, 0.015, 0.04, 0.006, 0.025, 0.012, 0.035))
    lab.wait_for_text(r"pair 1: η = 0\.035, B = 8")
    summary = record_latency("lesson 02 (rate, batch) widget at its defaults", samples)
    assert summary["median_ms"] <= LATENCY_TARGET_MS, summary
    lab.set_control("rate 3", 0.5)  # past the cliff at B = 128: diverges
    lab.wait_for_text(r"pair 3: η = 0\.5, B = 128: diverged at step \d+")
    lab.assert_no_errors()
    lab.screenshot("changed")


@lesson("02_sgd_minibatch.ipynb")
@pytest.mark.timeout(240)
def test_momentum_widget_follows_beta(lab: LabPage) -> None:
    lab.open("02_sgd_minibatch.ipynb")
    lab.run_through("momentum_widget(", timeout_s=150)
    lab.wait_for_controls("beta")
    lab.assert_no_errors()
    dist = r"\|w - w\*\| = ([0-9.e+-]+)"
    lab.wait_for_text(r"heavy ball, η = 1/L: " + dist)
    figure = lab.current_figure()

    lab.set_control("beta", 0)  # no momentum: heavy ball and Nesterov are the same GD run
    lab.wait_for_text(r"heavy ball, η = 1/L: " + dist + r" after 60 steps\s+Nesterov, η = 1/L: \|w - w\*\| = \1 ")
    figure = lab.wait_for_new_figure(figure)

    lab.set_control("beta", 0.7)  # beyond the best beta for eta = 1/L (0.59): still far closer than at 0
    lab.wait_for_text(r"heavy ball, η = 1/L: \|w - w\*\| = [0-9.]+e-0[5-9]")
    lab.wait_for_new_figure(figure)
    lab.wait_idle()
    samples = latencies(lab, "beta", (0.5, 0.9, 0.3, 0.8, 0.6, 0.95, 0.4, 0.85, 0.2, 0.75))
    summary = record_latency("lesson 02 momentum widget (4 methods x 60 steps)", samples)
    assert summary["median_ms"] <= LATENCY_TARGET_MS, summary
    lab.assert_no_errors()
    lab.screenshot("momentum")


def bubble(p: int, m: int, v: int = 1) -> float:
    """The pipeline bubble fraction (p - 1) / (v m + p - 1) (GPipe, 1F1B: v = 1)."""
    return (p - 1) / (v * m + p - 1)


@lesson("05_pipeline_parallelism.ipynb")
@pytest.mark.timeout(180)
def test_schedule_widget_redraws_the_timeline(lab: LabPage) -> None:
    lab.open("05_pipeline_parallelism.ipynb")
    # The lesson's earlier cells start real processes (1-2 min; nbval runs them): the widget
    # needs only the start-up cell, the imports cell and its own section.
    lab.run_through(
        "schedule_widget(",
        timeout_s=90,
        section="from helpers.pipeline.widgets import",
        prelude=("helpers.setup(", "import math"),
    )
    lab.wait_for_controls("p", "m", "schedule", "v")
    lab.assert_no_errors()
    lab.screenshot("rendered")

    def shows(schedule: str, p: int, m: int, v: int = 1) -> None:
        """The label names the new setting and its bubble equals (p - 1) / (v m + p - 1)."""
        vs = f", v={v}" if v > 1 else ""
        rx = re.compile(re.escape(f"{schedule}, p={p}, m={m}{vs}: bubble ") + r"([0-9.]+)")
        got = float(rx.search(lab.wait_for_text(rx)).group(1))
        assert abs(got - bubble(p, m, v)) < 1e-3, (schedule, p, m, v, got, bubble(p, m, v))

    lab.set_control("schedule", "1f1b")
    lab.set_control("p", 4)
    lab.set_control("m", 8)
    shows("1f1b", 4, 8)
    figure = lab.current_figure()

    lab.set_control("m", 16)  # more micro-batches: a longer timeline, a smaller bubble
    shows("1f1b", 4, 16)
    figure = lab.wait_for_new_figure(figure)

    lab.set_control("p", 2)  # fewer stages: fewer rows
    shows("1f1b", 2, 16)
    figure = lab.wait_for_new_figure(figure)

    v = int(lab.control_value("v"))
    lab.set_control("schedule", "interleaved")  # v model chunks per rank
    shows("interleaved", 2, 16, v)
    figure = lab.wait_for_new_figure(figure)

    v = 3 if v != 3 else 2
    lab.set_control("v", v)
    shows("interleaved", 2, 16, v)
    figure = lab.wait_for_new_figure(figure)

    lab.set_control("schedule", "zbh1")  # split backward, F = B = W: (p-1)/(3m+p-1)
    rx = re.compile(re.escape("zbh1, p=2, m=16: bubble ") + r"([0-9.]+)")
    assert abs(float(rx.search(lab.wait_for_text(rx)).group(1)) - 1 / (3 * 16 + 1)) < 1e-3
    lab.wait_for_new_figure(figure)
    lab.assert_no_errors()
    lab.screenshot("changed")
