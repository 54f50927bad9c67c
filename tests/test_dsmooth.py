"""DSmooth and its baselines: low-rank covariance, anisotropic noise, Mahalanobis and l1 certificates, attacks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import laplace, norm

from conftest import REPO, TINY_TRAIN, read_rows, run_cli
from halfspace import Halfspace, certify_at_distances, point_at_distance
from rsbench.attacks import run_attack
from rsbench.certify.certificates import ellipsoid_l2_ball, gaussian_l2_radius, laplace_l1_radius, mahalanobis_radius
from rsbench.certify.sampling import PointSampler
from rsbench.errors import RsbenchError
from rsbench.methods import make_method
from rsbench.noise.lowrank import AnisotropicGaussianNoise, LowRankCovariance

SHAPE = (1, 6, 6)
D = 36


def _cov(k: int = 3, floor: float = 0.05, seed: int = 0) -> LowRankCovariance:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, k, generator=g, dtype=torch.float64))
    return LowRankCovariance(q.float(), torch.tensor([2.0, 0.7, 0.3][:k]), floor, {})


def _dense(cov: LowRankCovariance) -> torch.Tensor:
    u = cov.basis.double()
    return u @ torch.diag(cov.eigvals.double()) @ u.T + cov.floor * torch.eye(cov.d, dtype=torch.float64)


# -- the covariance and its sampler -----------------------------------------------------------------------------

def test_logdet_mahalanobis_and_min_eig_match_the_dense_matrix() -> None:
    cov = _cov()
    dense = _dense(cov)
    assert cov.logdet() == pytest.approx(float(torch.logdet(dense)), rel=1e-9)
    delta = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    v = delta.flatten(1).double()
    exact = torch.sqrt(torch.einsum("bi,ij,bj->b", v, torch.linalg.inv(dense), v))
    assert torch.allclose(cov.mahalanobis(delta), exact, rtol=1e-9)
    assert cov.min_eig() == pytest.approx(float(torch.linalg.eigvalsh(dense).min()), rel=1e-9)


def test_sampler_has_the_right_covariance() -> None:
    """Sample covariance of 200,000 draws vs Sigma: every entry within 5 standard errors."""
    cov = _cov()
    n = 200_000
    out = torch.empty(n, D)
    cov.draw(out, torch.Generator().manual_seed(0))
    x = out.double()
    emp = x.T @ x / n
    dense = _dense(cov)
    se = torch.sqrt((dense.square() + torch.outer(dense.diag(), dense.diag())) / n)  # Wishart entry std
    assert float(((emp - dense).abs() / se).max()) < 5.0
    assert float(x.mean(0).abs().max()) < 5 * math.sqrt(float(dense.diag().max()) / n)


def test_noise_scale_normalises_the_determinant() -> None:
    cov = _cov()
    noise = AnisotropicGaussianNoise(cov, 0.5)
    # covariance of the noise sigma^2 Sigma / det^(1/d) has determinant sigma^(2d)
    logdet_noise = 2 * D * math.log(noise.scale) + cov.logdet()
    assert logdet_noise == pytest.approx(2 * D * math.log(0.5), rel=1e-9)


def test_pca_recovers_a_planted_subspace() -> None:
    g = torch.Generator().manual_seed(3)
    direction = torch.randn(D, generator=g)
    direction /= direction.norm()
    deltas = torch.randn(4000, 1, generator=g) * 3.0 * direction + 0.1 * torch.randn(4000, D, generator=g)
    cov = LowRankCovariance.from_perturbations(deltas.view(-1, *SHAPE), 1, 0.01)
    assert abs(float(cov.basis[:, 0] @ direction)) > 0.999
    assert float(cov.eigvals[0]) == pytest.approx(9.0 + 0.01, rel=0.1)
    with pytest.raises(RsbenchError, match="exceeds the rank"):
        LowRankCovariance.from_perturbations(deltas[:3].view(-1, *SHAPE), 5, 0.01)


def test_covariance_file_round_trip_and_corruption(tmp_path) -> None:
    cov = _cov()
    path = cov.save(tmp_path / "covariance.pt")
    back = LowRankCovariance.load(path)
    assert torch.equal(back.basis, cov.basis) and back.floor == cov.floor
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(RsbenchError, match="corrupted"):
        LowRankCovariance.load(path)


# -- certificates against closed-form truth ---------------------------------------------------------------------

def _dsmooth(cov: LowRankCovariance, sigma: float) -> object:
    method = make_method({"name": "dsmooth", "sigma": sigma, "k": max(cov.k, 1)})
    method.cov, method._noise = cov, AnisotropicGaussianNoise(cov, sigma)
    return method


def test_mahalanobis_radius_from_exact_probability_equals_the_whitened_distance() -> None:
    """Halfspace w.x + b: under N(0, C) P(class 1) = Phi(m / sqrt(w^T C w)); the true Mahalanobis radius is
    |m| / sqrt(w^T Sigma w). Lemma 4.5 from the exact probability gives exactly that; Alg. 1's radius without
    the det factor does not (det Sigma != 1 here)."""
    cov, sigma = _cov(), 0.4
    noise = AnisotropicGaussianNoise(cov, sigma)
    dense = _dense(cov)
    h = Halfspace(torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)), b=0.1)
    w = h.w.double()
    for k, distance in enumerate([0.01, 0.1, 0.5]):
        x = point_at_distance(h, SHAPE, distance, seed=k)
        m = float(h.margin(x.unsqueeze(0))[0])
        p = float(norm.cdf(m / (noise.scale * math.sqrt(float(w @ dense @ w)))))
        true = m / math.sqrt(float(w @ dense @ w))
        assert mahalanobis_radius(p, sigma, cov.logdet(), D) == pytest.approx(true, rel=1e-6)
        factor = math.exp(cov.logdet() / (2 * D))  # Alg. 1's sigma Phi^-1(pA) is off by det(Sigma)^(1/(2d))
        assert abs(factor - 1) > 0.5 and gaussian_l2_radius(p, sigma) == pytest.approx(true * factor, rel=1e-6)
        # the l2 ball inside the ellipsoid never exceeds the true l2 distance
        assert ellipsoid_l2_ball(true, cov.min_eig()) <= h.distance(x) + 1e-9


def test_monte_carlo_dsmooth_never_exceeds_truth() -> None:
    cov, sigma = _cov(), 0.4
    method = _dsmooth(cov, sigma)
    dense = _dense(cov)
    h = Halfspace(torch.randn(SHAPE, generator=torch.Generator().manual_seed(6)), b=0.1)
    w = h.w.double()
    certified = 0
    for _, x, row in certify_at_distances(method, h, SHAPE, [0.02, 0.1, 0.3, 1.0], 20_000, 5000, seed=2):
        true = float(h.margin(x.unsqueeze(0))[0]) / math.sqrt(float(w @ dense @ w))
        assert row["radius"] <= true and row["l2_radius"] <= h.distance(x)
        certified += row["radius"] > 0.5 * true
    assert certified >= 2


def test_isotropic_covariance_reproduces_gaussian_rows() -> None:
    s = 0.7
    cov = LowRankCovariance(torch.zeros(D, 0), torch.zeros(0), s * s, {})
    dsm = _dsmooth(cov, 0.25)
    gauss = make_method({"name": "gaussian", "sigma": 0.25})
    h = Halfspace(torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)), b=0.2)
    for k, distance in enumerate([0.05, 0.3, 1.0]):
        x = point_at_distance(h, SHAPE, distance, seed=k)
        a = dsm.certify(PointSampler(h, dsm.noise, x, k, 2, 1000, seed=3), 100, 5000, 0.001)
        b = gauss.certify(PointSampler(h, gauss.noise, x, k, 2, 1000, seed=3), 100, 5000, 0.001)
        assert (a["predict"], a["count"]) == (b["predict"], b["count"])
        assert a["l2_radius"] == pytest.approx(b["radius"], rel=1e-9)  # Mahalanobis radius x s = l2 radius
        assert a["radius"] == pytest.approx(b["radius"] / s, rel=1e-9)


@pytest.mark.parametrize("scale", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("distance", [0.01, 0.2, 1.0])
def test_laplace_radius_is_exact_for_an_axis_aligned_halfspace(scale: float, distance: float) -> None:
    """f = 1[x_0 > c]: with Laplace(0, b) noise P(class 1) = 1 - F(-t) for the point at l1 distance t."""
    p = float(laplace.sf(-distance, scale=scale))
    assert laplace_l1_radius(p, scale) == pytest.approx(distance, rel=1e-9)
    # Teng et al.'s two terms, with a runner-up bound
    assert laplace_l1_radius(0.7, 1.0, 0.2) == pytest.approx(max(0.5 * math.log(3.5), -math.log(0.5)))
    assert laplace_l1_radius(0.5, 1.0) == 0.0


def test_monte_carlo_laplace_never_exceeds_the_l1_distance() -> None:
    method = make_method({"name": "laplace", "scale": 0.3})
    h = Halfspace(torch.randn(SHAPE, generator=torch.Generator().manual_seed(8)), b=0.0)
    certified = 0
    for _, x, row in certify_at_distances(method, h, SHAPE, [0.01, 0.1, 0.4], 20_000, 5000, seed=1):
        l1_distance = abs(float(h.margin(x.unsqueeze(0))[0])) / float(h.w.abs().max())
        assert row["radius"] <= l1_distance and row["norm"] == "l1"
        certified += row["radius"] > 0
    assert certified >= 2


def test_laplace_noise_distribution() -> None:
    noise = make_method({"name": "laplace", "scale": 0.5}).noise
    x = torch.zeros(1, 100, 100)
    eps = noise.sample(x, 20, torch.Generator().manual_seed(0)).flatten().double().numpy()
    assert np.isfinite(eps).all()
    assert abs(eps.std() - 0.5 * math.sqrt(2)) < 0.01 and abs(np.median(np.abs(eps)) - 0.5 * math.log(2)) < 0.01


# -- attacks ----------------------------------------------------------------------------------------------------

def test_square_fgsm_budget() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, 3))
    x = torch.rand(8, *SHAPE)
    y = model(x).argmax(1)
    sq = run_attack({"name": "square_fgsm", "eps_inf": 0.1, "queries": 20, "eps_l2": 0.0}, model, x, y)
    assert float((sq - x).abs().max()) <= 0.1 + 1e-6 and float(sq.min()) >= 0 and float(sq.max()) <= 1
    both = run_attack({"name": "square_fgsm", "eps_inf": 0.1, "queries": 20, "eps_l2": 0.3}, model, x, y)
    assert float((both - sq).flatten(1).norm(dim=1).max()) <= 0.3 + 1e-5
    with pytest.raises(RsbenchError, match="bad parameters"):
        run_attack({"name": "square_fgsm", "radius": 1}, model, x, y)


# -- end to end -------------------------------------------------------------------------------------------------

DSMOOTH_TINY = [*TINY_TRAIN, "method.n_images=60", "method.attack.queries=5", "method.attack_batch=30",
                "certify.n0=20", "certify.n=300", "certify.skip=50", "certify.max=300", "certify.batch=300"]


def test_cli_dsmooth_end_to_end(tmp_path) -> None:
    attack = "certify.attack={name:square_fgsm,eps_inf:0.3,queries:5,eps_l2:0.3}"
    run_cli(["certify", "method=dsmooth", *DSMOOTH_TINY, attack], tmp_path)
    rows = read_rows(next(tmp_path.glob("certify/*/certify.csv")))
    assert len(rows) == 6 and (rows["norm"] == "mahalanobis").all() and rows["sound"].all()
    assert {"attack_norm", "attack_inside", "l2_radius"} <= set(rows.columns)
    assert ((rows["attack_inside"] == 1) <= (rows["attack_norm"] <= rows["radius"])).all()
    assert len(list(tmp_path.glob("models/*covariance*/covariance.pt"))) == 1
    # a second k reuses the cached attack perturbations
    run_cli(["certify", "method=dsmooth", "method.k=3", *DSMOOTH_TINY], tmp_path)
    assert len(list(tmp_path.glob("models/*perturbations*/perturbations.pt"))) == 1
    assert len(list(tmp_path.glob("models/*covariance*/covariance.pt"))) == 2
    run_cli(["certify", "method=laplace", *[a for a in DSMOOTH_TINY if not a.startswith("method")]], tmp_path)
    assert any((read_rows(p)["norm"] == "l1").all() for p in tmp_path.glob("certify/*/certify.csv"))


def test_cli_dsmooth_bad_covariance(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli(["certify", "method=dsmooth", *DSMOOTH_TINY, f"method.covariance={tmp_path / 'none.pt'}"], tmp_path)
    assert "does not exist" in capsys.readouterr().err
    _cov().save(tmp_path / "small.pt")  # d = 36, not MNIST's 784
    with pytest.raises(SystemExit):
        run_cli(["certify", "method=dsmooth", *DSMOOTH_TINY, f"method.covariance={tmp_path / 'small.pt'}"], tmp_path)
    assert "inputs of 36 values" in capsys.readouterr().err


IMAGENET_SCRIPT = r"""
import resource, sys
from pathlib import Path
import numpy as np
from PIL import Image
root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for split in ("train", "val"):
    for c in ("n01", "n02"):
        (root / split / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (256, 300, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
from rsbench import cli
try:
    cli.main(["certify", "dataset=imagenet", f"dataset.data_dir={root}", "model=cnn", "model.params.channels=[4,4]",
              "model.params.hidden=8", "train.epochs=1", "method=dsmooth", "method.k=3", "method.n_images=6",
              "method.attack.queries=2", "method.attack_batch=6", "certify.n0=10", "certify.n=40",
              "certify.batch=40", "certify.skip=3", f"outputs_dir={root / 'out'}"])
except SystemExit as exc:
    if exc.code:
        raise
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_imagenet_path_without_dense_covariance(tmp_path) -> None:
    """A tiny fake ImageFolder (224 x 224 crops, d = 150,528): a dense Sigma alone would need 90 GB."""
    proc = subprocess.run([sys.executable, "-c", IMAGENET_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = float(proc.stdout.split("PEAK_MB")[1].split()[0])
    assert peak < 3000, peak
    rows = read_rows(next((tmp_path / "out" / "certify").glob("*/certify.csv")))
    assert len(rows) == 2 and (rows["norm"] == "mahalanobis").all()
    cov = LowRankCovariance.load(next((tmp_path / "out" / "models").glob("*covariance*/covariance.pt")))
    assert tuple(cov.basis.shape) == (3 * 224 * 224, 3)


def test_fine_tuning_starts_from_the_given_checkpoint(tmp_path, tiny_model) -> None:
    """train.init_checkpoint: DSmooth's fine-tuning on a 50:50 mix of clean and attacked images."""
    from rsbench.models.checkpoint import read_checkpoint

    run_cli(["train", *TINY_TRAIN, f"train.init_checkpoint={tiny_model}", "train.max_examples=64", "train.lr=1e-9",
             "train.attack={name:square_fgsm,eps_inf:0.3,queries:2,eps_l2:0.3,mix:0.5}",
             f"hydra.run.dir={tmp_path / 'ft'}"], tmp_path)
    base, _ = read_checkpoint(tiny_model)
    tuned, meta = read_checkpoint(tmp_path / "ft" / "model.pt")
    assert meta["init_checkpoint"] == str(tiny_model) and meta["train_attack"]["mix"] == 0.5
    moved = max(float((tuned[k] - base[k]).abs().max()) for k in base)
    assert 0 < moved < 1e-6  # it starts from the checkpoint's weights (a tiny lr barely moves them)
