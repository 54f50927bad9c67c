"""certify.precision: the base model under autocast (bf16 / fp16), rows that say so and do not depend on batching."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import TINY_CERTIFY, read_rows, run_cli
from rsbench.certify.sampling import PRECISIONS, autocast


def _certify(tmp_path, name, tiny_model, *extra):
    run_cli(["certify", *TINY_CERTIFY, f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / name}",
             *extra], tmp_path)
    return tmp_path / name / "certify.csv"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_rows_are_sound_recorded_and_batch_independent(tmp_path, tiny_model, precision) -> None:
    a = _certify(tmp_path, "a", tiny_model, f"certify.precision={precision}", "certify.batch=100")
    b = _certify(tmp_path, "b", tiny_model, f"certify.precision={precision}", "certify.batch=300")
    c = _certify(tmp_path, "c", tiny_model, f"certify.precision={precision}", "certify.batch=auto")
    df = pd.read_csv(a)
    assert (df["precision"] == precision).all() and df["sound"].all()
    pd.testing.assert_frame_equal(read_rows(a), read_rows(b))
    pd.testing.assert_frame_equal(read_rows(a), read_rows(c))
    full = pd.read_csv(_certify(tmp_path, "fp32", tiny_model))
    assert "precision" not in full.columns  # fp32 rows are what they always were
    assert (df["predict"] == full["predict"]).mean() >= 0.8  # the same classifier, up to rounding


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_argmax_under_autocast_does_not_depend_on_the_batch(tiny_model, precision) -> None:
    """The README's caveat, checked: identical inputs give identical classes whatever batch they are in."""
    from rsbench.data import load_split
    from rsbench.models.checkpoint import load_model, read_checkpoint

    _, meta = read_checkpoint(tiny_model)
    model, _ = load_model(tiny_model, meta["arch"], meta["params"], load_split("mnist5k", "test")[1])
    x = torch.rand(600, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), autocast(torch.device("cpu"), PRECISIONS[precision]):
        whole = model(x).argmax(1)
        for size in (1, 7, 100, 256):
            parts = torch.cat([model(x[i:i + size]).argmax(1) for i in range(0, len(x), size)])
            assert torch.equal(parts, whole), size


def test_precision_is_part_of_the_fingerprint_and_checked(tmp_path, tiny_model, capsys) -> None:
    _certify(tmp_path, "run", tiny_model)
    with pytest.raises(SystemExit) as exc:
        _certify(tmp_path, "run", tiny_model, "certify.precision=bf16")
    assert exc.value.code == 2 and "differs in precision" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _certify(tmp_path, "bad", tiny_model, "certify.precision=int8")
    assert exc.value.code == 2 and "valid values: fp32, bf16, fp16" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything was written
