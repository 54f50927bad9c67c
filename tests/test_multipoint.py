"""Several test points per forward batch (certify.points_per_batch): the same rows as one point at a time."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import torch

from conftest import CERTIFY_SETTINGS, TINY_CERTIFY, run_cli
from rsbench.certify.multipoint import ForwardPool
from rsbench.errors import RsbenchError
from rsbench.stages.points import check_points_per_batch, points_per_batch

CASES = {
    "gaussian": [],
    "gaussian_full_forward": ["certify.pushforward=off"],
    "gaussian_soft": ["method.smoothing=soft"],
    "gaussian_sequential": ["certify.sequential=true", "certify.max_radius=0.1", "certify.seq_n_min=100"],
    "laplace": ["method=laplace"],
    "mog_pooled": ["method=mog", "K=3"],
    "mog_componentwise": ["method=mog", "K=3", "method.certificate=componentwise"],
    "gaussian_attacked": ["certify.attack={name: square_fgsm, eps_inf: 0.3, queries: 5, eps_l2: 0.3}"],
}


def _rows(tmp_path, name: str, model, *extra: str) -> pd.DataFrame:
    run_cli(["certify", *TINY_CERTIFY, f"model.checkpoint={model}", *extra, f"hydra.run.dir={tmp_path / name}"],
            tmp_path)
    return pd.read_csv(tmp_path / name / "certify.csv").drop(columns="time_s")


@pytest.mark.parametrize("case", list(CASES))
def test_rows_identical_across_points_per_batch(tmp_path, tiny_model, case) -> None:
    """fp32 hard-vote rows are bit for bit those of one point at a time, for k dividing the points or not,
    and for another forward batch size. Soft scores are sums of softmax outputs, whose last bits depend on
    the batch the matrix products ran in (as for certify.batch alone): equal to rounding."""
    one = _rows(tmp_path, "k1", tiny_model, *CASES[case], "certify.points_per_batch=1")
    assert len(one) == 6
    for k, batch in ((3, 128), (4, 128), (6, 50)):
        many = _rows(tmp_path, f"k{k}", tiny_model, *CASES[case], f"certify.points_per_batch={k}",
                     f"certify.batch={batch}")
        soft = case == "gaussian_soft"
        pd.testing.assert_frame_equal(one, many, check_exact=not soft, rtol=1e-12, atol=1e-15)


def test_forwards_are_pooled_and_failures_reach_every_thread() -> None:
    pool = ForwardPool()
    calls: list[int] = []

    def double(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return 2 * x

    f = pool.wrap(double)

    def evaluate(x: torch.Tensor, idx: int) -> dict:
        out = [f(x[j:j + 2]) for j in range(0, len(x), 2)]  # five forwards of two rows each
        return {"predict": idx, "sum": float(torch.cat(out).sum())}

    items = [(torch.full((10,), float(i)), i) for i in range(4)]
    rows = pool.evaluate(items, evaluate)
    assert [r["sum"] for r in rows] == [20.0 * i for i in range(4)]
    assert calls == [8] * 5  # the four points' rows went through together
    assert f(torch.ones(3)).tolist() == [2.0] * 3  # outside the pool: a plain call

    def failing(x: torch.Tensor, idx: int) -> dict:
        if idx == 2:
            raise RsbenchError("point 2 is broken")
        return evaluate(x, idx)

    done = threading.Event()

    def run() -> None:
        with pytest.raises(RsbenchError, match="point 2 is broken"):
            pool.evaluate(items, failing)
        done.set()

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=600)  # a deadlock detector: generous, so a busy machine never trips it
    assert done.is_set(), "a failing point left the others waiting"

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("the model is broken")

    g = pool.wrap(broken)
    with pytest.raises(ValueError, match="the model is broken"):
        pool.evaluate(items, lambda x, idx: {"predict": float(g(x).sum())})


def test_points_per_batch_values() -> None:
    assert points_per_batch("auto") == 1  # measured no faster on CPU or GPU (docs/PERFORMANCE.md)
    assert points_per_batch(8) == 8
    for bad in (0, -1, "many", 2.5, True):
        with pytest.raises(RsbenchError, match="valid values: auto or an integer >= 1"):
            check_points_per_batch(bad)


def test_cnn_rows_identical_across_points_per_batch(tmp_path) -> None:
    """A small CNN (channels-last convolutions, no pushforward): the same rows for k = 1 and k = 4."""
    cnn = ["model=cnn", "model.params.channels=[4,8]", "train.epochs=1", "train.max_examples=400"]
    run_cli(["train", *cnn, f"hydra.run.dir={tmp_path / 'model'}"], tmp_path)
    rows = []
    for k in (1, 4):
        run_cli(["certify", *cnn, *CERTIFY_SETTINGS, f"model.checkpoint={tmp_path / 'model' / 'model.pt'}",
                 f"certify.points_per_batch={k}", f"hydra.run.dir={tmp_path / f'k{k}'}"], tmp_path)
        rows.append(pd.read_csv(tmp_path / f"k{k}" / "certify.csv").drop(columns="time_s"))
    pd.testing.assert_frame_equal(*rows, check_exact=True)
