"""`rsbench verify`: every row's radius, bounds and sound flag recompute from what the row records; an edited
row is flagged with its line number (exit 1); the committed results verify."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, TINY_CERTIFY, run_cli
from rsbench import cli
from rsbench.errors import RsbenchError
from rsbench.verify import verify


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("verify")
    variants = {
        "gaussian": [],
        "soft": ["method.smoothing=soft"],
        "sequential": ["certify.n=3000", "certify.sequential=true", "certify.max_radius=0.3", "certify.seq_n_min=200"],
        "laplace": ["method=laplace"],
        "mog_pooled": ["method=mog", "K=3"],
        "mog_paper": ["method=mog", "K=3", "method.certificate=paper"],
        "mog_componentwise": ["method=mog", "K=3", "method.certificate=componentwise"],
        "dsmooth": ["method=dsmooth", "method.n_images=40", "method.attack.queries=2", "method.attack_batch=20",
                    "method.k=3"],
    }
    for name, extra in variants.items():
        run_cli(["certify", *TINY_CERTIFY, *extra, f"model.checkpoint={tiny_model}", f"hydra.run.dir={out / name}"],
                out)
    return {name: out / name for name in variants}


@pytest.mark.parametrize("name", ["gaussian", "soft", "sequential", "laplace", "mog_pooled", "mog_paper", "dsmooth"])
def test_a_clean_run_verifies(runs, name) -> None:
    problems, summary = verify(runs[name])
    assert problems == [], problems
    assert "6 of 6 rows recomputed" in summary and "0 skipped" in summary, summary
    assert summary.endswith(": every recomputed radius, bound and sound flag agrees"), summary
    assert "sha256" in summary, summary  # the model the rows came from


def test_rows_that_cannot_be_recomputed_are_never_counted_as_verified(runs, capsys) -> None:
    problems, summary = verify(runs["mog_componentwise"])
    assert "0 of 6 rows recomputed" in summary and "6 skipped" in summary, summary
    assert summary.endswith(": nothing verified"), summary
    assert len(problems) == 1 and "--allow-unverifiable" in problems[0] and "per-component bounds" in summary
    problems, _ = verify(runs["mog_componentwise"], allow_unverifiable=True)
    assert problems == []
    for flags, code in (([], 1), (["--allow-unverifiable"], 0)):
        with pytest.raises(SystemExit) as exc:
            cli.main(["verify", str(runs["mog_componentwise"]), *flags])
        assert exc.value.code == code, capsys.readouterr()


def test_dsmooth_rows_without_their_covariance_summary_are_not_recomputable(runs, tmp_path) -> None:
    """DSmooth rows written before they recorded logdet_d / min_eig (the published cpu-scale ones) are skipped."""
    old = tmp_path / "old"
    shutil.copytree(runs["dsmooth"] / ".hydra", old / ".hydra")
    pd.read_csv(runs["dsmooth"] / "certify.csv").drop(columns=["logdet_d", "min_eig"]).to_csv(
        old / "certify.csv", index=False)
    problems, summary = verify(old, allow_unverifiable=True)
    assert problems == [] and "0 of 6 rows recomputed" in summary and "logdet_d" in summary


def _edit(run: Path, tmp_path: Path, line: int, column: str, value: str) -> Path:
    """A copy of ``run``'s CSV (with its config and fingerprint) with one cell changed."""

    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    csv = copy / "certify.csv"
    lines = csv.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[line - 1].rstrip("\n").split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells) + "\n"
    csv.write_text("".join(lines))
    return copy


@pytest.mark.parametrize("name,column,value,message", [
    ("gaussian", "radius", "0.9", "radius=0.9 recorded"),
    ("gaussian", "count", "17", "p_lower="),
    ("gaussian", "sound", "False", "sound=False recorded, True recomputed"),
    ("mog_paper", "sound", "True", "sound=True recorded, False recomputed"),  # the paper's radius is unsound
    ("laplace", "alpha", "0.5", "p_lower="),
    ("soft", "p_runner_upper", "0.01", "radius="),
    ("mog_pooled", "p_lower", "0.999", "radius="),
    ("dsmooth", "logdet_d", "-3.0", "radius="),  # a row whose covariance summary disagrees with its radius
    ("dsmooth", "min_eig", "0.5", "l2_radius="),
    ("dsmooth", "count", "3", "p_lower="),
])
def test_an_edited_row_is_flagged_with_its_line(runs, tmp_path, capsys, name, column, value, message) -> None:
    edited = _edit(runs[name], tmp_path, 3, column, value)
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", str(edited)])
    assert exc.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{edited / 'certify.csv'}, line 3 (idx ") and message in out[0], out
    assert out[-1].endswith("1 problem(s)")


def test_clean_run_exits_0_with_one_line(runs, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", str(runs["gaussian"])])
    assert exc.value.code == 0 and len(capsys.readouterr().out.strip().splitlines()) == 1


def test_unusable_input_is_one_line(tmp_path, capsys) -> None:
    published = REPO.parent / "shared" / "published" / "cohen2019-cifar10-resnet110" / "noise_0.50_sigma_0.50.tsv"
    for path, message in ((tmp_path / "nope", "neither a certify.csv"),
                          *(((published, "per-image file of Cohen et al."),) if published.is_file() else ())):
        with pytest.raises(SystemExit) as exc:
            cli.main(["verify", str(path)])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_an_empty_or_header_only_file_is_unusable(runs, tmp_path, capsys) -> None:
    """Nothing to verify is not a pass: exit 2 with one line."""
    (tmp_path / "empty.csv").write_bytes(b"")
    header = (runs["gaussian"] / "certify.csv").read_text().splitlines()[0]
    (tmp_path / "header.csv").write_text(header + "\n")
    for name, message in (("empty.csv", "is empty"), ("header.csv", "holds no rows")):
        with pytest.raises(SystemExit) as exc:
            cli.main(["verify", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and "Traceback" not in err, err


def test_a_mog_csv_copied_out_of_its_run_dir_verifies_from_its_rows(runs, tmp_path) -> None:
    """Without the saved config, the method is rebuilt from the row's columns: K reads back as the int it was."""
    shutil.copyfile(runs["mog_pooled"] / "certify.csv", tmp_path / "mog.csv")
    problems, summary = verify(tmp_path / "mog.csv")
    assert problems == [] and "6 of 6 rows recomputed" in summary, (problems, summary)


def test_a_deleted_row_is_reported_from_the_runs_plan(runs, tmp_path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs["gaussian"], copy)
    lines = (copy / "certify.csv").read_text().splitlines(keepends=True)
    idx = lines[3].split(",")[0]
    (copy / "certify.csv").write_text("".join(lines[:3] + lines[4:]))
    problems, summary = verify(copy)
    assert len(problems) == 1 and f"(idx {idx})" in problems[0] and "no row" in problems[0], problems
    assert verify(copy, allow_missing=True)[0] == []


def test_rows_from_an_altered_copy_of_a_published_model_fail(tmp_path, tiny_model) -> None:
    """A run records its checkpoint's sha256; naming a published model it did not use is caught."""
    from rsbench.models.manifest import add_to_manifest

    published = tmp_path / "published"
    published.mkdir()
    shutil.copyfile(tiny_model, published / "m.pt")
    add_to_manifest(published, "m.pt", {})
    altered = tmp_path / "altered.pt"
    data = bytearray(Path(tiny_model).read_bytes())
    data[-100] ^= 1
    altered.write_bytes(bytes(data))
    runs = {}
    for name, model in (("published", published / "m.pt"), ("altered", altered)):
        runs[name] = tmp_path / name
        run_cli(["certify", *TINY_CERTIFY, "certify.max=100", f"model.checkpoint={model}",
                 f"hydra.run.dir={runs[name]}"], tmp_path)
    problems, summary = verify(runs["published"])
    assert problems == [] and "the published model" in summary, summary
    fingerprint = runs["altered"] / "certify.fingerprint.json"  # passing it off as the published model's rows
    fingerprint.write_text(fingerprint.read_text().replace(str(altered), str(published / "m.pt")))
    problems, summary = verify(runs["altered"])
    assert len(problems) == 1 and "not from the published" in problems[0] and "NOT the published" in summary


def test_a_sample_recomputes_only_its_drawn_rows_and_keeps_their_line_numbers(runs, tmp_path) -> None:
    edited = _edit(runs["gaussian"], tmp_path, 3, "radius", "0.9")
    outcomes = {}
    for seed in range(12):
        problems, summary = verify(edited, sample=2, seed=seed)
        assert f"2 of 2 rows drawn with seed {seed} from 6 recomputed" in summary, summary
        assert verify(edited, sample=2, seed=seed) == (problems, summary)  # the seed fixes the draw
        assert all(", line 3 (idx " in p for p in problems)
        outcomes[seed] = len(problems)
    assert set(outcomes.values()) == {0, 1}, outcomes  # the edited row is drawn by some seeds and not by others
    assert len(verify(edited, sample=6)[0]) == len(verify(edited, sample=100)[0]) == 1  # >= the file: every row
    with pytest.raises(RsbenchError, match="positive number of rows"):
        verify(edited, sample=0)


def _check_committed(sample: int | None) -> None:
    csvs = sorted((REPO / "outputs" / "published" / "results").rglob("certify.csv"))
    assert csvs
    for csv in csvs:  # componentwise and old DSmooth rows are not recomputable (skipped, checked below)
        problems, summary = verify(csv, allow_unverifiable=True, sample=sample)
        assert problems == [], problems
        if " 0 of " in summary:  # only MoG componentwise (per-component bounds) and DSmooth (the covariance) rows
            rows = pd.read_csv(csv)  # are not recomputable: no row records what their certificates need
            assert ((rows["certificate"] == "componentwise") | (rows["method"] == "dsmooth")).all(), summary


def test_the_committed_results_verify_on_a_sample() -> None:
    """20 seeded rows of every per-point CSV under outputs/published/results recompute (what CI checks on every
    change: a changed certificate or bound breaks them). MoG pooled rows cost about 0.1 s each to recompute."""
    _check_committed(sample=20)


@pytest.mark.slow
def test_the_committed_results_verify() -> None:
    """Every row of every per-point CSV under outputs/published/results recomputes (about 3 minutes on 2 cores;
    `make figures` runs the same check through `rsbench verify`)."""
    _check_committed(sample=None)


@pytest.mark.parametrize("name", ["gaussian", "soft", "laplace", "mog_pooled", "mog_paper", "dsmooth"])
def test_each_method_recomputes_its_own_rows(runs, name) -> None:
    """The method owns its recomputation (verify holds no per-method knowledge): method.recompute(row) gives the
    row's radius (and bound) back; a row it cannot recompute raises NotRecomputable."""
    import yaml

    from rsbench.certify.recompute import NotRecomputable
    from rsbench.methods import method_from_params
    from rsbench.verify import _typed

    config = yaml.safe_load((runs[name] / ".hydra" / "config.yaml").read_text())["method"]
    lines = (runs[name] / "certify.csv").read_text().splitlines()
    header = tuple(lines[0].split(","))
    for line in lines[1:]:
        row = _typed(header, line.split(","))
        method = method_from_params({**row, **{k: v for k, v in config.items() if not str(v).startswith("$")}})
        for key, value in method.recompute(row).items():
            assert value == pytest.approx(row[key], rel=1e-12), (name, key)
    with pytest.raises(NotRecomputable):
        method_from_params({"name": "mog", "K": 3, "sigma_min": 0.25, "sigma_max": 0.5,
                            "certificate": "componentwise"}).recompute({})
