"""The Python API (rsbench.smooth): the rows the CLI writes, bit for bit, for every method; its bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import rsbench
from conftest import TINY_CERTIFY, TINY_TRAIN, read_rows, run_cli
from halfspace import Halfspace
from rsbench.data import load_split
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import load_model
from rsbench.models.registry import full_params
from rsbench.results import ResultsCSV

SETTINGS = {"n0": 20, "n": 300, "alpha": 0.01}  # CERTIFY_SETTINGS' Monte Carlo settings
INDICES = list(range(0, 300, 50))                # CERTIFY_SETTINGS' points: every 50th below 300


def _tiny(tiny_model):
    _, spec = load_split("mnist5k", "test")
    model, _ = load_model(tiny_model, "mlp", full_params("mlp", {"widths": [64]}), spec)
    return model


def _points():
    ds, _ = load_split("mnist5k", "test")
    return [ds[i][0] for i in INDICES], [int(ds[i][1]) for i in INDICES]


def _as_csv(rows, like: Path, tmp: Path) -> pd.DataFrame:
    """API rows written as the CLI writes rows (rsbench.results), in the columns of the CLI's CSV ``like``."""
    columns = pd.read_csv(like, nrows=0).columns
    with ResultsCSV(tmp, columns) as out:
        out.open()
        for row in rows:
            out.append(row)
    return read_rows(tmp)


@pytest.mark.parametrize("method,cli,options", [
    ("gaussian", ["sigma=0.5"], {"sigma": 0.5}),
    ("mog", ["method=mog", "K=3"], {"K": 3}),
    ("laplace", ["method=laplace"], {"scale": 0.25}),
    ("gaussian", ["method.smoothing=soft", "method.p_min=1e-7"], {"smoothing": "soft", "p_min": 1e-7}),
])
def test_api_rows_equal_cli_rows(tmp_path, tiny_model, method, cli, options) -> None:
    run_cli(["certify", *TINY_CERTIFY, *cli, f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / 'r'}"],
            tmp_path)
    expected = read_rows(tmp_path / "r" / "certify.csv")
    xs, labels = _points()
    smoothed = rsbench.smooth(_tiny(tiny_model), method, num_classes=10, batch=128, **options)
    rows = smoothed.certify_batch(xs, labels, **SETTINGS, seed=0, indices=INDICES)
    pd.testing.assert_frame_equal(_as_csv(rows, tmp_path / "r" / "certify.csv", tmp_path / "api.csv"), expected)
    one = smoothed.certify(xs[1], **SETTINGS, idx=INDICES[1], label=labels[1])  # one point alone: the same row
    pd.testing.assert_frame_equal(_as_csv([one], tmp_path / "r" / "certify.csv", tmp_path / "one.csv"),
                                  expected.iloc[[1]].reset_index(drop=True))


def test_api_predict_rows_equal_cli_rows(tmp_path, tiny_model) -> None:
    run_cli(["predict", *TINY_TRAIN, "predict.n=300", "predict.alpha=0.01", "predict.skip=50", "predict.max=300",
             f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / 'p'}"], tmp_path)
    expected = read_rows(tmp_path / "p" / "predict.csv")
    xs, labels = _points()
    rows = rsbench.smooth(_tiny(tiny_model), num_classes=10).predict_batch(xs, labels, n=300, alpha=0.01,
                                                                           indices=INDICES)
    pd.testing.assert_frame_equal(_as_csv(rows, tmp_path / "p" / "predict.csv", tmp_path / "api.csv"), expected)


def test_readme_example_runs() -> None:
    """The README's example, verbatim; its row is Cohen's CERTIFY: the radius is sigma Phi^-1(p_lower), p_lower the
    one-sided Clopper-Pearson bound of its count, and the batch form gives one row per point with its label."""
    import re

    from scipy.stats import norm

    from rsbench.certify.bounds import clopper_pearson_lower

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)[1]
    torch.manual_seed(0)
    scope: dict = {}
    exec(code, scope)  # noqa: S102  the README's own text
    row, rows = scope["row"], scope["rows"]
    assert row["n"] == 10_000 and row["sound"] is True
    assert row["p_lower"] == pytest.approx(clopper_pearson_lower(row["count"], 10_000, 0.001))
    if row["predict"] >= 0:
        assert row["radius"] == pytest.approx(0.25 * norm.ppf(row["p_lower"]))
    else:
        assert row["radius"] == 0.0 and row["p_lower"] <= 0.5
    assert [r["idx"] for r in rows] == [0, 1, 2, 3] and [r["label"] for r in rows] == [0, 1, 2, 3]


def test_certificates_through_the_api_never_exceed_the_halfspace_truth() -> None:
    """A halfspace through the image centre; points at distance b inside [0, 1]: no sound radius exceeds b."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3 * 8 * 8, generator=g)
    x0 = torch.full((3, 8, 8), 0.5)
    model = Halfspace(w, -float(w @ x0.flatten()))
    for b in (0.05, 0.2, 0.6):
        x = (x0.flatten() + b * w / w.norm()).view(3, 8, 8)
        assert model.distance(x) == pytest.approx(b, rel=1e-5)
        for method, opts in (("gaussian", {"sigma": 0.25}), ("mog", {"K": 4, "sigma_min": 0.2, "sigma_max": 0.4})):
            row = rsbench.smooth(model, method, num_classes=2, **opts).certify(x, n0=100, n=20000, alpha=0.001, idx=7)
            assert row["sound"] and row["predict"] in (1, -1) and row["radius"] <= b * (1 + 1e-5), (method, b, row)
            assert row["predict"] == 1 or b < 0.1  # far points are certified
        paper = rsbench.smooth(model, "mog", num_classes=2, K=4, sigma_min=0.2, sigma_max=0.4, certificate="paper")
        assert paper.certify(x, n0=100, n=2000, alpha=0.001)["sound"] is False  # Theorem 2 under a mixture


def test_bad_input_is_one_clear_error(tiny_model) -> None:
    model = _tiny(tiny_model)
    with pytest.raises(RsbenchError, match="valid values: .*gaussian"):
        rsbench.smooth(model, "gausian", num_classes=10)
    with pytest.raises(RsbenchError, match="no option 'sigm'; did you mean 'sigma'"):
        rsbench.smooth(model, "gaussian", num_classes=10, sigm=0.5)
    smoothed = rsbench.smooth(model, num_classes=10)
    x, _ = _points()
    with pytest.raises(RsbenchError, match=r"not \[0, 1\]"):
        smoothed.certify((x[0] - 0.5) / 0.3, n=100)
    with pytest.raises(RsbenchError, match="non-finite"):
        smoothed.certify(torch.full_like(x[0], float("nan")), n=100)
    with pytest.raises(RsbenchError, match="repeat"):
        smoothed.certify_batch(x[:2], n=100, indices=[3, 3])
    with pytest.raises(RsbenchError, match="train_data"):
        rsbench.smooth(model, "dsmooth", num_classes=10, input_shape=(1, 28, 28))
    with pytest.raises(RsbenchError, match="1-Lipschitz"):
        rsbench.smooth(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), "sra", num_classes=10,
                       input_shape=(1, 28, 28))


def _linear(outputs: int = 10, shape: tuple[int, ...] = (1, 28, 28)) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(shape).prod()), outputs))


def _conv() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))


X = torch.rand(1, 28, 28)


@pytest.mark.parametrize("make,call,pattern", [
    # the input: one point to certify(), a batch to certify_batch(), float32
    (lambda: rsbench.smooth(_linear(), num_classes=10, input_shape=(1, 28, 28)),
     lambda s: s.certify(X.unsqueeze(0), n=100), r"x has shape \(1, 1, 28, 28\), a batch; certify\(\) takes one"),
    (lambda: rsbench.smooth(_linear(), num_classes=10),
     lambda s: s.certify(X.unsqueeze(0), n=100), r"a batch of one; certify\(\) takes one point"),
    (lambda: rsbench.smooth(_linear(), num_classes=10, input_shape=(1, 28, 28)),
     lambda s: s.certify_batch(X, n=100), r"xs has shape \(1, 28, 28\), one point; the batch calls take"),
    (lambda: rsbench.smooth(_conv(), num_classes=10),
     lambda s: s.certify_batch(X, n=100), r"the model fails on one point of shape \(28, 28\)"),
    (lambda: rsbench.smooth(_linear(), num_classes=10),
     lambda s: s.certify(X.half(), n=100), r"expected a float32 tensor .* of dtype torch.float16; convert it"),
    (lambda: rsbench.smooth(_linear(), num_classes=10),
     lambda s: s.certify_batch([X, torch.rand(1, 28, 27)], n=100), r"point 1: shape \(1, 28, 27\), but points"),
    # the model: float32 weights on a real device, logits of width num_classes
    (lambda: rsbench.smooth(_linear().double(), num_classes=10), None, r"model has float64 weights.*model.float\(\)"),
    (lambda: rsbench.smooth(_linear().bfloat16(), num_classes=10), None, r"model has bfloat16 weights"),
    (lambda: rsbench.smooth(_linear().to("meta"), num_classes=10), None, r"model is on the meta device"),
    (lambda: rsbench.smooth(None, num_classes=10), None, r"model must be a torch.nn.Module .*got NoneType"),
    (lambda: rsbench.smooth(_linear(12), num_classes=10),
     lambda s: s.certify(X, n=100), r"the model gives \(1, 12\) for a batch of one point, but num_classes=10"),
    (lambda: rsbench.smooth(_linear(5), num_classes=10), lambda s: s.certify(X, n=100), r"gives \(1, 5\)"),
    (lambda: rsbench.smooth(_linear(7), num_classes=10), lambda s: s.predict(X, n=100), r"gives \(1, 7\)"),
    (lambda: rsbench.smooth(torch.nn.Flatten(0), num_classes=10),  # a model without parameters, 1-D output
     lambda s: s.certify(X, n=100), r"the model gives \(784,\) for a batch of one point"),
    # num_classes and labels
    (lambda: rsbench.smooth(_linear(), num_classes=0), None, r"num_classes=0 is invalid: it must be an integer >= 2"),
    (lambda: rsbench.smooth(_linear(), num_classes=-3), None, r"num_classes=-3 is invalid"),
    (lambda: rsbench.smooth(_linear(), num_classes="10"), None, r"num_classes='10' is invalid"),
    (lambda: rsbench.smooth(_linear(), num_classes=10),
     lambda s: s.certify(X, n=100, label=99), r"labels\[0\]=99 is not a class of num_classes=10"),
    (lambda: rsbench.smooth(_linear(), num_classes=10),
     lambda s: s.certify_batch([X, X], labels=[1, 2.5], n=100), r"labels\[1\]=2.5 is invalid"),
])
def test_api_bad_input_is_one_rsbench_error(make, call, pattern) -> None:
    """Each misuse of rsbench.smooth and its calls: one RsbenchError naming the argument and what was expected."""
    with pytest.raises(RsbenchError, match=pattern):
        smoothed = make()
        if call is not None:
            call(smoothed)


def test_a_parameterless_model_of_the_right_width_certifies() -> None:
    """A fixed function (no parameters, e.g. a halfspace) is a model like any other."""
    w = torch.ones(4)
    row = rsbench.smooth(Halfspace(w, 0.0), num_classes=2).certify(torch.full((4,), 0.9), n0=50, n=500)
    assert row["predict"] == 1 and row["radius"] > 0


@pytest.mark.parametrize("method,cli,options,artefact", [
    ("dsmooth", ["method=dsmooth", "method.n_images=40", "method.attack.queries=3", "method.attack_batch=20",
                 "method.k=3"], {"n_images": 40, "k": 3, "attack_batch": 20,
                                 "attack": {"name": "square_fgsm", "eps_inf": 0.5, "queries": 3, "eps_l2": 0.5}},
     "covariance"),
    ("idrs", ["method=idrs", "method.hidden=8", "method.train.max_examples=64", "method.train.samples=1"],
     {"hidden": 8, "train": {"max_examples": 64, "samples": 1}}, "sigma_net"),
])
def test_methods_with_artefacts_through_the_api(tmp_path, tiny_model, method, cli, options, artefact) -> None:
    """DSmooth and IDRS build their covariance / sigma network from the model and the training data: given the
    CLI's artefact, the API gives the CLI's rows bit for bit; given train_data, it builds (and caches) its own."""
    import json

    run_cli(["certify", *TINY_CERTIFY, *cli, f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / 'r'}"],
            tmp_path)
    expected = read_rows(tmp_path / "r" / "certify.csv")
    path = json.loads((tmp_path / "r" / "certify.fingerprint.json").read_text())["artefacts"][artefact]
    xs, labels = _points()
    model = _tiny(tiny_model)
    given = rsbench.smooth(model, method, dataset="mnist5k", batch=128, **{**options, artefact: path})
    rows = given.certify_batch(xs, labels, **SETTINGS, indices=INDICES)
    pd.testing.assert_frame_equal(_as_csv(rows, tmp_path / "r" / "certify.csv", tmp_path / "api.csv"), expected)
    train, _ = load_split("mnist5k", "train")
    built = rsbench.smooth(model, method, num_classes=10, input_shape=(1, 28, 28), train_data=train,
                           outputs_dir=str(tmp_path / "api_out"), **options)
    row = built.certify(xs[0], **SETTINGS, label=labels[0])
    assert row["sound"] and row["n"] == 300 and any((tmp_path / "api_out" / "models").iterdir())


def test_sra_through_the_api(tmp_path) -> None:
    """SRA's margin certificate of a 1-Lipschitz network: the API row equals the CLI's."""
    from test_sra import SRA_TINY

    sra = [a.replace("train.max_examples=1000", "train.max_examples=128") for a in SRA_TINY]
    run_cli(["train", *sra, f"hydra.run.dir={tmp_path / 't'}"], tmp_path)
    ckpt = tmp_path / "t" / "model.pt"
    run_cli(["certify", "method=sra", *sra, "certify.max=200", "certify.skip=50", "method.mc_draws=50",
             f"model.checkpoint={ckpt}", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    expected = read_rows(tmp_path / "r" / "certify.csv")
    _, spec = load_split("mnist5k", "test")
    model, _ = load_model(ckpt, "sra_mlp", full_params("sra_mlp", {"iters": 8, "widths": [64, 64]}), spec)
    ds, _ = load_split("mnist5k", "test")
    idx = list(expected["idx"])
    smoothed = rsbench.smooth(model, "sra", num_classes=10, input_shape=(1, 28, 28), mc_draws=50)
    rows = smoothed.certify_batch([ds[i][0] for i in idx], [int(ds[i][1]) for i in idx], n0=100,
                                  n=int(expected["n"].iloc[0]) if "n" in expected else 1000, indices=idx)
    pd.testing.assert_frame_equal(_as_csv(rows, tmp_path / "r" / "certify.csv", tmp_path / "api.csv"), expected)


def test_the_api_and_the_stages_reach_the_sampler_through_one_constructor(tmp_path, tiny_model, monkeypatch) -> None:
    """One road from config to row: rsbench.smooth, rsbench certify, predict and robustness's RS certificates all
    build their smoothed classifier with Smoothed.from_config."""
    from rsbench.smoothed import Smoothed

    calls = []
    original = Smoothed.from_config.__func__

    def spy(cls, *args, **kwargs):
        calls.append(args[1] if isinstance(args[1], dict) else args[1].name)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Smoothed, "from_config", classmethod(spy))
    rsbench.smooth(_tiny(tiny_model), "mog", num_classes=10, K=2)
    run_cli(["certify", *TINY_CERTIFY, "certify.max=60", f"model.checkpoint={tiny_model}",
             f"hydra.run.dir={tmp_path / 'c'}"], tmp_path)
    run_cli(["predict", *TINY_TRAIN, "predict.n=100", "predict.max=60", "predict.skip=50",
             f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / 'p'}"], tmp_path)
    assert calls == ["mog", "gaussian", "gaussian"], calls
