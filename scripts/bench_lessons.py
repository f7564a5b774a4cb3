"""The measurements behind `make bench`, one function per lesson (see scripts/bench.py).

Each function returns rows made by ``row(lesson, metric, value, unit, target, how)``. Memory
figures are exact (saved-tensor accounting); time figures are medians of interleaved repeats and
reported as ratios measured in one run wherever two things are compared.
"""

from __future__ import annotations

from collections.abc import Callable


def register_all(bench: Callable, row: Callable, median_time: Callable) -> None:
    @bench("01", "01")
    def widget_redraw() -> list:
        from helpers.lessons import gd_plots

        r = gd_plots.measure_redraw(repeats=30, draw_repeats=5)
        return [
            row("01", "LR widget redraw compute (4 rates x 200 steps)", round(r["compute_ms"], 2), "ms",
                "<= 50 ms", "median of 30 vectorised optimize() calls"),
            row("01", "LR widget: live figure update (kernel side)", round(r["update_ms"], 2), "ms", "",
                "median of 30 plotly FigureWidget batch updates"),
            row("01", "LR widget: a full matplotlib re-render instead", round(r["draw_ms"], 1), "ms", "",
                "median of 5 Agg renders (what the PNG widget did)"),
        ] + widget_latency(row)

    @bench("03", "03")
    def autocast_ratio() -> list:
        import torch

        from helpers import core, memory
        from helpers import precision as P

        task = core.char_task()
        cfg = task.config(n_layer=2, block_size=64)
        out = []
        for batch in (16, 64):
            xb, yb = task.batch(batch, cfg.block_size, torch.Generator().manual_seed(0))
            acts = {}
            for name, dt in (("fp32", None), ("bf16", torch.bfloat16)):
                m = P.build_gpt(cfg, seed=0)

                def loss(m=m, dt=dt, xb=xb, yb=yb):
                    with P.autocast_context("cpu", dt):
                        return m(xb, yb)[1]

                acts[name] = memory.memory_ledger(m, loss, torch.optim.AdamW(m.parameters())).activations
            out.append(row("03", f"saved activations bf16 autocast / fp32 (batch {batch})",
                           round(acts["bf16"] / acts["fp32"], 3), "x", "<= 0.6",
                           "exact: saved-tensor hooks, 2-block course GPT"))
        mm = P.matmul_times(256, ("fp32", "bf16", "fp16"), repeats=7, number=10)
        out.append(row("03", "256x256 matmul time bf16 / fp32", round(mm["bf16"] / mm["fp32"], 2), "x", "",
                       "interleaved, median; depends on bf16 hardware units"))
        out.append(row("03", "256x256 matmul time fp16 / fp32", round(mm["fp16"] / mm["fp32"], 2), "x", "",
                       "interleaved, median; depends on fp16 hardware units"))
        return out

    @bench("04", "04")
    def checkpointing() -> list:
        import functools

        import torch

        from helpers import checkpointing as ck
        from helpers import core

        task = core.char_task()
        T, B, C = 64, 8, 32
        x, y = task.batch(B, T, torch.Generator().manual_seed(0))

        def make(n: int) -> core.GPT:
            torch.manual_seed(0)
            return core.GPT(task.config(n_layer=n, n_embd=C, n_head=4, block_size=T))

        depths = [1, 4, 9, 16, 25, 36]
        peaks = [ck.measure_memory(make(n), x, y, "sqrt").peak for n in depths]
        fit = ck.fit_power_law(depths, peaks)
        model = make(32)
        t = ck.time_steps({
            "plain": functools.partial(ck.grad_step, model, x, y, "none"),
            "every": functools.partial(ck.grad_step, model, x, y, "every"),
            "sqrt": functools.partial(ck.grad_step, model, x, y, "sqrt"),
        }, repeats=9)
        return [
            row("04", "peak memory exponent with sqrt(n) segments", round(fit.exponent, 3), "", "~0.5",
                "fit peak = a + s*n^p, n = 1..36 blocks, exact live-tensor tracking"),
            row("04", "recompute overhead, every block", round(t.ratio("every", "plain"), 2), "x", "~1.2-1.4x",
                "step time vs plain, 32 blocks, 9 interleaved rounds, median of ratios"),
            row("04", "recompute overhead, sqrt(n) segments", round(t.ratio("sqrt", "plain"), 2), "x", "",
                "same run"),
        ]

    @bench("05", "05")
    def pipeline() -> list:
        import statistics as st

        from helpers.pipeline import calibrate, jobs, measure
        from helpers.pipeline.schedules import make_schedule
        from helpers.pipeline.simulate import simulate

        def sim() -> None:
            simulate(make_schedule("1f1b", 64, 512))

        sim_s = median_time(sim, repeats=3)
        zb = simulate(make_schedule("zbh1", 4, 8)).idle() / simulate(make_schedule("1f1b", 4, 8)).idle()
        sp = measure.measure_speedup(m=8, rounds=5, compare_torch=True, timeout=300.0)
        base = measure.speed_job(m=8, steps=6)
        names = [("gpipe", 4, 1), ("gpipe", 8, 1), ("gpipe", 16, 1), ("1f1b", 8, 1), ("interleaved", 8, 2),
                 ("zbh1", 8, 1), ("zbv", 8, 2)]
        runs = jobs.run([jobs.with_(base, schedule=s, n_microbatches=m, n_chunks=v, record=True,
                                    name=f"{s}-m{m}") for s, m, v in names], 2, timeout=120.0)
        preds = {r.job.name: calibrate.predict(r) for r in runs}
        worst = max(abs(p.error) for p in preds.values())
        bubble = {k: preds[f"{k}-m8"].measured_bubble for k in ("1f1b", "zbh1")}
        return [
            row("05", "simulator time, 1F1B p=64 m=512", round(sim_s, 3), "s", "< 1 s", "median of 3"),
            row("05", "ZB-H1 / 1F1B idle time, simulated F=B=W (p=4, m=8)", round(zb, 4), "x", "1/3 (Qi et al. 2023)",
                "discrete-event simulator"),
            row("05", "2-stage speedup vs 1 process x 1 thread, share of bound 2m/(m+1), m=8",
                round(sp.share_of_bound, 3), "", ">= 0.85",
                f"compute-bound micro-batches, median over {sp.rounds} rounds of the in-round ratio "
                f"(rounds {min(sp.ratios('single_1thread', 'pipeline')) / sp.bound:.2f}-"
                f"{max(sp.ratios('single_1thread', 'pipeline')) / sp.bound:.2f})"),
            row("05", "2-stage speedup vs 1 process x 1 thread, m=8", round(sp.speedup_vs_1thread, 3), "x",
                f"bound {sp.bound:.2f}", "same run"),
            row("05", "two 1-thread processes side by side vs alone (machine's parallel efficiency)",
                round(sp.parallel_efficiency, 3), "x", "", "same run"),
            row("05", "2-stage speedup vs 1 process x 2 threads (same thread budget), m=8",
                round(sp.speedup, 3), "x", "", "same run"),
            row("05", "own executor / torch.distributed.pipelining step time (1F1B, m=8)",
                round(sp.pipeline_s / sp.torch_s, 3), "x", "<= 1.0", "same model and schedule, same run"),
            row("05", "calibrated simulator, worst |error| in step time over 7 schedules", round(worst, 3), "",
                "<= 0.15", "per-stage F/B/W and message costs measured in the same run, median of 5 steps"),
            row("05", "measured bubble ZB-H1 / 1F1B (2 processes, m=8)", round(bubble["zbh1"] / bubble["1f1b"], 3),
                "x", "formula 0.36", "median of 5 steps each"),
            row("05", "measured step time ZB-H1 / 1F1B (2 processes, m=8)",
                round(preds["zbh1-m8"].measured_s / preds["1f1b-m8"].measured_s, 3), "x", "",
                "B + W cost more than a fused backward on CPU"),
            row("05", "calibration errors", round(st.median(abs(p.error) for p in preds.values()), 3), "",
                "", "median |error| over the 7 schedules"),
        ]

    @bench("07", "07")
    def forecasting() -> list:
        import numpy as np
        from sktime.forecasting.compose import TransformedTargetForecaster
        from sktime.forecasting.fbprophet import Prophet
        from sktime.forecasting.naive import NaiveForecaster
        from sktime.forecasting.sarimax import SARIMAX
        from sktime.forecasting.theta import ThetaForecaster
        from sktime.transformations.series.boxcox import LogTransformer
        from threadpoolctl import threadpool_limits

        from helpers import data
        from helpers import timeseries as ts

        y = data.airline()
        contenders = {
            "seasonal naive": NaiveForecaster(sp=12),
            "statsmodels SARIMAX": TransformedTargetForecaster(
                [("log", LogTransformer()),
                 ("sarimax", SARIMAX(order=(0, 1, 1), seasonal_order=(0, 1, 1, 12), trend="n"))]),
            "pykalman structural": ts.StructuralKalmanForecaster(sp=12, n_iter=50),
            "sktime Theta": ThetaForecaster(sp=12),
            "Prophet": Prophet(seasonality_mode="multiplicative", yearly_seasonality=True,
                               weekly_seasonality=False, daily_seasonality=False),
            "GluonTS DeepAR": ts.GluonTSForecaster(model="deepar", epochs=8, context_length=36, lr=5e-3,
                                                   log=False, random_state=0),
        }
        np.random.seed(0)
        with threadpool_limits(1):
            board = ts.run_leaderboard(contenders, y, test_size=36, horizon=12, initial_window=96, sp=12)
        fit = board.fit_seconds
        out = []
        for name in contenders:
            vals = fit.loc[name].astype(float)
            out.append(row("07", f"fit time {name} (median over hold-out + 4 backtest folds)",
                           round(float(np.median(vals.values)), 3), "s", "",
                           "airline, lesson 07 leaderboard settings, 1 BLAS thread"))
        return out


def widget_latency(row: Callable) -> list:
    """Slider -> painted picture in headless Chromium: the browser test, strict target."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latency.json"
        env = dict(os.environ, COURSE_LATENCY_OUT=str(out), COURSE_LATENCY_STRICT="1")
        subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/browser/test_widgets_in_lab.py",
                        "-k", "learning_rate or batch_widget or momentum_widget"], cwd=root, env=env, check=False)
        data = json.loads(out.read_text()) if out.is_file() else {}
    return [row(k.split()[1], f"{k}: slider -> picture",
                round(v["median_ms"], 1), "ms", "<= 150 ms",
                f"median of {v['n']} moves in headless Chromium (range {v['min_ms']:.0f}-{v['max_ms']:.0f})")
            for k, v in data.items()]
