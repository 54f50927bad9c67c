"""Per-point randomness: every noise block is seeded from (seed, test index, phase, block).

Results therefore do not depend on batch size, skipping, sharding or resuming.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

PHASE_SELECT, PHASE_ESTIMATE, PHASE_PREDICT = 0, 1, 2

# Constants of numpy's SeedSequence (O'Neill's seed_seq_fe, pool of 4 32-bit words).
_POOL = 4
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _XSHIFT = 0xCA01F9DD, 0x4973F715, 16
_M32 = 0xFFFFFFFF


def derived_seed(seed: int, *key: int) -> int:
    """A 63-bit seed derived from ``seed`` and an integer key path via numpy's SeedSequence."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _words(value: int) -> list[int]:
    """Little-endian 32-bit words of a non-negative int (0 -> [0]), as SeedSequence splits it."""
    value, out = int(value), []
    if value < 0:
        raise ValueError(f"seed and key entries must be non-negative, got {value}")
    while True:
        out.append(value & 0xFFFFFFFF)
        value >>= 32
        if value == 0:
            return out


def block_seeds(seed: int, key: tuple[int, ...], blocks: range) -> np.ndarray:
    """``derived_seed(seed, *key, j)`` for every j in ``blocks`` at once (uint64 array), bit for bit.

    The SeedSequence hash (entropy words hashed into a pool of 4 words, then mixed out; numpy's
    ``SeedSequence.generate_state``) evaluated in vectorised 32-bit arithmetic over the last key
    entry: about 40x cheaper than one SeedSequence per block, which matters inside the sampling loop.
    """
    return block_seeds_many(seed, [key], blocks)[0]


def block_seeds_many(seed: int, keys: list[tuple[int, ...]], blocks: range) -> np.ndarray:
    """:func:`block_seeds` for several keys at once, shape (len(keys), len(blocks)): the hash vectorised over
    the keys as well (keys whose entries split into different numbers of 32-bit words go one by one).

    The seed's words are hashed once per seed (:func:`_seed_state`, cached), each key's words in Python
    integers, and only the block index (one value per block) through numpy.
    """
    if blocks.start < 0 or blocks.stop > 2**32:
        raise ValueError(f"block indices must lie in [0, 2^32), got {blocks}")
    if not keys:
        return np.empty((0, len(blocks)), np.uint64)
    words = [[w for k in key for w in _words(k)] for key in keys]
    if len({len(w) for w in words}) > 1:
        return np.stack([block_seeds_many(seed, [key], blocks)[0] for key in keys])
    seed_pool, seed_const = _seed_state(int(seed))
    per_key = []
    for key_words in words:  # a few words per key: Python integers beat numpy's per-call overhead here
        pool, const = list(seed_pool), seed_const
        for word in key_words:
            pool, const = _absorb(pool, const, word)
        per_key.append(pool)
    pool = [np.array([p[i] for p in per_key], np.uint64)[:, None] for i in range(_POOL)]
    last = np.arange(blocks.start, blocks.stop, blocks.step, dtype=np.uint64)[None, :]
    pool, const = _absorb(pool, const, last)
    state, hash_b = [], _INIT_B
    for i in range(2):  # one uint64 = two 32-bit words, low word first
        value = (pool[i] ^ hash_b) & _M32
        hash_b = (hash_b * _MULT_B) & _M32
        value = (value * hash_b) & _M32
        state.append(value ^ (value >> _XSHIFT))
    return np.ascontiguousarray((state[0] | (state[1] << 32)) >> 1)


# SeedSequence's hash in 32-bit arithmetic: the same code serves Python ints and numpy uint64 arrays
# (products wrap mod 2^64 in numpy and not in Python, and only the low 32 bits are kept either way).

def _hashmix(value: Any, const: int) -> tuple[Any, int]:
    """seed_seq_fe's hashmix with multiplier state ``const``: (the mixed value, the next state)."""
    value = (value ^ const) & _M32
    const = (const * _MULT_A) & _M32
    value = (value * const) & _M32
    return value ^ (value >> _XSHIFT), const


def _mix(x: Any, y: Any) -> Any:
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> _XSHIFT)


def _absorb(pool: list[Any], const: int, word: Any) -> tuple[list[Any], int]:
    """Mix one entropy word beyond the pool's first four into every pool entry."""
    out = []
    for entry in pool:
        hashed, const = _hashmix(word, const)
        out.append(_mix(entry, hashed))
    return out, const


@lru_cache(maxsize=256)
def _seed_state(seed: int) -> tuple[tuple[int, ...], int]:
    """The pool and hash state after the run seed's words (padded to the pool size): key-independent."""
    run = _words(seed)
    run += [0] * (_POOL - len(run))  # spawn key present: run entropy is padded to the pool size
    pool, const = [], _INIT_A
    for word in run[:_POOL]:
        hashed, const = _hashmix(word, const)
        pool.append(hashed)
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                hashed, const = _hashmix(pool[src], const)
                pool[dst] = _mix(pool[dst], hashed)
    for word in run[_POOL:]:
        pool, const = _absorb(pool, const, word)
    return tuple(pool), const


def make_generator(seed: int, key: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derived_seed(seed, *key))
    return g
