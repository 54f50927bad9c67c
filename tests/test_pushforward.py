"""The linear pushforward sampler draws the same distribution as pushing x + eps through the first layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import class_counts
from rsbench.data.registry import DatasetSpec
from rsbench.models import build_model
from rsbench.noise import GaussianMixtureNoise, GaussianNoise

MNIST = DatasetSpec("m", "mnist", (1, 12, 12), 4, (0.13,), (0.31,))
RGB = DatasetSpec("c", "cifar10", (3, 6, 6), 4, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def _mlp(spec, seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", spec, {"widths": [16]}).eval()


@pytest.mark.parametrize("spec", [MNIST, RGB])
def test_first_layer_output_covariance(spec) -> None:
    model = _mlp(spec)
    pf = LinearPushforward(model)
    x = torch.rand(spec.shape)
    assert torch.allclose(pf.clean_preactivation(x), model.net[1](model.net[0]((x - model.mean) / model.std)))
    # s C u has covariance s^2 A A^T, A = W diag(1/std): compare with the direct first-layer noise
    n, sigma = 200_000, 0.4
    u = torch.randn(n, pf.hidden, generator=torch.Generator().manual_seed(0))
    direct = sigma * torch.randn(n, int(np.prod(spec.shape)), generator=torch.Generator().manual_seed(1))
    w = (model.net[1].weight / pf.std_vec).detach()
    cov_pf = torch.cov((sigma * u @ pf.factor_t).T)
    cov_direct = torch.cov((direct @ w.T).T)
    exact = sigma**2 * w @ w.T
    assert torch.allclose(cov_pf, exact, atol=0.02 * float(exact.diagonal().max()))
    assert torch.allclose(cov_direct, exact, atol=0.02 * float(exact.diagonal().max()))


@pytest.mark.parametrize("noise", [GaussianNoise(0.5), GaussianMixtureNoise((0.2, 0.6, 1.0), (0.5, 0.3, 0.2))])
def test_class_frequencies_match_direct_sampler(noise) -> None:
    model = _mlp(MNIST, seed=3)
    pf = LinearPushforward(model)
    x = torch.rand(MNIST.shape, generator=torch.Generator().manual_seed(2))
    n = 40_000
    direct = class_counts(model, noise, x, n, 4, 1000, seed=0, key=(0,))
    pushed = class_counts(model, noise, x, n, 4, 1000, seed=1, key=(0,), pushforward=pf)
    assert int(pushed.sum()) == n
    table = np.vstack([direct.numpy(), pushed.numpy()])
    table = table[:, table.sum(axis=0) > 0]
    assert chi2_contingency(table).pvalue > 1e-3, table
    # soft scores too: the mean softmax agrees to Monte Carlo precision
    soft_d = class_counts(model, noise, x, n, 4, 1000, 0, (1,), temperature=1.0) / n
    soft_p = class_counts(model, noise, x, n, 4, 1000, 0, (1,), temperature=1.0, pushforward=pf) / n
    assert torch.allclose(soft_d, soft_p, atol=0.01)


def test_pushforward_is_batch_independent_and_applies_only_to_mlps() -> None:
    model = _mlp(MNIST)
    pf = LinearPushforward(model)
    x = torch.rand(MNIST.shape)
    ref = class_counts(model, GaussianNoise(0.3), x, 777, 4, 1000, 0, (5,), pushforward=pf)
    for batch in (1, 64, 300):
        assert torch.equal(class_counts(model, GaussianNoise(0.3), x, 777, 4, batch, 0, (5,), pushforward=pf), ref)
    assert LinearPushforward.applies(model)
    assert not LinearPushforward.applies(build_model("cnn", DatasetSpec("m", "mnist", (1, 28, 28), 10, (0.1,), (0.3,))))
    wide = build_model("mlp", MNIST, {"widths": [400]})  # hidden wider than the input: no saving
    assert not LinearPushforward.applies(wide)
