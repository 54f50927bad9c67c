"""CIFAR training augmentation: the right transformation, seeded, training batches only, recorded."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import run_cli
from rsbench.data import DATASETS
from rsbench.models.checkpoint import read_checkpoint
from rsbench.training import augment as aug


def test_crop_flip_is_a_padded_crop_maybe_mirrored() -> None:
    x = torch.rand(16, 3, 32, 32)
    out = aug.crop_flip(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(16):
        crops = [padded[i, :, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        plain = any(torch.equal(out[i], crop) for crop in crops)
        mirrored = any(torch.equal(out[i], crop.flip(2)) for crop in crops)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 0 < flips < 16  # both branches are taken


def test_crop_flip_is_seeded() -> None:
    x = torch.rand(32, 3, 32, 32)
    a = aug.crop_flip(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, aug.crop_flip(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, aug.crop_flip(x, torch.Generator().manual_seed(2)))


def test_auto_is_the_datasets_recipe() -> None:
    assert aug.resolve_augment("auto", DATASETS.get("standin_cifar10").spec()) == "crop_flip"
    assert aug.resolve_augment("auto", DATASETS.get("mnist5k").spec()) == "none"
    assert aug.resolve_augment("none", DATASETS.get("standin_cifar10").spec()) == "none"


def test_applies_to_training_batches_only_and_is_recorded(tmp_path, monkeypatch) -> None:
    calls: list[int] = []

    def spy(x, generator):
        calls.append(len(x))
        return aug.crop_flip(x, generator)

    monkeypatch.setitem(aug.AUGMENTS._items, "crop_flip", spy)
    common = ["dataset=standin_cifar10", "dataset.n_train=300", "dataset.n_test=50", "model=cifar_resnet",
              "model.params.depth=8", "train.epochs=2", "train.batch_size=100"]
    run_cli(["train", *common, f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert calls == [100] * 6  # 3 training batches x 2 epochs; evaluation never augments
    assert read_checkpoint(tmp_path / "a" / "model.pt")[1]["augment"] == "crop_flip"
    calls.clear()
    run_cli(["train", *common, "train.augment=none", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert calls == [] and read_checkpoint(tmp_path / "b" / "model.pt")[1]["augment"] == "none"
