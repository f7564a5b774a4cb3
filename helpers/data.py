"""Checksum-verified loaders for the course datasets in ``data/``.

Every file is listed in ``data/MANIFEST.sha256``; a loader refuses a file that is missing or
whose bytes changed, and says which file and how to restore it. Sources and licences are in
``data/README.md``; ``data/make_data.py`` regenerates everything offline.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MANIFEST = "MANIFEST.sha256"


class DataFileError(RuntimeError):
    """A course data file is missing, unlisted or altered."""


def read_manifest(data_dir: Path = DATA_DIR) -> dict[str, str]:
    """Map file name -> expected sha256 from the manifest."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DataFileError(f"checksum manifest not found: {path}. Restore it with `git checkout data/`.")
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip()] = digest
    return out


def available(data_dir: Path = DATA_DIR) -> list[str]:
    """Names of the datasets listed in the manifest."""
    return sorted(read_manifest(data_dir))


def verified_path(name: str, data_dir: Path = DATA_DIR) -> Path:
    """Path of ``data/<name>`` after checking it exists and matches its checksum."""
    manifest = read_manifest(data_dir)
    if name not in manifest:
        raise ValueError(f"name={name!r} is not a course dataset; available: {', '.join(sorted(manifest))}")
    path = Path(data_dir) / name
    if not path.is_file():
        raise DataFileError(
            f"data file missing: {path}. Restore it with `git checkout data/{name}` "
            "or regenerate with `.venv/bin/python data/make_data.py`."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != manifest[name]:
        raise DataFileError(
            f"data file altered: {path} (sha256 {digest[:12]}..., expected {manifest[name][:12]}...). "
            f"Restore it with `git checkout data/{name}`."
        )
    return path


@cache
def _read_csv(name: str, data_dir: str) -> pd.DataFrame:
    import pandas as pd  # heavy: only the CSV loaders need pandas

    return pd.read_csv(verified_path(name, Path(data_dir)))


def load_csv(name: str, data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """A verified CSV as a DataFrame (a fresh copy each call)."""
    if not name.endswith(".csv"):
        raise ValueError(f"name={name!r} must be a .csv file")
    return _read_csv(name, str(data_dir)).copy()


def load_text(name: str, data_dir: Path = DATA_DIR) -> str:
    """A verified text file as a string."""
    return verified_path(name, data_dir).read_text()


def airline() -> pd.Series:
    """Monthly airline passengers (thousands), 1949-01 to 1960-12, with a monthly PeriodIndex."""
    import pandas as pd  # heavy: only the CSV loaders need pandas

    df = load_csv("airline.csv")
    return pd.Series(
        df["passengers"].astype(float).values,
        index=pd.PeriodIndex(df["month"], freq="M"),
        name="Number of airline passengers",
    )


def nile() -> pd.Series:
    """Annual Nile flow at Aswan 1871-1970, yearly PeriodIndex."""
    import pandas as pd  # heavy: only the CSV loaders need pandas

    df = load_csv("nile.csv")
    return pd.Series(df["volume"].astype(float).values, index=pd.PeriodIndex(df["year"], freq="Y"), name="volume")


def diabetes() -> pd.DataFrame:
    """Efron et al. (2004) diabetes data (442 x 11, raw units)."""
    return load_csv("diabetes.csv")


def macrodata() -> pd.DataFrame:
    """US quarterly macro data 1959Q1-2009Q3 with a quarterly PeriodIndex."""
    import pandas as pd  # heavy: only the CSV loaders need pandas

    df = load_csv("macrodata.csv")
    df.index = pd.PeriodIndex.from_fields(year=df["year"], quarter=df["quarter"], freq="Q")
    return df.drop(columns=["year", "quarter"])
