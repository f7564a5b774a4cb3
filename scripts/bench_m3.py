"""Bench key 09: the full M3 monthly benchmark (1428 series) and the Tourism naive reproduction.

Runs the fast contenders (SNaive, Naive2, Theta, ETS, ARIMA, Kalman, their Comb) in 2 worker
processes with one BLAS thread each, a global DeepAR over all 1428 series (3 seeds), asserts the
published anchors and writes ``results/m3_benchmark.md``:

* Theta, M3 monthly, mean sMAPE over horizons 1-18: 13.85 in Makridakis & Hibon (2000), 13.94 when
  recomputed from the submitted forecasts (Autobox note); statsmodels' ThetaModel must land within
  0.25 points of 13.85 (implementation differences: SES alpha by likelihood, seasonality test).
* Tourism, seasonal naive (monthly, quarterly) / naive (yearly) MAPE over all horizons: 22.56, 16.46,
  23.61 (Athanasopoulos et al. 2011, Tables 4-6; reproduced exactly by the Tcomp package's tests):
  deterministic forecasts, so they must match to the published 2 decimals.

    .venv/bin/python scripts/bench.py --only 09 --no-notebooks --no-readme
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FAST = ("SNaive", "Naive2", "Theta", "ETS", "ARIMA", "Kalman")
THETA_PUBLISHED, THETA_RECOMPUTED, THETA_TOL = 13.85, 13.94, 0.25
TOURISM_NAIVE_MAPE = {"monthly": 22.56, "quarterly": 16.46, "yearly": 23.61}
TOURISM_M = {"monthly": 12, "quarterly": 4, "yearly": 1}
DEEPAR_SEEDS = (0, 1, 2)
DEEPAR_KW = {"epochs": 10, "num_batches_per_epoch": 50}


def _md(table, digits: int = 3) -> list[str]:
    cols = list(table.columns)
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in table.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in r) + " |")
    return lines


def run(out: Path | None = None, workers: int = 2) -> dict[str, float]:
    """Run the full benchmark, assert the anchors, write the markdown; return headline numbers."""
    import pandas as pd

    from helpers.timeseries.benchmark import run_benchmark
    from helpers.timeseries.contenders import seasonal_naive
    from helpers.timeseries.datasets import m3_monthly, tourism
    from helpers.timeseries.metrics import mape, mase
    from helpers.timeseries.significance import average_ranks, nemenyi_cd

    t0 = time.perf_counter()
    df = m3_monthly()
    res = run_benchmark(df, FAST, m=12, workers=workers)
    table = res.table()
    theta = float(table.loc["Theta", "sMAPE"])
    assert abs(theta - THETA_PUBLISHED) <= THETA_TOL, f"Theta sMAPE {theta:.3f} not within {THETA_TOL} of 13.85"

    deep = []
    for seed in DEEPAR_SEEDS:
        d = run_benchmark(df, ["DeepAR"], m=12, seed=seed, deepar=DEEPAR_KW)
        deep.append(d.table().loc["DeepAR", ["sMAPE", "MASE", "MSIS", "coverage", "CRPS"]])
    deep_mean = pd.concat(deep, axis=1).mean(axis=1)
    deep_sd = pd.concat(deep, axis=1).std(axis=1)

    ranks = average_ranks(res.errors("sMAPE"))
    cd = nemenyi_cd(len(ranks), len(df))

    naive = {}
    for period, m in TOURISM_M.items():
        t = tourism(period)
        fc = [seasonal_naive(tr, len(te), m).point for tr, te in zip(t.train, t.test, strict=True)]
        naive[period] = (float(np.mean([mape(te, f) for te, f in zip(t.test, fc, strict=True)])),
                         float(np.mean([mase(te, f, tr, m) for tr, te, f in zip(t.train, t.test, fc, strict=True)])))
        assert round(naive[period][0], 2) == TOURISM_NAIVE_MAPE[period], (period, naive[period])
    seconds = time.perf_counter() - t0

    ref = table.loc["Naive2"]
    owa = 0.5 * (deep_mean["sMAPE"] / ref.sMAPE + deep_mean["MASE"] / ref.MASE)
    lines = [
        "# M3 monthly benchmark (full 1428 series) and Tourism naive reproduction", "",
        f"Produced {datetime.now(UTC):%Y-%m-%d} by `make bench` (`scripts/bench.py --only 09`, "
        f"`scripts/bench_m3.py`) in {seconds:.0f} s, {workers} worker processes x 1 BLAS thread.",
        "Protocol: the competition's split (last 18 months held out), every method sees only the "
        "training part; means over series. sMAPE 0-200; MASE, MSIS (95 %) and CRPS scaled by the "
        "in-sample seasonal-naive MAE (m = 12); OWA vs Naive2; coverage of the 95 % interval.", "",
        *_md(table[["sMAPE", "MASE", "OWA", "MSIS", "coverage", "CRPS"]]), "",
        f"DeepAR (one global model over all 1428 series, {DEEPAR_KW['epochs']} epochs x "
        f"{DEEPAR_KW['num_batches_per_epoch']} batches, seeds {list(DEEPAR_SEEDS)}): sMAPE "
        f"{deep_mean['sMAPE']:.2f} +- {deep_sd['sMAPE']:.2f} (sd over seeds), MASE {deep_mean['MASE']:.3f} "
        f"+- {deep_sd['MASE']:.3f}, OWA {owa:.3f}, MSIS {deep_mean['MSIS']:.2f}, coverage "
        f"{deep_mean['coverage']:.3f}, CRPS {deep_mean['CRPS']:.3f}.", "",
        "Average sMAPE rank over the 1428 series (Friedman/Nemenyi, Demšar 2006): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ranks.items()) + f"; critical difference {cd:.3f}.", "",
        f"Theta reproduction: {theta:.3f} (published 13.85, Makridakis & Hibon 2000; recomputed from the "
        f"submitted forecasts 13.94); asserted within {THETA_TOL}. Theta MASE {table.loc['Theta', 'MASE']:.3f}.", "",
        "Tourism (Athanasopoulos et al. 2011, Tables 4-6), seasonal naive (yearly: naive), all horizons:", "",
        "| period | MAPE ours | MAPE published | MASE ours |", "|---|---|---|---|",
        *(f"| {p} | {v[0]:.3f} | {TOURISM_NAIVE_MAPE[p]:.2f} | {v[1]:.3f} |" for p, v in naive.items()), "",
        "Seconds per contender (full M3 run): "
        + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()) + ".",
    ]
    out = out or ROOT / "results" / "m3_benchmark.md"
    out.write_text("\n".join(lines) + "\n")
    return {"theta": theta, "seconds": seconds, "owa_comb": float(table.loc["Comb", "OWA"]),
            "deepar_smape": float(deep_mean["sMAPE"])}


def register(bench: Callable, row: Callable) -> None:
    """Register key 09 with ``scripts/bench.py``."""

    @bench("09", "09")
    def _m3() -> list[dict]:
        r = run()
        return [
            row("09", "Theta sMAPE, M3 monthly (1428 series)", round(r["theta"], 3), "%",
                "13.85 +- 0.25 (Makridakis & Hibon 2000)", "statsmodels ThetaModel; results/m3_benchmark.md"),
            row("09", "Comb (ETS, ARIMA, Theta) OWA vs Naive2", round(r["owa_comb"], 3), "",
                "< 1", "results/m3_benchmark.md"),
            row("09", "full M3 + Tourism benchmark runtime", round(r["seconds"], 1), "s", "<= 300 s",
                "2 workers x 1 thread"),
        ]
