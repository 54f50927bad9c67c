"""The reproduction as a reference: figure declarations (conf/figures/), `rsbench figures`, and the verdict index
of docs/REPRODUCTION.md generated from them and the committed results."""

from __future__ import annotations

import pytest

from conftest import REPO
from rsbench import cli, figures


def test_the_verdict_index_matches_the_committed_results() -> None:
    """The index in docs/REPRODUCTION.md is what the declarations and the committed CSVs give today: an edited
    number, a re-certified run or a changed declaration without `make verdicts` fails here."""
    doc = (REPO / "docs" / "REPRODUCTION.md").read_text()
    block = doc.split(figures.BEGIN, 1)[1].split(figures.END, 1)[0]
    assert block == "\n" + figures.index(figures.load()), "docs/REPRODUCTION.md's verdict index is stale: make verdicts"


def test_every_paper_has_claims_and_every_committed_claim_names_committed_runs() -> None:
    declared = figures.load()
    assert {f.paper for f in declared} == set(figures.PAPERS)
    for fig in declared:
        for run in fig.runs:
            assert figures.committed(run), f"{fig.name}: declared run {run} is not committed"
        for compare in fig.compare:
            assert figures.committed(compare["a"]), f"{fig.name}: {compare['a']}"


def test_a_verdict_follows_the_interval(tmp_path) -> None:
    """holds / fails / not shown / not run, from the paired interval and the expected direction."""
    claim = figures.Claim("x", "p", a="cifar10/cohen/sigma-1.0", b="cifar10/cohen/sigma-0.25", at="r=0")
    assert figures.judge(figures.Claim(**{**claim.__dict__, "expect": "lower"}), "cpu")["verdict"] == "holds"
    assert figures.judge(figures.Claim(**{**claim.__dict__, "expect": "higher"}), "cpu")["verdict"] == "fails"
    assert figures.judge(figures.Claim(**{**claim.__dict__, "expect": "same"}), "cpu")["verdict"] == "fails"
    same = figures.Claim("x", "p", a="cifar10/cohen/sigma-1.0", b="cifar10/cohen/sigma-1.0", at="ACR")
    assert figures.judge(same, "cpu")["verdict"] == "not shown (interval contains 0)"
    assert figures.judge(figures.Claim(**{**same.__dict__, "expect": "same"}), "cpu")["verdict"] == "holds"
    missing = figures.Claim("x", "p", a="nowhere/run", b="cifar10/cohen/sigma-1.0")
    assert figures.judge(missing, "cpu")["verdict"] == "not run"


def test_rsbench_figures_draws_a_declaration_in_one_process(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figures", "--only", "cohen_cifar", "--sample", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert exit_.value.code == 0, out
    assert (tmp_path / "cohen_cifar.png").stat().st_size > 0 and (tmp_path / "cohen_cifar.pdf").exists()
    assert "1 seeded rows each" in out and "every recomputed row agrees" in out
    with pytest.raises(SystemExit) as bad:
        cli.main(["figures", "--only", "nosuch"])
    assert bad.value.code == 2 and "unknown figure" in capsys.readouterr().err
