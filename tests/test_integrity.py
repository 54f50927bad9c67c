"""Runs that can't corrupt or hang: non-finite models, certificate-boundary checks, one writer per run dir,
cached artefacts built once under a lock and published atomically (issue: runs that can't corrupt)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import CERTIFY_SETTINGS, REPO, SHARED_DATA, TINY_CERTIFY, TINY_TRAIN, read_rows, run_cli, wait_for
from rsbench.cache import cached, file_lock
from rsbench.certify.lipschitz import idrs_lipschitz
from rsbench.certify.sampling import PointSampler
from rsbench.errors import RsbenchError
from rsbench.methods import make_method
from rsbench.models.checkpoint import FORMAT
from rsbench.models.sigma_net import SigmaNet
from rsbench.noise.gaussian import GaussianNoise
from rsbench.noise.lowrank import LowRankCovariance


def _cli_error(args, tmp_path, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        run_cli(args, tmp_path)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_model, capsys, value) -> None:
    blob = torch.load(tiny_model, weights_only=True)
    assert blob["format"] == FORMAT
    blob["state_dict"] = {k: torch.full_like(v, value) if v.is_floating_point() else v
                          for k, v in blob["state_dict"].items()}
    bad = tmp_path / "nan.pt"
    torch.save(blob, bad)
    line = _cli_error(["certify", *TINY_CERTIFY, f"model.checkpoint={bad}"], tmp_path, capsys)
    assert "non-finite weights (NaN or inf)" in line and str(bad) in line
    assert not (tmp_path / "certify").exists()  # no partial output


class _NaNModel(torch.nn.Module):
    def forward(self, x):
        return torch.full((len(x), 3), float("nan"))


def test_nan_logits_are_refused_at_the_sampler() -> None:
    """The certificate boundary: whatever loaded the model, a NaN output never becomes a count."""
    with pytest.raises(RsbenchError, match="non-finite logits .* on the clean test point 7"):
        PointSampler(_NaNModel(), GaussianNoise(0.5), torch.zeros(4), 7, 3, 100, seed=0)


def test_idrs_certify_checks_the_sigma_networks_lipschitz_constant() -> None:
    method = make_method({"name": "idrs", "sigma_min": 0.65, "lip_sigma": 0.5, "hidden": 4})
    method.net = SigmaNet(16, hidden=4, sigma_min=0.65, lip=50.0)  # set through the Python API
    method.L = idrs_lipschitz(0.65, 0.5, 16, method.p_min)
    sampler = PointSampler(torch.nn.Linear(16, 2), method.noise, torch.zeros(16), 0, 2, 100, seed=0)
    with pytest.raises(RsbenchError, match="sigma network has Lip 50 .* method.lip_sigma=0.5"):
        method.certify(sampler, 10, 100, 0.01)


def test_low_rank_covariance_refuses_a_scaled_basis() -> None:
    q, _ = torch.linalg.qr(torch.randn(36, 3, dtype=torch.float64))
    LowRankCovariance(q.float(), torch.tensor([2.0, 0.7, 0.3]), 0.05, {})
    with pytest.raises(RsbenchError, match="basis is not orthonormal"):
        LowRankCovariance(3 * q.float(), torch.tensor([2.0, 0.7, 0.3]), 0.05, {})


# -- one writer per run dir ----------------------------------------------------------------------------------

def test_a_held_run_dir_is_refused_at_once_naming_the_holder(tmp_path, tiny_model, capsys) -> None:
    run = tmp_path / "run"
    with file_lock(run / ".certify.lock"):
        line = _cli_error(["certify", *TINY_CERTIFY, f"model.checkpoint={tiny_model}", f"hydra.run.dir={run}"],
                          tmp_path, capsys)
    assert f"in use by another rsbench certify (pid {os.getpid()} on " in line
    run_cli(["certify", *TINY_CERTIFY, f"model.checkpoint={tiny_model}", f"hydra.run.dir={run}"], tmp_path)
    assert read_rows(run / "certify.csv")["idx"].is_unique


def test_a_refused_run_leaves_the_holders_files_alone(tmp_path, tiny_model, capsys) -> None:
    """The holder has written only bookkeeping so far (header-only CSV, fingerprint, plan): a run refused because
    the dir is in use must not tidy them away as its own (it once did, and the holder's CSV vanished)."""
    run = tmp_path / "run"
    run.mkdir()
    files = {"certify.csv": "idx,label\n", "certify.fingerprint.json": "{}", "certify.plan.json": "{}"}
    for name, text in files.items():
        (run / name).write_text(text)
    with file_lock(run / ".certify.lock"):
        line = _cli_error(["certify", *TINY_CERTIFY, f"model.checkpoint={tiny_model}", f"hydra.run.dir={run}"],
                          tmp_path, capsys)
        assert "in use by another rsbench certify" in line
        assert {name: (run / name).read_text() for name in files} == files
        assert (run / ".certify.lock").exists()


def test_the_holder_is_named_even_when_its_pid_lands_after_the_refusal(tmp_path) -> None:
    """The race CI hit: the second process reads the lock file between the holder's flock and its write."""
    import threading

    from rsbench.cache import holder_text

    path = tmp_path / ".certify.lock"
    path.write_text("")
    writer = threading.Timer(0.2, lambda: path.write_text('{"pid": 4242, "host": "node7"}'))
    writer.start()
    try:
        assert holder_text(path) == "pid 4242 on node7"
    finally:
        writer.join()
    path.write_text("")
    assert holder_text(path, patience=0.05) == "another process"  # a holder that never writes: no hang


def _certify_process(tmp_path, model, run):
    args = ["certify", *TINY_TRAIN, *CERTIFY_SETTINGS, "certify.skip=1", "certify.max=60", f"model.checkpoint={model}",
            f"hydra.run.dir={run}", f"outputs_dir={tmp_path}"]
    return subprocess.Popen([sys.executable, "-m", "rsbench.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_concurrent_certify_runs_on_one_dir(tmp_path, tiny_model) -> None:
    run = tmp_path / "run"
    procs = [_certify_process(tmp_path, tiny_model, run) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # the second either found the work done or was refused
    if codes == [0, 2]:
        assert "in use by another rsbench certify (pid" in next(err for code, err in results if code == 2)
    rows = read_rows(run / "certify.csv")
    assert rows["idx"].tolist() == list(range(60))


# -- cached artefacts ------------------------------------------------------------------------------------------

def test_cached_builds_once_and_a_failed_build_leaves_nothing(tmp_path) -> None:
    calls = []

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached(tmp_path / "a.txt", fail, "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half-built artefact, no lock file

    def build(tmp):
        calls.append(1)
        tmp.write_text("whole")

    for _ in range(2):
        assert cached(tmp_path / "a.txt", build, "a").read_text() == "whole"
    assert calls == [1]


def _building(models) -> bool:
    """True once a default-model build (its temporary folder) is under way."""
    return models.is_dir() and any(p.name.endswith(".tmp") for p in models.iterdir())


def test_killed_default_model_training_restarts_cleanly(tmp_path) -> None:
    """Kill certify twice while it trains the cached default model: the same command then just works."""
    args = ["certify", "model=cnn", "train.epochs=4", *CERTIFY_SETTINGS, f"hydra.run.dir={tmp_path / 'run'}",
            f"outputs_dir={tmp_path}"]
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-m", "rsbench.cli", *args], cwd=REPO, stderr=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL)
        wait_for(lambda: _building(tmp_path / "models"), p, "the default model's build started")
        time.sleep(1.0)
        p.send_signal(signal.SIGKILL)
        p.wait()
    done = [p for p in (tmp_path / "models").iterdir() if not p.name.startswith(".") and not p.name.endswith(".lock")]
    assert done == []  # nothing half-built was published
    result = subprocess.run([sys.executable, "-m", "rsbench.cli", *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(read_rows(tmp_path / "run" / "certify.csv")) == 6
    logs = list((tmp_path / "models").glob("*/train_log.csv"))
    assert len(logs) == 1 and len(logs[0].read_text().splitlines()) == 5  # header + 4 epochs, no duplicates


def test_two_concurrent_trainings_on_a_fresh_cache(tmp_path) -> None:
    """Two array jobs that need the same uncached default model: one trains it, the other waits and loads it."""
    args = ["certify", "model=mlp", "model.params.widths=[64]", "train.epochs=2", *CERTIFY_SETTINGS,
            f"outputs_dir={tmp_path}"]
    procs = [subprocess.Popen([sys.executable, "-m", "rsbench.cli", *args, f"hydra.run.dir={tmp_path / f'r{i}'}"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()[-2000:]
    models = [p for p in (tmp_path / "models").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(models) == 1 and len((models[0] / "train_log.csv").read_text().splitlines()) == 3
    assert read_rows(tmp_path / "r0" / "certify.csv").equals(read_rows(tmp_path / "r1" / "certify.csv"))


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="needs ../shared/data")
def test_two_concurrent_train_runs_unpack_mnist_once(tmp_path) -> None:
    args = ["train", "dataset=mnist", f"dataset.data_dir={SHARED_DATA}", "model=mlp", "model.params.widths=[16]",
            "train.epochs=1", "train.max_examples=500", f"outputs_dir={tmp_path}"]
    procs = [subprocess.Popen([sys.executable, "-m", "rsbench.cli", *args, f"hydra.run.dir={tmp_path / f't{i}'}"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()[-2000:]
    raw = tmp_path / "cache" / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])


@pytest.mark.slow
def test_fault_injection_script(tmp_path) -> None:
    """scripts/fault_inject.py: 20 random SIGKILLs (some during default-model training), two concurrent copies
    and two concurrent array jobs on an empty cache all end with the uninterrupted run's CSV (about 5 minutes)."""
    result = subprocess.run([sys.executable, "scripts/fault_inject.py", "--kills", "20", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("identical to the reference") == 3


def test_an_interrupt_inside_torch_save_stays_an_interrupt(tmp_path) -> None:
    """Ctrl-C (or SIGTERM) while torch.save writes reaches atomic_write as torch's C++ RuntimeError
    ("unexpected pos"); it must come out as the KeyboardInterrupt the CLI reports as resumable, leaving nothing."""
    import io

    import torch

    from rsbench.cache import atomic_write

    class Interrupted(io.RawIOBase):
        def __init__(self, fh, at: int) -> None:
            self.fh, self.at, self.calls = fh, at, 0

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return self.fh.write(b)

    def writer(path) -> None:
        with open(path, "wb") as fh:
            torch.save({"w": torch.zeros(100_000)}, Interrupted(fh, 3))

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "state.pt", writer)
    assert list(tmp_path.iterdir()) == []
