import shutil

import pytest

from helpers import data


def test_every_listed_file_verifies():
    names = data.available()
    assert {"airline.csv", "nile.csv", "diabetes.csv", "tiny_stories.txt"} <= set(names)
    for name in names:
        assert data.verified_path(name).is_file()


def test_loaders_shapes_and_known_values():
    air = data.airline()
    assert len(air) == 144 and air.iloc[0] == 112 and air.iloc[-1] == 432
    nile = data.nile()
    assert len(nile) == 100 and nile.iloc[0] == 1120
    assert data.diabetes().shape == (442, 11)
    assert data.macrodata().shape[0] == 203


@pytest.fixture
def data_copy(tmp_path):
    for p in data.DATA_DIR.iterdir():
        if p.is_file():
            shutil.copy(p, tmp_path / p.name)
    return tmp_path


def test_missing_file_names_it(data_copy):
    (data_copy / "nile.csv").unlink()
    with pytest.raises(data.DataFileError, match=r"missing: .*nile\.csv"):
        data.verified_path("nile.csv", data_copy)


def test_altered_file_names_it(data_copy):
    p = data_copy / "airline.csv"
    p.write_text(p.read_text().replace("112", "113", 1))
    with pytest.raises(data.DataFileError, match=r"altered: .*airline\.csv"):
        data.verified_path("airline.csv", data_copy)


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match=r"name='nope.csv'.*available: .*airline\.csv"):
        data.verified_path("nope.csv")


def test_missing_manifest(tmp_path):
    with pytest.raises(data.DataFileError, match="manifest"):
        data.read_manifest(tmp_path)
