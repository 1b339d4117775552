"""Independent random streams per (seed, day, purpose).

Every piece of a day draws from its own stream, so adding a feature to one piece (or
generating a day on its own) never shifts the numbers another piece sees.
"""

from __future__ import annotations

import numpy as np

STREAMS = {
    "population": 1,
    "event_count": 2,
    "bulk": 3,
    "resend": 4,
    "late": 5,
    "faults": 6,
    "files": 7,
    "truncated_gzip": 8,
    "drift": 9,
}


def rng_for(seed: int, day_index: int, stream: str, part: int = 0) -> np.random.Generator:
    """A generator for one purpose (and part of it) on one day; day -1 is the world before start."""
    if day_index < -1:
        raise ValueError(f"day index must be >= -1, got {day_index}")
    sequence = np.random.SeedSequence([seed, STREAMS[stream], day_index + 1, part])
    return np.random.Generator(np.random.PCG64(sequence))
