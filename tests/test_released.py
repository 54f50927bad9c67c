"""Released checkpoints of the field's training objectives, each built here in exactly its repository's layout
and loaded with one command: SmoothAdv (Cohen's layout), consistency and SmoothMix (Cohen's layout, plus MNIST's
LeNet behind an Identity), MACER ({"net", "epoch"}, no normalisation). Same logits as the network they saved."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_cohen_import import CIFAR, _cohen_model, _CohenCifarResNet
from torch import nn

from conftest import run_cli
from rsbench.data import DATASETS
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import load_weights_file

MNIST = DATASETS.get("mnist5k").spec()


class _AuthorsLeNet(nn.Module):
    """The LeNet of consistency / SmoothMix / MACER (archs/lenet.py, model.py): their attribute names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        return self.fc2(F.relu(self.fc1(x.view(-1, 4 * 4 * 50))))


def _lenet() -> nn.Module:
    torch.manual_seed(3)
    return _AuthorsLeNet().eval()


def _same_logits(model, reference, shape) -> None:
    x = torch.rand(6, *shape)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference(x), atol=1e-5)


def test_consistency_and_smoothmix_mnist_lenet(tmp_path) -> None:
    """Their train_utils saves {epoch, arch, state_dict, optimizer} of Sequential(Identity, LeNet): keys 1.conv1..."""
    reference = nn.Sequential(nn.Identity(), _lenet()).eval()
    path = tmp_path / "logs" / "mnist" / "consistency" / "noise_0.25" / "checkpoint.pth.tar"
    path.parent.mkdir(parents=True)
    torch.save({"epoch": 90, "arch": "lenet", "state_dict": reference.state_dict(),
                "optimizer": torch.optim.SGD(reference.parameters(), lr=0.01).state_dict()}, path)
    assert next(iter(reference.state_dict())) == "1.conv1.weight"
    model, meta = load_weights_file(path, "lenet", {}, MNIST)
    _same_logits(model, reference, (1, 28, 28))
    assert meta["normalization"] == {"mean": [0.0], "std": [1.0]} and meta["train_noise_sigma"] == 0.25
    # one command: certify with the released file
    run_cli(["certify", "model=lenet", f"model.weights_file={path}", "certify.n0=10", "certify.n=50",
             "certify.max=20", "certify.skip=10", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert len(pd.read_csv(tmp_path / "run" / "certify.csv")) == 2


def test_smoothadv_cifar_is_cohens_layout(tmp_path) -> None:
    """SmoothAdv's released CIFAR models are Cohen's checkpoint layout (its code is Cohen's, DataParallel)."""
    reference = _cohen_model(20)
    path = tmp_path / "pretrained_models" / "cifar10" / "PGD_1step" / "eps_64" / "noise_0.25" / "checkpoint.pth.tar"
    path.parent.mkdir(parents=True)
    torch.save({"epoch": 150, "arch": "cifar_resnet20", "state_dict": reference.state_dict()}, path)
    model, meta = load_weights_file(path, "cifar_resnet", {"depth": 20}, CIFAR)
    _same_logits(model, reference, (3, 32, 32))
    assert meta["format"] == "cohen2019" and meta["train_noise_sigma"] == 0.25


def test_macer_lenet_and_resnet(tmp_path) -> None:
    """MACER saves {"net": base_model.state_dict(), "epoch"}: no prefix, no normalisation layer anywhere."""
    lenet = _lenet()
    path = tmp_path / "macer_mnist.pth"
    torch.save({"net": lenet.state_dict(), "epoch": 90}, path)
    model, meta = load_weights_file(path, "lenet", {}, MNIST)
    _same_logits(model, lenet, (1, 28, 28))
    assert meta["format"] == "macer2020" and meta["epoch"] == 90
    torch.manual_seed(0)
    resnet = _CohenCifarResNet(20).eval()  # MACER's ResNet_Cifar has these very keys (conv1, bn1, layerL.i, fc)
    with torch.no_grad():
        for m in resnet.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "macer_cifar.pth"
    torch.save({"net": resnet.state_dict(), "epoch": 440}, path)
    model, meta = load_weights_file(path, "cifar_resnet", {"depth": 20}, CIFAR)
    _same_logits(model, resnet, (3, 32, 32))  # unnormalised pixels, as MACER trains
    assert meta["params"]["depth"] == 20 and meta["normalization"]["std"] == [1.0, 1.0, 1.0]
    with pytest.raises(RsbenchError, match="config asks for model cnn"):
        load_weights_file(tmp_path / "macer_mnist.pth", "cnn", {}, MNIST)
    broken = {k: v for k, v in lenet.state_dict().items() if k != "fc2.bias"}
    torch.save({"net": broken, "epoch": 1}, tmp_path / "broken.pth")
    with pytest.raises(RsbenchError, match=r"keys don't fit lenet .*missing \['fc2.bias'\]"):
        load_weights_file(tmp_path / "broken.pth", "lenet", {}, MNIST)
