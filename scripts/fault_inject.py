"""Fault injection: rsbench certify killed at random moments, run twice at once, and as two array jobs on an
empty cache must each end with the CSV of an uninterrupted run (timing aside), with no manual clean-up.

    python scripts/fault_inject.py [--kills 20] [--seed 0] [--out /tmp/rsbench-faults]

1. reference: one uninterrupted run on a fresh outputs dir (it trains and caches the default model first);
2. kills: on another fresh outputs dir, the same command started --kills times and SIGKILLed after a random
   delay (the first ones land while the default model is being trained), then run to the end;
3. concurrent copies: two copies of the command at once on a fresh outputs dir (one may be refused because
   the other holds the run dir; it is then re-run);
4. concurrent array jobs: shards 0 and 1 of 2 at once on a fresh outputs dir (both need the uncached default
   model), then `rsbench merge`;
5. training kills: `rsbench train` killed inside a training checkpoint write and inside the model.pt write
   (tests/kill_during_save.py), then --kills times at random moments, then run to the end: the final weights
   must equal an uninterrupted training's bit for bit, train_log.csv must hold each epoch once, and no
   temporary file may be left in the run dir.
Prints one line per scenario and exits 1 if any result differs from the reference.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["certify", "model=cnn", "train.epochs=2", "certify.n0=50", "certify.n=500", "certify.skip=40",
           "certify.max=1000", "certify.batch=200"]


TRAIN = ["train", "model=cnn", "train.epochs=6", "train.max_examples=1600", "train.augment=crop_flip",
         "train.optimizer=sgd", "train.lr=0.05"]


def start_train(outputs: Path, kill_at_save: int | None = None) -> subprocess.Popen:
    """``rsbench train`` (SIGKILLed inside its ``kill_at_save``-th torch save when given)."""
    head = [str(REPO / "tests" / "kill_during_save.py"), str(kill_at_save)] if kill_at_save else ["-m", "rsbench.cli"]
    return subprocess.Popen([sys.executable, *head, *TRAIN, f"outputs_dir={outputs}",
                             f"hydra.run.dir={outputs / 'run'}"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def training_kills(out: Path, kills: int, rng: random.Random) -> tuple[bool, str]:
    """Scenario 5: (same as the reference, what was found)."""
    ref, run = out / "reference", out / "killed"
    if start_train(ref).wait(timeout=900) != 0:
        raise SystemExit("the reference training failed")
    start_train(run, kill_at_save=3).wait()  # inside epoch 3's checkpoint: the one after epoch 2 survives
    start_train(run, kill_at_save=2).wait()  # resumed after epoch 2: inside epoch 4's checkpoint
    start_train(run, kill_at_save=4).wait()  # resumed after epoch 3: epochs 4-6's checkpoints, then inside model.pt
    for _ in range(kills):
        p = start_train(run)
        time.sleep(rng.uniform(1.0, 8.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
    if start_train(run).wait(timeout=900) != 0:
        raise SystemExit("the resumed training failed")
    a, b = (torch.load(d / "run" / "model.pt", weights_only=True)["state_dict"] for d in (run, ref))
    epochs = list(pd.read_csv(run / "run" / "train_log.csv")["epoch"])
    temps = [p.name for p in (run / "run").iterdir() if p.name.endswith(".tmp")]
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return same and epochs == list(range(1, 7)) and not temps, \
        f"weights {'identical' if same else 'DIFFER'}, epochs logged {epochs}, temp files {temps}"


def start(outputs: Path, run: str = "run", *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rsbench.cli", *COMMAND, *extra, f"outputs_dir={outputs}",
                             f"hydra.run.dir={outputs / run}"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(outputs: Path, run: str = "run", *extra: str) -> None:
    p = start(outputs, run, *extra)
    _, err = p.communicate(timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"a run that should finish failed ({p.returncode}): {err.strip().splitlines()[-1:]}")


def rows(csv: Path) -> pd.DataFrame:
    return pd.read_csv(csv).drop(columns=["time_s"]).sort_values("idx").reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=14.0, help="kill delays are uniform in [1, this] seconds")
    ap.add_argument("--out", type=Path, default=Path("/tmp/rsbench-faults"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    failures = 0

    def check(name: str, got: pd.DataFrame, ref: pd.DataFrame) -> None:
        nonlocal failures
        same = got.equals(ref)
        failures += not same
        print(f"{name}: {'identical to the reference' if same else 'DIFFERS from the reference'} ({len(got)} rows)",
              flush=True)

    t0 = time.perf_counter()
    finish(args.out / "reference")
    reference = rows(args.out / "reference" / "run" / "certify.csv")
    print(f"reference: {len(reference)} rows in {time.perf_counter() - t0:.1f} s", flush=True)

    killed = args.out / "kills"
    for _ in range(args.kills):
        p = start(killed)
        time.sleep(rng.uniform(1.0, args.max_delay))
        p.send_signal(signal.SIGKILL)
        p.wait()
    finish(killed)
    check(f"{args.kills} random SIGKILLs, then the same command", rows(killed / "run" / "certify.csv"), reference)

    both = args.out / "concurrent"
    procs = [start(both) for _ in range(2)]
    codes = [p.wait(timeout=900) for p in procs]
    if any(c not in (0, 2) for c in codes):
        raise SystemExit(f"concurrent copies exited with {codes}")
    finish(both)  # the refused copy, re-run: resumes or finds everything done
    check(f"two concurrent copies (exit codes {codes})", rows(both / "run" / "certify.csv"), reference)

    array = args.out / "array"
    procs = [start(array, f"s{i}", f"certify.shard={i}", "certify.num_shards=2") for i in range(2)]
    codes = [p.wait(timeout=900) for p in procs]
    if codes != [0, 0]:
        raise SystemExit(f"concurrent array jobs exited with {codes}")
    subprocess.run([sys.executable, "-m", "rsbench.cli", "merge", str(array / "s0"), str(array / "s1"), "-o",
                    str(array / "merged")], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    check("two concurrent array jobs on an empty cache, merged", rows(array / "merged" / "certify.csv"), reference)
    same, found = training_kills(args.out / "train", args.kills, rng)
    failures += not same
    print(f"training killed inside 3 saves and {args.kills} times at random, then re-run: "
          f"{'identical to the reference' if same else 'DIFFERS from the reference'} ({found})", flush=True)
    print(f"{failures} scenario(s) differ; {time.perf_counter() - t0:.0f} s in all")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
