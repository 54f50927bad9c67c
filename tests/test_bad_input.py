"""Bad input: a clear one-line error naming the bad value, non-zero exit, no partial output."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import CERTIFY_SETTINGS, TINY_CERTIFY, read_rows, run_cli, run_cli_subprocess
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
    # tracebacks on main before issue 28
    ("radii=[abc]", r"radii=\['abc'\] is invalid: 'abc' is not a finite number >= 0"),
    ("radii=3", r"radii=3 is invalid: it must be a list of radii"),
    ("radii=[0,-1]", r"radii=\[0, -1\] is invalid: -1 is not a finite number >= 0"),
    ("seed=abc", r"seed='abc' is invalid: it must be an integer >= 0"),
    ("seed=-1", r"seed=-1 is invalid"),
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
    ("certify", ["alpha=2"], r"unknown key 'alpha'; did you mean 'certify.alpha'\?"),
    ("certify", ["skip=2"], r"unknown key 'skip'; did you mean .*'certify.skip'"),
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
    assert ("valid stages: train, certify, predict, plot, robustness, merge, compare, verify, figures; did you mean "
            "'certify'?") in capsys.readouterr().err


def test_plot_on_empty_or_garbage_csv(tmp_path, capsys) -> None:
    run = tmp_path / "in"
    run.mkdir()
    for content in (b"", b"\xff\xfe garbage\n\x00\x01"):
        (run / "certify.csv").write_bytes(content)
        _fails(tmp_path, capsys, ["plot", f"runs=[{run}]"], r"certify.csv( is empty|, line 1: not UTF-8)")


def test_file_size_limit_is_one_line(tmp_path) -> None:
    """A file-size limit (ulimit -f) used to kill the process with SIGXFSZ; now the write fails, named."""
    import resource
    import subprocess
    import sys

    from conftest import REPO

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run([sys.executable, "-m", "rsbench.cli", "certify", *TINY_CERTIFY, f"outputs_dir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, preexec_fn=limit)
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
    from rsbench.stages.rundir import is_bookkeeping
    csv = tmp_path / "certify.csv"
    csv.write_text("idx,label,predict\n")
    assert is_bookkeeping(csv, "certify") and is_bookkeeping(tmp_path / "certify.plan.json", "certify")
    csv.write_text("idx,label,predict\n0,1,1\n")
    assert not is_bookkeeping(csv, "certify") and not is_bookkeeping(tmp_path / "model.pt", "certify")


# -- the cases a fault and bad-input run of main still found (issue 28): each one line, nothing lost or left ------

def test_outputs_dir_that_is_a_file_or_unwritable(tmp_path, capsys) -> None:
    from rsbench import cli

    (tmp_path / "afile").write_text("x")
    for outputs, pattern in ((tmp_path / "afile", r"outputs_dir=.*afile cannot be a folder: .*afile is a file"),
                             (tmp_path / "afile" / "below", r"cannot be a folder: .*afile is a file"),
                             ("/sys/rsbench-outputs", r"outputs_dir=/sys/rsbench-outputs cannot be written: /sys: ")):
        with pytest.raises(SystemExit) as exc:
            cli.main(["certify", *TINY_CERTIFY, f"outputs_dir={outputs}"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert pytest.importorskip("re").search(pattern, err), err
    with pytest.raises(SystemExit):
        cli.main(["certify", *TINY_CERTIFY, f"hydra.run.dir={tmp_path / 'afile' / 'run'}"])
    assert "hydra.run.dir=" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_plot_on_garbage_rows_or_no_rows(tmp_path, capsys) -> None:
    run = tmp_path / "in"
    run.mkdir()
    header = "idx,label,predict,radius,correct,time_s\n"
    (run / "certify.csv").write_text(header + "0,3,3,0.5,1,0.1\n4,garbage,3,zz,1\n")
    _fails(tmp_path, capsys, ["plot", f"runs=[{run}]"], r"certify.csv, line 3: 5 fields, the header has 6")
    (run / "certify.csv").write_text(header + "0,3,3,0.5,1,0.1\n4,7,3,zz,1,0.1\n")
    _fails(tmp_path, capsys, ["plot", f"runs=[{run}]"], r"certify.csv, line 3: radius='zz' is not a valid value")
    (run / "certify.csv").write_text(header)
    _fails(tmp_path, capsys, ["plot", f"runs=[{run}]"], r"certify.csv holds no rows \(only its header\)")
    assert not (tmp_path / "plot").exists()


def test_overwrite_with_another_selection_replaces_and_a_refused_overwrite_loses_nothing(tmp_path, capsys,
                                                                                          tiny_model) -> None:
    run = tmp_path / "run"
    base = ["certify", *TINY_CERTIFY, f"model.checkpoint={tiny_model}", f"hydra.run.dir={run}"]
    run_cli([*base, "certify.max=60"], tmp_path)
    before = (run / "certify.csv").read_text()
    with pytest.raises(SystemExit):  # refused late (the model): the old rows stay
        run_cli([*base[:-2], f"model.checkpoint={tmp_path / 'nope.pt'}", f"hydra.run.dir={run}", "certify.max=200",
                 "certify.overwrite=true"], tmp_path)
    assert "does not exist" in capsys.readouterr().err
    assert (run / "certify.csv").read_text() == before
    run_cli([*base, "certify.max=200", "certify.overwrite=true"], tmp_path)  # another selection: replaced
    assert read_rows(run / "certify.csv")["idx"].tolist() == [0, 50, 100, 150]


def test_a_refused_run_keeps_the_folder_the_user_made(tmp_path, capsys) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(SystemExit):
        run_cli(["certify", *TINY_CERTIFY, "sigma=-1", f"hydra.run.dir={mine}"], tmp_path)
    assert "sigma=-1" in capsys.readouterr().err
    assert mine.is_dir() and list(mine.iterdir()) == []  # what rsbench wrote is gone, the folder is not


def test_a_damaged_mnist_archive_leaves_no_lock_behind(tmp_path, capsys) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        (raw / f"{f}.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated")
    cache = tmp_path / "cache"
    _fails(tmp_path, capsys, ["train", "dataset=mnist", f"dataset.data_dir={tmp_path / 'data'}",
                              f"dataset.cache_dir={cache}", "model=mlp"], r"is damaged")
    assert [p.relative_to(cache) for p in cache.rglob("*") if p.is_file()] == []


def test_config_errors_are_reported_before_torch_is_imported(tmp_path) -> None:
    """Validation comes first: a mistyped override costs no heavy import (seconds, or a minute on a busy machine)."""
    code = ("import sys\nfrom rsbench import cli\ntry:\n    cli.main(['certify', 'methd=mog'])\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"], (done.stdout, done.stderr)
    assert "did you mean 'method'" in done.stderr


@pytest.mark.parametrize("stage", ["certify", "verify"])
def test_ctrl_c_during_start_up_is_one_line(monkeypatch, capsys, stage) -> None:
    """Ctrl-C while the stage's modules load (before any row): exit 130 and one line, no traceback."""
    from rsbench import cli

    def interrupted(name: str, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli.main([stage, "nothing"] if stage == "verify" else [stage, "sigma=0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 130 and len(err) == 1 and err[0].startswith(f"rsbench {stage}: interrupted"), err
