"""Training losses by name (``train.loss.name``): SCE and the SRA paper's Table 1 losses.

Hinge losses on a certified radius: ReLU(d - eps(x, c)) (Sec. 4.1), with
    mscr    eps = MSCR, eq. (5) + (7), output moments propagated from input noise variance var_x (App. C.2)
    mcr     eps = margin radius eq. (6) (MSCR without smoothing)
    zhen    eps = Zhen et al.'s RS radius approximation eq. (9) at sigma_x = sqrt(var_x)
and  mh (multiclass hinge sum_{i != c} max(0, d - (o_c - o_i))), sce (softmax cross-entropy) and sc_sce
(cross-entropy of the propagated output means). K = 1 (1-Lipschitz networks).

Units of d. For mscr and mcr, eps is a radius: the margin o_c - o_max divided by sqrt 2 (eq. 6). The
authors' code (ThomRC/sra, models/losses.py) hinges the raw margin instead, relu(d' - (o_c - o_max)) and
relu(d' + SM), so their d' = sqrt(2) d and their loss is sqrt(2) times this one: the authors' d' = 1.0 is
d = 0.7071 here, and d = 1 here is their d' = 1.414. mh and zhen use the same d in both.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from rsbench.certify.margin import margin_radius, mscr, zhen_radius
from rsbench.errors import RsbenchError
from rsbench.models.orthogonal import output_moments
from rsbench.registry import Registry

LossFn = Callable[..., tuple[Tensor, Tensor]]  # -> (mean loss, outputs for the accuracy log: logits or means)
LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("sce")
def sce(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    out = model(x)
    return F.cross_entropy(out, y), out


@LOSSES.register("sc_sce")
def sc_sce(model: nn.Module, x: Tensor, y: Tensor, var_x: float) -> tuple[Tensor, Tensor]:
    mean = output_moments(model, x, var_x)[0]
    return F.cross_entropy(mean, y), mean


@LOSSES.register("mh")
def multiclass_hinge(model: nn.Module, x: Tensor, y: Tensor, d: float) -> tuple[Tensor, Tensor]:
    out = model(x)
    gap = out.gather(1, y.view(-1, 1)) - out
    hinge = F.relu(d - gap).masked_fill(F.one_hot(y, out.shape[1]).bool(), 0.0)
    return hinge.sum(1).mean(), out


@LOSSES.register("mcr")
def mcr(model: nn.Module, x: Tensor, y: Tensor, d: float) -> tuple[Tensor, Tensor]:
    out = model(x)
    return F.relu(d - margin_radius(out, y)).mean(), out


@LOSSES.register("mscr")
def mscr_loss(model: nn.Module, x: Tensor, y: Tensor, d: float, var_x: float) -> tuple[Tensor, Tensor]:
    mean, var = output_moments(model, x, var_x)
    return F.relu(d - mscr(mean, var, y)).mean(), mean


@LOSSES.register("zhen")
def zhen_loss(model: nn.Module, x: Tensor, y: Tensor, d: float, var_x: float) -> tuple[Tensor, Tensor]:
    mean, var = output_moments(model, x, var_x)
    return F.relu(d - zhen_radius(mean, var, y, math.sqrt(var_x))).mean(), mean


def make_loss(spec: dict | None) -> Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``{"name": ..., **params}`` -> loss(model, x, y); parameters are checked against the loss's signature."""


    params = {k: v for k, v in dict(spec or {"name": "sce"}).items() if v is not None}  # unset keys are null
    name = params.pop("name", "sce")
    fn = LOSSES.get(name)
    wanted = [p for p in inspect.signature(fn).parameters if p not in ("model", "x", "y")]
    if sorted(params) != sorted(wanted):
        raise RsbenchError(f"train.loss.name={name} takes parameters {wanted}, got {sorted(params)}")
    return lambda model, x, y: fn(model, x, y, **params)
