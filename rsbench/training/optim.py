"""The SRA authors' Adam (ThomRC/sra, optimizers/updater_adam.py; smoothed_robustness_analysis.md App. C.5).

Three departures from Kingma & Ba's Adam, all read from the authors' code:

1. **Global gradient normalisation.** Each step uses g / (||g|| + 1e-4), ||g|| the l2 norm of the whole
   network's gradient (every parameter together), so each step's gradient has norm about 1.
2. **Moment warm-up.** For the first ``warmup`` steps only m and v are updated (App. C.5: "starting the weight
   updates only after 2000 steps of updating the adaptive parameters m and v").
3. **Bias correction restarted after the warm-up.** At the k-th weight update (k = 1, 2, ...) the step is
   lr * c_k * m / sqrt(v + 1e-15) with c_k = sqrt(1 - beta2^k) / (1 - beta1^k) (:func:`step_multiplier`),
   though m and v have already run for ``warmup`` steps. So the first updates move at a fraction of lr
   (c_1 = 0.32, c_10 = 0.15, c_100 = 0.31, c_1000 = 0.80 for the usual betas) and the rate ramps to lr.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def step_multiplier(k: int, beta1: float = 0.9, beta2: float = 0.999) -> float:
    """c_k = sqrt(1 - beta2^k) / (1 - beta1^k): the learning-rate factor of the k-th update after warm-up
    (0 for k <= 0: no update during the warm-up)."""
    return 0.0 if k <= 0 else math.sqrt(1.0 - beta2 ** k) / (1.0 - beta1 ** k)


class SraAdam(torch.optim.Optimizer):
    """Adam on globally normalised gradients with a moment warm-up and a restarted bias correction (above)."""

    def __init__(self, params: Iterable[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 warmup: int = 0, grad_eps: float = 1e-4, eps: float = 1e-15) -> None:
        if warmup < 0:
            raise ValueError(f"warmup={warmup} must be >= 0")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "warmup": int(warmup), "grad_eps": grad_eps,
                                  "eps": eps})
        self.state["global"] = {"step": 0}  # steps taken, warm-up included (one count for every parameter)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None if closure is None else closure()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in grads]))
        self.state["global"]["step"] += 1
        t = self.state["global"]["step"]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            scale = 1.0 / (norm + group["grad_eps"])
            mult = step_multiplier(t - group["warmup"], b1, b2)
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                g = p.grad * scale
                st["m"].lerp_(g, 1 - b1)                # m += (1 - beta1)(g - m)
                st["v"].lerp_(g * g, 1 - b2)            # v += (1 - beta2)(g^2 - v)
                if mult > 0:
                    p.sub_(group["lr"] * mult * st["m"] / (st["v"] + group["eps"]).sqrt())
        return loss
