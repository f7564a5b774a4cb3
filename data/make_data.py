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


def generator(filename: str):
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
