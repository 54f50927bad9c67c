"""Check a command's overrides before Hydra runs the stage, so every mistake is one line with a suggestion.

Hydra reports a bad override as several lines with exit status 1, and even advises ``+methd=mog`` for a
misspelt ``method``. Here the stage's config is composed with the same overrides first (sweeps take
their first value); a parse error, an unknown key or an unknown group option becomes an
:class:`RsbenchError` such as "unknown key 'methd'; did you mean 'method'?".
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rsbench.errors import RsbenchError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # the config groups, beside the package

# flags after which Hydra does its own thing (help, printing configs, shell completion)
_HANDS_OFF = {"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-p", "--package", "--shell-completion",
              "-sc", "--run", "-r", "--resolve"}
_FLAGS_WITH_VALUE = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--experimental-rerun"}


def suggest(name: str, valid: list[str]) -> str:
    """"; did you mean 'x'?" for the closest valid name (case-insensitive), or ""."""
    lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return f"; did you mean '{lower[close[0]]}'?" if close else ""


def refuse_unknown(prog: str, kind: str, name: str, valid: list[str]) -> None:
    """Exit 2 with one line: ``<prog>: error: unknown <kind> 'name'; valid <kind>s: ...; did you mean ...``."""
    print(f"{prog}: error: unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}{suggest(name, valid)}",
          file=sys.stderr)
    sys.exit(2)


def _overrides(args: list[str]) -> list[str] | None:
    """The override strings among the stage's arguments, or None when a flag hands control to Hydra."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in _HANDS_OFF:
            return None
        elif a in _FLAGS_WITH_VALUE:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def _first_values(overrides: list[str]) -> list[str]:
    """Parse the overrides (one line on a syntax error) and replace each sweep by its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    out = []
    for text in overrides:
        try:
            (o,) = parser.parse_overrides([text])
        except HydraException as exc:
            reason = str(exc).splitlines()
            detail = reason[1] if len(reason) > 1 and reason[0].startswith("Error parsing") else reason[0]
            raise RsbenchError(f"cannot parse override {text!r} ({detail}); overrides are key=value, "
                               "e.g. sigma=0.5, radii=[0,0.5,1]") from None
        key = o.get_key_element()
        if not o.key_or_group:
            raise RsbenchError(f"override {text!r} has no key; overrides are key=value, e.g. sigma=0.5")
        if key.lstrip("+~").startswith("hydra"):  # launcher and run-dir settings: Hydra checks them
            continue
        if o.is_sweep_override():
            if o.is_range_sweep() or o.is_interval_sweep():
                continue
            value = next(iter(o.sweep_string_iterator()))
        elif o.is_delete():
            out.append(text)
            continue
        else:
            value = o.get_value_element_as_str()
        out.append(f"{key}={value}")
    return out


def _unknown_part(cfg: DictConfig, dotted: str) -> tuple[str, str, list[str]]:
    """(the first component of ``dotted`` that ``cfg`` lacks, the path above it, the keys valid there)."""
    node: Any = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        if part not in keys:
            return part, ".".join(parts[:i]), keys
        node = node[part]
    return parts[-1], ".".join(parts[:-1]), []


def _nested(cfg: DictConfig, name: str) -> str:
    """"; did you mean 'certify.alpha'?" for a top-level ``name`` that is a key of one of the config's sections."""
    found = [f"{section}.{name}" for section in cfg if isinstance(cfg.get(section), DictConfig)
             and name in cfg[section]]
    return f"; did you mean {' or '.join(repr(f) for f in found)}?" if found else ""


SLURM_SIGNAL_RESOLUTION_S = 60  # sbatch(1), --signal: "the signal may be sent up to 60 seconds earlier than specified"
JOB_START_S = 30  # time a job needs to start Python and install submitit's handler before a signal can requeue it


def check_slurm_timing(conf_dir: str, overrides: list[str]) -> None:
    """SLURM signals a job ``signal_delay_s`` before its time limit so submitit can requeue it, and may send
    that signal up to 60 s early. A signal that lands before submitit's handler exists kills the job with
    nothing done and no requeue, so refuse ``timeout_min * 60 < signal_delay_s + 60 + 30`` before anything
    is submitted (the 30 s let the job start)."""
    if "hydra/launcher=slurm" not in overrides:
        return
    preset = OmegaConf.load(f"{conf_dir}/hydra/launcher/slurm.yaml")
    values = {"timeout_min": preset.get("timeout_min"), "signal_delay_s": preset.get("signal_delay_s")}
    for o in overrides:
        key, _, value = o.partition("=")
        name = key.removeprefix("hydra.launcher.")
        if name in values and key.startswith("hydra.launcher."):
            try:
                values[name] = float(value)
            except ValueError:
                raise RsbenchError(f"{key}={value!r} is invalid: it must be a number") from None
    timeout, delay = float(values["timeout_min"]), float(values["signal_delay_s"])
    least = delay + SLURM_SIGNAL_RESOLUTION_S + JOB_START_S
    if timeout * 60 < least:
        raise RsbenchError(f"hydra.launcher.timeout_min={timeout:g} is too short for signal_delay_s={delay:g}: SLURM "
                           f"may send the requeue signal up to {SLURM_SIGNAL_RESOLUTION_S} s early, before the job "
                           f"can catch it; use timeout_min >= {math.ceil(least / 60)} or a smaller "
                           "hydra.launcher.signal_delay_s")


def check_overrides(conf_dir: str, stage: str, args: list[str]) -> None:
    """Compose ``conf_dir/<stage>.yaml`` with the overrides in ``args``; raise one-line errors for bad ones."""
    overrides = _overrides(args)
    if not overrides:
        return
    check_slurm_timing(conf_dir, overrides)
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException

    plain = _first_values(overrides)

    def compose_with(ovs: list[str]) -> DictConfig:
        with initialize_config_dir(conf_dir, version_base="1.3", job_name=stage):
            return compose(config_name=stage, overrides=ovs)

    try:
        composed = compose_with(plain)
    except MissingConfigException as exc:
        m = re.search(r"Could not find '([^']+)/([^']+)'", str(exc))
        options = list(getattr(exc, "options", None) or [])
        if not m:
            raise RsbenchError(str(exc).splitlines()[0]) from None
        group, name = m[1], m[2]
        raise RsbenchError(f"unknown {group} {name!r}; valid {group}s: {', '.join(options)}"
                           f"{suggest(name, options)}") from None
    except ConfigCompositionException as exc:
        m = re.search(r"Could not override '([^']+)'", str(exc))
        if not m:
            first = str(exc).splitlines()[0]
            raise RsbenchError(first) from None
        key = m[1]
        rest = [o for o in plain if not o.split("=", 1)[0].lstrip("+~") == key]
        try:
            base = compose_with(rest)
            part, parent, valid = _unknown_part(base, key)
        except Exception:  # the other overrides are broken too: report this one without a suggestion
            base, part, parent, valid = None, key, "", []
        hint = suggest(part, valid) or (_nested(base, key) if base is not None and "." not in key else "")
        if not hint and parent and 0 < len(valid) <= 30:
            hint = f"; valid keys in '{parent}': {', '.join(valid)}"
        where = f" ('{part}' is not a key{f' of {parent!r}' if parent else ''})" if part != key else ""
        raise RsbenchError(f"unknown key {key!r}{where}{hint}") from None
    check_common(composed)
    check_writable_dir(str(composed.outputs_dir), "outputs_dir")
    for o in overrides:
        key, _, value = o.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value:
            check_writable_dir(value, key)


def check_common(cfg: DictConfig) -> None:
    """The top-level values every stage reads (``conf/_common.yaml``), checked before anything runs: ``seed`` an
    integer >= 0, ``radii`` a list of finite numbers >= 0."""
    seed = cfg.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise RsbenchError(f"seed={seed!r} is invalid: it must be an integer >= 0")
    radii = cfg.get("radii")
    example = "e.g. radii=[0,0.25,0.5,1]"
    if radii is None:
        return
    if isinstance(radii, (str, int, float)) or not hasattr(radii, "__iter__"):
        raise RsbenchError(f"radii={radii!r} is invalid: it must be a list of radii, {example}")
    for r in radii:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise RsbenchError(f"radii={list(radii)!r} is invalid: {r!r} is not a finite number >= 0 ({example})")


def check_writable_dir(path: str, what: str) -> None:
    """Refuse, before Hydra makes any run dir, an output path that names a file (or lies under one) or that
    cannot be written: the first existing folder on its way is probed with a temporary folder."""
    import os
    import tempfile

    p = Path(path).expanduser().absolute()
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RsbenchError(f"{what}={path} cannot be a folder: {existing} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rsbench-probe-", dir=existing))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RsbenchError(f"{what}={path} cannot be written: {existing}: {reason}") from None
