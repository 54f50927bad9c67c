"""Smoothed Robustness Analysis: 1-Lipschitz layers, moment propagation, margin certificates, losses, stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from conftest import run_cli
from rsbench.analysis.robustness import auc_cr, auc_gn, normalized_noise_accuracy
from rsbench.certify.margin import margin_radius, mscr, smoothed_margin, zhen_radius
from rsbench.data import load_split
from rsbench.errors import RsbenchError
from rsbench.models import build_model
from rsbench.models.orthogonal import (
    BCOPConv2d,
    BjorckLinear,
    InvertibleDownsampling,
    bjorck,
    lipschitz_upper_bound,
    offdiag_mean,
    relu_moments,
)
from rsbench.training.losses import LOSSES, make_loss, output_moments

# -- 1-Lipschitz layers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 128), (128, 128), (128, 40)])
def test_bjorck_output_is_orthogonal(shape) -> None:
    torch.manual_seed(0)
    w = bjorck(torch.randn(*shape), 20)
    small = min(shape)
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
    assert torch.allclose(gram, torch.eye(small), atol=1e-5)
    assert offdiag_mean(w) < 1e-7


def test_bjorck_iteration_count_adapts_to_the_tolerance() -> None:
    torch.manual_seed(0)
    layer = BjorckLinear(100, 50, iters=30)
    with torch.no_grad():
        layer.weight_param.add_(0.05 * torch.randn(50, 100))
    q = layer.adapt_iters()
    assert 1 <= q < 30 and offdiag_mean(layer.weight(q)) <= layer.tol
    assert offdiag_mean(layer.weight(max(q - 2, 1))) > layer.tol or q <= 2


@pytest.mark.parametrize("cin,cout,k", [(8, 8, 3), (8, 8, 4), (16, 16, 2), (12, 8, 4)])
def test_bcop_convolution_is_orthogonal(cin: int, cout: int, k: int) -> None:
    """||conv(x)|| = ||x|| when c_out = c_in; J J^T = I always (uncorrelated outputs under isotropic noise)."""
    torch.manual_seed(1)
    conv = BCOPConv2d(cin, cout, k)
    with torch.no_grad():
        for p in (conv.h, conv.m, conv.n):
            p.add_(0.3 * torch.randn_like(p))  # away from the orthogonal initialisation
    x = torch.randn(6, cin, 8, 8)
    y = conv(x) - conv.bias.view(1, -1, 1, 1)
    if cin == cout:
        assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-4)
    jac = torch.autograd.functional.jacobian(lambda t: conv(t.view(1, cin, 5, 5)).flatten(), torch.zeros(cin * 25))
    cov = jac @ jac.T  # output covariance under N(0, I) input noise
    assert torch.allclose(cov, torch.eye(cov.shape[0]), atol=1e-4)
    assert conv.operator_norm((8, 8)) == pytest.approx(1.0, abs=1e-4)


def test_bcop_refuses_more_outputs_than_inputs() -> None:
    with pytest.raises(ValueError, match="out_channels <= in_channels"):
        BCOPConv2d(3, 8, 3)


def test_invertible_downsampling_is_an_isometry() -> None:
    x = torch.randn(4, 3, 8, 8)
    y = InvertibleDownsampling()(x)
    assert y.shape == (4, 12, 4, 4)
    assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1))
    assert torch.equal(torch.nn.functional.pixel_shuffle(y, 2), x)


@pytest.mark.parametrize("arch,dataset", [("sra_mlp", "mnist5k"), ("sra_cnn", "standin_cifar10")])
def test_whole_networks_are_1_lipschitz(arch: str, dataset: str) -> None:
    torch.manual_seed(0)
    _, spec = load_split(dataset, "test")
    model = build_model(arch, spec, {"iters": 15}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(64, *spec.shape)
    xp = x + 0.1 * torch.randn_like(x)
    with torch.no_grad():
        ratio = (model(x) - model(xp)).norm(dim=1) / (x - xp).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 1.0 + 1e-4
    assert lipschitz_upper_bound(model.net, spec.shape) == pytest.approx(1.0, abs=1e-3)
    assert float(model.std.min()) == 1.0 and float(model.mean.abs().max()) == 0.0  # no normalisation layer


# -- moments and the closed-form smoothed margin ----------------------------------------------------------------

@pytest.mark.parametrize("mean,var", [(0.0, 1.0), (1.5, 0.3), (-2.0, 4.0)])
def test_relu_moments_against_monte_carlo(mean: float, var: float) -> None:
    m, v = relu_moments(torch.tensor([mean]), torch.tensor([var]))
    s = torch.relu(mean + math.sqrt(var) * torch.randn(2_000_000, generator=torch.Generator().manual_seed(0)))
    assert float(m) == pytest.approx(float(s.mean()), abs=4e-3)
    assert float(v) == pytest.approx(float(s.var()), abs=6e-3)


def test_smoothed_margin_eq7_against_monte_carlo_for_independent_normal_outputs() -> None:
    mean = torch.tensor([[2.0, 1.2, 1.0, -0.5]], dtype=torch.float64)
    var = torch.tensor([[0.3, 0.4, 0.2, 0.1]], dtype=torch.float64)
    y = torch.tensor([0])
    g = torch.Generator().manual_seed(0)
    o = mean + var.sqrt() * torch.randn(1_000_000, 4, generator=g, dtype=torch.float64)
    mc = float((torch.maximum(o[:, 1], o[:, 2]) - o[:, 0]).mean())  # eq. 7 keeps the top two incorrect outputs
    assert float(smoothed_margin(mean, var, y)[0]) == pytest.approx(mc, abs=3e-3)


def test_mscr_tends_to_mcr_as_the_noise_vanishes() -> None:
    torch.manual_seed(0)
    _, spec = load_split("mnist5k", "test")
    model = build_model("sra_mlp", spec, {"iters": 15}).eval()
    x = torch.rand(16, *spec.shape)
    y = torch.randint(0, 10, (16,))
    with torch.no_grad():
        mcr_r = margin_radius(model(x), y)
        gaps = [float((mscr(*output_moments(model, x, v), y) - mcr_r).abs().max()) for v in (1e-2, 1e-4, 1e-8)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3


def test_moment_propagation_through_a_trained_style_network_tracks_monte_carlo() -> None:
    torch.manual_seed(0)
    _, spec = load_split("mnist5k", "test")
    model = build_model("sra_mlp", spec, {"iters": 15}).eval()
    x = torch.rand(1, *spec.shape)
    var_x = 0.01
    with torch.no_grad():
        mean, var = output_moments(model, x, var_x)
        samples = model(x + math.sqrt(var_x) * torch.randn(20_000, *spec.shape))
    assert torch.allclose(mean[0], samples.mean(0), atol=3e-3)
    assert torch.allclose(var[0], samples.var(0), rtol=0.15, atol=1e-4)


def test_zhen_radius_is_eq9() -> None:
    mean = torch.tensor([[1.0, 0.2, 0.5]])
    var = torch.tensor([[0.04, 0.01, 0.05]])
    r = zhen_radius(mean, var, torch.tensor([0]), 0.3)
    assert float(r[0]) == pytest.approx(0.3 * 0.5 / math.sqrt(0.09))
    assert float(r[0]) == pytest.approx(0.3 * norm.ppf(norm.cdf(0.5 / math.sqrt(0.09))))


# -- the margin certificate on a linear model ---------------------------------------------------------------------

def test_margin_radius_of_a_1_lipschitz_linear_model_is_the_true_distance() -> None:
    """Two classes with o = (w.x, -w.x)/sqrt(2), ||w|| = 1: the map is 1-Lipschitz and the decision boundary is
    w.x = 0, so the true l2 distance of x to it is |w.x|; eq. (6) gives (2 |w.x| / sqrt 2) / sqrt 2 = |w.x|."""
    torch.manual_seed(0)
    w = torch.randn(20)
    w /= w.norm()
    lin = torch.nn.Linear(20, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([w, -w]) / math.sqrt(2))
    assert float(torch.linalg.matrix_norm(lin.weight.detach(), 2)) == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(50, 20)
    logits = lin(x)
    pred = logits.argmax(1)
    assert torch.allclose(margin_radius(logits, pred), (x @ w).abs(), atol=1e-5)


# -- losses and AUCs ----------------------------------------------------------------------------------------------

def test_losses_by_name_and_parameter_checks() -> None:
    assert set(LOSSES) == {"sce", "sc_sce", "mh", "mcr", "mscr", "zhen"}
    with pytest.raises(RsbenchError, match="takes parameters"):
        make_loss({"name": "mscr", "d": 1.0})
    torch.manual_seed(0)
    _, spec = load_split("mnist5k", "test")
    model = build_model("sra_mlp", spec, {"iters": 10})
    x, y = torch.rand(8, *spec.shape), torch.randint(0, 10, (8,))
    for spec_ in ({"name": "sce"}, {"name": "sc_sce", "var_x": 0.01}, {"name": "mh", "d": 1.0},
                  {"name": "mcr", "d": 1.0}, {"name": "mscr", "d": 1.0, "var_x": 0.01},
                  {"name": "zhen", "d": 10.0, "var_x": 0.16}):
        loss, out = make_loss(spec_)(model, x, y)
        loss.backward()
        assert math.isfinite(float(loss.detach())) and out.shape == (8, 10)


def test_auc_definitions() -> None:
    radius = np.array([0.0, 0.5, 1.0, 1.0])
    correct = np.array([True, True, True, False])
    assert auc_cr(radius, correct, 0.01) == pytest.approx((0.5 + 1.0) / 4, abs=0.01)
    acc = [0.99, 0.9, 0.5, 0.15, 0.11]
    normed = normalized_noise_accuracy(acc)
    assert normed[0] == pytest.approx(0.99) and normed[-1] == pytest.approx(0.0)
    assert np.all(np.diff(normed) <= 0)
    assert auc_gn(acc, 0.2) == pytest.approx(0.1 * np.sum(normed[1:] + normed[:-1]))


# -- end to end -----------------------------------------------------------------------------------------------------

SRA_TINY = ["model=sra_mlp", "model.params.iters=8", "model.params.widths=[64,64]", "train.epochs=1",
            "train.max_examples=1000", "train.lr=0.01", "train.noise_sigma=0",
            "train.loss={name:mscr,d:1.0,var_x:0.01}"]


def test_cli_robustness_and_sra_certify(tmp_path) -> None:
    run_cli(["robustness", *SRA_TINY, "robustness.max=200", "robustness.rs.n=200", "robustness.rs.skip=20",
             "robustness.gn_draws=2", "robustness.mc_draws=20"], tmp_path)
    run_dir = next(tmp_path.glob("robustness/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["lipschitz"] == pytest.approx(1.0, abs=1e-3) and summary["loss"]["name"] == "mscr"
    assert summary["clean_acc"] > 0.3 and summary["auc_gn"] > 0 and summary["mscr_vs_mc_corr"] > 0.9
    assert (run_dir / "robustness.png").exists() and (run_dir / "rs.csv").exists()
    run_cli(["certify", "method=sra", *SRA_TINY, "certify.max=200", "certify.skip=50", "method.mc_draws=50"],
            tmp_path)
    import pandas as pd

    rows = pd.read_csv(next(tmp_path.glob("certify/*/certify.csv")))
    assert rows["sound"].all() and (rows["norm"] == "l2").all() and (rows["radius"] >= 0).all()
    assert np.allclose(rows["radius"][rows["predict"] >= 0], rows["margin"][rows["predict"] >= 0] /
                       (math.sqrt(2) * rows["L"][rows["predict"] >= 0]))


def test_sra_method_refuses_normalised_models(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli(["certify", "method=sra", "model=mlp", "train.epochs=1", "train.max_examples=100",
                 "certify.max=100", "certify.skip=50"], tmp_path)
    assert "without input normalisation" in capsys.readouterr().err


def test_lipschitz_bound_refuses_unknown_layers() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    with pytest.raises(TypeError, match="Conv2d"):
        lipschitz_upper_bound(net, (1, 8, 8))
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    norms = [torch.linalg.matrix_norm(lin[i].weight.detach(), 2) for i in (1, 3)]
    expected = float(norms[0] * norms[1])
    assert lipschitz_upper_bound(lin, (1, 2, 2)) == pytest.approx(expected, rel=1e-5)
