"""Write docs/CONFIG.md, the configuration reference, from conf/ (keys, defaults and their comments).

    python scripts/config_reference.py            # rewrite docs/CONFIG.md
    python scripts/config_reference.py --check    # exit 1 if docs/CONFIG.md is not what conf/ gives

The reference is generated, and tests/test_docs.py checks it, so it cannot drift from conf/.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("_common", "train", "certify", "predict", "plot", "robustness")
GROUP_ORDER = ("dataset", "model", "method", "scale", "train", "train/objective", "experiment", "hydra/launcher")
NESTED = {"train/objective": "the training objective (rsbench/training/objectives.py): choose it with "
                             "`train.objective=NAME` or `train/objective=NAME`, set one hyperparameter with "
                             "`train.objective.KEY=VALUE`"}
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_+~][\w.+~/-]*):(?P<rest>.*)$")
_ITEM = re.compile(r"^(?P<indent> *)- (?P<item>.*)$")


@dataclass
class Entry:
    key: str
    value: str
    comment: list[str] = field(default_factory=list)


@dataclass
class ConfFile:
    path: Path
    about: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    is_global: bool = False


def _split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1:].strip()
    return text.strip(), ""


def parse(path: Path) -> ConfFile:
    """Keys (dotted), raw default values and comments of one YAML file, in file order; ``hydra:`` blocks
    of stage configs are left out (run-dir plumbing, documented in docs/USAGE.md)."""
    conf = ConfFile(path)
    stack: list[tuple[int, str]] = []
    last: Entry | None = None
    in_defaults = skip_indent = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip(" "))
        if skip_indent is not None and (indent > skip_indent or stripped.startswith("#") and indent > 0):
            continue
        skip_indent = None
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text == "@package _global_":
                conf.is_global = True
            elif last is None and not stack:
                conf.about.append(text)
            elif last is not None and indent > 0:
                last.comment.append(text)
            continue
        if (item := _ITEM.match(line)) and in_defaults is not None:
            value, _ = _split_comment(item["item"])
            conf.defaults.append(value.replace(": ", "=").replace("override /", ""))
            continue
        m = _KEY.match(line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value, comment = _split_comment(m["rest"])
        key = ".".join([k for _, k in stack] + [m["key"]])
        in_defaults = indent if key == "defaults" else None
        if key == "defaults":
            continue
        if key == "hydra" and path.parent.name != "launcher":
            skip_indent, last = indent, None
            continue
        if value:
            last = Entry(key, value, [comment] if comment else [])
            conf.entries.append(last)
        else:
            stack.append((indent, m["key"]))
            last = None
    return conf


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _key(conf: ConfFile, prefix: str, entry: Entry) -> str:
    return entry.key if conf.is_global or not prefix else f"{prefix}.{entry.key}"


def _about(conf: ConfFile, conf_dir: Path) -> str:
    return f"`{conf.path.relative_to(conf_dir.parent)}`" + (f". {' '.join(conf.about)}" if conf.about else "")


def meanings(parsed: list[tuple[ConfFile, str]]) -> dict[str, str]:
    """The first comment given for each full key (a group's options comment a shared key once)."""
    full: dict[str, str] = {}
    for conf, prefix in parsed:
        for e in conf.entries:
            if e.comment:
                full.setdefault(_key(conf, prefix, e), " ".join(e.comment))
    return full


def render(conf_dir: Path) -> str:
    """The whole reference as Markdown: one table of keys (default, meaning) per stage config, and per
    config group the keys its options set and one line per option."""
    stages = [(parse(conf_dir / f"{s}.yaml"), "") for s in STAGES]
    groups = {g: [(parse(f), g.replace("/", ".")) for f in sorted((conf_dir / g).glob("*.yaml"))] for g in GROUP_ORDER}
    full = meanings(stages + [p for g in groups.values() for p in g])

    def meaning(key: str) -> str:  # predict.n and robustness.overwrite say what certify.n and .overwrite say
        head, _, tail = key.partition(".")
        same = [full.get(f"{stage}.{tail}", "") for stage in ("certify", "train") if head in STAGES]
        return full.get(key) or next((m for m in same if m), "")

    out = ["# Configuration reference", "",
           "Generated from `conf/` by `python scripts/config_reference.py` (`make docs`); `tests/test_docs.py` fails",
           "when this file and `conf/` disagree, or when a key has no comment in `conf/`. Set any key on the",
           "command line as `key=value` (`rsbench certify certify.n=10000`) and a group option as `group=option`",
           "(`method=mog`). Defaults that read `${scale.*}` come from the `scale` group (`quick` unless",
           "`scale=paper`); explicit overrides win. Run-dir naming, resuming and the error rules: `docs/USAGE.md`.",
           "", "## Stage configs", ""]
    for conf, _ in stages:
        stage = conf.path.stem
        title = "### Shared by every stage" if stage == "_common" else f"### `rsbench {stage}`"
        out += [title, "", _about(conf, conf_dir), ""]
        if conf.defaults:
            out += ["Defaults: " + ", ".join(f"`{d}`" for d in conf.defaults if d != "_self_") + ".", ""]
        if conf.entries:
            out += ["| key | default | meaning |", "|---|---|---|"]
            out += [f"| `{_cell(e.key)}` | `{_cell(e.value)}` | {_cell(meaning(e.key))} |" for e in conf.entries]
            out.append("")
    out += ["## Config groups", ""]
    for group, parsed in groups.items():
        out += [f"### `{group}`", ""]
        if group != "experiment":
            keys = list(dict.fromkeys(_key(c, p, e) for c, p in parsed for e in c.entries if not c.is_global))
            if group in NESTED:
                keys.insert(0, group.replace("/", "."))
                full[keys[0]] = NESTED[group]
            if keys:
                out += ["| key | meaning |", "|---|---|"]
                out += [f"| `{_cell(k)}` | {_cell(meaning(k))} |" for k in keys] + [""]
        out += ["| option | what it is | sets |", "|---|---|---|"]
        for conf, prefix in parsed:
            sets = [f"`{_cell(d)}`" for d in conf.defaults]
            sets += [f"`{_cell(_key(conf, prefix, e))}={_cell(e.value)}`" for e in conf.entries
                     if e.value != "null" and not e.key.endswith(".name") and e.key != "name"]
            out.append(f"| `{conf.path.stem}` | {_cell(' '.join(conf.about))} | {', '.join(sets)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def undocumented(conf_dir: Path) -> list[str]:
    """Keys of stage configs and group options whose meaning is given nowhere in conf/."""
    text = render(conf_dir)
    return re.findall(r"^\| `([^`]+)` \|(?: `[^|]*` \|)?\s*\|$", text, flags=re.M)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/CONFIG.md is out of date")
    args = ap.parse_args()
    target = ROOT / "docs" / "CONFIG.md"
    text = render(ROOT / "conf")
    if args.check:
        if not target.exists() or target.read_text() != text:
            sys.exit(f"{target} is out of date with conf/: run python scripts/config_reference.py")
        return
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
