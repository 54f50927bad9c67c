"""Resumable training: a training killed at any moment (between epochs, inside a checkpoint write, inside the
final model save) and re-run ends with the weights of an uninterrupted run, bit for bit on CPU, a
``train_log.csv`` with each epoch once, and no temporary files left behind."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REPO, run_cli, wait_for
from rsbench.errors import RsbenchError
from rsbench.training import loop

EPOCHS = 4
# a conv net (channels-last), crop + flip, Gaussian noise, a shuffled order and SGD momentum: every state kind
ARGS = ["train", "model=cnn", "model.params.channels=[4,8]", "model.params.hidden=16", f"train.epochs={EPOCHS}",
        "train.max_examples=640", "train.augment=crop_flip", "train.optimizer=sgd", "train.lr=0.05",
        "train.schedule=cosine"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _start(run: Path, outputs: Path, kill_at_save: int | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "tests" / "kill_during_save.py"), str(kill_at_save)] if kill_at_save \
        else [sys.executable, "-m", "rsbench.cli"]
    return subprocess.Popen([*cmd, *ARGS, f"outputs_dir={outputs}", f"hydra.run.dir={run}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _log_rows(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "train_log.csv").drop(columns=["time_s"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train_ref")
    run_cli([*ARGS, f"hydra.run.dir={out / 'run'}"], out)
    return out / "run"


def test_killed_inside_saves_and_at_random_moments_resumes_to_the_same_weights(tmp_path, reference) -> None:
    """SIGKILL in the middle of the 2nd epoch's checkpoint write, then of the final model.pt write, then at
    random moments; the re-run command ends with the reference weights, each epoch logged once, no temp files."""
    run = tmp_path / "run"
    # a fresh run saves checkpoints after epochs 1..EPOCHS, then model.pt: the first kill lands in epoch 2's
    # checkpoint; the re-run resumes after epoch 1 and saves epochs 2..EPOCHS, so its save EPOCHS is model.pt
    for save in (2, EPOCHS):
        p = _start(run, tmp_path, kill_at_save=save)
        assert p.wait() == -signal.SIGKILL, p.stderr.read()[-2000:]
        assert not (run / "model.pt").exists()
        assert any(q.name.endswith(".tmp") for q in run.iterdir())  # what the kill left
    rng = random.Random(0)
    for _ in range(2):  # the last checkpoint is after epoch EPOCHS: these re-runs only redo the final save
        p = _start(run, tmp_path)
        time.sleep(rng.uniform(0.5, 4.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
    p = _start(run, tmp_path)
    assert p.wait() == 0, p.stderr.read()[-2000:]
    assert _same(_weights(run), _weights(reference))
    pd.testing.assert_frame_equal(_log_rows(run), _log_rows(reference))
    assert list(pd.read_csv(run / "train_log.csv")["epoch"]) == list(range(1, EPOCHS + 1))
    assert sorted(q.name for q in run.iterdir() if not q.name.startswith(".hydra")) == \
        [".train.lock", "model.pt", "train.log", "train_log.csv"]


def test_killed_between_epochs_resumes_mid_training(tmp_path, reference) -> None:
    """SIGKILL once the log shows epoch 1 (training still under way): the re-run resumes from the checkpoint."""
    run = tmp_path / "run"
    p = _start(run, tmp_path)
    wait_for(lambda: (run / "train_log.csv").exists() and len((run / "train_log.csv").read_text().splitlines()) >= 2,
             p, "epoch 1 was logged")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (run / "train_state.pt").exists() and not (run / "model.pt").exists()
    done = _start(run, tmp_path)
    _, err = done.communicate()
    assert done.returncode == 0, err[-2000:]
    assert "resuming training from" in (run / "train.log").read_text()
    assert _same(_weights(run), _weights(reference))
    pd.testing.assert_frame_equal(_log_rows(run), _log_rows(reference))
    assert not (run / "train_state.pt").exists()


def _stop_after_first_epoch(monkeypatch) -> None:
    save = loop.save_train_state

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_train_state", save_then_stop)


def test_a_checkpoint_of_other_settings_is_refused_and_overwrite_restarts(tmp_path, monkeypatch, reference) -> None:
    run = tmp_path / "run"
    _stop_after_first_epoch(monkeypatch)
    with pytest.raises(SystemExit):
        run_cli([*ARGS, f"hydra.run.dir={run}"], tmp_path)
    monkeypatch.undo()
    assert (run / "train_state.pt").exists()
    with pytest.raises(SystemExit) as exc:
        run_cli([*ARGS, "train.lr=0.01", f"hydra.run.dir={run}"], tmp_path)
    assert exc.value.code == 2
    run_cli([*ARGS, "train.lr=0.01", "train.overwrite=true", f"hydra.run.dir={run}"], tmp_path)
    assert pd.read_csv(run / "train_log.csv")["lr"].iloc[0] == 0.01
    assert not (run / "train_state.pt").exists()


def test_mismatch_message_names_the_setting(tmp_path) -> None:
    from rsbench.training.state import TrainState, load_train_state, save_train_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    st = TrainState({"order": torch.Generator().manual_seed(0)})
    save_train_state(tmp_path / "s.pt", model, opt, sched, st, {"train": {"lr": 0.1}, "seed": 0})
    with pytest.raises(RsbenchError, match=r"train\.lr \(0\.1 there, 0\.2 now\)"):
        load_train_state(tmp_path / "s.pt", model, opt, sched, st, {"train": {"lr": 0.2}, "seed": 0})
    (tmp_path / "s.pt").write_bytes(b"garbage")
    with pytest.raises(RsbenchError, match="corrupted"):
        load_train_state(tmp_path / "s.pt", model, opt, sched, st, {"train": {"lr": 0.1}, "seed": 0})


def test_checkpoint_records_the_commit_training_started_at(tmp_path, monkeypatch) -> None:
    """A training that outlives a commit records the code it ran, not the HEAD at its end."""
    from rsbench.models.checkpoint import read_checkpoint
    from rsbench.stages import common

    head = {"now": "aaaa"}
    monkeypatch.setattr(common, "source_commit", lambda: head["now"])
    inner = common.train_model

    def training_while_someone_commits(*args, **kwargs):
        head["now"] = "bbbb"
        return inner(*args, **kwargs)

    monkeypatch.setattr(common, "train_model", training_while_someone_commits)
    run_cli(["train", "model=mlp", "model.params.widths=[8]", "train.epochs=1", "train.max_examples=64",
             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert read_checkpoint(tmp_path / "run" / "model.pt")[1]["commit"] == "aaaa"
