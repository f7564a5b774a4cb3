"""The package's layering, checked over the AST of every module in ``helpers``:

    base (seeds, validate, data, noise, plots, checks)  <-  core  <-  techniques  <-  lessons

- no import goes up a layer (a technique never imports a lesson module, core never a technique);
- no circle among module-level imports, inside a layer either;
- no function-level import of a course module, and every function-level import of a library
  says why on its line (heavy or optional libraries only);
- no module is longer than 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "helpers"
MAX_LINES = 500

BASE = {"helpers", "helpers.seeds", "helpers.validate", "helpers.data", "helpers.noise", "helpers.plots",
        "helpers.checks", "helpers.environment"}
TECHNIQUES = ("helpers.gd", "helpers.precision", "helpers.checkpointing", "helpers.memory", "helpers.activations",
              "helpers.pipeline",
              "helpers.timeseries", "helpers.training")
LESSONS = ("helpers.lessons", "helpers.startup")
LAYERS = ("base", "core", "techniques", "lessons")
#: function-level imports of course modules that are allowed, and why
LAZY_OK = {
    ("helpers", "helpers.startup"): "helpers.setup() keeps `import helpers` free of numpy and torch",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(mod: str) -> str:
    if mod in BASE:
        return "base"
    if mod == "helpers.core" or mod.startswith("helpers.core."):
        return "core"
    if any(mod == t or mod.startswith(t + ".") for t in TECHNIQUES):
        return "techniques"
    if any(mod == t or mod.startswith(t + ".") for t in LESSONS):
        return "lessons"
    raise AssertionError(f"{mod} is in no layer: add it to tests/test_layering.py")


def resolve(node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str | None:
    """The course module an import statement loads (a submodule when the name is one)."""
    if isinstance(node, ast.Import):
        name = alias.name
    else:
        base = node.module or ""
        sub = f"{base}.{alias.name}"
        name = sub if sub in MODULES else base
    if not (name == "helpers" or name.startswith("helpers.")):
        return None
    while name not in MODULES:  # e.g. helpers.pipeline.schedules.X -> helpers.pipeline.schedules
        name = name.rsplit(".", 1)[0]
    return name


def imports(mod: str) -> tuple[list[tuple[str, int]], list[tuple[ast.AST, int]]]:
    """(module-level course imports, function-level imports) of ``mod``."""
    tree = ast.parse(MODULES[mod].read_text())
    top, lazy = [], []
    for node in tree.body:  # module level, including `if TYPE_CHECKING:` and try blocks
        for sub in ast.walk(node):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(sub):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        lazy.append((inner, inner.lineno))
            elif isinstance(sub, (ast.Import, ast.ImportFrom)) and not _inside_function(tree, sub):
                if _type_checking_only(tree, sub):
                    continue
                for alias in sub.names:
                    target = resolve(sub, alias)
                    if target is not None and target != mod:
                        top.append((target, sub.lineno))
    return top, lazy


def _inside_function(tree: ast.AST, target: ast.AST) -> bool:
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(n is target for n in ast.walk(fn)):
            return True
    return False


def _type_checking_only(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            if any(n is target for n in ast.walk(node)):
                return True
    return False


GRAPH = {mod: imports(mod) for mod in MODULES}


def test_every_module_is_in_a_layer():
    for mod in MODULES:
        layer(mod)


def test_no_import_goes_up_a_layer():
    bad = [f"{mod} ({layer(mod)}) imports {t} ({layer(t)}) at line {line}"
           for mod, (top, _) in GRAPH.items() for t, line in top
           if LAYERS.index(layer(t)) > LAYERS.index(layer(mod))]
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    edges = {mod: sorted({t for t, _ in top}) for mod, (top, _) in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for t in edges[mod]:
            if t.startswith(mod + "."):
                continue  # a package's __init__ importing its own submodules is not a circle
            if state.get(t) == 1:
                circles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[mod] = 2

    for mod in edges:
        if mod not in state:
            visit(mod)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_function_level_imports_are_libraries_with_a_reason():
    bad = []
    for mod, (_, lazy) in GRAPH.items():
        lines = MODULES[mod].read_text().splitlines()
        for node, lineno in lazy:
            for alias in node.names:
                target = resolve(node, alias)
                if target is not None and (mod, target) not in LAZY_OK:
                    bad.append(f"{mod}:{lineno} imports the course module {target} inside a function")
            if target is None and not any("#" in ln for ln in lines[lineno - 1 : node.end_lineno]):
                bad.append(f"{mod}:{lineno} `{lines[lineno - 1].strip()}` inside a function without a "
                           "comment saying why (heavy or optional library)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_size(mod):
    n = len(MODULES[mod].read_text().splitlines())
    assert n <= MAX_LINES, f"{mod} has {n} lines (at most {MAX_LINES})"
