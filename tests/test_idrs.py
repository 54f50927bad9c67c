"""IDRS (input-dependent RS with a Lipschitz sigma network): certificate, sigma network, bounds, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from conftest import TINY_TRAIN, read_rows, run_cli
from halfspace import Halfspace, OneHotHalfspace, certify_at_distances, point_at_distance
from rsbench.certify.certificates import gaussian_l2_radius, idrs_radius
from rsbench.certify.lipschitz import check_lemma3, idrs_lipschitz
from rsbench.certify.sampling import PointSampler
from rsbench.certify.soft import normalized, soft_bounds
from rsbench.errors import RsbenchError
from rsbench.methods import make_method
from rsbench.models.sigma_net import SigmaNet, SigmaTrainConfig, power_iteration_norm, spectral_bound, verify_lipschitz
from rsbench.training.sigma_net import smoothed_radius, train_sigma_net

D, P_MIN = 784, 1e-7
SHAPE = (1, 28, 28)


# -- Theorem 3 / eq. (5) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.25, 0.65, 1.0])
def test_lip_zero_gives_standard_soft_rs(sigma: float) -> None:
    L = idrs_lipschitz(sigma, 0.0, D, P_MIN)
    assert L == pytest.approx(1.0 / sigma, rel=1e-12)
    for p_lower, p_upper in [(0.9, 0.05), (0.6, 0.3), (0.999, 1e-4)]:
        assert idrs_radius(p_lower, p_upper, L) == pytest.approx(gaussian_l2_radius(p_lower, sigma, p_upper))


def test_radius_shrinks_with_lipschitz_sigma() -> None:
    radii = [idrs_radius(0.99, 0.005, idrs_lipschitz(0.65, lip, D, P_MIN)) for lip in (0.0, 0.1, 0.5)]
    assert radii[0] > radii[1] > radii[2] > 0
    assert idrs_lipschitz(0.65, 0.5, D, P_MIN) == pytest.approx(34.71, abs=0.01)  # DESIGN.md magnitude
    # the paper (after Lemma 3): "when d = 784, R is monotone decreasing on [p_min, 1 - p_min] with p_min = 1e-10";
    # checked numerically here too, where L grows to 35.33
    check_lemma3(D, 1e-10)
    assert idrs_lipschitz(0.65, 0.5, D, 1e-10) == pytest.approx(35.333, abs=0.001)


def _known_sigma_net(direction: torch.Tensor, lip: float, offset: float, sigma_min: float = 0.65) -> SigmaNet:
    """sigma(x) = lip * ReLU(<u, x> + offset) + sigma_min with ||u|| = 1: Lipschitz constant exactly lip."""
    net = SigmaNet(D, hidden=4, sigma_min=sigma_min, lip=lip, init_bias=0.0)
    with torch.no_grad():
        net.v1.zero_()
        net.v1[0] = direction.flatten() / direction.norm()
        net.b1.zero_()
        net.b1[0] = offset
        net.v2.zero_()
        net.v2[0, 0] = lip
    return net


@pytest.mark.parametrize("lip", [0.0, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("toward", ["normal", "random"])
def test_exact_probability_radius_never_exceeds_halfspace_distance(lip: float, toward: str) -> None:
    """Halfspace base classifier, sigma(x) of known Lipschitz constant, exact smoothed scores.

    Under N(0, sigma(x)^2 I) the normalised smoothed score of class 1 is (1 - 2 p_min) Phi(m / (sigma(x) ||w||))
    + p_min, and the smoothed classifier's true robust radius is the distance to the hyperplane.
    """
    g = torch.Generator().manual_seed(3)
    h = Halfspace(torch.randn(SHAPE, generator=g), b=0.2)
    u = h.w.view(SHAPE) if toward == "normal" else torch.randn(SHAPE, generator=g)
    net = _known_sigma_net(u, lip, offset=0.3)
    assert spectral_bound(net) <= lip + 1e-9
    L = idrs_lipschitz(0.65, lip, D, P_MIN)
    positive = 0
    for k, distance in enumerate(np.geomspace(1e-3, 3.0, 25)):
        x = point_at_distance(h, SHAPE, float(distance), seed=k)
        sigma = float(net(x.unsqueeze(0)).detach()[0])
        p1 = normalized(float(norm.cdf(float(h.margin(x.unsqueeze(0))[0]) / (sigma * float(h.w.norm())))), P_MIN, 2)
        radius = idrs_radius(p1, 1.0 - p1, L)
        assert radius <= h.distance(x) + 1e-9, (lip, distance, radius)
        positive += radius > 0
        if lip == 0.0 and distance < 0.5:  # standard RS is tight for a halfspace (p_min aside)
            assert radius == pytest.approx(h.distance(x), rel=1e-3)
    assert positive >= 20


# -- the sigma network ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("lip", [0.05, 0.5, 3.0])
def test_spectral_bound_holds_for_random_nets(lip: float) -> None:
    torch.manual_seed(0)
    net = SigmaNet(D, hidden=50, sigma_min=0.65, lip=lip)
    with torch.no_grad():
        net.v1.mul_(40.0)  # far above the cap: normalisation must bring it back
        net.v2.mul_(40.0)
    bound = verify_lipschitz(net)
    assert bound <= lip
    w1, w2 = net.weights()
    assert power_iteration_norm(w1) == pytest.approx(float(torch.linalg.matrix_norm(w1.detach().double(), 2)), rel=1e-6)
    x = torch.rand(500, D)
    y = x + 0.05 * torch.randn(500, D)
    with torch.no_grad():
        ratio = (net(x) - net(y)).abs() / (x - y).norm(dim=1)
        assert float(ratio.max()) <= lip * (1 + 1e-5)
        assert float(net(x).min()) >= np.float32(0.65)


def test_spectral_bound_holds_after_training_and_training_raises_the_radius() -> None:
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, 2))
    with torch.no_grad():  # a halfspace on the mean pixel: robust far from 0.5
        base[1].weight.zero_()
        base[1].weight[1] = 40.0 / D
        base[1].bias.copy_(torch.tensor([0.0, -20.0]))
    x = torch.rand(256, *SHAPE)
    x[:128] *= 0.5  # class 0 images: mean pixel 0.25
    x[128:] = 0.5 + 0.5 * x[128:]
    y = (x.flatten(1).mean(1) > 0.5).long()
    from rsbench.data.registry import TensorImages

    ds = TensorImages(x, y)
    net = SigmaNet(D, hidden=16, sigma_min=0.1, lip=2.0)
    L = idrs_lipschitz(0.1, 2.0, D, 1e-4)
    before = train_sigma_net(net, base, ds, SigmaTrainConfig(epochs=1, lr=1e-9, samples=4), L, 1e-4, 2, 0,
                             torch.device("cpu"))
    after = train_sigma_net(net, base, ds, SigmaTrainConfig(epochs=8, lr=3e-2, samples=4, batch_size=64), L,
                            1e-4, 2, 0, torch.device("cpu"))
    assert after["mean_radius"] > before["mean_radius"]
    assert verify_lipschitz(net) <= 2.0


def test_smoothed_radius_matches_the_certificate() -> None:
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64)
    r = smoothed_radius(scores, torch.tensor([0, 0]), 2.0)
    assert float(r[0]) == pytest.approx(idrs_radius(0.7, 0.2, 2.0))
    assert float(r[1]) == pytest.approx((norm.ppf(0.1) - norm.ppf(0.6)) / 4.0)  # signed: misclassified < 0


# -- bounds ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bounds", ["bernstein", "hoeffding"])
@pytest.mark.parametrize("concentration", [0.5, 5.0, 200.0])
def test_soft_bounds_cover_the_true_scores(bounds: str, concentration: float) -> None:
    """Scores from a Dirichlet with known mean: the joint bound fails in at most alpha of the trials."""
    rng = np.random.default_rng(7)
    mean = np.array([0.8, 0.15, 0.05])
    n, alpha, trials = 200, 0.1, 3000
    failures = 0
    for _ in range(trials):
        s = rng.dirichlet(concentration * mean, size=n)
        lower, upper = soft_bounds(s.sum(0), (s ** 2).sum(0), n, 0, alpha, bounds)
        failures += lower > mean[0] or upper < mean[1]
    assert failures / trials <= alpha


def test_point_bounds_are_not_bounds() -> None:
    """The paper's plug-in estimates undercover (the reason they are labelled sound=False)."""
    rng = np.random.default_rng(7)
    mean = np.array([0.8, 0.15, 0.05])
    fails = sum(soft_bounds(s.sum(0), (s ** 2).sum(0), 200, 0, 0.1, "point", 1e-7)[0] > normalized(0.8, 1e-7, 3)
                for s in (rng.dirichlet(5 * mean, size=200) for _ in range(500)))
    assert fails / 500 > 0.3


def test_bernstein_is_tighter_than_hoeffding_for_confident_scores() -> None:
    s = np.full((1000, 3), [0.998, 0.001, 0.001])
    hb = soft_bounds(s.sum(0), (s ** 2).sum(0), 1000, 0, 0.001, "hoeffding")
    eb = soft_bounds(s.sum(0), (s ** 2).sum(0), 1000, 0, 0.001, "bernstein")
    assert eb[0] > hb[0] and eb[1] < hb[1]


# -- Monte Carlo certification ----------------------------------------------------------------------------------

def _prepared_idrs(net: SigmaNet, **params) -> object:
    method = make_method({"name": "idrs", "sigma_min": net.sigma_min, "lip_sigma": net.lip, "hidden": net.hidden,
                          **params})
    method.net, method.L = net, idrs_lipschitz(net.sigma_min, net.lip, D, method.p_min)
    return method


@pytest.mark.parametrize("bounds", ["bernstein", "hoeffding"])
def test_monte_carlo_idrs_never_exceeds_truth(bounds: str) -> None:
    g = torch.Generator().manual_seed(5)
    h = OneHotHalfspace(torch.randn(SHAPE, generator=g), b=0.1)
    method = _prepared_idrs(_known_sigma_net(h.w.view(SHAPE), 0.5, 0.0, sigma_min=0.3), bounds=bounds)
    assert method.sound
    certified = 0
    for distance, _, row in certify_at_distances(method, h, SHAPE, [0.005, 0.02, 0.05, 0.3], 4000, 2000, seed=1):
        assert row["radius"] <= distance and row["sigma"] >= 0.3
        certified += row["radius"] > 0
    assert certified >= 2


def test_idrs_with_constant_sigma_equals_soft_gaussian_row_for_row() -> None:
    g = torch.Generator().manual_seed(2)
    h = Halfspace(torch.randn(SHAPE, generator=g), b=0.1)
    net = _known_sigma_net(h.w.view(SHAPE), 0.0, 0.0, sigma_min=0.5)
    idrs = _prepared_idrs(net, bounds="bernstein", p_min=1e-7)
    gauss = make_method({"name": "gaussian", "sigma": 0.5, "smoothing": "soft", "bounds": "bernstein", "p_min": 1e-7})
    for k, distance in enumerate([0.01, 0.2, 1.0]):
        x = point_at_distance(h, SHAPE, distance, seed=k)
        a = idrs.certify(PointSampler(h, idrs.noise, x, k, 2, 500, seed=4), 100, 2000, 0.001)
        b = gauss.certify(PointSampler(h, gauss.noise, x, k, 2, 500, seed=4), 100, 2000, 0.001)
        assert a["predict"] == b["predict"] and a["p_lower"] == b["p_lower"]
        assert a["radius"] == pytest.approx(b["radius"], rel=1e-12)


@pytest.mark.parametrize("bad,pattern", [
    ({"bounds": "chernoff"}, "valid values: bernstein, hoeffding, point"),
    ({"p_min": 0.0}, "p_min=0.0 is invalid"),
    ({"sigma_min": 0}, "sigma_min"),
    ({"train": {"epochs": 1, "steps": 3}}, "unknown keys"),
])
def test_bad_parameters(bad, pattern) -> None:
    with pytest.raises(RsbenchError, match=pattern):
        make_method({"name": "idrs", **bad})


# -- end to end -------------------------------------------------------------------------------------------------

IDRS_TINY = [*TINY_TRAIN, "method=idrs", "method.train.max_examples=256", "method.train.samples=4",
             "train.attack={name:pgd_l2,eps:1.0,steps:2,step_size:0.5}",
             "certify.n0=20", "certify.n=400", "certify.skip=50", "certify.max=300", "certify.batch=400"]


def test_cli_idrs_end_to_end(tmp_path, capsys) -> None:
    run_cli(["certify", *IDRS_TINY], tmp_path)
    csv = next(tmp_path.glob("certify/*/certify.csv"))
    rows = read_rows(csv)
    assert len(rows) == 6 and rows["sound"].all() and (rows["sigma"] >= 0.65).all()
    assert rows["L"].iloc[0] == pytest.approx(34.71, abs=0.01)
    assert (rows["radius"] <= 2 * norm.ppf(1 - 1e-7) / (2 * 34.71) + 1e-9).all()
    nets = list(tmp_path.glob("models/*sigma_net*/sigma_net.pt"))
    assert len(nets) == 1 and (nets[0].parent / "train_log.csv").exists()
    # the default base model is trained for the noise the method samples (sigma >= sigma_min), not at sigma 0
    bases = [p for p in tmp_path.glob("models/*/model.pt") if "sigma_net" not in str(p)]
    assert len(bases) == 1 and "-sigma0.65-" in bases[0].parent.name, bases
    # bounds=point reuses the cached sigma network and is labelled unsound
    run_cli(["certify", *IDRS_TINY, "method.bounds=point"], tmp_path)
    point = next(df for df in map(read_rows, tmp_path.glob("certify/*/certify.csv")) if df["bounds"][0] == "point")
    assert not point["sound"].any() and (point["radius"] >= rows["radius"]).all()
    assert len(list(tmp_path.glob("models/*sigma_net*/sigma_net.pt"))) == 1
    # the same command twice gives the same rows
    run_cli(["certify", *IDRS_TINY, "certify.overwrite=true"], tmp_path)
    assert read_rows(csv).equals(rows)
    # a soft Gaussian baseline, then the paper's figure from all three runs
    base = [a for a in IDRS_TINY if not a.startswith("method")]
    run_cli(["certify", *base, "method=gaussian", "method.smoothing=soft", "method.p_min=1e-7"], tmp_path)
    soft = next(df for df in map(read_rows, tmp_path.glob("certify/*/certify.csv")) if df["method"][0] == "gaussian")
    assert soft["sound"].all() and (soft["bounds"] == "bernstein").all() and soft["count"].isna().all()
    run_cli(["plot", "figure=idrs_fig1", f"runs=[{tmp_path / 'certify'}]", f"hydra.run.dir={tmp_path / 'fig'}"],
            tmp_path)
    assert (tmp_path / "fig" / "idrs_fig1.png").exists() and (tmp_path / "fig" / "idrs_fig1.pdf").exists()


def test_cli_idrs_bad_sigma_net(tmp_path, tiny_model, capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli(["certify", *IDRS_TINY, f"method.sigma_net={tmp_path / 'nope.pt'}"], tmp_path)
    assert "method.sigma_net=" in (err := capsys.readouterr().err) and "does not exist" in err
    with pytest.raises(SystemExit):  # a base-classifier checkpoint is not a sigma network
        run_cli(["certify", *IDRS_TINY, f"method.sigma_net={tiny_model}"], tmp_path)
    assert "is not a sigma network" in capsys.readouterr().err
    assert math.isfinite(idrs_lipschitz(0.65, 0.5, D, P_MIN))
