"""Re-execute notebooks in place, top to bottom, so their stored outputs are fresh.

Usage: python scripts/run_notebooks.py notebooks/01_*.ipynb ...
Runs each in the current interpreter's environment (the course .venv) from notebooks/,
prints its wall-clock time, and fails loudly if a cell raises.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nb.metadata.pop("widgets", None)  # widget state is re-created when a learner runs the cell
    for cell in nb.cells:  # keep diffs to what a learner reads
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: run_notebooks.py NOTEBOOK...", file=sys.stderr)
        return 2
    for name in argv:
        path = Path(name)
        elapsed = run(path)
        print(f"{path.name}: executed in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
