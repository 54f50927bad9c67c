"""Margin certificates of 1-Lipschitz networks (``method=sra``; smoothed_robustness_analysis.md).

Per test point: the base network's prediction and its margin certified radius, eq. (6), -L_M / (sqrt 2 L) with L
the product of the layers' exact operator norms (about 1 for the Björck / BCOP networks; computed, not
assumed) — a sound l2 certificate of the base classifier itself, no sampling. Alongside, the MSCR of eq. (5)
at input noise variance ``var_x``: from the closed form eq. (7) (``mscr``; an approximation that assumes
independent normal outputs, so not a certificate) and from Monte Carlo over ``mc_draws`` noise draws
(``mscr_mc``). The randomized-smoothing radius of the same network is ``method=gaussian``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rsbench.certify.margin import ALPHA_L2, margin_loss, margin_radius, mscr
from rsbench.certify.sampling import PointSampler
from rsbench.certify.seeding import PHASE_ESTIMATE, make_generator
from rsbench.certify.sequential import HARD_VOTES_ONLY
from rsbench.certify.smoothing import ABSTAIN
from rsbench.errors import RsbenchError, check_count, require
from rsbench.methods.base import METHODS, MethodContext
from rsbench.models.orthogonal import check_pixel_space, lipschitz_upper_bound, output_moments
from rsbench.noise.gaussian import GaussianNoise


@METHODS.register("sra")
class MarginCertificate:
    name = "sra"
    columns = ("method", "certificate", "norm", "sound", "L", "margin", "var_x", "mscr", "mscr_mc")
    predict_columns = ("method", "margin")
    pixel_space_model = True  # the Lipschitz bound must hold for pixel-space perturbations

    def __init__(self, var_x: float = 0.01, mc_draws: int = 1000) -> None:
        require(var_x > 0 and math.isfinite(var_x), f"method.var_x={var_x} must be > 0")
        self.var_x = float(var_x)
        self.mc_draws = check_count("method.mc_draws", mc_draws)
        self.L: float | None = None
        self.noise = GaussianNoise(math.sqrt(self.var_x))

    @property
    def train_sigma(self) -> float:
        return 0.0

    def label(self) -> str:
        return "margin CR (eq. 6)"

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        check_pixel_space(ctx.model)
        try:
            self.L = lipschitz_upper_bound(ctx.model.net, ctx.spec.shape)
        except TypeError as exc:  # only the refusal of a layer; a device or shape error is not an architecture
            raise RsbenchError(f"method=sra needs a network of Linear / BjorckLinear / BCOP layers: {exc}") from exc
        return {"L": self.L}

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float, sequential: Any = None) -> dict[str, Any]:
        require(sequential is None, HARD_VOTES_ONLY)
        model, x = sampler.model, sampler.x.unsqueeze(0)
        with torch.inference_mode():
            logits = model(x)
            predict = int(logits.argmax(1)[0])
            y = torch.tensor([predict], device=x.device)
            radius = float(margin_radius(logits, y, self.L)[0])  # margin of the predicted class: >= 0
            mean, var = output_moments(model, x, self.var_x)
            closed = float(mscr(mean, var, y, self.L)[0])
            g = make_generator(sampler.seed, (sampler.idx, PHASE_ESTIMATE), x.device)
            noisy = x + math.sqrt(self.var_x) * torch.randn((self.mc_draws, *x.shape[1:]), generator=g,
                                                           device=x.device)
            mc = float(-margin_loss(model(noisy), y.expand(self.mc_draws)).mean() / (ALPHA_L2 * self.L))
        return {"predict": predict if radius > 0 else ABSTAIN, "radius": max(radius, 0.0), "method": self.name,
                "certificate": "margin_eq6", "norm": "l2", "sound": True, "L": self.L,
                "margin": float(-margin_loss(logits, y)[0]), "var_x": self.var_x, "mscr": closed, "mscr_mc": mc}

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        """The network's own prediction (no smoothing, never abstains) and its margin o_pred - max other."""
        with torch.inference_mode():
            logits = sampler.model(sampler.x.unsqueeze(0))
            predict = logits.argmax(1)
            return {"predict": int(predict[0]), "method": self.name,
                    "margin": float(-margin_loss(logits, predict)[0])}
