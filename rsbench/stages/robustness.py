"""``rsbench robustness``: the SRA paper's robustness metrics of one network (App. B), curves and AUCs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from rsbench.analysis.robustness import auc_cr, auc_gn, linear_corruption_curve, noise_accuracy_curve, survival
from rsbench.certify.margin import ALPHA_L2, margin_loss, margin_radius, mscr
from rsbench.errors import RsbenchError, check_count, require
from rsbench.models.orthogonal import check_pixel_space, lipschitz_upper_bound, output_moments
from rsbench.models.registry import build_model
from rsbench.plot.sra import plot_robustness
from rsbench.smoothed import Smoothed
from rsbench.stages.common import (
    CONF_DIR,
    dataset_split,
    log,
    model_choice,
    plain,
    resolve_model,
    run_stage,
    select_device,
    select_indices,
)
from rsbench.stages.points import run_points
from rsbench.stages.rundir import accept

RS_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time_s", "p_lower")


def _rs_radii(cfg: DictConfig, model, spec, test_ds, indices: list[int], out: Path, device) -> pd.DataFrame:
    """Cohen's CERTIFY on every ``rs.skip``-th evaluated point (resumable rs.csv), through the one constructor
    (plain sampling: no channels-last order, no pushforward, as the published rs.csv files were drawn)."""
    rs = cfg.robustness.rs
    n0, n, alpha = check_count("rs.n0", rs.n0), check_count("rs.n", rs.n), float(rs.alpha)
    smoothed, _ = Smoothed.from_config(model, {"name": "gaussian", "sigma": float(rs.sigma)}, spec.num_classes,
                                       spec.shape, batch=check_count("rs.batch", rs.batch), channels_last="off",
                                       pushforward="off")

    def evaluate(x: torch.Tensor, i: int) -> dict:
        row = smoothed.certify_fields(x, i, int(cfg.seed), n0, n, alpha)
        return {"predict": row["predict"], "radius": row["radius"], "p_lower": row["p_lower"]}

    run_points(out / "rs.csv", RS_COLUMNS, indices[::check_count("rs.skip", rs.skip)], test_ds, spec, device,
               f"RS certify σ={float(rs.sigma):g}", evaluate)
    return pd.read_csv(out / "rs.csv")


def robustness(cfg: DictConfig, out: Path) -> None:
    r = cfg.robustness
    device = select_device(cfg.device)
    test_ds, spec = dataset_split(cfg, "test")
    indices = select_indices(len(test_ds), r.skip, r.max)
    arch, params = model_choice(cfg)
    check_pixel_space(build_model(arch, spec, params))  # before any default model is trained
    accept(out)  # the run dir's records and log from here on (a long training logs as it goes)
    model, meta = resolve_model(cfg, spec, float(cfg.train.noise_sigma), device)
    try:
        lip = lipschitz_upper_bound(model.net, spec.shape)
    except (TypeError, RuntimeError) as exc:
        raise RsbenchError(f"robustness needs a network of Linear / BjorckLinear / BCOP layers: {exc}") from exc
    if r.overwrite:
        (out / "rs.csv").unlink(missing_ok=True)
    items = [test_ds[i] for i in indices]
    x = torch.stack([t[0] for t in items]).to(device)
    y = torch.tensor([int(t[1]) for t in items], device=device)
    with torch.inference_mode():
        logits = torch.cat([model(x[lo:lo + 1000]) for lo in range(0, len(x), 1000)])
        correct = (logits.argmax(1) == y).cpu().numpy()
        radius = margin_radius(logits, y, lip).cpu().numpy()          # eq. (6), true label
        mean, var = output_moments(model, x, float(r.var_x))
        closed = mscr(mean, var, y, lip).cpu().numpy()                # eq. (5) with (7)
        g = torch.Generator(device=device).manual_seed(int(cfg.seed))
        mc = torch.zeros(len(x), device=device)
        for _ in range(check_count("mc_draws", r.mc_draws)):
            noisy = x + math.sqrt(float(r.var_x)) * torch.randn(x.shape, generator=g, device=device)
            mc += -margin_loss(model(noisy), y) / (ALPHA_L2 * lip)
        mc = (mc / int(r.mc_draws)).cpu().numpy()
    gn = noise_accuracy_curve(model, x, y, float(r.gn_step), check_count("gn_draws", r.gn_draws), int(cfg.seed),
                              spec.num_classes)
    alphas = np.round(np.arange(1.0, -1e-9, -float(r.corruption_step)), 6)
    corruption = linear_corruption_curve(model, x, y, alphas, int(cfg.seed))
    rs = _rs_radii(cfg, model, spec, test_ds, indices, out, device)

    step = float(r.cr_step)
    grid = np.arange(0.0, max(float(radius.max()), float(rs["radius"].max()), step) + 2 * step, step)
    curves = pd.concat([
        pd.DataFrame({"curve": "margin_cr", "x": grid, "value": survival(radius, correct, grid)}),
        pd.DataFrame({"curve": "rs_cr", "x": grid, "value": survival(rs["radius"], rs["correct"], grid)}),
        pd.DataFrame({"curve": "noise_accuracy", "x": float(r.gn_step) * np.arange(len(gn)), "value": gn}),
        pd.DataFrame({"curve": "linear_corruption", "x": alphas, "value": corruption}),
    ])
    curves.to_csv(out / "curves.csv", index=False)
    pd.DataFrame({"idx": indices, "label": y.cpu().numpy(), "correct": correct.astype(int), "margin_radius": radius,
                  "mscr": closed, "mscr_mc": mc}).to_csv(out / "points.csv", index=False)
    ok = correct.astype(bool)
    summary = {
        "dataset": spec.name, "arch": meta.get("arch"), "checkpoint": meta.get("checkpoint"), "seed": int(cfg.seed),
        "points": len(indices),
        # the network's own training settings where its checkpoint records them (older ones: the config's)
        "loss": meta.get("train_loss", plain(cfg.train).get("loss")), "warm_start": meta.get("train_warm_start"),
        "lipschitz": lip,
        "clean_acc": float(ok.mean()),
        "auc_cr_margin": auc_cr(radius, ok, step), "auc_cr_rs": auc_cr(rs["radius"].to_numpy(),
                                                                         rs["correct"].to_numpy(bool), step),
        "rs_points": len(rs), "auc_gn": auc_gn(gn, float(r.gn_step)), "var_x": float(r.var_x),
        "mscr_vs_mc_mean_abs_diff": float(np.mean(np.abs(closed - mc))),
        "mscr_vs_mc_corr": float(np.corrcoef(closed, mc)[0, 1]) if len(mc) > 1 else float("nan"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))

    figs = plot_robustness({out.name: curves}, out / "robustness")
    log.info("wrote %s", ", ".join(str(p) for p in [out / "summary.json", out / "curves.csv", *figs]))
    print(json.dumps(summary, indent=1))
    require(len(indices) > 0, "robustness: no test points selected")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="robustness")
def main(cfg: DictConfig) -> None:
    run_stage("robustness", robustness, cfg)
