"""Sharded certification: disjoint, deterministic subsets of the test indices, and merging them back.

Shard i of N takes every N-th index of the run's selection (after skip and max), starting at the i-th.
Each run dir records its plan (``<stage>.plan.json``); ``rsbench merge`` checks that the shards belong
to one configuration, that none is missing or overlapping and that every planned row is present, then
writes one CSV whose rows equal the unsharded run's (per-point seeding makes them identical).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from rsbench.cache import atomic_write, write_json_atomic
from rsbench.errors import RsbenchError, check_count, require
from rsbench.results import parse_rows, read_json


def shard_indices(indices: list[int], shard: int, num_shards: int) -> list[int]:
    """The shard-th of num_shards disjoint round-robin parts of ``indices`` (order preserved)."""
    check_count("num_shards", num_shards)
    require(isinstance(shard, int) and 0 <= shard < num_shards,
            f"shard={shard!r} is invalid: it must be an integer in [0, num_shards={num_shards})")
    return indices[shard::num_shards]


def write_plan(path: Path, selection: dict[str, Any], shard: int, num_shards: int, indices: list[int],
               replace: bool = False) -> None:
    """Record which indices this run dir is responsible for (checked by ``rsbench merge``); a different old plan
    is refused unless ``replace`` (the run starts afresh: ``overwrite=true``)."""
    plan = {"selection": selection, "shard": shard, "num_shards": num_shards, "indices": indices}
    old = None
    if path.exists() and not replace:
        try:
            old = json.loads(path.read_text())
        except ValueError:  # torn by an older, non-atomic writer: the plan is derived, so write it anew
            old = None
    if old is not None:
        require(old["selection"] == selection and old["shard"] == shard and old["num_shards"] == num_shards,
                f"{path.parent} was planned as shard {old['shard']} of {old['num_shards']} with selection "
                f"{old['selection']}; this run asks for shard {shard} of {num_shards} with {selection}")
    write_json_atomic(path, plan)


def _read_json(path: Path) -> dict[str, Any]:
    require(path.is_file(), f"{path} is missing: {path.parent} is not an rsbench run dir")
    return read_json(path, "a run dir's side file")


def merge_runs(run_dirs: list[Path], out: Path, stage: str = "certify") -> dict[str, Any]:
    """Merge the shard run dirs of one sharded run into ``out``/<stage>.csv; refuse anything inconsistent."""
    require(len(run_dirs) > 0, "merge needs at least one run dir")
    runs = []
    for d in run_dirs:
        runs.append({"dir": d, "plan": _read_json(d / f"{stage}.plan.json"),
                     "fingerprint": _read_json(d / f"{stage}.fingerprint.json")})
    first = runs[0]
    for r in runs[1:]:
        if r["fingerprint"] != first["fingerprint"]:
            keys = sorted(k for k in set(r["fingerprint"]) | set(first["fingerprint"])
                          if r["fingerprint"].get(k) != first["fingerprint"].get(k))
            raise RsbenchError(f"{r['dir']} and {first['dir']} are runs of different configurations "
                               f"(differ in {', '.join(keys)}); they cannot be merged")
        if (r["plan"]["selection"], r["plan"]["num_shards"]) != (first["plan"]["selection"],
                                                                 first["plan"]["num_shards"]):
            raise RsbenchError(f"{r['dir']} and {first['dir']} split different selections or shard counts")
    num_shards = first["plan"]["num_shards"]
    by_shard: dict[int, Path] = {}
    for r in runs:
        s = r["plan"]["shard"]
        if s in by_shard:
            raise RsbenchError(f"overlapping shards: shard {s} of {num_shards} appears in both {by_shard[s]} "
                               f"and {r['dir']}")
        by_shard[s] = r["dir"]
    missing_shards = sorted(set(range(num_shards)) - set(by_shard))
    if missing_shards:
        raise RsbenchError(f"missing shards {missing_shards} of {num_shards} (have {sorted(by_shard)})")

    header: str | None = None
    lines: dict[int, str] = {}
    problems = []
    for r in runs:
        csv_path = r["dir"] / f"{stage}.csv"
        data = csv_path.read_bytes() if csv_path.exists() else b""
        data = data[:data.rfind(b"\n") + 1]  # a torn last line is not a row
        done: dict[int, str] = {}
        if data:
            head, done = parse_rows(csv_path, data)
            line = ",".join(head) + "\n"
            require(header is None or line == header, f"{csv_path} has a different header")
            header = line
        twice = sorted(set(done) & set(lines))
        require(not twice, f"{csv_path} holds idx {twice[:10]} that another shard also holds; refusing to pick one")
        planned = set(r["plan"]["indices"])
        lost = sorted(planned - set(done))
        if lost:
            shown = ", ".join(map(str, lost[:20])) + (" ..." if len(lost) > 20 else "")
            problems.append(f"shard {r['plan']['shard']} ({r['dir']}) is missing {len(lost)} of {len(planned)} "
                            f"indices: {shown}")
        extra = sorted(set(done) - planned)
        require(not extra, f"{csv_path} holds indices outside its shard's plan: {extra[:10]}")
        lines.update(done)
    if problems:
        raise RsbenchError("incomplete shards (re-run them with the same command to resume): "
                           + "; ".join(problems))
    require(header is not None, "no rows to merge")
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stage}.csv"
    atomic_write(target, lambda tmp: tmp.write_text(header + "".join(lines[i] for i in sorted(lines))))
    write_json_atomic(out / f"{stage}.fingerprint.json", first["fingerprint"])
    plan = dict(first["plan"], shard=0, num_shards=1, indices=sorted(lines), merged_from=[str(d) for d in run_dirs])
    write_json_atomic(out / f"{stage}.plan.json", plan)
    return {"rows": len(lines), "shards": num_shards, "csv": str(target)}


def missing_shards(run_dirs: list[Path], stage: str = "certify") -> tuple[list[str], list[int], list[str]]:
    """(report lines, shards to re-run, the sweep's other overrides) for a sharded sweep's run dirs.

    A shard is complete when every index of its plan has a row; shards of ``num_shards`` with no run dir at
    all (never started) are incomplete too. Finished shards are not listed, so a relaunch pays for no
    allocation that has nothing to do.
    """
    require(len(run_dirs) > 0, "no run dirs found")
    lines, todo, num_shards, base = [], [], None, []
    seen: set[int] = set()
    for d in run_dirs:
        plan = _read_json(d / f"{stage}.plan.json")
        num_shards = plan["num_shards"]
        seen.add(plan["shard"])
        csv_path = d / f"{stage}.csv"
        data = csv_path.read_bytes() if csv_path.exists() else b""
        data = data[:data.rfind(b"\n") + 1]
        done = set(parse_rows(csv_path, data)[1]) if data else set()
        left = len(set(plan["indices"]) - done)
        if left:
            todo.append(plan["shard"])
            lines.append(f"shard {plan['shard']} of {num_shards}: {left} of {len(plan['indices'])} rows missing ({d})")
        if not base:
            base = _sweep_overrides(d)
    for shard in sorted(set(range(num_shards or 0)) - seen):
        todo.append(shard)
        lines.append(f"shard {shard} of {num_shards}: never started (no run dir)")
    return lines, sorted(todo), [str(o) for o in base]


def _sweep_overrides(run_dir: Path) -> list[str]:
    """The overrides of ``run_dir``'s job minus its shard: Hydra's own (launcher, sweep dir, resources) from
    ``.hydra/hydra.yaml``, then the task's from ``.hydra/overrides.yaml``, so a relaunch lands in the same sweep."""
    from omegaconf import OmegaConf

    per_job = ("certify.shard=", "predict.shard=", "hydra.run.dir=", "hydra.mode=", "hydra.job.")
    found: list[str] = []
    hydra_yaml, task_yaml = run_dir / ".hydra" / "hydra.yaml", run_dir / ".hydra" / "overrides.yaml"
    if hydra_yaml.is_file():
        found += [str(o) for o in OmegaConf.load(hydra_yaml).hydra.overrides.get("hydra", [])]
    if task_yaml.is_file():
        found += [str(o) for o in OmegaConf.load(task_yaml)]
    return [o for o in found if not o.startswith(per_job)]


def main(argv: list[str]) -> None:
    """``rsbench merge RUN_DIR... [-o OUT_DIR] [--stage certify|predict]``."""
    parser = argparse.ArgumentParser(prog="rsbench merge", description="Merge the run dirs of a sharded run.")
    parser.add_argument("runs", nargs="+", type=Path, help="shard run dirs (or sweep dirs holding them)")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="output dir (default: <common parent of the run dirs>/merged)")
    parser.add_argument("--stage", default="certify", choices=["certify", "predict"])
    parser.add_argument("--missing", action="store_true",
                        help="merge nothing: list the incomplete shards and print the command that re-runs only them")
    args = parser.parse_args(argv)
    dirs: list[Path] = []
    for d in args.runs:
        if not d.is_dir():
            print(f"rsbench merge: error: {d} does not exist or is not a folder", file=sys.stderr)
            sys.exit(2)
        if (d / f"{args.stage}.plan.json").exists():
            dirs.append(d)
        else:  # a sweep dir: take its run dirs (skip an earlier merge output)
            dirs += sorted(p.parent for p in d.glob(f"*/{args.stage}.plan.json") if p.parent.name != "merged")
    if args.missing:
        try:
            lines, todo, base = missing_shards(dirs, args.stage)
        except RsbenchError as exc:
            print(f"rsbench merge: error: {exc}", file=sys.stderr)
            sys.exit(2)
        if not todo:
            print(f"all {len(dirs)} shard(s) are complete")
            return
        print("\n".join(lines))
        shards = ",".join(map(str, todo))
        command = ["rsbench", args.stage, "-m", *base, f"{args.stage}.shard={shards}"]
        print(f"re-run only these: {shlex.join(command)}")
        return
    out = args.out or (Path(os.path.commonpath([d.resolve() for d in dirs])) / "merged" if dirs else Path("merged"))
    try:
        report = merge_runs(dirs, out, args.stage)
    except RsbenchError as exc:
        print(f"rsbench merge: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"merged {report['shards']} shard(s), {report['rows']} rows -> {report['csv']}")
