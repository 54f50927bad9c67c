"""The SRA authors' CIFAR-10 recipe (issue 26): bias-free layers with the authors' kernel sizes, their Adam
(normalised gradients, moment warm-up, restarted bias correction), flips, the collapse detector and the warm
start."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch

from conftest import run_cli
from rsbench.data import load_split
from rsbench.errors import RsbenchError
from rsbench.models import build_model
from rsbench.models.checkpoint import load_model, save_checkpoint
from rsbench.models.orthogonal import BCOPConv2d, conv_kernel, lipschitz_upper_bound
from rsbench.models.registry import full_params
from rsbench.training import loop
from rsbench.training.augment import AUGMENTS
from rsbench.training.optim import SraAdam, step_multiplier

# -- the network --------------------------------------------------------------------------------------------------


def _convs(model) -> list[BCOPConv2d]:
    return [m for m in model.modules() if isinstance(m, BCOPConv2d)]


def test_sra_cnn_has_the_authors_kernels_and_no_biases() -> None:
    _, spec = load_split("standin_cifar10", "test")
    model = build_model("sra_cnn", spec)
    assert [c.k for c in _convs(model)] == [2, 3, 2, 3]          # (4, 3, 4, 3) // strides (2, 1, 2, 1)
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    legacy = build_model("sra_cnn", spec, {"bias": True, "downsampled_kernel": "keep"})
    assert [c.k for c in _convs(legacy)] == [4, 3, 4, 3]         # rsbench's network before the option
    assert len([n for n, _ in legacy.named_parameters() if n.endswith("bias")]) == 6
    assert conv_kernel(4, 2, "divide") == 2 and conv_kernel(3, 1, "divide") == 3
    with pytest.raises(RsbenchError, match="not a multiple of stride 2"):
        conv_kernel(3, 2, "divide")
    with pytest.raises(RsbenchError, match="valid values: divide, keep"):
        conv_kernel(4, 2, "halve")


def test_the_authors_layer_shapes_keep_the_lipschitz_bound_at_most_1() -> None:
    """Exact operator norms (FFT for the circular convolutions, SVD for the dense layers) of a network moved
    away from its orthogonal start; the empirical ratio on random pairs stays below the bound."""
    torch.manual_seed(0)
    _, spec = load_split("standin_cifar10", "test")
    model = build_model("sra_cnn", spec, {"iters": 25}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    size = (16, 16)
    for conv in _convs(model):
        assert conv.operator_norm(size) <= 1 + 1e-5
        size = size if conv.k == 3 else (size[0] // 2, size[1] // 2)
    bound = lipschitz_upper_bound(model.net, spec.shape)
    assert bound <= 1 + 1e-5
    x = torch.rand(32, *spec.shape)
    xp = x + 0.05 * torch.randn_like(x)
    with torch.no_grad():
        ratio = (model(x) - model(xp)).norm(dim=1) / (x - xp).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= bound + 1e-5


def test_old_checkpoints_load_as_the_network_they_were_trained_as(tmp_path) -> None:
    """A checkpoint written before ``bias`` and ``downsampled_kernel`` existed holds the legacy network."""
    _, spec = load_split("standin_cifar10", "test")
    old = {"channels": [8, 8, 16, 16], "kernels": [4, 3, 4, 3], "strides": [2, 1, 2, 1], "hidden": 512, "iters": 30}
    legacy = full_params("sra_cnn", {**old, "bias": True, "downsampled_kernel": "keep"})
    model = build_model("sra_cnn", spec, legacy)
    path = save_checkpoint(tmp_path / "model.pt", model, {"arch": "sra_cnn", "params": old,
                                                          "dataset": spec.name, "family": spec.family})
    loaded, _ = load_model(path, "sra_cnn", legacy, spec)
    assert _same(loaded, model)
    with pytest.raises(RsbenchError, match="'bias': True.*'downsampled_kernel': 'keep'"):
        load_model(path, "sra_cnn", full_params("sra_cnn"), spec)


# -- the authors' Adam --------------------------------------------------------------------------------------------


def test_step_multiplier_is_the_restarted_bias_correction() -> None:
    assert step_multiplier(0) == 0.0
    assert step_multiplier(1) == pytest.approx(math.sqrt(0.001) / 0.1)
    assert step_multiplier(10) == pytest.approx(math.sqrt(1 - 0.999 ** 10) / (1 - 0.9 ** 10))
    ramp = [step_multiplier(k) for k in (1, 10, 100, 1000, 100_000)]
    assert ramp[0] == pytest.approx(0.316, abs=1e-3) and ramp[1] == pytest.approx(0.153, abs=1e-3)
    assert 0.15 < min(ramp[:3]) and max(ramp[:3]) < 0.32 and ramp[3] == pytest.approx(0.795, abs=1e-3)
    assert ramp[4] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("warmup", [0, 5])
def test_sra_adam_learning_rate_ramp_matches_the_formula(warmup: int) -> None:
    """A constant gradient g: normalised to g / (|g| + 1e-4), m_t = (1 - 0.9^t) u, v_t = (1 - 0.999^t) u^2;
    no move during the warm-up; then the k-th update is lr c_k m_t / sqrt(v_t + 1e-15)."""
    p = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    lr, g = 0.01, 3.0
    opt = SraAdam([p], lr=lr, warmup=warmup)
    u = g / (g + 1e-4)
    for t in range(1, warmup + 30):
        before = float(p.detach())
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        m, v = (1 - 0.9 ** t) * u, (1 - 0.999 ** t) * u * u
        want = lr * step_multiplier(t - warmup) * m / math.sqrt(v + 1e-15)
        assert before - float(p.detach()) == pytest.approx(want, rel=1e-9, abs=1e-15)
        if t <= warmup:
            assert float(p.detach()) == before == 0.0


def test_sra_adam_normalises_by_the_whole_network_gradient_and_resumes_exactly() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2))
    opt = SraAdam([a, b], lr=0.1)
    ga, gb = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 12.0])   # ||(ga, gb)|| = 13
    a.grad, b.grad = ga.clone(), gb.clone()
    opt.step()
    assert torch.allclose(opt.state[a]["m"], 0.1 * ga / (13 + 1e-4))
    assert torch.allclose(opt.state[b]["v"], 0.001 * (gb / (13 + 1e-4)) ** 2)
    # a state_dict round trip continues as the uninterrupted optimiser does
    twin_a, twin_b = torch.nn.Parameter(a.detach().clone()), torch.nn.Parameter(b.detach().clone())
    twin = SraAdam([twin_a, twin_b], lr=0.1)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))   # as a save and a load give it
    for _ in range(3):
        for x, y in ((a, twin_a), (b, twin_b)):
            x.grad = torch.ones_like(x)
            y.grad = torch.ones_like(y)
        opt.step()
        twin.step()
    assert torch.equal(a, twin_a) and torch.equal(b, twin_b)


def test_adam_sra_refuses_weight_decay() -> None:
    base = dict(epochs=1, batch_size=8, optimizer="adam_sra", lr=0.1, momentum=0.9, weight_decay=1e-4,
                schedule="constant", step_size=1, gamma=1.0)
    with pytest.raises(RsbenchError, match="adam_sra has no weight decay"):
        loop.TrainConfig.from_cfg(base)


# -- flips ----------------------------------------------------------------------------------------------------------


def test_flip_mirrors_each_image_with_probability_one_half() -> None:
    x = torch.rand(400, 3, 4, 5)
    out = AUGMENTS.get("flip")(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())                   # every image: itself or its mirror, never both
    assert 160 < int(mirrored.sum()) < 240                 # Binomial(400, 1/2): mean 200, sd 10
    again = AUGMENTS.get("flip")(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


# -- the collapse detector --------------------------------------------------------------------------------------------


def test_logit_spread_is_the_mean_per_class_standard_deviation() -> None:
    logits = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    want = (math.sqrt(8 / 3) + 0.0) / 2                    # class 0: std of (0, 2, 4); class 1: constant
    assert loop.logit_spread(logits) == pytest.approx(want)
    assert math.isnan(loop.logit_spread(logits[:1]))


def test_collapse_warning_is_one_line_that_names_the_cause(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="rsbench"):
        assert loop.warn_collapse(0.0005, 3, {"name": "mscr", "d": 1.0, "var_x": 0.01})
        assert not loop.warn_collapse(0.3, 3, {"name": "mscr"})
        assert not loop.warn_collapse(float("nan"), 3, None)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "collapsed" in lines[0] and "mscr" in lines[0] and "train.warm_start" in lines[0]


# -- the warm start ---------------------------------------------------------------------------------------------------


def _tiny_train(warm_start=None, loss=None, epochs=2) -> torch.nn.Module:
    ds, spec = load_split("mnist5k", "train")
    test, _ = load_split("mnist5k", "test")
    torch.manual_seed(0)
    model = build_model("sra_mlp", spec, {"widths": [32], "iters": 6})
    tc = loop.TrainConfig(epochs=epochs, batch_size=32, optimizer="adam_sra", lr=0.01, momentum=0.9, weight_decay=0.0,
                          schedule="constant", step_size=1, gamma=1.0, max_examples=128, loss=loss,
                          warm_start=warm_start)
    loop.train_model(model, ds, test, tc, 0.0, 0, torch.device("cpu"), eval_limit=64)
    return model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_warm_start_trains_its_loss_for_its_steps_then_the_main_loss() -> None:
    mh, mscr = {"name": "mh", "d": 1.0}, {"name": "mscr", "d": 1.0, "var_x": 0.01}
    every_step = _tiny_train(warm_start={**mh, "steps": 8}, loss=mscr)     # 2 epochs x 4 steps: all warm
    assert _same(every_step, _tiny_train(loss=mh))
    part = _tiny_train(warm_start={**mh, "steps": 4}, loss=mscr)
    assert not _same(part, every_step) and not _same(part, _tiny_train(loss=mscr))
    assert _same(_tiny_train(warm_start={**mh, "steps": 4}, loss=mscr, epochs=1), _tiny_train(loss=mh, epochs=1))


def test_bad_warm_start_settings_say_what_is_wrong() -> None:
    base = dict(epochs=1, batch_size=8, optimizer="adam", lr=0.1, momentum=0.9, weight_decay=0.0,
                schedule="constant", step_size=1, gamma=1.0)
    with pytest.raises(RsbenchError, match=r"train.warm_start.steps=None is invalid"):
        loop.TrainConfig.from_cfg({**base, "warm_start": {"name": "mh", "d": 1.0}})
    with pytest.raises(RsbenchError, match="needs a loss name"):
        loop.TrainConfig.from_cfg({**base, "warm_start": {"steps": 10}})
    with pytest.raises(RsbenchError, match=r"train.loss.name=mh takes parameters \['d'\]"):
        loop.TrainConfig.from_cfg({**base, "warm_start": {"name": "mh", "steps": 10}})
    with pytest.raises(RsbenchError, match="unknown loss 'hinge'"):
        loop.TrainConfig.from_cfg({**base, "warm_start": {"name": "hinge", "steps": 10}})


def test_cli_records_the_recipe_and_logs_the_spread(tmp_path) -> None:
    run = tmp_path / "run"
    run_cli(["train", "model=sra_mlp", "model.params.widths=[16]", "model.params.iters=4", "train.noise_sigma=0",
             "train.optimizer=adam_sra", "train.weight_decay=0", "train.epochs=1", "train.max_examples=64",
             "train.loss={name: mscr, d: 1.0, var_x: 0.01}", "train.warm_start={name: mh, d: 1.0, steps: 1}",
             "train.adapt_at_start=true", f"hydra.run.dir={run}"], tmp_path)
    meta = torch.load(run / "model.pt", weights_only=True)["meta"]
    assert meta["train_warm_start"] == {"name": "mh", "d": 1.0, "steps": 1}
    assert meta["train_optimizer"] == "adam_sra" and meta["train_loss"] == {"name": "mscr", "d": 1.0, "var_x": 0.01}
    header, row = (run / "train_log.csv").read_text().splitlines()[:2]
    spread = float(row.split(",")[header.split(",").index("logit_spread")])
    assert math.isfinite(spread) and spread > 0


# -- the collapse, on a small separable problem --------------------------------------------------------------------


def _blobs(n: int, seed: int):
    """10 separable classes in [0, 1]^48 (as 3 x 4 x 4 images): x = 0.5 + 0.1 (mu_y - 0.5) + N(0, 0.02^2),
    the class means mu_y uniform in [0, 1]^48. Every input is close to the grey image, as CIFAR-10's are close
    to their mean image, so a random 1-Lipschitz network's outputs start close together (spread ~0.007)."""
    from rsbench.data.registry import TensorImages

    mu = torch.rand(10, 48, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (0.5 + 0.1 * (mu[y] - 0.5) + 0.02 * torch.randn(n, 48, generator=g)).clamp(0, 1)
    return TensorImages(x.view(n, 3, 4, 4), y)


def _train_blobs(bias: bool, optimizer: str, warm_start=None) -> dict:
    from rsbench.data.registry import DatasetSpec

    spec = DatasetSpec("blobs", "blobs", (3, 4, 4), 10, (0.0,) * 3, (1.0,) * 3)
    torch.manual_seed(0)
    model = build_model("sra_mlp", spec, {"widths": [64, 64], "iters": 10, "bias": bias})
    tc = loop.TrainConfig(epochs=8, batch_size=128, optimizer=optimizer, lr=0.005, momentum=0.9, weight_decay=0.0,
                          schedule="constant", step_size=1, gamma=1.0, adapt_every=1, warm_start=warm_start,
                          loss={"name": "mscr", "d": 1.0, "var_x": 0.01})
    return loop.train_model(model, _blobs(2048, 1), _blobs(512, 2), tc, 0.0, 0, torch.device("cpu"))


def test_mscr_from_scratch_collapses_and_the_warm_start_prevents_it(caplog) -> None:
    """MSCR from a random start shrinks every output to one point (spread 0, chance accuracy), with rsbench's
    former settings (biases, Adam) and with the authors' layers and Adam alike; 64 steps of the multiclass
    hinge first (half the training) give a network that separates the classes and keeps its spread."""
    with caplog.at_level(logging.WARNING, logger="rsbench"):
        former = _train_blobs(True, "adam")
    assert former["logit_spread"] < 1e-3 and former["test_acc"] < 0.2
    assert any("collapsed" in r.getMessage() for r in caplog.records)
    authors = _train_blobs(False, "adam_sra")
    assert authors["logit_spread"] < 1e-3 and authors["test_acc"] < 0.2
    warm = _train_blobs(False, "adam_sra", warm_start={"name": "mh", "d": 1.0, "steps": 64})
    assert warm["logit_spread"] > loop.COLLAPSE_SPREAD and warm["test_acc"] > 0.9


def test_sra_figures_labels_the_warm_start_and_pairs_two_networks_point_by_point(tmp_path) -> None:
    """Two networks on the same 4 images: A certifies margin radii (0.3, 0.2, 0, 0.1) with image 2 wrong,
    B (0.1, 0.1, 0.1, 0) with image 3 wrong; mean certified radius A 0.15, B 0.075; at r = 0.2 A 2/4, B 0/4."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    specs = {"mscr_warm": ({"name": "mscr", "d": 1.0, "var_x": 0.01}, {"name": "mh", "d": 1.0, "steps": 50},
                           [0.3, 0.2, 0.0, 0.1], [1, 1, 0, 1]),
             "mcr_warm": ({"name": "mcr", "d": 1.0}, {"name": "mh", "d": 1.0, "steps": 50},
                          [0.1, 0.1, 0.1, 0.0], [1, 1, 1, 0])}
    for name, (loss, warm, radius, correct) in specs.items():
        run = tmp_path / name / "0"
        run.mkdir(parents=True)
        run.joinpath("summary.json").write_text(json.dumps(
            {"loss": loss, "warm_start": warm, "seed": 0, "clean_acc": 0.75, "auc_cr_margin": 0.1, "auc_cr_rs": 0.1,
             "auc_gn": 1.0, "mscr_vs_mc_mean_abs_diff": 0.0, "mscr_vs_mc_corr": 1.0}))
        pd.DataFrame({"curve": "linear_corruption", "x": [1.0, 0.0], "value": [0.75, 0.1]}).to_csv(
            run / "curves.csv", index=False)
        points = pd.DataFrame({"idx": [0, 1, 2, 3], "label": [1, 2, 3, 4], "correct": correct, "margin_radius": radius})
        points.to_csv(run / "points.csv", index=False)
        points.rename(columns={"margin_radius": "radius"}).to_csv(run / "rs.csv", index=False)
    script = Path(__file__).resolve().parents[1] / "scripts" / "sra_figures.py"
    a, b = "mscr d=1.0 var_x=0.01 warm_start=mh:50", "mcr d=1.0 var_x=None warm_start=mh:50"
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "--paired", a, b], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(tmp_path / "table.csv")
    assert set(table["label"]) == {a, b} and set(table["departure"]) == {"warm start: mh for 50 steps"}
    paired = (tmp_path / "paired.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in paired.splitlines() if " minus " in line}
    assert f"{a} minus {b}: margin ACR" in rows and f"{a} minus {b}: RS r=0.2" in rows
    assert "0.0750" in rows[f"{a} minus {b}: margin ACR"]   # 0.15 - 0.075
    assert "0.5000" in rows[f"{a} minus {b}: RS r=0.2"]     # 2/4 - 0/4


def test_abort_below_stops_a_run_under_the_bound_and_a_resume_stays_stopped(tmp_path) -> None:
    """The SRA authors' restart rule: a run whose clean test accuracy is below the bound after the epoch is
    abandoned with a one-line error; its training checkpoint, resumed, is abandoned again, not continued."""
    ds, spec = load_split("mnist5k", "train")
    test, _ = load_split("mnist5k", "test")

    def train(rule, epochs=2):
        torch.manual_seed(0)
        model = build_model("sra_mlp", spec, {"widths": [16], "iters": 4})
        tc = loop.TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", lr=0.01, momentum=0.9, weight_decay=0.0,
                              schedule="constant", step_size=1, gamma=1.0, max_examples=64, abort_below=rule)
        return loop.train_model(model, ds, test, tc, 0.0, 0, torch.device("cpu"), eval_limit=64,
                                state_path=tmp_path / "state.pt")

    with pytest.raises(RsbenchError, match=r"training abandoned: clean test accuracy 0\.\d+ < 1 after epoch 1"):
        train({"epoch": 1, "test_acc": 1.0})
    assert (tmp_path / "state.pt").exists()
    with pytest.raises(RsbenchError, match="training abandoned"):
        train({"epoch": 1, "test_acc": 1.0})                # the same run, resumed
    (tmp_path / "state.pt").unlink()
    assert train({"epoch": 1, "test_acc": 0.0})["epoch"] == 2
    with pytest.raises(RsbenchError, match=r"train.abort_below=\{'epoch': 100\} is invalid"):
        loop.TrainConfig.from_cfg(dict(epochs=1, batch_size=8, optimizer="adam", lr=0.1, momentum=0.9,
                                       weight_decay=0.0, schedule="constant", step_size=1, gamma=1.0,
                                       abort_below={"epoch": 100}))
