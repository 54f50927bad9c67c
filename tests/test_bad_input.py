"""Bad input: a clear one-line error naming the bad value, non-zero exit, no partial output."""

from __future__ import annotations

import pytest
import torch

from conftest import CERTIFY_SETTINGS, TINY_CERTIFY, run_cli, run_cli_subprocess
from rsbench.data.registry import DatasetSpec, TensorImages
from rsbench.errors import RsbenchError
from rsbench.stages.common import select_indices
from rsbench.stages.points import run_points


def _fails(tmp_path, capsys, args, pattern, code=2):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        run_cli([*args, f"hydra.run.dir={run}"], tmp_path)
    assert exc.value.code == code
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(pattern, err), err
    assert not run.exists(), "a failed run left output behind"
    return err


@pytest.mark.parametrize("override,pattern", [
    ("sigma=-1", r"sigma=-1(\.0)? is invalid"),
    ("sigma=0", r"sigma=0(\.0)? is invalid"),
    ("certify.alpha=1.5", r"certify.alpha=1.5 is invalid: it must lie strictly between 0 and 1"),
    ("certify.n=0", r"certify.n=0 is invalid"),
    ("certify.n0=0", r"certify.n0=0 is invalid"),
    ("certify.skip=0", r"skip=0 is invalid"),
    ("certify.batch=0", r"certify.batch=0 is invalid"),
    ("certify.points_per_batch=0", r"certify.points_per_batch=0 is invalid; valid values: auto or an integer >= 1"),
    ("certify.compile=maybe", r"certify.compile='maybe' is invalid; valid values: true, false"),
    ("device=tpu", r"device='tpu' is invalid"),
    ("K=3", r"K=3 is a parameter of method=mog; add method=mog"),
])
def test_bad_values(tmp_path, capsys, override, pattern) -> None:
    err = _fails(tmp_path, capsys, ["certify", *TINY_CERTIFY, override], pattern)
    assert len(err.strip().splitlines()) == 1 and err.startswith("rsbench certify: error:")


def test_unknown_config_group_options_list_the_valid_ones(tmp_path, capsys) -> None:
    _fails(tmp_path, capsys, ["certify", "dataset=svhn"], r"unknown dataset 'svhn'; valid datasets: .*mnist5k")
    _fails(tmp_path, capsys, ["certify", "method=foo"], r"unknown method 'foo'; valid methods: dsmooth, gaussian")


# Hydra's own errors, reworded: one line, exit 2, a suggestion where one is close, no run dir left behind.
@pytest.mark.parametrize("stage,args,pattern", [
    ("certify", ["methd=mog"], r"unknown key 'methd'; did you mean 'method'\?"),
    ("certify", ["method=mog", "k=10"], r"unknown key 'k'; did you mean 'K'\?"),
    ("certify", ["method=mogg"], r"unknown method 'mogg'; valid methods: .*; did you mean 'mog'\?"),
    ("certify", ["model=nosuch"], r"unknown model 'nosuch'; valid models: auto, cifar_resnet"),
    ("certify", ["certify.nosuch=1"], r"unknown key 'certify.nosuch' .*valid keys in 'certify': n0, n, alpha"),
    ("certify", ["certify.nn=3"], r"unknown key 'certify.nn' .*did you mean 'n'\?"),
    ("certify", ["sigma"], r"cannot parse override 'sigma' \(missing EQUAL"),
    ("certify", ["=3"], r"override '=3' has no key"),
    ("certify", ["radii=[0,1"], r"cannot parse override 'radii=\[0,1'"),
    ("certify", ["-m", "sigma=0.1,0.2", "certify.nn=3"], r"unknown key 'certify.nn'"),
    ("train", ["trian.epochs=3"], r"'trian' is not a key\); did you mean 'train'\?"),
    ("certify", [*TINY_CERTIFY, "certify.attack=nonsense"], r"certify.attack='nonsense' is invalid: give \{name"),
    ("certify", [*TINY_CERTIFY, "certify.attack={name:square_fgsm,epsilon:1}"], r"has no parameters \['epsilon'\]"),
    ("certify", [*TINY_CERTIFY, "dataset.test_set=jpg"], r"dataset.test_set|unknown key"),
])
def test_hydra_errors_are_one_line(tmp_path, capsys, stage, args, pattern) -> None:
    err = _fails(tmp_path, capsys, [stage, *args], pattern)
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"rsbench {stage}: error:"), err
    assert not (tmp_path / stage).exists()


def test_unknown_stage(capsys) -> None:
    from rsbench import cli
    with pytest.raises(SystemExit):
        cli.main(["certfy"])
    assert "valid stages: train, certify, predict, plot, robustness, merge, compare; did you mean 'certify'?" in \
        capsys.readouterr().err


def test_plot_on_empty_or_garbage_csv(tmp_path, capsys) -> None:
    run = tmp_path / "in"
    run.mkdir()
    for content in (b"", b"\xff\xfe garbage\n\x00\x01"):
        (run / "certify.csv").write_bytes(content)
        _fails(tmp_path, capsys, ["plot", f"runs=[{run}]"], r"certify.csv (is empty or not a CSV|lacks columns)")


def test_file_size_limit_is_one_line(tmp_path) -> None:
    """A file-size limit (ulimit -f) used to kill the process with SIGXFSZ; now the write fails, named."""
    import resource
    import subprocess
    import sys

    from conftest import REPO

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run([sys.executable, "-m", "rsbench.cli", "certify", *TINY_CERTIFY, f"outputs_dir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rsbench certify: error: cannot write") and "file-size limit" in last


def test_corrupted_and_mismatched_checkpoints(tmp_path, capsys, tiny_model) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_model.read_bytes()[:500])
    _fails(tmp_path, capsys, ["certify", *TINY_CERTIFY, f"model.checkpoint={broken}"],
           "corrupted or not a torch checkpoint")
    _fails(tmp_path, capsys, ["certify", *CERTIFY_SETTINGS, "model=cnn", f"model.checkpoint={tiny_model}"],
           "holds arch=mlp .* asks for arch=cnn")
    _fails(tmp_path, capsys, ["certify", *TINY_CERTIFY, "dataset=standin_cifar10", f"model.checkpoint={tiny_model}"],
           "trained on dataset mnist5k but the config certifies standin_cifar10")


def test_changed_config_in_same_run_dir_is_refused(tmp_path, capsys, tiny_model) -> None:
    run = tmp_path / "run"
    run_cli(["certify", *TINY_CERTIFY, "certify.max=60", f"model.checkpoint={tiny_model}",
             f"hydra.run.dir={run}"], tmp_path)
    with pytest.raises(SystemExit):
        run_cli(["certify", *TINY_CERTIFY, "certify.max=60", "certify.n=301", f"model.checkpoint={tiny_model}",
                 f"hydra.run.dir={run}"], tmp_path)
    assert "different configuration (differs in n)" in capsys.readouterr().err
    assert (run / "certify.csv").exists()  # nothing lost


def test_non_finite_pixels_and_wrong_shape(tmp_path) -> None:
    spec = DatasetSpec("t", "t", (1, 4, 4), 2, (0.0,), (1.0,))
    x = torch.rand(3, 1, 4, 4)
    x[1, 0, 2, 2] = float("inf")
    ds = TensorImages(x, torch.tensor([0, 1, 0]))
    seen = []

    def evaluate(xi, i):
        seen.append(i)
        return {"predict": 0}

    with pytest.raises(RsbenchError, match="test point 1: input holds non-finite pixels"):
        run_points(tmp_path / "c.csv", ("idx", "label", "predict", "correct", "time_s"), [0, 1, 2], ds, spec,
                   torch.device("cpu"), "t", evaluate)
    assert seen == [0]
    assert (tmp_path / "c.csv").read_text().splitlines()[1].startswith("0,0,0,1,")  # the good row was kept
    other = DatasetSpec("t", "t", (1, 5, 5), 2, (0.0,), (1.0,))
    with pytest.raises(RsbenchError, match=r"input shape \(1, 4, 4\) does not match the model's \(1, 5, 5\)"):
        run_points(tmp_path / "d.csv", ("idx", "label", "predict", "correct", "time_s"), [0], ds, other,
                   torch.device("cpu"), "t", evaluate)


def test_select_indices() -> None:
    assert select_indices(10, 3, -1) == [0, 3, 6, 9]
    assert select_indices(10, 3, 7) == [0, 3, 6]
    with pytest.raises(RsbenchError):
        select_indices(10, 0, -1)


def test_subprocess_exit_code_and_message(tmp_path) -> None:
    res = run_cli_subprocess(["certify", "sigma=-0.5", f"outputs_dir={tmp_path}"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == ("rsbench certify: error: sigma=-0.5 is invalid: "
                                                   "it must be a finite number > 0")
    assert not (tmp_path / "certify").exists()


def test_failure_before_the_first_row_leaves_nothing(tmp_path, capsys, tiny_model) -> None:
    """Validation of late options and data errors at the first point both clean the run dir."""
    _fails(tmp_path, capsys, ["certify", *TINY_CERTIFY, "certify.pushforward=maybe", f"model.checkpoint={tiny_model}"],
           "certify.pushforward='maybe' is invalid; valid values: auto, off")
    _fails(tmp_path, capsys, ["certify", *TINY_CERTIFY, "certify.channels_last=yes", f"model.checkpoint={tiny_model}"],
           "certify.channels_last='yes' is invalid")


def test_bookkeeping_files_are_told_apart_from_results(tmp_path) -> None:
    from rsbench.stages.common import _is_bookkeeping
    csv = tmp_path / "certify.csv"
    csv.write_text("idx,label,predict\n")
    assert _is_bookkeeping(csv, "certify") and _is_bookkeeping(tmp_path / "certify.plan.json", "certify")
    csv.write_text("idx,label,predict\n0,1,1\n")
    assert not _is_bookkeeping(csv, "certify") and not _is_bookkeeping(tmp_path / "model.pt", "certify")
