"""Learning the IDRS sigma network: maximise the mean Theorem 3 radius on training data (paper Sec. 4).

    max_theta  (1/N) sum_i r(x_i, y_i) - lambda sum_j ||W_j||_2,
    r(x, y) = 1/(2L) (Phi^-1(gbar_y(x)) - Phi^-1(max_{i != y} gbar_i(x))),

with gbar estimated by Monte Carlo soft smoothing through the reparameterisation eps = sigma_theta(x) z,
z ~ N(0, I), so gradients reach theta; the base classifier is frozen. (The paper writes the objective
with the sign of the regulariser flipped inside a sup of the negated radius; this is the same problem.)
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from rsbench.models.registry import frozen_parameters
from rsbench.models.sigma_net import SigmaNet, SigmaTrainConfig
from rsbench.training.loop import batches, epoch_log

LOG_COLUMNS = ("epoch", "loss", "mean_radius", "mean_sigma", "time_s")


def smoothed_radius(scores: torch.Tensor, y: torch.Tensor, lipschitz: float) -> torch.Tensor:
    """Theorem 3's signed radius per example from smoothed scores (B, C) in (0, 1), differentiably."""
    top = scores.gather(1, y.view(-1, 1)).squeeze(1)
    runner = scores.masked_fill(nn.functional.one_hot(y, scores.shape[1]).bool(), -1.0).amax(dim=1)
    return (torch.special.ndtri(top) - torch.special.ndtri(runner)) / (2.0 * lipschitz)


def train_sigma_net(net: SigmaNet, base: nn.Module, train_ds: Any, tc: SigmaTrainConfig, lipschitz: float,
                    p_min: float, num_classes: int, seed: int, device: torch.device,
                    log_path: str | None = None) -> dict[str, float]:
    """Fit ``net`` (in place) to maximise the mean certified radius of the frozen ``base``; log per epoch."""
    torch.manual_seed(seed)
    net.to(device).train()
    base.eval()
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    order_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    n_train = min(len(train_ds), tc.max_examples or len(train_ds))
    metrics: dict[str, float] = {}
    steps = tc.epochs * -(-n_train // tc.batch_size)
    with frozen_parameters(base), epoch_log(log_path, LOG_COLUMNS, steps, "train sigma net") as (log, bar):
        for epoch in range(1, tc.epochs + 1):
            t0 = time.perf_counter()
            loss_sum = radius_sum = sigma_sum = seen = 0.0
            for x, y in batches(train_ds, tc.batch_size, True, order_gen, limit=tc.max_examples):
                x, y = x.to(device), y.to(device)
                weights, norms = net.normalized()  # one SVD per layer and step, shared by sigma and the regulariser
                sigma = net(x, weights)
                z = torch.randn((len(x), tc.samples, *x.shape[1:]), generator=noise_gen, device=device)
                noisy = x.unsqueeze(1) + sigma.view(-1, 1, *([1] * (x.dim() - 1))) * z
                probs = torch.softmax(base(noisy.flatten(0, 1)), dim=1).view(len(x), tc.samples, -1)
                scores = (1.0 - num_classes * p_min) * probs.mean(dim=1) + p_min
                radius = smoothed_radius(scores, y, lipschitz)
                loss = -radius.mean() + tc.spectral_reg * sum(norms)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                radius_sum += float(radius.detach().sum())
                sigma_sum += float(sigma.detach().sum())
                seen += len(y)
                bar.update(1)
                bar.set_postfix(epoch=epoch, radius=f"{radius_sum / seen:.4f}", sigma=f"{sigma_sum / seen:.3f}",
                                refresh=False)
            metrics = {"epoch": epoch, "loss": loss_sum / seen, "mean_radius": radius_sum / seen,
                       "mean_sigma": sigma_sum / seen, "time_s": time.perf_counter() - t0}
            if log:
                log.append(metrics)
    net.eval()
    return metrics


# what methods build from a model and the training layer trains for them (MethodContext.trainers)
TRAINERS = {"sigma_net": train_sigma_net}
