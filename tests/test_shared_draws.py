"""`method.certificate=[a, b, ...]`: one run per certificate, sharing the Monte Carlo draws that coincide.

The rows must be those of separate runs (timing aside), each sub-run must be a complete run of its own (resume,
verify, plot), and the draws must really be shared: MoG's paper and pooled certificates bound the same pooled
count, so the second of them draws nothing; componentwise shares only the selection draws.
"""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from rsbench import cli
from rsbench.certify import sampling
from tests.conftest import REPO, TINY_CERTIFY, read_rows, run_cli

K = 3
MOG = ["method=mog", f"K={K}", "method.sigma_min=0.12", "method.sigma_max=0.25"]
CERTIFICATES = ("paper", "pooled", "componentwise")


@pytest.fixture
def count_draws(monkeypatch):
    """The number of Monte Carlo count calls (class_counts_many) made so far."""
    calls = []
    real = sampling.class_counts_many

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "class_counts_many", counting)
    return calls


def _run(out, *extra, model):
    run_cli(["certify", *TINY_CERTIFY, *MOG, *extra, f"model.checkpoint={model}", f"hydra.run.dir={out}"],
            out.parent)


def test_shared_rows_equal_separate_runs_and_draws_are_shared(tmp_path, tiny_model, count_draws) -> None:
    shared = tmp_path / "shared"
    _run(shared, f"method.certificate=[{','.join(CERTIFICATES)}]", model=tiny_model)
    n_points = len(pd.read_csv(shared / "certificate-paper" / "certify.csv"))
    assert n_points >= 3
    # paper: selection + estimation; pooled: nothing new; componentwise: one estimation call per component
    assert len(count_draws) == n_points * (2 + K)
    del count_draws[:]
    for cert in CERTIFICATES:
        alone = tmp_path / cert
        _run(alone, f"method.certificate={cert}", model=tiny_model)
        sub = shared / f"certificate-{cert}"
        pd.testing.assert_frame_equal(read_rows(sub / "certify.csv"), read_rows(alone / "certify.csv"))
        assert (json.loads((sub / "certify.fingerprint.json").read_text())
                == json.loads((alone / "certify.fingerprint.json").read_text()))
    assert len(count_draws) == n_points * (2 + 2 + 1 + K)  # separate runs draw everything again
    df = pd.read_csv(shared / "certificate-pooled" / "certify.csv")
    assert (df["certificate"] == "pooled").all() and df["sound"].all()
    assert not pd.read_csv(shared / "certificate-paper" / "certify.csv")["sound"].any()


def test_shared_run_resumes_and_each_sub_run_stands_alone(tmp_path, tiny_model, count_draws, capsys) -> None:
    shared = tmp_path / "shared"
    _run(shared, "method.certificate=[paper,pooled]", model=tiny_model)
    before = {c: (shared / f"certificate-{c}" / "certify.csv").read_bytes() for c in ("paper", "pooled")}
    (shared / "certificate-pooled" / "certify.csv").unlink()  # as if killed before the second certificate
    (shared / "certificate-pooled" / "certify.fingerprint.json").unlink()
    del count_draws[:]
    capsys.readouterr()
    _run(shared, "method.certificate=[paper,pooled]", model=tiny_model)
    out = capsys.readouterr().out
    assert "paper (unsound)" in out and "NOT sound" in out.strip().splitlines()[-1]
    n_points = before["paper"].count(b"\n") - 1
    assert len(count_draws) == 2 * n_points  # paper resumed with nothing to do; pooled drew its points again
    for c in ("paper", "pooled"):
        pd.testing.assert_frame_equal(read_rows(shared / f"certificate-{c}" / "certify.csv"),
                                      pd.read_csv(pd.io.common.BytesIO(before[c])).drop(columns=["time_s"]))
    # a sub-run is a run of its own: re-run alone with its single certificate, it resumes (nothing to add) ...
    del count_draws[:]
    _run(shared / "certificate-pooled", "method.certificate=pooled", model=tiny_model)
    assert count_draws == []
    # ... and verify and plot read it through its saved config
    with pytest.raises(SystemExit) as verified:
        cli.main(["verify", str(shared / "certificate-pooled" / "certify.csv")])
    assert verified.value.code == 0
    cli.main(["plot", f"runs=[{shared}]", f"hydra.run.dir={tmp_path / 'plot'}"])
    table = pd.read_csv(tmp_path / "plot" / "certified_accuracy.csv")
    assert sorted(table["run"]) == sorted([f"mog K={K} σ∈[0.12,0.25] paper, mnist5k (unsound)",
                                           f"mog K={K} σ∈[0.12,0.25] pooled, mnist5k"])
    # scripts/publish.py results publishes it run by run, each with its own saved config
    spec = importlib.util.spec_from_file_location("publish", REPO / "scripts" / "publish.py")
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    publish.ROOT = tmp_path / "published"
    publish.publish_results(shared, "mnist/mog")
    for c in ("paper", "pooled"):
        dest = tmp_path / "published" / "results" / "mnist" / "mog" / f"certificate-{c}"
        assert (dest / "certify.csv").read_bytes() == (shared / f"certificate-{c}" / "certify.csv").read_bytes()
        assert f"certificate: {c}" in (dest / ".hydra" / "config.yaml").read_text()


@pytest.mark.parametrize("value, message", [("[pooled,bogus]", "valid values: paper, componentwise, pooled"),
                                            ("[pooled,pooled]", "distinct")])
def test_bad_certificate_list_is_one_line_and_makes_no_run(tmp_path, tiny_model, value, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        _run(tmp_path / "bad", f"method.certificate={value}", model=tiny_model)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list((tmp_path / "bad").glob("certificate-*"))
