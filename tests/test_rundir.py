"""A run dir's records: written once the stage accepts the dir, never by a run that is refused there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import CERTIFY_SETTINGS, TINY_CERTIFY, TINY_TRAIN, run_cli


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but the stage lock's (which names its last holder)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_a_refused_run_leaves_a_finished_runs_records_byte_for_byte(tmp_path) -> None:
    """Another configuration into a finished run's dir is refused before anything is written or trained: the
    dir's .hydra records, log, fingerprint and rows are unchanged and no default model is trained."""
    run = tmp_path / "X"
    run_cli(["certify", *TINY_CERTIFY, f"hydra.run.dir={run}"], tmp_path)
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "certify.log", "certify.csv",
            "certify.fingerprint.json"} <= set(snapshot(run))
    assert "certify.n=300" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    before, models = snapshot(run), sorted((tmp_path / "models").iterdir())
    with pytest.raises(SystemExit) as exit_:  # sigma 0.5: another method config and another default model
        run_cli(["certify", *TINY_CERTIFY, "sigma=0.5", f"hydra.run.dir={run}"], tmp_path)
    assert exit_.value.code == 2
    assert snapshot(run) == before, "the refused run rewrote the finished run's records"
    assert sorted((tmp_path / "models").iterdir()) == models, "a default model was trained before the refusal"


def test_the_same_command_resumes_and_appends_to_its_log(tmp_path, tiny_model) -> None:
    run = tmp_path / "X"
    args = ["certify", *CERTIFY_SETTINGS, *TINY_TRAIN, f"model.checkpoint={tiny_model}", f"hydra.run.dir={run}"]
    run_cli([*args, "certify.max=100"], tmp_path)
    assert len((run / "certify.csv").read_text().splitlines()) == 3
    before = snapshot(run)
    with pytest.raises(SystemExit):  # another plan (certify.max) is refused, the records stay
        run_cli([*args, "certify.max=200", "certify.skip=25"], tmp_path)
    assert snapshot(run) == before


def test_each_certificate_of_a_shared_pass_records_the_command_that_reruns_it_alone(tmp_path, tiny_model) -> None:
    run = tmp_path / "shared"
    args = ["certify", *CERTIFY_SETTINGS, *TINY_TRAIN, "method=mog", "K=2", "certify.max=100",
            f"model.checkpoint={tiny_model}"]
    run_cli([*args, "method.certificate=[paper,pooled]", f"hydra.run.dir={run}"], tmp_path)
    for name in ("paper", "pooled"):
        sub = run / f"certificate-{name}"
        overrides = yaml.safe_load((sub / ".hydra" / "overrides.yaml").read_text())
        assert f"method.certificate={name}" in overrides and sum("method.certificate" in o for o in overrides) == 1
        assert yaml.safe_load((sub / ".hydra" / "config.yaml").read_text())["method"]["certificate"] == name
        shared = yaml.safe_load((sub / ".hydra" / "shared_pass.yaml").read_text())["command"]
        assert "method.certificate=[paper,pooled]" in shared and "K=2" in shared
        alone = tmp_path / f"alone-{name}"
        run_cli(["certify", *overrides, f"hydra.run.dir={alone}"], tmp_path)
        assert _rows(alone) == _rows(sub), f"certificate {name} alone gives other rows than in the shared pass"


def _rows(run: Path) -> list[list[str]]:
    return pd.read_csv(run / "certify.csv").drop(columns=["time_s"]).astype(str).values.tolist()


def test_resuming_refuses_an_edited_row_naming_its_line(tmp_path, tiny_model, capsys) -> None:
    """Rows already present are recomputed before they count as done: an edited radius is not kept."""
    run = tmp_path / "X"
    args = ["certify", *CERTIFY_SETTINGS, *TINY_TRAIN, f"model.checkpoint={tiny_model}", f"hydra.run.dir={run}"]
    run_cli([*args, "certify.max=100"], tmp_path)
    csv = run / "certify.csv"
    lines = csv.read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    cells = lines[2].strip().split(",")
    cells[header.index("radius")] = "9.99"
    lines[2] = ",".join(cells) + "\n"
    csv.write_text("".join(lines))
    before = snapshot(run)
    with pytest.raises(SystemExit) as exit_:
        run_cli(args, tmp_path)  # the same command, now with more points to do
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "cannot resume" in err and "line 3" in err and "radius=9.99" in err, err
    assert snapshot(run) == before
