"""``rsbench train``: train a base classifier (Gaussian noise augmentation or l2-PGD adversarial training).

The run dir holds ``train_state.pt`` (the training checkpoint after the last completed epoch) while the
training runs: re-running the same command after a kill, a Ctrl-C or a SLURM timeout resumes from it and
ends with the weights an uninterrupted run gives. ``model.pt`` replaces it when training ends.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from rsbench.models.checkpoint import read_checkpoint
from rsbench.stages.common import CONF_DIR, log, model_choice, run_stage, select_device, train_and_save
from rsbench.stages.rundir import accept


def train(cfg: DictConfig, out: Path) -> None:
    arch, params = model_choice(cfg)
    sigma = float(cfg.train.noise_sigma)
    device = select_device(cfg.device)
    ckpt, log_path, state = out / "model.pt", out / "train_log.csv", out / "train_state.pt"
    accept(out)  # the run dir's records and log from here on (a long training logs as it goes)
    if ckpt.exists() and not cfg.train.overwrite:
        _, meta = read_checkpoint(ckpt)
        state.unlink(missing_ok=True)  # a kill between saving model.pt and removing the state
        log.info("%s exists (train.overwrite=true retrains): clean acc %.4f, noisy acc %.4f",
                 ckpt, meta["clean_acc"], meta["noisy_acc"])
    else:
        if cfg.train.overwrite:
            for path in (log_path, state):
                path.unlink(missing_ok=True)
        meta = train_and_save(cfg, arch, params, sigma, ckpt, device, log_path, state)
    sigma = float(meta.get("train_noise_sigma", sigma))
    how = f"adversarial training {meta['train_attack']}" if meta.get("train_attack") else \
        f"train noise sigma {sigma:g}"
    print(f"\n{ckpt}\n  arch {arch} {params}, dataset {meta['dataset']}, {how}\n"
          f"  test accuracy: clean {meta['clean_acc']:.4f}, noisy (sigma={sigma:g}) {meta['noisy_acc']:.4f}")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    run_stage("train", train, cfg)
