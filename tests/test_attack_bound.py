"""The smoothed-classifier attack from the CLI (predict.attack) bounds the certified curve from above."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import CERTIFY_SETTINGS, run_cli
from rsbench.analysis.attack_bound import attack_bound
from rsbench.errors import RsbenchError
from rsbench.verify import main as verify_main

POINTS = ["predict.skip=50", "predict.max=1000", "predict.n=300", "predict.alpha=0.01", "predict.batch=128"]


def test_no_certified_accuracy_lies_above_the_attacked_one(tmp_path, tiny_model) -> None:
    model = f"model.checkpoint={tiny_model}"
    base = ["model=mlp", "model.params.widths=[64]", model]
    run_cli(["certify", *base, *CERTIFY_SETTINGS, "certify.max=1000", f"hydra.run.dir={tmp_path / 'cert'}"], tmp_path)
    attacked = {}
    for eps in (0.25, 0.5):
        run = tmp_path / f"attack-{eps}"
        run_cli(["predict", *base, *POINTS, f"predict.attack={{name: smoothed_pgd, eps: {eps}, m: 8, steps: 10}}",
                 f"hydra.run.dir={run}"], tmp_path)
        attacked[eps] = pd.read_csv(run / "predict.csv")
        assert (attacked[eps]["attack_norm"] <= eps + 1e-5).all() and (attacked[eps]["attack_eps"] == eps).all()
    certified = pd.read_csv(tmp_path / "cert" / "certify.csv")
    table = attack_bound(certified, attacked)
    assert list(table["points"]) == [20, 20] and not table["violated"].any(), table
    assert (table["certified"] <= table["attacked"]).all(), table  # here it holds point estimate for estimate
    # the check can fail: radii inflated past what the attack shows are flagged
    inflated = certified.assign(radius=10.0, correct=1)
    assert attack_bound(inflated, attacked)["violated"].iloc[-1], attack_bound(inflated, attacked)
    # and `rsbench verify --attacked` runs the check from the CLI: clean passes, inflated fails
    runs = [str(tmp_path / f"attack-{eps}") for eps in attacked]
    with pytest.raises(SystemExit) as ok:
        verify_main([str(tmp_path / "cert"), "--attacked", *runs])
    assert ok.value.code == 0
    inflated.to_csv(tmp_path / "inflated.csv", index=False)
    with pytest.raises(SystemExit) as bad:
        verify_main([str(tmp_path / "inflated.csv"), "--attacked", *runs])
    assert bad.value.code == 1


def test_verify_attacked_refuses_runs_of_another_classifier_and_duplicate_eps(tmp_path, tiny_model, capsys) -> None:
    base = ["model=mlp", "model.params.widths=[64]", f"model.checkpoint={tiny_model}"]
    run_cli(["certify", *base, *CERTIFY_SETTINGS, "certify.max=300", f"hydra.run.dir={tmp_path / 'cert'}"], tmp_path)
    attack = "predict.attack={name: smoothed_pgd, eps: 0.25, m: 2, steps: 2}"
    points = [*POINTS[:1], "predict.max=300", *POINTS[2:]]
    for name, extra in (("same", []), ("again", ["seed=1"]), ("sigma", ["sigma=0.5"]), ("fewer", ["predict.max=100"])):
        run_cli(["predict", *base, *points, attack, *extra, f"hydra.run.dir={tmp_path / name}"], tmp_path)
    with pytest.raises(SystemExit) as ok:
        verify_main([str(tmp_path / "cert"), "--attacked", str(tmp_path / "same")])
    assert ok.value.code == 0, capsys.readouterr()
    for other, why in (("sigma", "differ in method"), ("fewer", "points (6 certified, 2 attacked")):
        with pytest.raises(SystemExit) as bad:
            verify_main([str(tmp_path / "cert"), "--attacked", str(tmp_path / other)])
        out = capsys.readouterr().out
        assert bad.value.code == 1 and why in out, out
    with pytest.raises(SystemExit) as twice:
        verify_main([str(tmp_path / "cert"), "--attacked", str(tmp_path / "same"), str(tmp_path / "again")])
    err = capsys.readouterr().err
    assert twice.value.code == 2 and "both attack at eps 0.25" in err, err


def test_an_attack_without_its_radius_is_refused(tmp_path, tiny_model) -> None:
    with pytest.raises(SystemExit):
        run_cli(["predict", "model=mlp", "model.params.widths=[64]", f"model.checkpoint={tiny_model}", *POINTS,
                 "predict.attack={name: smoothed_pgd}", f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path)
    with pytest.raises(RsbenchError, match="no test point in common"):
        attack_bound(pd.DataFrame({"idx": [1], "correct": [1], "radius": [1.0]}),
                     {0.5: pd.DataFrame({"idx": [2], "correct": [1]})})
