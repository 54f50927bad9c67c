"""``rsbench compare A B``: the paired difference of two certify runs over the same test points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from rsbench.analysis.curves import DEFAULT_RADII
from rsbench.analysis.paired import paired_comparison
from rsbench.errors import RsbenchError
from rsbench.results import read_results


def _read(run: Path, radius: str = "radius") -> pd.DataFrame:
    """The run's rows, with ``radius`` taken from column ``radius`` (e.g. DSmooth's ``l2_radius``)."""
    path = run / "certify.csv" if run.is_dir() else run
    if not path.is_file():
        raise RsbenchError(f"{run} is neither a certify.csv (or Cohen et al.'s per-image TSV) nor a run dir with one")
    df = read_results(path)
    missing = [c for c in ("idx", "label", "radius", "correct", radius) if c not in df.columns]
    if missing:
        raise RsbenchError(f"{path} lacks columns {sorted(set(missing))}; is it a certify.csv"
                           f"{'' if radius == 'radius' else ' of a method that writes ' + radius}?")
    return df.assign(radius=df[radius])


def format_comparison(table: pd.DataFrame) -> str:
    """Aligned text: value columns to 3 decimals, the interval as [lo, hi], counts as integers."""
    level = 100 * table.attrs.get("level", 0.95)
    shown = pd.DataFrame({
        "A": table["A"].map("{:.3f}".format), "B": table["B"].map("{:.3f}".format),
        "A-B": table["A-B"].map("{:+.3f}".format),
        f"{level:g}% CI (paired)": [f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(table["lo"], table["hi"], strict=True)],
        "A only": table["A only"].map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
        "B only": table["B only"].map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
        "McNemar p": table["mcnemar_p"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
    })
    shown.index = table["measure"]
    return shown.to_string()


def main(argv: list[str]) -> None:
    """``rsbench compare A B [--radii 0,0.25,...] [--level 0.95] [--radius-a COL] [--cap R] [-o OUT.csv]``."""
    parser = argparse.ArgumentParser(prog="rsbench compare", description="Paired comparison of two certify runs "
                                     "over the same test points: certified accuracy at each radius and ACR.")
    parser.add_argument("a", type=Path, help="certify run dir or certify.csv (A)")
    parser.add_argument("b", type=Path, help="certify run dir or certify.csv (B)")
    parser.add_argument("--radii", default=",".join(f"{r:g}" for r in DEFAULT_RADII), help="comma-separated")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the paired intervals")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples (seeded)")
    parser.add_argument("--radius-a", default="radius", help="A's radius column (e.g. l2_radius: DSmooth in l2)")
    parser.add_argument("--radius-b", default="radius", help="B's radius column")
    parser.add_argument("--cap", type=float, default=None,
                        help="clip every radius of both runs at this radius first (e.g. runs certified at different N)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="also write the table as CSV")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"--draws={args.draws} is invalid: the bootstrap needs at least 1 resample (default 2000)")
    if not 0 < args.level < 1:
        parser.error(f"--level={args.level} is invalid: it must lie in (0, 1)")
    try:
        radii = [float(r) for r in args.radii.split(",") if r.strip()]
        a, b = _read(args.a, args.radius_a), _read(args.b, args.radius_b)
        table = paired_comparison(a, b, radii, args.level, args.draws, cap=args.cap)
    except ValueError as exc:
        print(f"rsbench compare: error: --radii={args.radii!r} is not a list of numbers ({exc})", file=sys.stderr)
        sys.exit(2)
    except RsbenchError as exc:
        print(f"rsbench compare: error: {exc}", file=sys.stderr)
        sys.exit(2)
    n_a, n_b, n = len(a), len(b), table.attrs["points"]
    print(f"A: {args.a}\nB: {args.b}\n{n} common test points" +
          (f" (A has {n_a}, B has {n_b}; only the common ones are compared)" if n < max(n_a, n_b) else ""))
    if args.cap is not None:
        k_a, k_b = table.attrs["beyond_cap"]
        print(f"radii capped at {args.cap:g}: correct points certified beyond it, A {k_a} of {n}, B {k_b} of {n}")
    print(format_comparison(table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if args.cap is None else {"cap": args.cap}
        table.assign(level=args.level, points=n, **extra).to_csv(args.out, index=False)
        print(f"wrote {args.out}")
