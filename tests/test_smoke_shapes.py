"""CIFAR-10 and ImageNet configs end to end on stand-in data of the right shape (smoke runs, not results)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import SHARED_DATA, run_cli
from rsbench.data import load_split
from rsbench.models import build_model

SMOKE_CERTIFY = ["certify.n0=10", "certify.n=50", "certify.alpha=0.01", "certify.batch=64"]


def test_cifar_resnet_on_standin_then_real_cifar_sample(tmp_path) -> None:
    train = ["dataset=standin_cifar10", "model=cifar_resnet", "model.params.depth=8", "train.epochs=1",
             "train.max_examples=256", "dataset.n_test=40"]
    run_cli(["train", *train, f"hydra.run.dir={tmp_path / 'train'}"], tmp_path)
    ckpt = tmp_path / "train" / "model.pt"
    run_cli(["certify", *train, *SMOKE_CERTIFY, "certify.skip=10", f"model.checkpoint={ckpt}",
             f"hydra.run.dir={tmp_path / 'standin'}"], tmp_path)
    df = pd.read_csv(tmp_path / "standin" / "certify.csv")
    assert list(df["idx"]) == [0, 10, 20, 30]
    run_cli(["certify", *train, *SMOKE_CERTIFY, "certify.skip=20", "method=mog", "K=3", "method.sigma_max=0.25",
             "method.certificate=componentwise", f"model.checkpoint={ckpt}", f"hydra.run.dir={tmp_path / 'mog'}"],
            tmp_path)
    mog = pd.read_csv(tmp_path / "mog" / "certify.csv")
    assert list(mog["idx"]) == [0, 20] and mog["sound"].all() and (mog["K"] == 3).all()
    if (SHARED_DATA / "cifar10-sample").is_dir():  # the 100 real CIFAR-10 test images, same model family
        run_cli(["certify", "dataset=cifar10_sample", f"dataset.data_dir={SHARED_DATA}", "model=cifar_resnet",
                 "model.params.depth=8", *SMOKE_CERTIFY, "certify.skip=5", "certify.max=20", f"model.checkpoint={ckpt}",
                 f"hydra.run.dir={tmp_path / 'sample'}"], tmp_path)
        real = pd.read_csv(tmp_path / "sample" / "certify.csv")
        assert list(real["label"]) == [3, 6, 0, 8]  # official labels of CIFAR-10 test images 0, 5, 10, 15


def test_resnet50_from_local_weights_file_on_standin_imagenet(tmp_path) -> None:
    _, spec = load_split("standin_imagenet", "test", n_test=1)
    weights = tmp_path / "resnet50.pth"
    torch.save(build_model("resnet50", spec).net.state_dict(), weights)
    run_cli(["certify", "dataset=standin_imagenet", "dataset.n_test=1", "model=resnet50",
             f"model.weights_file={weights}", "certify.n0=4", "certify.n=8", "certify.alpha=0.1", "certify.batch=4",
             "certify.skip=1", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    df = pd.read_csv(tmp_path / "run" / "certify.csv")
    assert len(df) == 1 and df["predict"].iloc[0] in range(-1, 1000)


def test_imagenet_imagefolder_resize_and_crop(tmp_path) -> None:
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (320, 300), (200, 10, 10)).save(tmp_path / split / cls / "a.png")
    ds, spec = load_split("imagenet", "test", data_dir=str(tmp_path))
    x, y = ds[1]
    assert x.shape == (3, 224, 224) and spec.shape == (3, 224, 224) and y == 1
    assert float(x[0].mean()) == pytest.approx(200 / 255, abs=1e-3)
