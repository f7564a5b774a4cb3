"""`make bench`: run the course's measurements and record them.

Writes ``results/bench.json`` (machine-readable) and ``results/bench.md`` (a markdown table), and
replaces the table between the BENCH markers in README.md. Each measurement is a median of
repeated runs; comparisons are ratios measured in one run (A and B interleaved), because the
machine is shared and noisy. The machine (CPU model, cores, GPU if any) is recorded with them.

    .venv/bin/python scripts/bench.py            # everything (<= 10 min on a 2-core CPU)
    .venv/bin/python scripts/bench.py --only 01 05 --no-notebooks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
BEGIN, END = "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->"

Row = dict[str, object]
BENCHES: dict[str, tuple[str, Callable[[], list[Row]]]] = {}


def bench(key: str, lesson: str):
    def register(fn: Callable[[], list[Row]]) -> Callable[[], list[Row]]:
        BENCHES[key] = (lesson, fn)
        return fn

    return register


def row(lesson: str, metric: str, value: float, unit: str, target: str = "", how: str = "") -> Row:
    return {"lesson": lesson, "metric": metric, "value": value, "unit": unit, "target": target, "how": how}


def machine() -> dict[str, object]:
    import torch

    from helpers.environment import cpu_model

    info: dict[str, object] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def median_time(fn: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- measurements
# (registered below by lesson; each returns rows)
from bench_lessons import register_all  # noqa: E402

register_all(bench, row, median_time)

from bench_m3 import register as register_m3  # noqa: E402 - key 09: the M3/Tourism benchmark

register_m3(bench, row)


def notebook_runtimes(names: list[str]) -> list[Row]:
    """Wall-clock time of executing each notebook (fresh kernel, in a temporary copy)."""
    import shutil
    import tempfile

    out = []
    for nb in names:
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / Path(nb).name
            shutil.copy(nb, dst)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), str(dst)],
                           check=True, capture_output=True, cwd=ROOT / "notebooks")
            out.append(row(Path(nb).stem[:2], f"notebook {Path(nb).stem} runtime",
                           round(time.perf_counter() - t0, 1), "s", "<= 90 s (05-08: 120 s)",
                           "one execution incl. kernel start"))
    return out


def to_markdown(results: dict[str, object]) -> str:
    m = results["machine"]
    gpu = m["gpu"] or "none"
    lines = [f"Measured {results['date']} on **{m['cpu']}**, {m['cores']} cores, GPU: {gpu}, "
             f"torch {m['torch']} (`make bench`, {results['seconds']:.0f} s).", "",
             "| Lesson | Metric | Value | Target | How |", "|---|---|---|---|---|"]
    for r in results["rows"]:
        v = r["value"]
        val = f"{v:.3g}" if isinstance(v, float) else str(v)
        lines.append(f"| {r['lesson']} | {r['metric']} | {val} {r['unit']} | {r['target']} | {r['how']} |")
    return "\n".join(lines) + "\n"


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="bench keys to run (default: all): " + " ".join(BENCHES))
    p.add_argument("--no-notebooks", action="store_true", help="skip notebook runtimes")
    p.add_argument("--out", default=str(RESULTS), help="output folder (default results/)")
    p.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = p.parse_args(argv)
    unknown = set(args.only or []) - set(BENCHES)
    if unknown:
        p.error(f"unknown bench keys {sorted(unknown)}; allowed: {sorted(BENCHES)}")

    import helpers

    helpers.setup(verbose=False)
    start = time.perf_counter()
    rows: list[Row] = []
    for key, (lesson, fn) in BENCHES.items():
        if args.only and key not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"bench {key} ({lesson}) ...", flush=True)
        new = fn()
        rows += new
        for r in new:
            print(f"  {r['metric']}: {r['value']} {r['unit']}", flush=True)
        print(f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    if not args.no_notebooks:
        rows += notebook_runtimes(sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(),
               "seconds": time.perf_counter() - start, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    table = to_markdown(results)
    (out / "bench.md").write_text(table)
    if not args.no_readme and out.resolve() == RESULTS.resolve():
        update_readme(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
