"""Row-by-row CSV writing, torn-line repair on resume, and the config fingerprint."""

from __future__ import annotations

import pytest

from rsbench.errors import RsbenchError
from rsbench.results import ResultsCSV, check_fingerprint

COLS = ("idx", "predict", "radius")


def test_append_resume_and_torn_line(tmp_path) -> None:
    path = tmp_path / "r.csv"
    with ResultsCSV(path, COLS) as r:
        assert r.open() == set()
        r.append({"idx": 0, "predict": 3, "radius": 0.1234567890123})
        r.append({"idx": 5, "predict": -1, "radius": 0.0})
    # A kill in the middle of a write leaves a partial line.
    with open(path, "a") as fh:
        fh.write("10,7,0.4")
    with ResultsCSV(path, COLS) as r:
        assert r.open() == {0, 5}
        r.append({"idx": 10, "predict": 7, "radius": 0.5})
    lines = path.read_text().splitlines()
    assert lines == ["idx,predict,radius", "0,3,0.1234567890123", "5,-1,0.0", "10,7,0.5"]


def test_header_mismatch_and_duplicates_are_refused(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("idx,other\n0,1\n")
    with pytest.raises(RsbenchError, match="columns"):
        ResultsCSV(path, COLS).open()
    path.write_text("idx,predict,radius\n0,1,0.1\n0,1,0.1\n")
    with pytest.raises(RsbenchError, match="duplicated"):
        ResultsCSV(path, COLS).open()


def test_row_must_have_all_columns(tmp_path) -> None:
    with ResultsCSV(tmp_path / "r.csv", COLS) as r:
        r.open()
        with pytest.raises(RuntimeError, match="radius"):
            r.append({"idx": 0, "predict": 1})


def test_fingerprint(tmp_path) -> None:
    path = tmp_path / "fp.json"
    check_fingerprint(path, {"n": 100, "sigma": 0.25}, overwrite=False)
    check_fingerprint(path, {"n": 100, "sigma": 0.25}, overwrite=False)  # same: resume allowed
    with pytest.raises(RsbenchError, match="differs in sigma"):
        check_fingerprint(path, {"n": 100, "sigma": 0.5}, overwrite=False)
    check_fingerprint(path, {"n": 100, "sigma": 0.5}, overwrite=True)
    check_fingerprint(path, {"n": 100, "sigma": 0.5}, overwrite=False)
