"""certify.compile: the network under torch.compile (inductor, here on CPU) gives the eager rows up to rounding,
is part of the fingerprint, and refuses values other than true / false."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import TINY_CERTIFY, run_cli
from rsbench.errors import RsbenchError


def _certify(tmp_path, name, tiny_model, *extra):
    run_cli(["certify", *TINY_CERTIFY, f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / name}",
             "certify.pushforward=off", *extra], tmp_path)
    return pd.read_csv(tmp_path / name / "certify.csv")


def test_compiled_rows_match_eager_rows(tmp_path, tiny_model) -> None:
    eager = _certify(tmp_path, "eager", tiny_model)
    comp = _certify(tmp_path, "compiled", tiny_model, "certify.compile=true")
    assert len(comp) == len(eager) == 6
    # the same noise through the same weights: only kernel rounding may differ, which can move a count by one
    # on a sample at a decision boundary, never a prediction here
    assert (comp["predict"] == eager["predict"]).all()
    assert (comp["radius"] - eager["radius"]).abs().max() < 0.05
    # and the eager run keeps the pushforward sampler by default, which compile turns off (the columns agree)
    assert list(comp.columns) == list(eager.columns)


def test_compile_is_part_of_the_fingerprint_and_checked(tmp_path, tiny_model, capsys) -> None:
    _certify(tmp_path, "run", tiny_model)
    with pytest.raises((RsbenchError, SystemExit)):
        _certify(tmp_path, "run", tiny_model, "certify.compile=true")  # a compiled run never resumes eager rows
    with pytest.raises((RsbenchError, SystemExit)):
        _certify(tmp_path, "bad", tiny_model, "certify.compile=maybe")
    assert "valid values: true, false" in capsys.readouterr().err
