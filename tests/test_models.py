"""Model registry and checkpoints: shapes, normalisation inside, safe and strict loading."""

from __future__ import annotations

import hashlib
import pickle

import pytest
import torch

from rsbench.data import load_split
from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.models import build_model
from rsbench.models.checkpoint import load_model, load_weights_file, read_checkpoint, save_checkpoint
from rsbench.models.registry import check_input, full_params

MNIST = DatasetSpec("mnist", "mnist", (1, 28, 28), 10, (0.1307,), (0.3081,))
CIFAR = DatasetSpec("cifar10", "cifar10", (3, 32, 32), 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize("arch,spec,params", [
    ("mlp", MNIST, {"widths": [32, 16]}), ("cnn", MNIST, {}),
    ("cifar_resnet", CIFAR, {"depth": 20}), ("cifar_resnet", CIFAR, {"depth": 110}),
])
def test_forward_shapes(arch, spec, params) -> None:
    model = build_model(arch, spec, params).eval()
    assert model(torch.rand(3, *spec.shape)).shape == (3, 10)


def test_resnet50_builds_for_imagenet_shape() -> None:
    spec = DatasetSpec("imagenet", "imagenet", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    model = build_model("resnet50", spec).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 1000)


def test_normalisation_is_inside_the_model() -> None:
    model = build_model("mlp", MNIST, {"widths": []}).eval()
    lin = model.net[1]
    x = torch.rand(2, 1, 28, 28)
    expected = lin(((x - 0.1307) / 0.3081).flatten(1))
    assert torch.allclose(model(x), expected)


def test_bad_arch_and_params() -> None:
    with pytest.raises(RsbenchError, match="valid models: .*cifar_resnet.*cnn.*mlp"):
        build_model("vit", MNIST)
    with pytest.raises(RsbenchError, match="depth=21"):
        build_model("cifar_resnet", CIFAR, {"depth": 21})
    with pytest.raises(RsbenchError, match="unknown model.params"):
        full_params("mlp", {"width": 3})
    assert full_params("cnn", {}) == full_params("cnn", {"channels": (16, 32)})


def test_checkpoint_roundtrip_and_refusals(tmp_path) -> None:
    params = full_params("mlp", {"widths": [16]})
    model = build_model("mlp", MNIST, params)
    meta = {"arch": "mlp", "params": params, "dataset": "mnist", "family": "mnist", "train_noise_sigma": 0.25}
    path = save_checkpoint(tmp_path / "m.pt", model, meta)
    loaded, got = load_model(path, "mlp", params, MNIST)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded(x), model(x)) and got == {**meta, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    # the embedded dataset is the same family, so the checkpoint is accepted there too
    _, spec5k = load_split("mnist5k", "test")
    load_model(path, "mlp", params, spec5k)

    with pytest.raises(RsbenchError, match="asks for arch=cnn"):
        load_model(path, "cnn", full_params("cnn"), MNIST)
    with pytest.raises(RsbenchError, match="params"):
        load_model(path, "mlp", full_params("mlp", {"widths": [32]}), MNIST)
    with pytest.raises(RsbenchError, match="trained on dataset mnist but the config certifies cifar10"):
        load_model(path, "mlp", params, CIFAR)

    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(RsbenchError, match="corrupted or not a torch checkpoint"):
        read_checkpoint(truncated)
    with pytest.raises(RsbenchError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(RsbenchError, match="is a directory, not a file; name the file inside it"):
        read_checkpoint(tmp_path)

    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(RsbenchError, match="not an rsbench checkpoint"):
        read_checkpoint(plain)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoints_never_run_code(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "rsbench-checkpoint/1", "payload": _Evil()}, fh, protocol=2)  # torch.load's own
    with pytest.raises(RsbenchError, match="corrupted or not a torch checkpoint"):
        read_checkpoint(path)


def test_weights_file(tmp_path) -> None:
    model = build_model("mlp", MNIST, {"widths": [8]})
    path = tmp_path / "w.pt"
    torch.save(model.net.state_dict(), path)
    other, meta = load_weights_file(path, "mlp", {"widths": [8]}, MNIST)
    assert torch.equal(other.net[1].weight, model.net[1].weight)
    assert meta["weights_file"] == str(path)
    with pytest.raises(RsbenchError, match="could not be loaded"):
        load_weights_file(path, "mlp", {"widths": [9]}, MNIST)
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RsbenchError, match="does not exist. rsbench downloads no weights: Cohen et al.'s released"):
        load_weights_file(tmp_path / "noise_0.25" / "checkpoint.pth.tar", "mlp", {"widths": [8]}, MNIST)


def test_check_input() -> None:
    check_input(torch.rand(1, 28, 28), MNIST, "p")
    with pytest.raises(RsbenchError, match=r"input shape \(3, 32, 32\) does not match"):
        check_input(torch.rand(3, 32, 32), MNIST, "test point 4")
    bad = torch.rand(1, 28, 28)
    bad[0, 3, 3] = float("nan")
    with pytest.raises(RsbenchError, match="non-finite"):
        check_input(bad, MNIST, "test point 4")


@pytest.mark.parametrize("arch", ["resnet20", "resnet56", "vgg13_bn", "vgg19_bn", "mobilenetv2_x0_5",
                                  "mobilenetv2_x1_4", "shufflenetv2_x0_5", "shufflenetv2_x2_0", "repvgg_a0",
                                  "repvgg_a2"])
def test_cifar_zoo_builds_and_runs(arch: str) -> None:
    """DSmooth's CIFAR-10 zoo by name: 32 x 32 inputs to 10 logits; parameter counts of the usual CIFAR variants."""
    from rsbench.data import load_split

    _, spec = load_split("standin_cifar10", "test")
    model = build_model(arch, spec, full_params(arch, {})).eval()
    with torch.no_grad():
        assert model(torch.rand(2, *spec.shape)).shape == (2, 10)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    expected = {"resnet20": 0.27, "resnet56": 0.86, "vgg13_bn": 9.94, "vgg19_bn": 20.56, "mobilenetv2_x0_5": 0.70,
                "mobilenetv2_x1_4": 4.33, "shufflenetv2_x0_5": 0.35, "shufflenetv2_x2_0": 5.37, "repvgg_a0": 7.84,
                "repvgg_a2": 26.82}[arch]
    assert millions == pytest.approx(expected, rel=0.02)


def test_imagenet_archs_by_name() -> None:
    from rsbench.models import MODELS

    for arch in ("resnet50", "resnet152", "wide_resnet50_2", "wide_resnet101_2"):
        assert arch in MODELS
