"""CIFAR-10 from torchvision's ``cifar-10-batches-py/`` or, where that is absent, from the shared layout.

The shared layout (``../shared/data``, see its README) holds all 60,000 images as a JPEG re-encoding
(``cifar10-jpeg/cifar10_jpeg.tar.gz`` with ``index.csv`` mapping each file to its position in the
original order) and 6,102 images with genuine pixels (``cifar10-subset/cifar10_subset.npz``: the first
1,017 of each training batch and of the test set). From it:

- train: all 50,000 images in the original order, genuine pixels substituted where the subset has them;
- test, ``test_set=genuine`` (default): only the genuine test images, at their original test indices
  (0..1,016), so ``idx`` in a results row is the index into the real CIFAR-10 test set;
- test, ``test_set=full``: all 10,000, genuine where available and JPEG elsewhere.

Every item carries its pixel source (``genuine`` or ``jpeg``; ``TensorImages.pixels``), which results
rows and checkpoints record. The archive is decoded once (all 60,000 JPEGs in seconds) into arrays
cached under ``cache_dir`` by :func:`rsbench.cache.cached` (locked, atomic).
"""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from rsbench.cache import cached
from rsbench.data.registry import DATASETS, DatasetEntry, DatasetSpec, TensorImages
from rsbench.data.torchvision_sets import CIFAR_MEAN, CIFAR_STD
from rsbench.errors import RsbenchError, require

JPEG_ARCHIVE = Path("cifar10-jpeg") / "cifar10_jpeg.tar.gz"
GENUINE_NPZ = Path("cifar10-subset") / "cifar10_subset.npz"
TEST_SETS = ("genuine", "full")
_CACHE_FORMAT = "cifar10-shared/1"
_ARRAYS = ("x_train", "y_train", "genuine_train", "x_test", "y_test", "genuine_test")


def _digest(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _damaged(path: Path, exc: BaseException) -> RsbenchError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return RsbenchError(f"dataset 'cifar10': {path} is damaged ({type(exc).__name__}: {first}); "
                        "restore it from its source (see ../shared/data/README.md)")


def decode_jpeg_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images (N, 32, 32, 3) uint8 in original order, labels (N,) int64)} from the JPEG tar.

    ``index.csv`` (split, index, label, class, file) places every file; a file missing from the index,
    an index entry with no file, or an undecodable image is an error.
    """
    from PIL import Image  # Pillow comes with torchvision; imported here so other datasets never load it

    try:
        with tarfile.open(path, "r|gz") as tar:  # one sequential pass: random access into a .gz is quadratic
            blobs = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        require("index.csv" in blobs, f"dataset 'cifar10': {path} has no index.csv")
        index = list(csv.DictReader(io.StringIO(blobs.pop("index.csv").decode("utf-8"))))
        sizes = {s: sum(r["split"] == s for r in index) for s in ("train", "test")}
        out = {s: (np.zeros((n, 32, 32, 3), np.uint8), np.full(n, -1, np.int64)) for s, n in sizes.items()}
        for row in index:
            blob = blobs.get(row["file"])
            require(blob is not None, f"dataset 'cifar10': {path} lacks {row['file']} named in index.csv")
            images, labels = out[row["split"]]
            i = int(row["index"])
            with Image.open(io.BytesIO(blob)) as im:
                images[i] = np.asarray(im.convert("RGB"))
            labels[i] = int(row["label"])
    except RsbenchError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, KeyError, ValueError) as exc:
        raise _damaged(path, exc) from exc
    for split, (_, labels) in out.items():
        require(bool((labels >= 0).all()), f"dataset 'cifar10': {path}: index.csv leaves {split} positions empty")
    return out


def _build_arrays(jpeg: Path, genuine: Path, folder: Path) -> None:
    """Decode the archive, substitute the genuine pixels, and save the arrays as ``.npy`` files in ``folder``."""
    decoded = decode_jpeg_archive(jpeg)
    try:
        with np.load(genuine) as z:
            sub = {k: z[k] for k in ("x_train", "y_train", "train_source", "x_test", "y_test", "test_index")}
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as exc:
        raise _damaged(genuine, exc) from exc
    arrays: dict[str, np.ndarray] = {}
    for split, positions in (("train", (sub["train_source"][:, 0] - 1) * 10_000 + sub["train_source"][:, 1]),
                             ("test", sub["test_index"])):
        x, y = decoded[split]
        positions = positions.astype(np.int64)
        if not np.array_equal(y[positions], sub[f"y_{split}"]):
            raise RsbenchError(f"dataset 'cifar10': the labels of {genuine} disagree with {jpeg}'s index.csv; "
                               "one of the two files is not the one the README describes")
        x[positions] = sub[f"x_{split}"]
        mask = np.zeros(len(y), bool)
        mask[positions] = True
        arrays |= {f"x_{split}": x, f"y_{split}": y, f"genuine_{split}": mask}
    folder.mkdir()
    for name in _ARRAYS:
        np.save(folder / f"{name}.npy", arrays[name])


def shared_arrays(root: Path, cache_dir: str | None) -> dict[str, np.ndarray]:
    """The decoded shared layout under ``root``, built once into ``cache_dir`` (keyed by the files' md5)."""
    jpeg, genuine = root / JPEG_ARCHIVE, root / GENUINE_NPZ
    require(cache_dir is not None, "dataset 'cifar10': the shared layout is decoded once into dataset.cache_dir")
    from PIL import __version__ as pillow

    key = hashlib.sha1(f"{_CACHE_FORMAT} {_digest(jpeg)} {_digest(genuine)} pillow {pillow}".encode()).hexdigest()
    folder = Path(cache_dir).expanduser() / "cifar10" / f"shared-{key[:16]}"
    cached(folder, lambda tmp: _build_arrays(jpeg, genuine, tmp), "the decoded CIFAR-10 arrays")
    return {name: np.load(folder / f"{name}.npy") for name in _ARRAYS}


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _pixels(genuine: np.ndarray) -> list[str]:
    return ["genuine" if g else "jpeg" for g in genuine]


def load_shared(root: Path, split: str, cache_dir: str | None, test_set: str) -> TensorImages:
    a = shared_arrays(root, cache_dir)
    if split == "train":
        return TensorImages(_to_tensor(a["x_train"]), torch.from_numpy(a["y_train"]), _pixels(a["genuine_train"]))
    if test_set == "genuine":
        keep = np.flatnonzero(a["genuine_test"])
        require(np.array_equal(keep, np.arange(len(keep))),
                "dataset 'cifar10': the genuine test images are not the first ones of the test set; "
                "their indices would not be test-set indices")
        return TensorImages(_to_tensor(a["x_test"][keep]), torch.from_numpy(a["y_test"][keep]), ["genuine"] * len(keep))
    return TensorImages(_to_tensor(a["x_test"]), torch.from_numpy(a["y_test"]), _pixels(a["genuine_test"]))


def load_torchvision(root: Path, split: str, download: bool) -> TensorImages:
    """torchvision's CIFAR10 (it md5-checks the original batch files); every pixel is genuine."""
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as exc:
        raise RsbenchError(f"dataset 'cifar10' under {root}: {exc}") from exc
    return TensorImages(_to_tensor(ds.data), torch.tensor(ds.targets, dtype=torch.long), ["genuine"] * len(ds))


def load_cifar10(split: str, data_dir: str | None = None, download: bool = False, cache_dir: str | None = None,
                 test_set: str = "genuine", **_: object) -> TensorImages:
    """CIFAR-10 from torchvision's layout if present (or ``download``), else from the shared layout."""
    require(test_set in TEST_SETS, f"dataset.test_set={test_set!r} is invalid; valid values: {', '.join(TEST_SETS)}")
    require(data_dir is not None, "dataset 'cifar10' needs dataset.data_dir=<folder> (or RSBENCH_DATA=<folder>)")
    root = Path(data_dir).expanduser().resolve()
    if download or (root / "cifar-10-batches-py").is_dir():
        return load_torchvision(root, split, download)
    if (root / JPEG_ARCHIVE).is_file() and (root / GENUINE_NPZ).is_file():
        return load_shared(root, split, cache_dir, test_set)
    raise RsbenchError(f"dataset 'cifar10': no data found under {root} (looked for torchvision's cifar-10-batches-py/ "
                       f"and for the shared layout {JPEG_ARCHIVE} + {GENUINE_NPZ}). Set dataset.data_dir=<folder "
                       "that holds one> (e.g. ../shared/data), or dataset.download=true on a machine with a network")


DATASETS.register("cifar10")(DatasetEntry(
    spec=lambda **_: DatasetSpec("cifar10", "cifar10", (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, augment="crop_flip"),
    load=load_cifar10,
))
