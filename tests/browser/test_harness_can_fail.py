"""The browser checks can fail: a widget whose callbacks raise must be caught by them.

A small notebook written into the server's temporary root (never into notebooks/) shows a
slider "n" whose observer raises and a slider "k" whose figure (`interactive_output`) raises
for k > 10. Moving them must make the checks the lesson tests rely on fail, naming the error.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from .lab_harness import LabPage, LabServer, WidgetCheckFailed

pytestmark = pytest.mark.browser

CANARY = """\
import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display


def on_change(change):
    raise ValueError("canary: the observer raised")


def draw(k):
    if k > 10:
        raise ValueError(f"canary: the figure function raised for k={k}")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(k))
    display(fig)
    plt.close(fig)


n = widgets.IntSlider(value=10, min=1, max=100, description="n")
k = widgets.IntSlider(value=10, min=1, max=100, description="k")
label = widgets.Label(f"n = {n.value}")
n.observe(on_change, names="value")
widgets.VBox([n, label, k, widgets.interactive_output(draw, {"k": k})])
"""


def write_canary(root: Path) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CANARY)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "zz_canary.ipynb")
    return "zz_canary.ipynb"


@pytest.mark.timeout(120)
def test_raising_callbacks_fail_the_checks(lab: LabPage, lab_server: LabServer) -> None:
    lab.open(write_canary(lab_server.root))
    lab.run_through("canary", timeout_s=60)
    lab.wait_for_controls("n", "k")
    lab.assert_no_errors()  # before any move the widget is healthy
    before = lab.current_figure()

    # An observer that raises: the label never changes; the traceback is in Lab's log console.
    lab.set_control("n", 20)
    with pytest.raises(WidgetCheckFailed, match="canary: the observer raised"):
        lab.wait_for_text("n = 20", timeout_s=5)
    with pytest.raises(WidgetCheckFailed, match="canary: the observer raised"):
        lab.assert_no_errors()

    # A figure function that raises: no new figure, and the traceback shows in the widget.
    lab.set_control("k", 5)  # first a healthy move: the figure check passes
    before = lab.wait_for_new_figure(before, timeout_s=30)
    lab.set_control("k", 20)
    with pytest.raises(WidgetCheckFailed, match="the figure (is not shown|did not redraw)"):
        lab.wait_for_new_figure(before, timeout_s=5)
    with pytest.raises(WidgetCheckFailed, match="error output"):
        lab.assert_no_errors()
    lab.screenshot("caught")
