"""Published models and results (outputs/published/): the manifest's sha256 guards every checkpoint, and the
committed per-point results come from the committed models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_CERTIFY, read_rows, run_cli, run_cli_subprocess
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import read_checkpoint
from rsbench.models.manifest import MANIFEST, add_to_manifest, read_manifest, sha256_file, verify_published

PUBLISHED = REPO / "outputs" / "published"


def test_every_published_checkpoint_matches_its_manifest() -> None:
    folder = PUBLISHED / "models"
    entries = read_manifest(folder)
    assert sorted(entries) == sorted(p.name for p in folder.glob("*.pt")), "every .pt has an entry and no more"
    for name, entry in entries.items():
        assert verify_published(folder / name) == entry
        _, meta = read_checkpoint(folder / name)
        assert meta["train_noise_sigma"] == entry["train_noise_sigma"] and meta["epochs"] == entry["epochs"]
        assert {"command", "commit", "machine", "clean_acc", "noisy_acc", "wall_s"} <= set(entry)
        assert (folder / entry["train_log"]).is_file()


def test_a_modified_published_checkpoint_is_refused(tmp_path, tiny_model) -> None:
    folder = tmp_path / "published"
    folder.mkdir()
    shutil.copyfile(tiny_model, folder / "tiny.pt")
    add_to_manifest(folder, "tiny.pt", {"command": "rsbench train ...", "commit": "abc"})
    assert read_manifest(folder)["tiny.pt"]["sha256"] == sha256_file(tiny_model)
    args = ["certify", *TINY_CERTIFY, "certify.max=100", f"outputs_dir={tmp_path}"]
    ok = run_cli_subprocess([*args, f"model.checkpoint={folder / 'tiny.pt'}", f"hydra.run.dir={tmp_path / 'a'}"],
                            tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    data = bytearray((folder / "tiny.pt").read_bytes())
    data[-100] ^= 1  # one bit, inside the weights: the file still loads, only the digest tells
    (folder / "tiny.pt").write_bytes(bytes(data))
    bad = run_cli_subprocess([*args, f"model.checkpoint={folder / 'tiny.pt'}", f"hydra.run.dir={tmp_path / 'b'}"],
                             tmp_path)
    assert bad.returncode == 2 and "does not match its manifest" in bad.stderr.strip().splitlines()[-1], bad.stderr
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(RsbenchError, match="damaged"):
        verify_published(folder / "tiny.pt")


def test_a_checkpoint_without_a_manifest_entry_loads_unchecked(tmp_path, tiny_model) -> None:
    shutil.copyfile(tiny_model, tmp_path / "other.pt")
    add_to_manifest(tmp_path, "other.pt", {})
    assert verify_published(Path(tiny_model)) is None


CI_CHECK = PUBLISHED / "results" / "cifar10" / "ci_check"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.mark.skipif(not (CI_CHECK / "certify.csv").is_file() or not (SHARED_DATA / "cifar10-jpeg").is_dir(),
                    reason="needs the published sigma = 0.5 model's check rows and ../shared/data")
def test_published_results_come_from_the_published_model(tmp_path) -> None:
    """Certify the shipped sigma = 0.5 ResNet-20 on the committed check points (10 genuine test images, the N
    recorded there) and compare with the committed rows, bit for bit (timing aside)."""
    overrides = yaml.safe_load((CI_CHECK / ".hydra" / "overrides.yaml").read_text())
    args = [f"model.checkpoint={REPO / o.split('=', 1)[1]}" if o.startswith("model.checkpoint=") else o
            for o in overrides if not o.startswith(("hydra.", "outputs_dir", "dataset.data_dir"))]
    run_cli(["certify", *args, f"dataset.data_dir={SHARED_DATA}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    pd.testing.assert_frame_equal(read_rows(tmp_path / "run" / "certify.csv"), read_rows(CI_CHECK / "certify.csv"))
