"""``rsbench <stage> [hydra overrides]``: dispatch to the stage's Hydra app."""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path

STAGES = {
    "train": "train a base classifier (train.objective: gaussian, smoothadv, consistency, stability, macer, "
             "smoothmix; adversarial training; an SRA loss)",
    "certify": "certify test points (Cohen et al.'s CERTIFY) and write certify.csv",
    "predict": "predict with abstention (Cohen et al.'s PREDICT) and write predict.csv",
    "plot": "certified-accuracy figure and table from one or more certify runs",
    "robustness": "SRA robustness metrics of one network: margin/RS radius, noise and corruption curves, AUCs",
    "merge": "merge the run dirs of a sharded certify (or predict) run into one CSV",
    "compare": "paired comparison of two certify runs on the same points: differences with intervals, McNemar",
    "verify": "recompute every row's radius, bounds and sound flag from its votes; exit 1 on any mismatch",
    "figures": "draw every paper figure declared in conf/figures/ from the committed results, with claim verdicts",
}

PLAIN = {"merge": "rsbench.sharding", "compare": "rsbench.compare", "verify": "rsbench.verify",
         "figures": "rsbench.figures"}

USAGE = "usage: rsbench <stage> [hydra overrides ...]\n\nstages:\n" + "".join(
    f"  {name:<10} {text}\n" for name, text in STAGES.items()
) + (
    "\nEach stage is a Hydra app: 'rsbench certify --help' lists its config groups,\n"
    "'rsbench certify --cfg job' prints the resolved config, '-m' runs a sweep.\n"
    "Example: rsbench certify method=gaussian sigma=0.25\n"
)


def main(argv: list[str] | None = None) -> None:
    """Dispatch; Ctrl-C or SIGTERM at any moment (start-up included) is one line and exit 128 + signal."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return
    stage = args[0]
    if stage not in STAGES:
        from rsbench.config_check import refuse_unknown

        refuse_unknown("rsbench", "stage", stage, list(STAGES))
    signal.signal(signal.SIGTERM, _terminated)  # what a batch system sends before SIGKILL
    try:
        _dispatch(stage, args[1:])
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: rows are flushed one by one, so all is resumable
        then = "" if stage in PLAIN else "; re-run the same command to resume"
        print(f"\nrsbench {stage}: interrupted{then}", file=sys.stderr, flush=True)
        sys.exit(128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT))


def _dispatch(stage: str, rest: list[str]) -> None:
    """Run ``stage``: the overrides are checked (light imports: Hydra's parser and OmegaConf) before the stage's
    module, torch and the rest are imported, so a mistake is reported at once."""
    if stage in PLAIN:  # not Hydra apps: they take run dirs, not overrides
        importlib.import_module(PLAIN[stage]).main(rest)
        return
    from rsbench.config_check import CONF_DIR, check_overrides
    from rsbench.errors import RsbenchError

    rest = [group_override(a) for a in rest]
    try:  # Hydra's own report of a bad override is several lines and exit 1: check first, say it in one
        check_overrides(CONF_DIR, stage, rest)
    except RsbenchError as exc:
        print(f"rsbench {stage}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"rsbench.stages.{stage}")
    from rsbench.stages.rundir import USER_DIRS

    for arg in rest:  # folders the user made and named: a refused run must leave them in place
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and Path(value).is_dir():
            USER_DIRS.add(Path(value).resolve())
    from rsbench.cluster import install

    install()  # a sweep's failed submission or job is reported, one line per job
    sys.argv = [f"rsbench-{stage}", *rest]
    module.main()


GROUP_KEYS = {"train.objective": "train/objective"}  # a config group chosen by a value: train.objective=macer


def group_override(arg: str) -> str:
    """``train.objective=macer`` -> ``train/objective=macer`` (Hydra's group syntax); other arguments unchanged.
    A value override of one key (``train.objective.lbd=5``) or a dict value stays what it is."""
    key, sep, value = arg.partition("=")
    group = GROUP_KEYS.get(key)
    if group and sep and value and value.replace("_", "").isalnum():
        return f"{group}={value}"
    return arg


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up runs (locks released, temp files removed)."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


if __name__ == "__main__":
    main()
