"""Per-point randomness: every noise block is seeded from (seed, test index, phase, block).

Results therefore do not depend on batch size, skipping, sharding or resuming.
"""

from __future__ import annotations

import numpy as np
import torch

PHASE_SELECT, PHASE_ESTIMATE, PHASE_PREDICT = 0, 1, 2


def derived_seed(seed: int, *key: int) -> int:
    """A 63-bit seed derived from ``seed`` and an integer key path via numpy's SeedSequence."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def make_generator(seed: int, key: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derived_seed(seed, *key))
    return g
