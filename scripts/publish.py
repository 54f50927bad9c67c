"""Publish a trained model or a run's per-point results under outputs/published/ (tracked in git).

    python scripts/publish.py model RUN_DIR NAME --command "rsbench train ..."   # -> models/NAME.pt + manifest
    python scripts/publish.py results RUN_DIR DEST                              # -> results/DEST/

model: copies RUN_DIR/model.pt to outputs/published/models/NAME.pt and its train_log.csv beside it (the
learning curve), and records in models/MANIFEST.json its sha256, the command that trained it, the source
commit and machine the checkpoint recorded (or --commit / --machine), the clean and noisy test accuracy of
its last epoch (on the dataset's test split: for CIFAR-10, the 1,017 genuine test images) and the training
wall time (the sum of its epochs, across resumes). `model.checkpoint=outputs/published/models/NAME.pt`
then checks that sha256 before loading.

results: copies RUN_DIR's certify.csv (or predict.csv; or an `rsbench robustness` run's points.csv, rs.csv,
curves.csv and summary.json), its fingerprint and Hydra's config.yaml and overrides.yaml to
outputs/published/results/DEST/, so `make figures` redraws every published table from them. A sweep dir, or
a run of several certificates (`method.certificate=[...]`: certificate-*/), is published run by run under the
same relative paths.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from rsbench.cache import write_json_atomic
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import read_checkpoint
from rsbench.models.manifest import add_to_manifest, read_manifest

ROOT = Path(__file__).resolve().parents[1] / "outputs" / "published"
# rsbench robustness: per-point margin radii, per-point RS certificates, the curves and the summary
# what each dataset's clean_acc was measured on (train_log.csv's test_acc)
TEST_IMAGES = {"cifar10": "the 1,017 genuine CIFAR-10 test images", "mnist": "the 10,000 MNIST test images"}
ROBUSTNESS_FILES = ("points.csv", "rs.csv", "curves.csv", "summary.json")


def publish_model(run: Path, name: str, command: str, commit: str | None, machine: str | None) -> None:
    _, meta = read_checkpoint(run / "model.pt")
    log = pd.read_csv(run / "train_log.csv")
    if list(log["epoch"]) != list(range(1, int(meta["epochs"]) + 1)):
        raise RsbenchError(f"{run / 'train_log.csv'} does not hold epochs 1..{meta['epochs']} once each")
    folder = ROOT / "models"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "model.pt", folder / f"{name}.pt")
    shutil.copyfile(run / "train_log.csv", folder / f"{name}.train_log.csv")
    commit = commit or meta.get("commit")
    if not commit or commit.endswith("+dirty"):
        raise RsbenchError(f"the checkpoint records commit {commit!r}: pass --commit with the commit it was trained at")
    add_to_manifest(folder, f"{name}.pt", {
        "command": command, "commit": commit, "machine": machine or meta.get("machine"),
        "dataset": meta["dataset"], "arch": meta["arch"], "params": meta["params"],
        "train_noise_sigma": meta["train_noise_sigma"], "epochs": int(meta["epochs"]), "seed": meta["seed"],
        "clean_acc": float(log["test_acc"].iloc[-1]), "noisy_acc": float(log["test_acc_noisy"].iloc[-1]),
        "test_images": TEST_IMAGES.get(meta["dataset"], f"the {meta['dataset']} test split"),
        "wall_s": round(float(log["time_s"].sum()), 1), "train_log": f"{name}.train_log.csv"})
    print(f"published {folder / f'{name}.pt'} (manifest {folder / 'MANIFEST.json'})")


def record_published_digest(fingerprint: Path) -> None:
    """A run made before runs recorded their model's sha256 gets the digest of the published model it names (its
    load checked that file against the manifest); one that records another digest is refused."""
    data = json.loads(fingerprint.read_text())
    model = data.get("model") or {}
    named = Path(str(model.get("checkpoint")))
    entry = read_manifest(ROOT / "models").get(named.name) if named.parent == Path("outputs/published/models") \
        else None
    if entry is None:
        return
    if model.get("sha256") not in (None, entry["sha256"]):
        raise RsbenchError(f"{fingerprint}: its model's sha256 is not that of the published {named}")
    if model.get("sha256") is None:
        data["model"] = {**model, "sha256": entry["sha256"]}
        write_json_atomic(fingerprint, data)


def publish_results(run: Path, dest: str) -> None:
    """Copy a run's result files (and its saved config) to ``results/<dest>``; a sweep dir, or a run of several
    certificates (``certificate-*``), is published run by run under the same relative paths."""
    if not any((run / n).is_file() for n in ("certify.csv", "predict.csv", "summary.json")):
        runs = sorted({p.parent for p in [*run.glob("*/certify.csv"), *run.glob("*/certificate-*/certify.csv"),
                                          *run.glob("certificate-*/certify.csv")]})
        if runs:
            for sub in runs:
                publish_results(sub, f"{dest}/{sub.relative_to(run)}")
            return
    target = ROOT / "results" / dest
    target.mkdir(parents=True, exist_ok=True)
    csvs = [p for p in (run / "certify.csv", run / "predict.csv") if p.is_file()]
    if (run / "summary.json").is_file() and (run / "points.csv").is_file():  # rsbench robustness (SRA)
        csvs += [p for p in (run / n for n in ROBUSTNESS_FILES) if p.is_file()]
    if not csvs:
        raise RsbenchError(f"{run} holds no certify.csv, predict.csv or robustness results (summary.json, points.csv)")
    for p in [*csvs, *run.glob("*.fingerprint.json")]:
        shutil.copyfile(p, target / p.name)
        if p.name.endswith(".fingerprint.json"):
            record_published_digest(target / p.name)
    (target / ".hydra").mkdir(exist_ok=True)
    for name in ("config.yaml", "overrides.yaml", "shared_pass.yaml"):  # the run's settings and record
        if (run / ".hydra" / name).is_file():
            shutil.copyfile(run / ".hydra" / name, target / ".hydra" / name)
    print(f"published {', '.join(p.name for p in csvs)} of {run} -> {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("model")
    m.add_argument("run", type=Path)
    m.add_argument("name")
    m.add_argument("--command", required=True, help="the command that trained it")
    m.add_argument("--commit", help="the source commit it was trained at (default: what the checkpoint records)")
    m.add_argument("--machine", help="where it was trained (default: what the checkpoint records)")
    r = sub.add_parser("results")
    r.add_argument("run", type=Path)
    r.add_argument("dest", help="folder under outputs/published/results/, e.g. cifar10/cohen/sigma-0.5")
    args = ap.parse_args()
    try:
        if args.what == "model":
            publish_model(args.run, args.name, args.command, args.commit, args.machine)
        else:
            publish_results(args.run, args.dest)
    except RsbenchError as exc:
        sys.exit(f"publish: error: {exc}")


if __name__ == "__main__":
    main()
