"""``rsbench predict``: Cohen et al.'s PREDICT (binomial-test abstain) over the test set.

With ``predict.attack`` (e.g. ``{name: smoothed_pgd, eps: 0.5}``, SmoothAdv's attack on the soft smoothed
classifier) each test point is attacked first and PREDICT runs at the adversarial point with fresh noise: the
rows' ``predict`` / ``correct`` are then the empirical robust accuracy at ``attack_eps``, an upper bound that
the certified accuracy at radius ``attack_eps`` must stay under (a certified curve above it, beyond the
intervals, is a bug). ``attack_norm`` is the l2 norm of the perturbation actually made.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig

from rsbench.attacks import check_attack, run_attack
from rsbench.certify.seeding import derived_seed
from rsbench.errors import check_count, check_probability, require
from rsbench.stages.common import CONF_DIR, plain, run_stage
from rsbench.stages.points import prepare_point_run

BASE_COLUMNS = ("idx", "label", "predict", "correct", "time_s")
# the fields of Cohen's PREDICT; a method whose predict returns others declares ``predict_columns``
PREDICT_COLUMNS = ("method", "sigma", "n", "alpha", "count_a", "count_b", "pvalue")
ATTACK_COLUMNS = ("attack_eps", "attack_norm")
ATTACK_PHASE = 7  # the attack's own generator per point: (seed, idx, ATTACK_PHASE); PREDICT's noise is separate
_ATTACK_LOCK = threading.Lock()  # one attack at a time (points_per_batch threads share torch's global state)


def attack_spec(cfg: DictConfig) -> dict[str, Any] | None:
    """``predict.attack`` checked; smoothed_pgd's sigma defaults to the smoothing sigma."""
    spec = plain(cfg.predict.get("attack"))
    if not spec:
        return None
    spec = check_attack(spec, "predict.attack")
    if spec["name"] == "smoothed_pgd" and spec.get("sigma") is None:
        spec["sigma"] = float(cfg.sigma)
    require(spec.get("eps", spec.get("eps_l2")) is not None,
            f"predict.attack={spec} must give its l2 radius: eps (eps_l2 for square_fgsm)")
    return spec


def attacked(run, spec: dict[str, Any], x: torch.Tensor, idx: int) -> torch.Tensor:
    """The adversarial point for test point ``idx`` (its true label), drawn from its own seeded generator."""
    label = torch.tensor([int(run.test_ds[idx][1])], device=x.device)
    g = torch.Generator(device=x.device).manual_seed(derived_seed(run.seed, idx, ATTACK_PHASE))
    with _ATTACK_LOCK:
        return run_attack(spec, run.model, x.unsqueeze(0), label, g)[0].detach()


def predict(cfg: DictConfig, out: Path) -> None:
    n = check_count("predict.n", cfg.predict.n)
    alpha = check_probability("predict.alpha", cfg.predict.alpha)
    attack = attack_spec(cfg)
    settings = {"n": n, "alpha": alpha, **({"attack": attack} if attack else {})}
    run = prepare_point_run(cfg, "predict", out, settings)
    columns = BASE_COLUMNS + tuple(getattr(run.method, "predict_columns", PREDICT_COLUMNS))

    def evaluate(x: torch.Tensor, i: int) -> dict[str, Any]:
        if not attack:
            return run.smoothed.predict_fields(x, i, run.seed, n, alpha)
        x_adv = attacked(run, attack, x, i)
        eps = float(attack.get("eps", attack.get("eps_l2")))
        return {**run.smoothed.predict_fields(x_adv, i, run.seed, n, alpha), "attack_eps": eps,
                "attack_norm": float((x_adv - x).norm())}

    run.run(columns + (ATTACK_COLUMNS if attack else ()), evaluate)
    df = pd.read_csv(run.csv_path)
    what = f"accuracy under {attack['name']} at eps={attack.get('eps', attack.get('eps_l2'))}" if attack \
        else "accuracy"
    print(f"\n{run.csv_path}: {len(df)} points, {what} {df['correct'].mean():.3f}, "
          f"abstain {(df['predict'] < 0).mean():.3f}, {df['time_s'].mean():.3f} s/point")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_stage("predict", predict, cfg)
