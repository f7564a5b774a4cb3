"""Authoring tool: convert between a percent-format script and a notebook.

    python scripts/nb.py build notebooks/src/01_gradient_descent.py notebooks/01_gradient_descent.ipynb
    python scripts/nb.py extract notebooks/01_gradient_descent.ipynb  > draft.py

Cells are separated by lines ``# %%`` (code) and ``# %% [markdown]`` (markdown; every line of a
markdown cell starts with ``# ``). The notebook is the source of truth that nbval tests; after
building, run ``make notebooks`` (or scripts/run_notebooks.py) to store fresh outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def parse(text: str) -> list[tuple[str, str]]:
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        src = "\n".join(lines).strip("\n")
        if src.strip():
            out.append((kind, src))
    return out


def build(src: Path, dst: Path) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, text in parse(src.read_text()):
        nb.cells.append(new_markdown_cell(text) if kind == "markdown" else new_code_cell(text))
    nbformat.write(nb, dst)


def extract(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + ln) if ln else "#" for ln in cell.source.splitlines())
            parts.append("# %% [markdown]\n" + body)
        else:
            parts.append("# %%\n" + cell.source)
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    if cmd == "build" and len(args) == 2:
        build(Path(args[0]), Path(args[1]))
    elif cmd == "extract" and len(args) == 1:
        sys.stdout.write(extract(Path(args[0])))
    else:
        print(__doc__)
        sys.exit(2)
