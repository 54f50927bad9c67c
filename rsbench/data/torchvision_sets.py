"""MNIST and ImageNet through torchvision's own loaders, plus the 100-image CIFAR-10 sample (CIFAR-10 itself:
``rsbench/data/cifar10.py``).

``data_dir`` points at existing files; ``download=True`` lets torchvision fetch them on a machine
with a network. A missing dataset fails with a message that says where it looked.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

from rsbench.cache import cached
from rsbench.data.embedded import MNIST_MEAN, MNIST_STD
from rsbench.data.registry import DATASETS, DatasetEntry, DatasetSpec, TensorImages
from rsbench.errors import RsbenchError

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _root(data_dir: str | None, name: str) -> Path:
    if data_dir is None:
        raise RsbenchError(f"dataset '{name}' needs dataset.data_dir=<folder> (or RSBENCH_DATA=<folder>)")
    return Path(data_dir).expanduser().resolve()


def _missing(name: str, root: Path, looked_for: str, hint: str) -> RsbenchError:
    return RsbenchError(
        f"dataset '{name}': no data found under {root} (looked for {looked_for}). "
        f"Set dataset.data_dir=<folder that holds it>{hint}, or dataset.download=true on a machine with a network"
    )


def _mnist_root(root: Path, cache_dir: str | None) -> Path:
    """A root whose MNIST/raw holds the uncompressed IDX files torchvision reads.

    If ``root`` only has the ``.gz`` files (as in a read-only shared folder), they are decompressed
    once into ``cache_dir`` and that is returned instead.
    """
    raw = root / "MNIST" / "raw"
    if all((raw / f).exists() for f in _MNIST_FILES):
        return root
    if not all((raw / f"{f}.gz").exists() for f in _MNIST_FILES):
        return root  # let the caller report it (or torchvision download it)
    if cache_dir is None:
        raise RsbenchError(f"MNIST under {raw} is gzip-compressed; set dataset.cache_dir to a writable folder")
    cache = Path(cache_dir).expanduser().resolve()

    def decompress(folder: Path) -> None:
        folder.mkdir()
        for f in _MNIST_FILES:
            try:
                with gzip.open(raw / f"{f}.gz", "rb") as src, open(folder / f, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError, zlib.error) as exc:
                raise RsbenchError(f"dataset 'mnist': {raw / f'{f}.gz'} is damaged ({type(exc).__name__}: "
                                   f"{exc}); restore it from its source") from exc

    cached(cache / "MNIST" / "raw", decompress, "the decompressed MNIST files")
    return cache


def load_mnist(split: str, data_dir: str | None = None, download: bool = False,
               cache_dir: str | None = None, **_: object) -> TensorImages:
    from torchvision.datasets import MNIST

    root = _root(data_dir, "mnist")
    if not download:
        root = _mnist_root(root, cache_dir)
        if not all((root / "MNIST" / "raw" / f).exists() for f in _MNIST_FILES):
            raise _missing("mnist", root, "MNIST/raw/{train,t10k}-{images,labels}-*-ubyte[.gz]",
                           " (e.g. ../shared/data)")
    ds = MNIST(str(root), train=split == "train", download=download)
    x = ds.data.unsqueeze(1).float().div_(255.0)
    return TensorImages(x, ds.targets.long())


def load_cifar10_sample(split: str, data_dir: str | None = None, **_: object) -> TensorImages:
    """The first 100 CIFAR-10 *test* images (genuine pixels), from ``cifar10-sample/`` under data_dir."""
    root = _root(data_dir, "cifar10_sample")
    path = root / "cifar10-sample" / "cifar10_test_first100.csv.gz"
    if split != "test":
        raise RsbenchError("dataset 'cifar10_sample' has only a test split (100 images); train on another "
                           "dataset (e.g. dataset=standin_cifar10) and pass model.checkpoint=")
    if not path.exists():
        raise _missing("cifar10_sample", root, "cifar10-sample/cifar10_test_first100.csv.gz", "")
    with gzip.open(path, "rt") as fh:
        a = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = a[:, 1:].reshape(-1, 32, 32, 3).astype(np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return TensorImages(x, torch.from_numpy(a[:, 0]))


def load_imagenet(split: str, data_dir: str | None = None, **_: object):
    """ImageNet from an ImageFolder layout (``train/`` and ``val/``): resize 256, center crop 224."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = _root(data_dir, "imagenet")
    folder = root / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise _missing("imagenet", root, f"{folder.name}/<class>/<image> (ImageFolder layout)", "")
    if split == "train":
        tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor()])
    else:
        tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    return ImageFolder(str(folder), transform=tf)


DATASETS.register("mnist")(DatasetEntry(
    spec=lambda **_: DatasetSpec("mnist", "mnist", (1, 28, 28), 10, MNIST_MEAN, MNIST_STD),
    load=load_mnist,
))
DATASETS.register("cifar10_sample")(DatasetEntry(
    spec=lambda **_: DatasetSpec("cifar10_sample", "cifar10", (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD,
                                 notes="first 100 CIFAR-10 test images only"),
    load=load_cifar10_sample,
))
DATASETS.register("imagenet")(DatasetEntry(
    spec=lambda **_: DatasetSpec("imagenet", "imagenet", (3, 224, 224), 1000, IMAGENET_MEAN, IMAGENET_STD),
    load=load_imagenet,
))
