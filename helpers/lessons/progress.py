"""Progress bars for long lesson cells: ``tqdm.auto`` bars that leave nothing in the saved
notebook."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


# --------------------------------------------------------------------------- progress bars
class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: object) -> None:
        pass


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Any]:
    """A ``tqdm.auto`` progress bar that leaves nothing behind (``leave=False``); a no-op bar
    when ``enabled`` is False."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm  # heavy optional: imported only when a bar is shown

    bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    try:
        yield bar
    finally:
        bar.close()


def clear_cell_output() -> None:
    """In a notebook, remove the cell's output so far (the closed progress bars); else nothing.

    tqdm's notebook bars are widgets whose last frame would otherwise stay in the saved file."""
    try:
        from IPython import get_ipython  # optional: only inside a notebook
        from IPython.display import clear_output  # optional: only inside a notebook
    except ImportError:  # pragma: no cover - IPython ships with the course environment
        return
    shell = get_ipython()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        clear_output(wait=False)
