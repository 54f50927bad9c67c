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
    with pytest.raises(RsbenchError, match="line 3: idx=0 appears twice"):
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


@pytest.mark.parametrize("tail,line,problem", [
    (b"45,3\n", 3, "2 fields, the header has 3"),
    (b"7,1,abc\n", 3, "radius='abc' is not a valid value"),
    (b"-4,1,0.5\n", 3, "idx=-4 is negative"),
    (b"7,1,nan\n", 3, "radius='nan'"),
    (b"\x00\x00\x00\x00\n", 3, "NUL bytes"),
    (b"\n", 3, "0 fields"),
    (b"garbage\n", 3, "1 fields"),
    (b"7,\xff\xfe,0.5\n", 3, "not UTF-8"),
])
def test_damaged_rows_are_refused_with_their_line_number(tmp_path, tail, line, problem) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"idx,predict,radius\n0,1,0.1\n" + tail + b"9,1,0.2\n")
    with pytest.raises(RsbenchError, match=rf"line {line}: .*{problem}"):
        ResultsCSV(path, COLS).open()


def test_nul_filled_torn_tail_is_repaired(tmp_path) -> None:
    """After a power loss the file's tail can be NULs with no newline: that is a torn last line."""
    path = tmp_path / "r.csv"
    path.write_bytes(b"idx,predict,radius\n0,1,0.1\n" + b"\x00" * 300)
    with ResultsCSV(path, COLS) as r:
        assert r.open() == {0}
    assert path.read_bytes() == b"idx,predict,radius\n0,1,0.1\n"


def test_torn_fingerprint_is_a_clear_error(tmp_path) -> None:
    from rsbench.results import check_fingerprint

    path = tmp_path / "certify.fingerprint.json"
    path.write_text('{"n": 10')
    with pytest.raises(RsbenchError, match="fingerprint.json .* is damaged"):
        check_fingerprint(path, {"n": 10}, overwrite=False)
    check_fingerprint(path, {"n": 10}, overwrite=True)  # overwrite writes it anew, atomically
    check_fingerprint(path, {"n": 10}, overwrite=False)
