"""Cohen et al.'s released checkpoint format: built here with exactly their key layout, imported, same logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsbench.data import DATASETS
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import load_weights_file
from rsbench.models.cohen import NORMALIZATION

CIFAR = DATASETS.get("cifar10").spec()


class _Block(nn.Module):
    """bearpaw's BasicBlock as Cohen et al. ship it (conv1/bn1/conv2/bn2, optional ``downsample``)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class _CohenCifarResNet(nn.Module):
    def __init__(self, depth: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin, layers = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers.append(nn.Sequential(*[_Block(cin if i == 0 else planes, planes, stride if i == 0 else 1)
                                          for i in range(n)]))
            cin = planes
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(self.avgpool(self.layer3(self.layer2(self.layer1(x)))).flatten(1))


class _NormalizeLayer(nn.Module):
    """Cohen's NormalizeLayer: plain tensor attributes, so nothing of it lands in the state_dict."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.means, self.sds = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.means) / self.sds


def _cohen_model(depth: int, data_parallel: bool = True) -> nn.Sequential:
    torch.manual_seed(depth)
    net = _CohenCifarResNet(depth)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a mis-mapped key changes the logits
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return nn.Sequential(_NormalizeLayer(*NORMALIZATION["cifar10"]),
                         nn.DataParallel(net) if data_parallel else net).eval()


def _save(tmp_path, model: nn.Module, arch: str, name: str = "checkpoint.pth.tar"):
    folder = tmp_path / "models" / "cifar10" / "resnet" / "noise_0.25"
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 90, "arch": arch, "state_dict": model.state_dict(), "optimizer": opt.state_dict()},
               folder / name)
    return folder / name


@pytest.mark.parametrize("depth,data_parallel", [(20, True), (20, False), (32, True)])
def test_cohen_cifar_round_trip_same_logits(tmp_path, depth, data_parallel) -> None:
    reference = _cohen_model(depth, data_parallel)
    keys = list(reference.state_dict())
    assert keys[0].startswith("1.module." if data_parallel else "1.conv1")
    arch = f"cifar_resnet{depth}"
    if depth not in (20, 110):  # Cohen released 20 and 110; a 32 must be refused, not guessed
        with pytest.raises(RsbenchError, match="cifar_resnet32.*not supported"):
            load_weights_file(_save(tmp_path, reference, arch), "cifar_resnet", {"depth": 20}, CIFAR)
        return
    model, meta = load_weights_file(_save(tmp_path, reference, arch), "cifar_resnet", {"depth": 20}, CIFAR)
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference(x), atol=1e-5)
    assert meta["format"] == "cohen2019" and meta["train_noise_sigma"] == 0.25
    assert meta["normalization"]["std"] == list(NORMALIZATION["cifar10"][1])


def test_cohen_keys_that_do_not_fit_are_refused(tmp_path) -> None:
    reference = _cohen_model(20)
    state = reference.state_dict()
    del state["1.module.layer2.0.downsample.0.weight"]
    path = tmp_path / "broken.pth.tar"
    torch.save({"arch": "cifar_resnet20", "state_dict": state}, path)
    with pytest.raises(RsbenchError, match=r"keys don't fit cifar_resnet .*missing \['blocks.3.shortcut.0.weight'\]"):
        load_weights_file(path, "cifar_resnet", {"depth": 20}, CIFAR)
    # a 20-layer file that calls itself 110 layers deep
    path = _save(tmp_path, reference, "cifar_resnet110", "liar.pth.tar")
    with pytest.raises(RsbenchError, match="keys don't fit"):
        load_weights_file(path, "cifar_resnet", {"depth": 20}, CIFAR)
    with pytest.raises(RsbenchError, match="config asks for model vgg16_bn"):
        load_weights_file(_save(tmp_path, reference, "cifar_resnet20", "ok.pth.tar"), "vgg16_bn", {}, CIFAR)


def test_cohen_checkpoint_certifies_with_one_command(tmp_path) -> None:
    """The README's command: `rsbench certify dataset=... model.weights_file=<Cohen's checkpoint.pth.tar>`."""
    from conftest import read_rows, run_cli

    path = _save(tmp_path, _cohen_model(20), "cifar_resnet20")
    run_cli(["certify", "dataset=standin_cifar10", f"model.weights_file={path}", "certify.n0=10", "certify.n=50",
             "certify.max=20", "certify.batch=50", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    rows = read_rows(tmp_path / "run" / "certify.csv")
    assert len(rows) == 2 and rows["sound"].all()
