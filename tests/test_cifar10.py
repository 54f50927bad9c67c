"""CIFAR-10 from the shared layout: genuine pixels bit for bit, the JPEG index mapping, damaged archives,
pixel sources in rows and checkpoints. Needs ../shared/data (skipped without it)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, read_rows, run_cli
from rsbench.data import load_split
from rsbench.data.cifar10 import GENUINE_NPZ, JPEG_ARCHIVE, decode_jpeg_archive
from rsbench.errors import RsbenchError
from rsbench.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.skipif(not (SHARED_DATA / JPEG_ARCHIVE).is_file() or not (SHARED_DATA / GENUINE_NPZ).is_file(),
                                reason="needs ../shared/data with CIFAR-10's shared layout")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cifar_cache"))


def _load(split, cache_dir, **kw):
    return load_split("cifar10", split, data_dir=str(SHARED_DATA), cache_dir=cache_dir, **kw)[0]


def test_genuine_test_images_bit_for_bit(cache_dir) -> None:
    ds = _load("test", cache_dir)
    assert len(ds) == 1017 and set(ds.pixels) == {"genuine"}
    with gzip.open(SHARED_DATA / "cifar10-sample" / "cifar10_test_first100.csv.gz", "rt") as fh:
        ref = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = (ds.x[:100] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).reshape(100, -1).numpy()
    assert np.array_equal(images, ref[:, 1:]) and np.array_equal(ds.y[:100].numpy(), ref[:, 0])
    # every genuine test image, at its test-set index, equals the npz's
    with np.load(SHARED_DATA / GENUINE_NPZ) as z:
        assert np.array_equal(z["test_index"], np.arange(1017))
        assert torch.equal((ds.x * 255).round().to(torch.uint8), torch.from_numpy(z["x_test"]).permute(0, 3, 1, 2))


def test_train_split_and_full_test_set(cache_dir) -> None:
    train = _load("train", cache_dir)
    assert len(train) == 50_000 and train.pixels.count("genuine") == 5085
    assert np.bincount(train.y.numpy()).tolist() == [5000] * 10
    with np.load(SHARED_DATA / GENUINE_NPZ) as z:  # genuine training images substituted at their positions
        pos = (z["train_source"][:, 0] - 1) * 10_000 + z["train_source"][:, 1]
        got = (train.x[torch.from_numpy(pos[:300])] * 255).round().to(torch.uint8)
        assert torch.equal(got, torch.from_numpy(z["x_train"][:300]).permute(0, 3, 1, 2))
        assert all(train.pixels[p] == "genuine" for p in pos)
    full = _load("test", cache_dir, test_set="full")
    assert len(full) == 10_000 and full.pixels[:1017] == ["genuine"] * 1017 and set(full.pixels[1017:]) == {"jpeg"}
    with pytest.raises(RsbenchError, match="test_set='jpg' is invalid; valid values: genuine, full"):
        _load("test", cache_dir, test_set="jpg")


def test_jpeg_index_mapping_is_right() -> None:
    """Under index.csv's mapping each JPEG is a lossy copy of the genuine image at that index (mean error
    ~6/255), while the neighbouring index is another image (error > 20/255) -- the README's verification."""
    decoded = decode_jpeg_archive(SHARED_DATA / JPEG_ARCHIVE)
    with np.load(SHARED_DATA / GENUINE_NPZ) as z:
        genuine, jpeg = z["x_test"].astype(float), decoded["test"][0][:1017].astype(float)
        assert np.array_equal(decoded["test"][1][:1017], z["y_test"])
    err = np.abs(jpeg - genuine).mean(axis=(1, 2, 3))
    shifted = np.abs(jpeg[1:] - genuine[:-1]).mean(axis=(1, 2, 3))
    assert err.mean() < 8 and err.max() < 15
    assert shifted.min() > 15 and shifted.mean() > 50


def test_damaged_archive_is_one_line_and_leaves_nothing(tmp_path) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    (root / JPEG_ARCHIVE).parent.mkdir(parents=True)
    (root / GENUINE_NPZ).parent.mkdir(parents=True)
    shutil.copy(SHARED_DATA / GENUINE_NPZ, root / GENUINE_NPZ)
    data = (SHARED_DATA / JPEG_ARCHIVE).read_bytes()
    (root / JPEG_ARCHIVE).write_bytes(data[: len(data) // 3])  # truncated, as after an interrupted copy
    with pytest.raises(RsbenchError, match=r"cifar10_jpeg.tar.gz is damaged") as info:
        load_split("cifar10", "test", data_dir=str(root), cache_dir=str(cache))
    assert "\n" not in str(info.value)
    leftovers = [p.name for p in (cache / "cifar10").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []  # no half-built cache entry, no temporary folder


def test_missing_data_names_both_layouts(tmp_path) -> None:
    with pytest.raises(RsbenchError, match="cifar-10-batches-py/ and for the shared layout"):
        load_split("cifar10", "test", data_dir=str(tmp_path), cache_dir=str(tmp_path))


def test_rows_and_checkpoint_record_pixel_sources(tmp_path) -> None:
    run_cli(["train", "dataset=cifar10", f"dataset.data_dir={SHARED_DATA}", "model=cifar_resnet",
             "model.params.depth=8", "train.epochs=1", "train.max_examples=256", f"hydra.run.dir={tmp_path / 't'}"],
            tmp_path)
    _, meta = read_checkpoint(tmp_path / "t" / "model.pt")
    assert meta["augment"] == "crop_flip" and meta["train_pixels"] == {"genuine": 5085, "jpeg": 44915}
    run_cli(["certify", "dataset=cifar10", f"dataset.data_dir={SHARED_DATA}", "dataset.test_set=full",
             "model=cifar_resnet", "model.params.depth=8", f"model.checkpoint={tmp_path / 't' / 'model.pt'}",
             "certify.n0=10", "certify.n=30", "certify.skip=1010", "certify.max=2100", "certify.batch=40",
             f"hydra.run.dir={tmp_path / 'c'}"], tmp_path)
    rows = read_rows(tmp_path / "c" / "certify.csv")
    assert rows["idx"].tolist() == [0, 1010, 2020] and rows["pixels"].tolist() == ["genuine", "genuine", "jpeg"]
