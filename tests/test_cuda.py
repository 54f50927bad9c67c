"""Every stage and method with device=cuda, end to end on tiny data (skipped without CUDA: CI has no GPU).

A session with a GPU runs it: `python -m pytest -q tests/test_cuda.py`.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import TINY_TRAIN, run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CERT = ["certify.n0=20", "certify.n=300", "certify.alpha=0.01", "certify.skip=50", "certify.max=150",
        "device=cuda"]
SRA = ["model=sra_mlp", "model.params.iters=6", "model.params.widths=[32]", "train.noise_sigma=0", "train.epochs=1",
       "train.max_examples=200"]


@pytest.mark.parametrize("method", [
    ["method=gaussian"], ["method=gaussian", "method.smoothing=soft"],
    ["method=gaussian", "certify.sequential=true", "certify.max_radius=0.2", "certify.seq_n_min=100"],
    ["method=gaussian", "certify.precision=bf16"], ["method=gaussian", "certify.points_per_batch=3"],
    ["method=gaussian", "certify.compile=true", "certify.points_per_batch=3"],
    ["method=mog", "K=3", "method.certificate=componentwise", "certify.points_per_batch=2"],
    ["method=mog", "K=3"], ["method=mog", "K=3", "method.semantics=sum"],
    ["method=mog", "K=3", "certify.sequential=true", "certify.max_radius=0.2", "certify.seq_n_min=100"],
    ["method=laplace"], ["method=dsmooth", "method.n_images=40", "method.attack.queries=2"],
    ["method=idrs", "method.train.max_examples=100"],
    ["method=sra", *SRA],
])
def test_certify_every_method_on_cuda(tmp_path, method) -> None:
    train = [a for a in TINY_TRAIN if not (a.startswith("model") and any(m.startswith("model") for m in method))]
    run_cli(["certify", *method, *train, *CERT, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    rows = pd.read_csv(tmp_path / "run" / "certify.csv")
    assert len(rows) == 3 and (rows["radius"] >= 0).all()


def test_train_predict_and_robustness_on_cuda(tmp_path) -> None:
    run_cli(["train", *TINY_TRAIN, "device=cuda", "train.attack={name: pgd_l2, eps: 0.5, steps: 2, step_size: 0.25}",
             f"hydra.run.dir={tmp_path / 'pgd'}"], tmp_path)
    assert (tmp_path / "pgd" / "model.pt").exists()
    run_cli(["train", *SRA, "device=cuda", "train.loss.name=mscr", "train.loss.d=0.1", "train.loss.var_x=0.01",
             f"hydra.run.dir={tmp_path / 'sra'}"], tmp_path)
    run_cli(["predict", *TINY_TRAIN, "device=cuda", "predict.n=100", "predict.max=100", "predict.skip=50",
             f"hydra.run.dir={tmp_path / 'predict'}"], tmp_path)
    assert len(pd.read_csv(tmp_path / "predict" / "predict.csv")) == 2
    run_cli(["robustness", *SRA, "device=cuda", f"model.checkpoint={tmp_path / 'sra' / 'model.pt'}",
             "robustness.max=100", "robustness.rs.n=100", "robustness.rs.skip=20", "robustness.gn_draws=2",
             "robustness.mc_draws=10", f"hydra.run.dir={tmp_path / 'rob'}"], tmp_path)
    assert (tmp_path / "rob" / "summary.json").exists()



def test_fused_noise_on_cuda() -> None:
    """The one-kernel Gaussian fill on the GPU: the checks tests/test_fused_noise.py runs in the interpreter."""
    from fused_checks import check_counts, check_draws, check_halfspace

    from rsbench.certify import fused_noise

    assert fused_noise.available(torch.empty(10, 3, 4, 4, device="cuda"))
    check_draws(torch.device("cuda"))
    check_counts(torch.device("cuda"))
    check_halfspace(torch.device("cuda"), n=200_000)
