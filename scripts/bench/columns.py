"""Per-run statistics of certify.csv columns (the per-point numbers quoted in docs/REPRODUCTION.md).

    python scripts/bench columns <certify run dir | certify.csv | sweep dir> ... --columns sigma radius

Prints, for every run and column, the number of rows, mean, median, min and max.
"""

from __future__ import annotations

import argparse

import pandas as pd

from rsbench.plot.runs import csvs_of


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench columns", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--columns", nargs="+", required=True)
    args = ap.parse_args(argv)
    rows = []
    for path in (p for run in args.runs for p in csvs_of(run)):
        df = pd.read_csv(path)
        label = f"{df['method'].iloc[0]} {path.parent.name[:60]}" if "method" in df else path.parent.name[:70]
        for col in args.columns:
            if col in df:
                v = df[col].astype(float)
                rows.append({"run": label, "column": col, "rows": len(v), "mean": v.mean(), "median": v.median(),
                             "min": v.min(), "max": v.max()})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
