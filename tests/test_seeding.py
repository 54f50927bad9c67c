"""Seeding: the vectorised block seeds equal numpy's SeedSequence, and reseeding one generator per
block gives exactly the samples of a fresh generator per block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from halfspace import Halfspace, point_at_distance
from rsbench.certify.sampling import BLOCK, class_counts
from rsbench.certify.seeding import block_seeds, block_seeds_many, derived_seed, make_generator
from rsbench.noise import GaussianMixtureNoise, GaussianNoise
from rsbench.noise.laplace import LaplaceNoise


def test_block_seeds_equal_seed_sequence() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        seed = int(rng.integers(0, 2**63)) if trial % 2 else int(rng.integers(0, 100))
        # key entries of one and of two 32-bit words, zeros included
        key = tuple(int(rng.integers(0, 2 ** int(rng.integers(1, 50)))) for _ in range(int(rng.integers(0, 4))))
        start = int(rng.integers(0, 2**31))
        blocks = range(start, start + 7)
        assert block_seeds(seed, key, blocks).tolist() == [derived_seed(seed, *key, j) for j in blocks]
    assert block_seeds(0, (1,), range(0)).shape == (0,)


def test_block_seeds_for_many_keys_equal_one_key_at_a_time() -> None:
    keys = [(3, 1), (0, 1), (2**31, 1), (7, 0, 2)]  # the last has another word count: its own pass
    for seed in (0, 2**40 + 5, 2**200 + 3):  # the last has more words than SeedSequence's pool
        many = block_seeds_many(seed, keys[:3], range(4, 19))
        assert many.shape == (3, 15)
        for row, key in zip(many, keys[:3], strict=True):
            assert row.tolist() == block_seeds(seed, key, range(4, 19)).tolist()
        mixed = block_seeds_many(seed, keys, range(2))
        assert [r.tolist() for r in mixed] == [[derived_seed(seed, *k, j) for j in range(2)] for k in keys]
    assert block_seeds_many(0, [], range(3)).shape == (0, 3)
    with pytest.raises(ValueError, match="2\\^32"):
        block_seeds(0, (1,), range(2**32 - 1, 2**32 + 1))


@pytest.mark.parametrize("noise", [GaussianNoise(0.5), GaussianMixtureNoise((0.25, 1.0), (0.3, 0.7)),
                                   LaplaceNoise(0.5)], ids=["gaussian", "mixture", "laplace"])
def test_counts_equal_fresh_generator_per_block(noise) -> None:
    shape = (1, 5, 7)  # odd sizes: any cached Box-Muller value would show
    h = Halfspace(torch.randn(shape, generator=torch.Generator().manual_seed(3)), b=-0.1)
    x = point_at_distance(h, shape, 0.1, seed=5)
    n, seed, key = 5 * BLOCK + 37, 11, (4, 1)
    ref = torch.zeros(2, dtype=torch.long)
    for j in range(-(-n // BLOCK)):
        size = min(BLOCK, n - j * BLOCK)
        ref += torch.bincount(h(noise.sample(x, size, make_generator(seed, (*key, j)))).argmax(1), minlength=2)
    for batch in (BLOCK, 3 * BLOCK):
        assert torch.equal(class_counts(h, noise, x, n, 2, batch, seed, key), ref)
