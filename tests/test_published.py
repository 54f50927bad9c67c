"""Published models and results (outputs/published/): the manifest's sha256 guards every checkpoint, and the
committed per-point results come from the committed models."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_CERTIFY, read_rows, run_cli, run_cli_subprocess
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import read_checkpoint
from rsbench.models.manifest import MANIFEST, add_to_manifest, read_manifest, sha256_file, verify_published

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from publish import TEST_IMAGES  # noqa: E402

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
        assert entry["test_images"] == TEST_IMAGES[entry["dataset"]], f"{name}: its test images are its dataset's"


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


def test_a_tampered_published_checkpoint_is_refused_through_a_symlink(tmp_path, tiny_model) -> None:
    """The manifest is looked up beside the real file: a link elsewhere to a tampered published model is refused."""
    folder = tmp_path / "published"
    folder.mkdir()
    shutil.copyfile(tiny_model, folder / "tiny.pt")
    add_to_manifest(folder, "tiny.pt", {"command": "rsbench train ...", "commit": "abc"})
    data = bytearray((folder / "tiny.pt").read_bytes())
    data[-100] ^= 1
    (folder / "tiny.pt").write_bytes(bytes(data))
    link = tmp_path / "elsewhere" / "m.pt"
    link.parent.mkdir()
    link.symlink_to(folder / "tiny.pt")
    with pytest.raises(RsbenchError, match="through the link.*does not match its manifest"):
        verify_published(link)
    with pytest.raises(SystemExit) as exit_:
        run_cli(["certify", *TINY_CERTIFY, "certify.max=100", f"model.checkpoint={link}",
                 f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert exit_.value.code == 2 and not (tmp_path / "run" / "certify.csv").exists()


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


def _published_runs() -> list[Path]:
    return sorted(p.parent for p in (PUBLISHED / "results").rglob(".hydra"))


def _overrides(run: Path) -> list[str]:
    return [str(o) for o in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())]


def test_every_published_run_names_the_published_model_it_used_in_its_own_record() -> None:
    """Each published run re-runs from its own record: its overrides name a model of outputs/published/models, its
    fingerprint names the same file with the manifest's sha256, and a certificate that shared a sampling pass
    records the command of that pass."""
    models = read_manifest(PUBLISHED / "models")
    runs = _published_runs()
    assert len(runs) > 60
    for run in runs:
        named = [o.split("=", 1)[1] for o in _overrides(run) if o.startswith("model.checkpoint=")]
        assert len(named) == 1, f"{run}: its overrides name no model.checkpoint (or several)"
        path = Path(named[0])
        assert path.parent == Path("outputs/published/models") and path.name in models, f"{run}: {path}"
        for fingerprint in run.glob("*.fingerprint.json"):
            model = json.loads(fingerprint.read_text())["model"]
            assert model["checkpoint"] == named[0] and model["sha256"] == models[path.name]["sha256"], fingerprint
        shared = run / ".hydra" / "shared_pass.yaml"
        if shared.is_file():
            command = yaml.safe_load(shared.read_text())["command"]
            alone = [o for o in _overrides(run) if not o.startswith("method.certificate=")]
            assert all(o in command for o in alone) and "method.certificate=[" in command, shared


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="needs ../shared/data")
def test_a_published_run_reruns_from_its_own_record(tmp_path) -> None:
    """Its recorded overrides, with the published model, give its first rows again bit for bit (timing aside)."""
    run = PUBLISHED / "results" / "mnist" / "objectives" / "sigma-0.5" / "gaussian" / "certify"
    committed = read_rows(run / "certify.csv")
    first = committed.head(2)
    args = [f"model.checkpoint={REPO / o.split('=', 1)[1]}" if o.startswith("model.checkpoint=") else o
            for o in _overrides(run)]
    run_cli(["certify", *args, f"certify.max={int(first['idx'].max()) + 1}", f"dataset.data_dir={SHARED_DATA}",
             f"hydra.run.dir={tmp_path / 'again'}"], tmp_path)
    pd.testing.assert_frame_equal(read_rows(tmp_path / "again" / "certify.csv"), first)
