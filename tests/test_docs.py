"""The configuration reference in docs/ is generated from conf/ and must match it; every key has a meaning."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def _reference():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["config_reference"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_config_reference_matches_conf() -> None:
    ref = _reference()
    assert (ROOT / "docs" / "CONFIG.md").read_text() == ref.render(ROOT / "conf"), \
        "docs/CONFIG.md is out of date: run python scripts/config_reference.py (make docs)"


def test_every_config_key_has_a_meaning() -> None:
    assert _reference().undocumented(ROOT / "conf") == [], "add a comment to these keys in conf/"


def test_reference_lists_every_key_of_the_composed_configs() -> None:
    """Keys the stages really see (composed by Hydra) are all in the reference, with their defaults."""
    from hydra import compose, initialize_config_dir

    text = (ROOT / "docs" / "CONFIG.md").read_text()
    listed = set(re.findall(r"^\| `([^`=]+)` \|", text, flags=re.M))
    for stage in ("train", "certify", "predict", "plot", "robustness"):
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3", job_name=stage):
            cfg = compose(config_name=stage)
        for top, node in cfg.items():
            keys = [f"{top}.{k}" for k in node] if OmegaConf.is_dict(node) else [top]
            for key in keys:
                assert key in listed, f"{stage}: {key} is missing from docs/CONFIG.md"


def test_doc_links_resolve() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(((?:docs/)?[A-Z]+\.md)\)", doc.read_text()):
            assert (doc.parent / target).exists() or (ROOT / target).exists(), f"{doc.name} links to {target}"
