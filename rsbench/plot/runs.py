"""Certify runs -> one figure (PNG + PDF) and its table (CSV + Markdown): what ``rsbench plot`` and ``rsbench
figures`` draw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from rsbench.analysis.curves import format_table, mark_unsound, summary, to_markdown
from rsbench.analysis.seeds import replicate_key, seed_summary
from rsbench.errors import RsbenchError, require
from rsbench.log import log
from rsbench.methods import make_method
from rsbench.plot.figures import FIGURES
from rsbench.results import is_cohen_tsv, read_results


def csvs_of(run: str) -> list[Path]:
    """A certify.csv (or a per-image TSV of Cohen et al.), a run dir holding one, a run of several certificates
    (``certificate-*/certify.csv``), or a sweep dir of either."""
    p = Path(run)
    if p.is_file():
        return [p]
    if (p / "certify.csv").is_file():
        return [p / "certify.csv"]
    found = sorted([*p.glob("*/certify.csv"), *p.glob("*/certificate-*/certify.csv")]) if p.is_dir() else []
    require(len(found) > 0, f"plot input {run} is neither a certify.csv nor a (sweep) dir holding one")
    return found


def _saved_config(csv_path: Path) -> dict | None:
    saved = csv_path.parent / ".hydra" / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(saved), resolve=True) if saved.exists() else None


def _label(csv_path: Path, config: dict | None) -> str:
    """A legend label from the run's saved Hydra config: method label and dataset (a published per-image
    file of Cohen et al.: its file name)."""
    if is_cohen_tsv(csv_path):
        return f"Cohen et al. 2019 (published), {csv_path.stem}"
    if config is None:
        return csv_path.parent.name
    try:
        return f"{make_method(config['method']).label()}, {config['dataset']['name']}"
    except (RsbenchError, KeyError, TypeError):
        return csv_path.parent.name


def common_points(groups: dict[str, list[tuple[Path, pd.DataFrame, str]]]
                  ) -> dict[str, list[tuple[Path, pd.DataFrame, str]]]:
    """``points=common``: every run restricted to the test indices that every run holds, so that curves and
    table rows compare the same points (e.g. a 255-point MoG run against the 509-point Gaussian run it extends)."""
    frames = [df for members in groups.values() for _, df, _ in members]
    common = set.intersection(*(set(df["idx"].astype(int)) for df in frames))
    require(len(common) > 0, "points=common: the runs share no test index")
    log.info("points=common: %d test points held by every run (runs of %s points)", len(common),
             ", ".join(str(n) for n in sorted({len(df) for df in frames})))
    return {key: [(path, df[df["idx"].astype(int).isin(common)].reset_index(drop=True), label)
                  for path, df, label in members] for key, members in groups.items()}


def draw_runs(runs: Sequence[str | Path], out_stem: Path, figure: str = "certified_accuracy",
              labels: Sequence[str] = (), title: str | None = None, radii: Sequence[float] = (0.0,),
              max_radius: float | None = None, points: str = "all", level: float | None = 0.95,
              bands: bool = True, quiet: bool = False) -> tuple[pd.DataFrame, list[Path], int]:
    """Figure ``figure`` (a :data:`FIGURES` kind) of ``runs`` at ``out_stem``.png/.pdf and its table at
    ``out_stem``.csv/.md; returns (the table, the files written, the number of unsound curves). Runs whose saved
    configs differ only in seed are replicates: one curve and one row, mean over seeds."""
    paths = [p for run in runs for p in csvs_of(str(run))]
    require(not labels or len(labels) == len(paths), f"labels has {len(labels)} entries for {len(paths)} runs")
    groups: dict[str, list[tuple[Path, pd.DataFrame, str]]] = {}
    for k, path in enumerate(paths):
        config = _saved_config(path)
        label = labels[k] if labels else _label(path, config)
        groups.setdefault(replicate_key(config, str(path)) + label, []).append((path, read_results(path), label))
    require(points in ("all", "common"), f"points={points!r} is invalid; valid values: all, common")
    if points == "common":
        groups = common_points(groups)
    frames: dict[str, pd.DataFrame] = {}
    rows: dict[str, dict] = {}
    unsound = 0
    for members in groups.values():
        path, df, label = members[0]
        if len(members) > 1:
            label = f"{label} ({len(members)} seeds)"
            replicates = [m[1] for m in members]
            df = pd.concat(replicates, ignore_index=True)
            df.attrs["replicates"] = replicates
        if label in frames:
            label = f"{label} ({path.parent.name})"
        marked = mark_unsound(label, df)
        unsound += marked != label
        frames[marked] = df
        rows[marked] = (seed_summary(df.attrs["replicates"], list(radii), level) if len(members) > 1
                        else summary(df, list(radii), level))
    table = pd.DataFrame(rows).T
    figs = FIGURES.get(figure)(frames, out_stem, title, max_radius, level if bands else None)
    table.to_csv(out_stem.with_suffix(".csv"), index_label="run")
    out_stem.with_suffix(".md").write_text(to_markdown(table))
    if not quiet:
        print(format_table(table))
    return table, [*figs, out_stem.with_suffix(".csv"), out_stem.with_suffix(".md")], unsound
