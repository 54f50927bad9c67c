"""End-to-end CLI tests on tiny data: train, certify (determinism, batching, kill and resume), predict, plot."""

from __future__ import annotations

import re
import signal

import pandas as pd
import pytest

from conftest import TINY_CERTIFY, TINY_TRAIN, read_rows, run_cli, run_cli_subprocess, wait_for
from rsbench.analysis.curves import summary


def _certify(out, *extra, model=None):
    args = ["certify", *TINY_CERTIFY, *extra]
    if model is not None:
        args.append(f"model.checkpoint={model}")
    run_cli([*args, f"hydra.run.dir={out / 'run'}"], out)
    return out / "run" / "certify.csv"


def test_help_lists_stages(capsys) -> None:
    from rsbench import cli
    cli.main(["--help"])
    text = capsys.readouterr().out
    for stage in ("train", "certify", "predict", "plot"):
        assert stage in text


def test_train_writes_model_and_log(tiny_model) -> None:
    from rsbench.models.checkpoint import read_checkpoint
    _, meta = read_checkpoint(tiny_model)
    assert meta["arch"] == "mlp" and meta["dataset"] == "mnist5k" and meta["train_noise_sigma"] == 0.25
    assert 0.5 < meta["clean_acc"] <= 1.0  # one epoch on 800 digits already beats chance by far
    log = pd.read_csv(tiny_model.with_name("train_log.csv"))
    assert list(log["epoch"]) == [1] and {"train_loss", "test_acc", "test_acc_noisy"} <= set(log.columns)


def test_certify_columns_determinism_and_batch_independence(tmp_path, tiny_model) -> None:
    a = _certify(tmp_path / "a", model=tiny_model)
    b = _certify(tmp_path / "b", model=tiny_model)
    c = _certify(tmp_path / "c", "certify.batch=7", model=tiny_model)
    auto = _certify(tmp_path / "auto", "certify.batch=auto", model=tiny_model)
    df = pd.read_csv(a)
    assert list(df.columns[:6]) == ["idx", "label", "predict", "radius", "correct", "time_s"]
    assert {"sound", "norm", "p_lower", "count", "sigma", "method", "certificate"} <= set(df.columns)
    assert list(df["idx"]) == [0, 50, 100, 150, 200, 250]
    assert df["sound"].all() and (df["norm"] == "l2").all()
    assert (df["radius"] >= 0).all() and (df.loc[df["predict"] < 0, "radius"] == 0).all()
    assert ((df["predict"] == df["label"]).astype(int) == df["correct"]).all()
    pd.testing.assert_frame_equal(read_rows(a), read_rows(b))
    pd.testing.assert_frame_equal(read_rows(a), read_rows(c))
    pd.testing.assert_frame_equal(read_rows(a), read_rows(auto))
    # per-point seeding: the rows of a skip=100 run are a subset of the skip=50 run
    d = _certify(tmp_path / "d", "certify.skip=100", model=tiny_model)
    pd.testing.assert_frame_equal(read_rows(d), read_rows(a)[read_rows(a)["idx"] % 100 == 0].reset_index(drop=True))


def test_resume_after_torn_write_equals_uninterrupted(tmp_path, tiny_model) -> None:
    full = _certify(tmp_path / "full", model=tiny_model)
    part = _certify(tmp_path / "part", model=tiny_model)
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:3]) + lines[3][:11])  # two rows kept, third torn mid-line
    _certify(tmp_path / "part", model=tiny_model)
    pd.testing.assert_frame_equal(read_rows(part), read_rows(full))


def test_kill_and_resume_subprocess(tmp_path, tiny_model) -> None:
    # n = 100,000: ~0.15 s a point here, so the 17 points after the third leave seconds for the kill to land
    # (at n = 4,000 the whole run took 0.15 s, and a busy CI machine could finish it first)
    args = ["certify", *TINY_CERTIFY, "certify.n=100000", "certify.max=1000", f"model.checkpoint={tiny_model}",
            f"outputs_dir={tmp_path}"]
    ref = tmp_path / "ref"
    assert run_cli_subprocess([*args, f"hydra.run.dir={ref}"], tmp_path).returncode == 0
    run = tmp_path / "killed"
    import os
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "rsbench.cli", *args, f"hydra.run.dir={run}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    csv = run / "certify.csv"
    wait_for(lambda: csv.exists() and len(csv.read_text().splitlines()) >= 4, proc, "3 rows were written")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_rows = len(csv.read_text().splitlines()) - 1
    assert 3 <= killed_rows < 20
    done = run_cli_subprocess([*args, f"hydra.run.dir={run}"], tmp_path)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(read_rows(csv), read_rows(ref / "certify.csv"))


def _interrupt_then_rerun(args: list[str], tmp_path, watch: str, lines: int, sig: int, code: int, interrupted):
    """Start ``rsbench <args>`` (run dir tmp_path/run), send ``sig`` once run/``watch`` has ``lines`` lines,
    check the one-line exit with ``code`` and ``interrupted(run dir)``, then re-run the same command and an
    uninterrupted reference (tmp_path/ref) to completion. Returns (the run dir, the reference dir)."""
    import os
    import subprocess
    import sys

    run, ref = tmp_path / "run", tmp_path / "ref"
    watch = run / watch
    full = [*args, f"outputs_dir={tmp_path}", f"hydra.run.dir={run}"]
    # a shell that starts jobs in the background (CI harnesses do) leaves SIGINT ignored in its children, and
    # Python keeps an inherited SIG_IGN: give the child Ctrl-C's default meaning, as in an interactive shell
    proc = subprocess.Popen([sys.executable, "-m", "rsbench.cli", *full], cwd=tmp_path, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: watch.exists() and len(watch.read_text().splitlines()) >= lines, proc,
             f"{watch.name} had {lines} lines")
    proc.send_signal(sig)
    _, err = proc.communicate()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"rsbench {args[0]}: interrupted; re-run the same command to resume"
    interrupted(run)
    for command in (full, [*full[:-1], f"hydra.run.dir={ref}"]):
        done = run_cli_subprocess(command, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    return run, ref


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_one_line_and_resumable(tmp_path, tiny_model, sig, code) -> None:
    """Ctrl-C (SIGINT) or a batch system's SIGTERM: one line, exit 128 + signal, no traceback; the same
    command then finishes with the uninterrupted run's rows."""
    args = ["certify", *TINY_CERTIFY, "certify.n=100000", "certify.max=1000", f"model.checkpoint={tiny_model}"]

    def stopped_part_way(run) -> None:  # rows flushed up to the signal, far from all 20
        assert 2 <= len((run / "certify.csv").read_text().splitlines()) - 1 < 20

    run, ref = _interrupt_then_rerun(args, tmp_path, "certify.csv", 3, sig, code, stopped_part_way)
    pd.testing.assert_frame_equal(read_rows(run / "certify.csv"), read_rows(ref / "certify.csv"))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_training_is_one_line_and_reruns_to_the_same_model(tmp_path, sig, code) -> None:
    """Ctrl-C / SIGTERM during training: one line, exit 128 + signal, no model.pt half-written; the same
    command then trains the model an uninterrupted run gives (every draw is seeded)."""
    import torch

    # ~20 ms an epoch here: 120 epochs leave over 2 s after the first for the signal to land
    args = ["train", "model=mlp", "model.params.widths=[64]", "train.epochs=120", "train.max_examples=800"]

    def no_model(run) -> None:
        assert not (run / "model.pt").exists()

    run, ref = _interrupt_then_rerun(args, tmp_path, "train_log.csv", 2, sig, code, no_model)
    a = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ref / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_default_model_is_trained_once_and_cached(tmp_path) -> None:
    first = _certify(tmp_path, "certify.max=60")
    models = list((tmp_path / "models").glob("*/model.pt"))
    assert len(models) == 1
    stamp = models[0].stat().st_mtime_ns
    (first.parent / "certify.csv").unlink()
    _certify(tmp_path, "certify.max=60")
    assert models[0].stat().st_mtime_ns == stamp
    assert len(pd.read_csv(first)) == 2


def test_predict(tmp_path, tiny_model) -> None:
    out = tmp_path
    run_cli(["predict", *TINY_TRAIN, "predict.n=200", "predict.alpha=0.01", "predict.skip=100", "predict.max=500",
             f"model.checkpoint={tiny_model}", f"hydra.run.dir={out / 'run'}"], out)
    df = pd.read_csv(out / "run" / "predict.csv")
    assert list(df["idx"]) == [0, 100, 200, 300, 400]
    assert (df["count_a"] >= df["count_b"]).all() and (df["count_a"] + df["count_b"] <= 200).all()
    abstained = df["predict"] < 0
    assert (df.loc[abstained, "pvalue"] > 0.01).all() and (df.loc[~abstained, "pvalue"] <= 0.01).all()


def test_plot(tmp_path, tiny_model) -> None:
    a = _certify(tmp_path / "a", model=tiny_model)
    b = _certify(tmp_path / "b", "sigma=0.5", model=tiny_model)
    out = tmp_path / "plot"
    run_cli(["plot", f"runs=[{a.parent},{b}]", "radii=[0,0.25,0.5]", f"hydra.run.dir={out}"], tmp_path)
    for suffix in ("png", "pdf", "csv", "md"):
        assert (out / f"certified_accuracy.{suffix}").stat().st_size > 0
    table = pd.read_csv(out / "certified_accuracy.csv", index_col="run")
    assert list(table.index) == ["gaussian σ=0.25, mnist5k", "gaussian σ=0.5, mnist5k"]
    expected = summary(pd.read_csv(a), [0, 0.25, 0.5])
    assert table.iloc[0]["r=0.25"] == pytest.approx(expected["r=0.25"])
    assert table.iloc[0]["ACR"] == pytest.approx(expected["ACR"])
    assert "| run |" in (out / "certified_accuracy.md").read_text()
    assert table.iloc[0]["r=0.25 lo"] <= table.iloc[0]["r=0.25"] <= table.iloc[0]["r=0.25 hi"]
    assert (table["level"] == 0.95).all()
    run_cli(["plot", f"runs=[{a.parent}]", "ci_level=0.8", "bands=false", f"hydra.run.dir={tmp_path / 'p80'}"],
            tmp_path)
    assert (pd.read_csv(tmp_path / "p80" / "certified_accuracy.csv")["level"] == 0.8).all()
    # one run without brackets is that run, not the characters of its path
    run_cli(["plot", f"runs={a.parent}", f"hydra.run.dir={tmp_path / 'one'}"], tmp_path)
    assert list(pd.read_csv(tmp_path / "one" / "certified_accuracy.csv")["run"]) == ["gaussian σ=0.25, mnist5k"]


def test_plot_points_common_compares_the_same_points(tmp_path, tiny_model) -> None:
    """points=common: a run and a run on every other of its points are compared on the points both hold."""
    full = _certify(tmp_path / "full", model=tiny_model)
    half = _certify(tmp_path / "half", "sigma=0.5", "certify.skip=100", model=tiny_model)
    out = tmp_path / "plot"
    run_cli(["plot", f"runs=[{full},{half}]", "points=common", "radii=[0,0.25]", f"hydra.run.dir={out}"], tmp_path)
    table = pd.read_csv(out / "certified_accuracy.csv", index_col="run")
    common = pd.read_csv(full)
    common = common[common["idx"].isin(pd.read_csv(half)["idx"])]
    assert 0 < len(common) < len(pd.read_csv(full))
    assert (table["points"] == len(common)).all()
    assert table.loc["gaussian σ=0.25, mnist5k", "r=0"] == pytest.approx(summary(common, [0, 0.25])["r=0"])
    with pytest.raises(SystemExit):
        run_cli(["plot", f"runs=[{full}]", "points=some", f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path)


def test_training_is_reproducible(tmp_path, tiny_model) -> None:
    import torch

    from rsbench.models.checkpoint import read_checkpoint
    run_cli(["train", *TINY_TRAIN, f"hydra.run.dir={tmp_path / 'again'}"], tmp_path)
    a, meta_a = read_checkpoint(tiny_model)
    b, meta_b = read_checkpoint(tmp_path / "again" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert meta_a["clean_acc"] == meta_b["clean_acc"]


def test_mog_k1_equals_gaussian_and_main_command(tmp_path, tiny_model) -> None:
    """`rsbench certify method=mog K=...`: K = 1 gives Cohen's rows; K = 10 writes CSV + figure."""
    common = ["method.sigma_max=0.25"]
    gauss = _certify(tmp_path / "g", model=tiny_model)
    for cert in ("paper", "componentwise", "pooled"):
        mog = _certify(tmp_path / cert, "method=mog", "K=1", *common, f"method.certificate={cert}", model=tiny_model)
        cols = ["idx", "label", "predict", "radius", "correct", "p_lower"]
        pd.testing.assert_frame_equal(pd.read_csv(mog)[cols], pd.read_csv(gauss)[cols])
    k10 = _certify(tmp_path / "k10", "method=mog", "K=10", *common, model=tiny_model)
    df = pd.read_csv(k10)
    assert (df["K"] == 10).all() and (df["semantics"] == "mixture").all()
    assert df["sound"].all() and (df["certificate"] == "pooled").all()  # the default is the sound (sharper) one
    assert (k10.parent / "certified_accuracy.png").exists() and (k10.parent / "certified_accuracy.pdf").exists()


def test_unsound_rows_are_marked_everywhere(tmp_path, tiny_model) -> None:
    """certificate=paper under mixture sampling: the summary, figure legend and plot table say "(unsound)",
    and the run ends with the warning as its last line."""
    run = tmp_path / "paper"
    res = run_cli_subprocess(["certify", *TINY_CERTIFY, "method=mog", "K=3", "method.sigma_min=0.12",
                              "method.sigma_max=0.25", "method.certificate=paper", f"model.checkpoint={tiny_model}",
                              f"outputs_dir={tmp_path}", f"hydra.run.dir={run}"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "paper (unsound)" in res.stdout
    assert "NOT sound" in res.stdout.strip().splitlines()[-1]  # the log goes to stdout, after the table
    plotted = run_cli_subprocess(["plot", f"runs=[{run}]", f"hydra.run.dir={tmp_path / 'plot'}"], tmp_path)
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    table = pd.read_csv(tmp_path / "plot" / "certified_accuracy.csv")
    assert table["run"].str.endswith("(unsound)").all()
    assert "NOT sound" in plotted.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("method", [["method=laplace"],
                                    ["method=dsmooth", "method.n_images=40", "method.attack.queries=2"],
                                    ["method=idrs", "method.train.max_examples=100"],
                                    ["method=sra", "model=sra_mlp", "model.params.iters=6",
                                     "model.params.widths=[32]", "train.noise_sigma=0"]])
def test_predict_with_every_method(tmp_path, method) -> None:
    args = [*method, *(a for a in TINY_TRAIN if not (a.startswith("model") and any(
        m.startswith("model") for m in method))), "predict.n=100", "predict.max=100", "predict.skip=50"]
    run_cli(["predict", *args], tmp_path)
    rows = pd.read_csv(next(tmp_path.glob("predict/*/predict.csv")))
    assert len(rows) == 2 and set(rows["method"]) == {method[0].split("=")[1]}


def test_run_dir_names_are_short_and_paths_become_stems() -> None:
    from rsbench.stages.common import _run_name

    ex = ["device", "outputs_dir"]
    own = "model.checkpoint=/x/outputs/train/experiment-cohen_mnist__sigma-0.5/model.pt"
    assert _run_name(["K=10", "method=mog", own, "device=cpu"], ex) == \
        "K-10__method-mog__model.checkpoint-experiment-cohen_mnist,sigma-0.5"
    assert _run_name(["model.checkpoint=/w/models/resnet20_s0.25.pt"], ex) == "model.checkpoint-resnet20_s0.25"
    assert _run_name(["figure=mog_fig1", "runs=[out/certify/a__b,out/m/K-1]"], ex) == "figure-mog_fig1__runs-a,b,K-1"
    assert _run_name(["title='MoG a/b'"], ex) == "title-MoG_a_b"  # quoted text is not a path
    assert _run_name(["x=../../etc"], ex) == "x-etc" and _run_name([], ex) == "default"
    assert _run_name(["runs=[o/certify/sigma-0.5]"], ex) == "runs-sigma-0.5"  # ".5" is not an extension
    # shell-safe and still readable: no brackets, braces, colons, quotes or spaces
    assert _run_name(["predict.attack={name: smoothed_pgd, eps: 0.5}"], ex) == \
        "predict.attack-name-smoothed_pgd,eps-0.5"
    for name in (_run_name(["predict.attack={name: x, eps: 0.5}", "radii=[0, 1]", "title='a b: c'"], ex),):
        assert re.fullmatch(r"[A-Za-z0-9._,+@%-]+", name), name
    assert _run_name(["model.weights_file=m/noise_0.25/checkpoint.pth.tar"], ex) == "model.weights_file-noise_0.25"
    assert _run_name(["x=.hidden"], ex) == "x-.hidden" and _run_name([".x=1"], ex).startswith("_")
    long = _run_name([f"k{i}={'v' * 20}" for i in range(12)], ex)
    assert len(long) <= 180 and long.startswith("k0-")


def test_same_stem_checkpoints_never_share_a_run_dir(tmp_path, tiny_model, capsys) -> None:
    other = tmp_path / "elsewhere" / "run" / "model.pt"  # same short name ("run"), different file
    other.parent.mkdir(parents=True)
    other.write_bytes(tiny_model.read_bytes())
    args = ["certify", *TINY_CERTIFY, "certify.max=60"]
    run_cli([*args, f"model.checkpoint={tiny_model}"], tmp_path)
    (run_dir,) = (tmp_path / "certify").iterdir()
    assert "model.checkpoint-run__" in run_dir.name and (run_dir / "certify.csv").exists()
    with pytest.raises(SystemExit) as exc:
        run_cli([*args, f"model.checkpoint={other}"], tmp_path)
    assert exc.value.code == 2 and "different configuration" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["train", "certify", "predict", "plot", "robustness"])
def test_stage_help_starts_with_what_it_does(stage, capsys) -> None:
    from rsbench import cli

    try:
        cli.main([stage, "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"rsbench {stage}: ") and "Common overrides:" in lines[2]
    assert not any("powered by Hydra" in line for line in lines)


def test_radius_cap_warning_names_the_cap_and_the_n_that_lifts_it(tmp_path, tiny_model, capsys) -> None:
    import math

    from scipy.stats import norm

    run_cli(["certify", *TINY_CERTIFY, "certify.max=60", "radii=[0,1.0]", f"model.checkpoint={tiny_model}",
             f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if "caps every radius" in ln]
    cap = 0.25 * norm.ppf(0.01 ** (1 / 300))
    need = math.ceil(math.log(0.01) / math.log(norm.cdf(1.0 / 0.25)))
    assert len(lines) == 1 and f"caps every radius at {cap:.3f}" in lines[0] and f"certify.n={need:,}" in lines[0]
    run_cli(["certify", *TINY_CERTIFY, "certify.max=60", "radii=[0,0.5]", f"model.checkpoint={tiny_model}",
             f"hydra.run.dir={tmp_path / 's'}"], tmp_path)
    out = capsys.readouterr()
    assert "caps every radius" not in out.out + out.err
