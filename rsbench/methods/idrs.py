"""Input-dependent RS with a Lipschitz sigma network (``method=idrs``; input_dependent_rs_lipschitz_sigma.md).

Noise N(0, sigma_theta(x)^2 I) with sigma_theta >= sigma_min and Lip(sigma_theta) <= lip_sigma (a
spectrally normalised MLP, rsbench.models.sigma_net); soft smoothing of g = (1 - C p_min) softmax + p_min.
Radius (Theorem 3) 1/(2L) (Phi^-1(g_y) - Phi^-1(g_y')) with L from eq. (5) for the actual input
dimension. With ``bounds=bernstein|hoeffding`` the scores are valid confidence bounds (sound); with
``bounds=point`` they are the plug-in means of the paper's experiments (sound=False).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from rsbench.cache import cached
from rsbench.certify.certificates import idrs_radius
from rsbench.certify.lipschitz import idrs_lipschitz
from rsbench.certify.sampling import PointSampler
from rsbench.certify.sequential import HARD_VOTES_ONLY
from rsbench.certify.smoothing import ABSTAIN, cohen_predict, predict_row
from rsbench.certify.soft import check_bounds, soft_certify
from rsbench.errors import RsbenchError, check_count, check_positive, require
from rsbench.log import log
from rsbench.methods.base import METHODS, MethodContext
from rsbench.models.checkpoint import read_checkpoint, save_checkpoint
from rsbench.models.sigma_net import SigmaNet, SigmaTrainConfig, verify_lipschitz
from rsbench.noise.gaussian import GaussianNoise

POINT_WARNING = ("method=idrs bounds=point plugs Monte Carlo means into Theorem 3 (as the paper's experiments "
                 "do): NOT a certificate. Rows are labelled sound=False; use bounds=bernstein for a sound radius.")


@METHODS.register("idrs")
class InputDependentSmoothing:
    name = "idrs"
    columns = ("method", "certificate", "smoothing", "bounds", "norm", "sound", "sigma", "sigma_min", "lip_sigma",
               "L", "p_min", "n0", "n", "alpha", "p_lower", "p_runner_upper")

    def __init__(self, sigma_min: float = 0.65, lip_sigma: float = 0.5, p_min: float = 1e-7, hidden: int = 200,
                 bounds: str = "bernstein", temperature: float = 1.0, sigma_net: str | None = None,
                 train: dict[str, Any] | None = None) -> None:
        self.sigma_min = check_positive("method.sigma_min", sigma_min)
        require(lip_sigma >= 0 and math.isfinite(lip_sigma), f"method.lip_sigma={lip_sigma} must be >= 0")
        self.lip_sigma = float(lip_sigma)
        require(0 < p_min < 0.5, f"method.p_min={p_min} is invalid: it must lie in (0, 1/2) (Theorem 2)")
        self.p_min = float(p_min)
        self.hidden = check_count("method.hidden", hidden)
        self.bounds = check_bounds(bounds, p_min)
        self.temperature = check_positive("method.temperature", temperature)
        self.sigma_net_path = sigma_net
        self.train_cfg = SigmaTrainConfig.from_dict(train)
        self.sound = self.bounds != "point"
        self.warning = None if self.sound else POINT_WARNING
        self.net: SigmaNet | None = None
        self._sigma = None
        self._checked: tuple | None = None  # (net identity, parameter versions) that check_lipschitz accepted
        self.L: float | None = None
        self.noise = GaussianNoise(self.sigma_min)  # at sigma_min; each point is certified with sigma_theta(x)

    @property
    def train_sigma(self) -> float:
        """The noise a default base model is trained with: sigma_min, the least this method samples (a model
        trained without noise certifies almost nothing here; the paper's own is PGD-trained:
        ``experiment=idrs_mnist``)."""
        return self.sigma_min

    def label(self) -> str:
        return f"IDRS σ≥{self.sigma_min:g}, Lip {self.lip_sigma:g} ({self.bounds})"

    # -- artefacts -------------------------------------------------------------------------------------------
    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        """Compute L for the input dimension; load ``sigma_net`` or train (once) and cache a default one."""
        d = int(math.prod(ctx.spec.shape))
        self.L = idrs_lipschitz(self.sigma_min, self.lip_sigma, d, self.p_min)
        path = Path(self.sigma_net_path) if self.sigma_net_path else self._default_path(ctx, d)
        if not self.sigma_net_path:
            cached(path.parent, lambda folder: self._train(ctx, d, folder / path.name), "the IDRS sigma network")
        self.net = self._load(path, d, ctx.spec.family).to(ctx.device).eval()
        lip = verify_lipschitz(self.net)
        self._sigma = self.net.frozen()

        log.info("IDRS: sigma network %s (prod ||W_j|| = %.4f <= Lip %g), L = %.4f for d = %d", path, lip,
                 self.lip_sigma, self.L, d)
        return {"sigma_net": str(path), "L": self.L}

    def _default_path(self, ctx: MethodContext, d: int) -> Path:
        key = json.dumps({"base": {k: ctx.model_meta.get(k) for k in ("checkpoint", "weights_file", "clean_acc")},
                          "dataset": ctx.spec.name, "d": d, "hidden": self.hidden, "sigma_min": self.sigma_min,
                          "lip_sigma": self.lip_sigma, "p_min": self.p_min, "train": self.train_cfg.__dict__,
                          "seed": int(ctx.seed)}, sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        return Path(ctx.outputs_dir) / "models" / f"{ctx.spec.name}-sigma_net-{digest}" / "sigma_net.pt"

    def _train(self, ctx: MethodContext, d: int, path: Path) -> None:
        log.info("no method.sigma_net given: training the IDRS sigma network -> %s", path.parent.parent)
        path.parent.mkdir()
        torch.manual_seed(int(ctx.seed))
        net = SigmaNet(d, self.hidden, self.sigma_min, self.lip_sigma)
        require("sigma_net" in ctx.trainers, "method=idrs: no sigma-network trainer in this context; pass "
                "method.sigma_net=<a trained sigma_net.pt>")
        metrics = ctx.trainers["sigma_net"](net, ctx.model, ctx.train_data(), self.train_cfg, self.L, self.p_min,
                                  ctx.spec.num_classes, int(ctx.seed), ctx.device,
                                  str(path.with_name("train_log.csv")))
        meta = {"arch": "sigma_net", "dataset": ctx.spec.name, "family": ctx.spec.family, "d": d,
                "hidden": self.hidden, "sigma_min": self.sigma_min, "lip_sigma": self.lip_sigma,
                "lip_measured": verify_lipschitz(net), "p_min": self.p_min, "L": self.L,
                "train": self.train_cfg.__dict__, "base": ctx.model_meta.get("checkpoint"),
                "train_mean_radius": metrics.get("mean_radius"), "train_mean_sigma": metrics.get("mean_sigma")}
        save_checkpoint(path, net, meta)

    def _load(self, path: Path, d: int, family: str) -> SigmaNet:
        require(path.is_file(), f"method.sigma_net={path} does not exist")
        state, meta = read_checkpoint(path)
        require(meta.get("arch") == "sigma_net", f"method.sigma_net={path} is not a sigma network "
                f"(arch={meta.get('arch')}); train one with method=idrs and no method.sigma_net")
        require(meta.get("family", meta["dataset"]) == family and meta.get("d") == d,
                f"method.sigma_net={path} was trained for {meta['dataset']} (d={meta.get('d')}), "
                f"not this dataset (d={d})")
        for key, want in (("hidden", self.hidden), ("sigma_min", self.sigma_min), ("lip_sigma", self.lip_sigma)):
            require(meta.get(key) == want, f"method.sigma_net={path} has {key}={meta.get(key)} but the config "
                    f"says method.{key}={want}; the certificate's L depends on it")
        net = SigmaNet(d, self.hidden, self.sigma_min, self.lip_sigma)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise RsbenchError(f"method.sigma_net={path} does not fit a sigma network: "
                               f"{str(exc).splitlines()[-1].strip()}") from exc
        return net

    # -- per point -------------------------------------------------------------------------------------------
    def check_lipschitz(self) -> None:
        """Theorem 3's L was computed for (sigma_min, lip_sigma): refuse a sigma network that does not meet them.

        Checked where the radius is computed, not only in prepare(): a network set or changed through the
        Python API must still satisfy the bound. Re-checked only when the network or its weights change.
        """
        require(self.net is not None, "method=idrs: prepare() must run before certify (it loads the sigma net)")
        key = (id(self.net), tuple(p._version for p in self.net.parameters()))
        if key == self._checked:
            return
        require(self.net.lip <= self.lip_sigma * (1 + 1e-9) and self.net.sigma_min >= self.sigma_min * (1 - 1e-9),
                f"the sigma network has Lip {self.net.lip:g} and sigma_min {self.net.sigma_min:g}, but "
                f"L = {self.L:.4g} "
                f"was computed for method.lip_sigma={self.lip_sigma:g} and method.sigma_min={self.sigma_min:g}")
        verify_lipschitz(self.net)
        self._sigma = self.net.frozen()
        self._checked = key

    def point_sigma(self, x: torch.Tensor) -> float:
        require(self.net is not None, "method=idrs: prepare() must run before certify (it loads the sigma net)")
        if self._sigma is None:
            self._sigma = self.net.frozen()
        with torch.inference_mode():  # never below sigma_min, whatever float32 rounding did
            return max(float(self._sigma(x.unsqueeze(0))[0]), self.sigma_min)

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float, sequential: Any = None) -> dict[str, Any]:
        """Theorem 3 with soft smoothing under N(0, sigma_theta(x)^2 I)."""
        require(sequential is None, HARD_VOTES_ONLY)
        self.check_lipschitz()
        sigma = self.point_sigma(sampler.x)
        est = soft_certify(sampler, n0, n, alpha, self.bounds, self.p_min, self.temperature,
                           noise=GaussianNoise(sigma))
        radius = idrs_radius(est.p_lower, est.p_runner_upper, self.L)
        return {"predict": est.top if radius > 0 else ABSTAIN, "radius": radius, "method": self.name,
                "certificate": "idrs_thm3", "smoothing": "soft", "bounds": self.bounds, "norm": "l2",
                "sound": self.sound, "sigma": sigma, "sigma_min": self.sigma_min, "lip_sigma": self.lip_sigma,
                "L": self.L, "p_min": self.p_min, "n0": n0, "n": n, "alpha": alpha, "p_lower": est.p_lower,
                "p_runner_upper": est.p_runner_upper}

    def recompute(self, row: dict[str, Any], sequential: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's Theorem 3 radius from its soft bounds and its L."""
        return {"radius": idrs_radius(row["p_lower"], row["p_runner_upper"], row["L"])}

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        """Cohen et al.'s PREDICT (hard votes) under N(0, sigma_theta(x)^2 I)."""
        sigma = self.point_sigma(sampler.x)
        noise = GaussianNoise(sigma)
        res = cohen_predict(lambda num, phase: sampler.counts(num, phase, noise=noise), n, alpha)
        return predict_row(res, self.name, {"sigma": sigma}, n, alpha)
