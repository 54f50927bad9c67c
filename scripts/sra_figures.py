"""SRA paper figures from `rsbench robustness` sweeps: Fig. 2/3 heatmaps and Fig. 4/5-style curve comparisons.

    python scripts/sra_figures.py outputs/figures/quick/sra [--band LOW HIGH] [--level 0.95]
        [--compare "mscr d=1.0 var_x=0.01" "mcr d=1.0 var_x=None" ...]

Reads every <sweep>/<run>/summary.json and curves.csv below the folder, writes table.csv / table.md (one row
per trained network: loss, d, var_x, clean accuracy, AUC_CR through the margin and through RS, AUC_GN, how
closely eq. 7 tracks Monte Carlo, the linear-corruption alpha at which accuracy halves),
heatmaps_fig2.png/pdf (clean accuracy, AUC_CR margin, AUC_GN over
(var_x, d) for MSCR and Zhen), heatmaps_fig3.png/pdf (RS AUC_CR), and curves_fig4.png/pdf: for each loss, the
network with the highest RS AUC_CR whose clean accuracy lies in the band (default: within 1 point of the
best clean accuracy of the sweep; the paper used 98.5 +- 0.3 %).

``--paired A B`` compares two networks (one seed each, as the CIFAR-10 Fig. 7 counterpart trains) point by
point on the same test images: margin and RS certified accuracy and mean certified radius, with paired
bootstrap intervals, in paired.md.

Settings trained with several seeds (`rsbench robustness -m ... seed=0,1,2`, as the paper averages three
trainings) also get seeds.csv / seeds.md: each metric's mean over seeds with its t-interval across seeds; and
each `--compare A B` pair of setting labels gets the difference A - B paired by seed, with its t-interval,
in compare.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from rsbench.analysis.curves import to_markdown
from rsbench.analysis.paired import paired_comparison
from rsbench.analysis.seeds import paired_seed_difference, seed_table
from rsbench.plot.sra import plot_heatmaps, plot_robustness


def half_accuracy_alpha(curves: pd.DataFrame) -> float:
    """The smallest signal fraction alpha whose linear-corruption accuracy is still >= half the clean one."""
    lc = curves[curves["curve"] == "linear_corruption"]
    clean = float(lc.loc[lc["x"].idxmax(), "value"])
    return float(lc.loc[lc["value"] >= clean / 2, "x"].min())


def collect(root: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    rows, curves = [], {}
    for summary in sorted(root.glob("**/summary.json")):
        s = json.loads(summary.read_text())
        loss = s.get("loss") or {"name": "sce"}
        run = str(summary.parent.relative_to(root))  # unique below root, where run-dir names may repeat
        warm = s.get("warm_start")  # a departure from the paper: named in the label and its own column
        label = f"{loss['name']} d={loss.get('d')} var_x={loss.get('var_x')}"
        rows.append({"run": run, "label": label + (f" warm_start={warm['name']}:{warm['steps']}" if warm else ""),
                     "departure": f"warm start: {warm['name']} for {warm['steps']} steps" if warm else "",
                     "loss": loss["name"], "d": loss.get("d"), "var_x": loss.get("var_x"), "seed": s.get("seed", 0),
                     **{k: s[k] for k in ("clean_acc", "auc_cr_margin", "auc_cr_rs", "auc_gn",
                                          "mscr_vs_mc_mean_abs_diff", "mscr_vs_mc_corr")}})
        curves[run] = pd.read_csv(summary.parent / "curves.csv")
        rows[-1]["corruption_half_alpha"] = half_accuracy_alpha(curves[run])
    if not rows:
        raise SystemExit(f"no summary.json under {root}: run `make sra-figures` (rsbench robustness sweeps) first")
    return pd.DataFrame(rows), curves


PAIRED_RADII = (0.0, 0.05, 0.1, 0.2, 0.3)


def paired_networks(root: Path, a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str,
                    level: float) -> pd.DataFrame:
    """Network A minus network B on the same test images: certified accuracy at PAIRED_RADII and the mean
    certified radius (radius x correct, the area under the survival curve) through the margin (points.csv)
    and through RS (rs.csv), each with a paired percentile-bootstrap interval (rsbench.analysis.paired)."""
    if len(a) != 1 or len(b) != 1:
        raise SystemExit(f"--paired compares two networks; {name_a!r} has {len(a)} runs, {name_b!r} {len(b)}")
    rows = []
    for certificate, file, column in (("margin", "points.csv", "margin_radius"), ("RS", "rs.csv", "radius")):
        pa, pb = (pd.read_csv(root / r / file).rename(columns={column: "radius"})
                  for r in (a["run"].iloc[0], b["run"].iloc[0]))
        out = paired_comparison(pa, pb, PAIRED_RADII, level)
        rows.append(out.assign(pair=[f"{name_a} minus {name_b}: {certificate} {m}" for m in out["measure"]],
                               points=out.attrs["points"]))
    return pd.concat(rows).drop(columns="measure")


METRICS = ["clean_acc", "auc_cr_margin", "auc_cr_rs", "auc_gn", "corruption_half_alpha"]


def _setting(table: pd.DataFrame, label: str) -> pd.DataFrame:
    rows = table[table["label"] == label]
    if rows.empty:
        raise SystemExit(f"--compare: no setting {label!r}; settings: {', '.join(sorted(set(table['label'])))}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--band", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"))
    ap.add_argument("--level", type=float, default=0.95, help="level of the intervals across seeds")
    ap.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                    help="two setting labels (as in table.md) to compare, paired by seed; repeatable")
    ap.add_argument("--paired", nargs=2, action="append", default=[], metavar=("A", "B"),
                    help="two networks (setting labels, one seed each) to compare point by point on the same test "
                         "images: margin and RS certified accuracy and mean certified radius, paired bootstrap "
                         "intervals (paired.md); repeatable")
    args = ap.parse_args()
    root = Path(args.root)
    table, curves = collect(root)
    table.to_csv(root / "table.csv", index=False)
    per_seed = table.assign(network=table["label"] + ", seed " + table["seed"].astype(str))
    (root / "table.md").write_text(to_markdown(per_seed.drop(columns=["run", "label"]).set_index("network")))
    if table.groupby("label")["seed"].nunique().max() > 1:
        seeds = seed_table(table, ["label"], METRICS, args.level)
        seeds.to_csv(root / "seeds.csv", index=False)
        (root / "seeds.md").write_text(to_markdown(seeds.set_index("label")))
        print(seeds.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.compare:
        rows = [{"A": a, "B": b, "metric": m, **paired_seed_difference(_setting(table, a), _setting(table, b), m,
                                                                          args.level)}
                for a, b in args.compare for m in METRICS]
        named = pd.DataFrame(rows).assign(pair=lambda t: t["A"] + " minus " + t["B"] + ": " + t["metric"])
        (root / "compare.md").write_text(to_markdown(named.drop(columns=["A", "B", "metric"]).set_index("pair"), 4))
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    if args.paired:
        paired = pd.concat([paired_networks(root, _setting(table, a), _setting(table, b), a, b, args.level)
                            for a, b in args.paired])
        (root / "paired.md").write_text(to_markdown(paired.set_index("pair"), 4))
        print(paired.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    grid = table[table["loss"].isin(["mscr", "zhen"])].dropna(subset=["d", "var_x"])
    if len(grid):
        plot_heatmaps(grid, {"clean_acc": "clean accuracy", "auc_cr_margin": "AUC_CR (margin)", "auc_gn": "AUC_GN"},
                      root / "heatmaps_fig2", "Fig. 2 style (quick scale)")
        plot_heatmaps(grid, {"auc_cr_rs": "AUC_CR (randomized smoothing)"}, root / "heatmaps_fig3",
                      "Fig. 3 style (quick scale)")
    low, high = args.band or (table["clean_acc"].max() - 0.01, table["clean_acc"].max())
    band = table[(table["clean_acc"] >= low) & (table["clean_acc"] <= high)]
    best = band.sort_values("auc_cr_rs", ascending=False).groupby("loss").head(1)
    selected = {f"{r.loss} (d={r.d}, var_x={r.var_x}, acc {r.clean_acc:.3f})": curves[r.run]
                for r in best.itertuples()}
    plot_robustness(selected, root / "curves_fig4",
                    f"best RS AUC_CR per loss, clean accuracy in [{low:.3f}, {high:.3f}]")
    print(table.drop(columns="run").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nselected (clean accuracy in [{low:.3f}, {high:.3f}]):")
    print(best.drop(columns="run").to_string(index=False))


if __name__ == "__main__":
    main()
