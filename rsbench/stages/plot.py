"""``rsbench plot``: certify CSVs -> certified-accuracy figure (PNG + PDF) and table (CSV + Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from rsbench.analysis.intervals import check_level
from rsbench.errors import require
from rsbench.plot.runs import draw_runs
from rsbench.stages.common import CONF_DIR, log, run_stage


def as_list(value: Any) -> list[Any]:
    """A list option given as a list, or as one value (``runs=outputs/certify/x``: one run, not its characters)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def plot(cfg: DictConfig, out: Path) -> None:
    runs = as_list(cfg.runs)
    require(len(runs) > 0, "plot needs runs=[<certify run dir or csv>, ...]")
    _, written, unsound = draw_runs(runs, out / cfg.name, cfg.figure, as_list(cfg.labels), cfg.title,
                                    list(cfg.radii), cfg.max_radius, cfg.get("points", "all"),
                                    check_level(cfg.get("ci_level")), cfg.get("bands", True))
    print("\nwrote " + ", ".join(str(p) for p in written), flush=True)
    if unsound:
        log.warning("%d curve(s) rest on radii that are NOT sound (marked 'unsound'): they are not proofs", unsound)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="plot")
def main(cfg: DictConfig) -> None:
    run_stage("plot", plot, cfg)
