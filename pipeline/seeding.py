"""Seeds derived from the global seed and stable names.

Every random draw in the project comes from ``rng_for(seed, *names)``: a NumPy ``SeedSequence``
whose spawn key is built from SHA-256 digests of the names. Python's ``hash()`` is salted per
process, so it must never enter a seed; digests of the names are the same on every machine.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_int(name: str) -> int:
    """A 64-bit integer from the SHA-256 digest of ``name`` (machine and process independent)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def seed_sequence(seed: int, *names: str) -> np.random.SeedSequence:
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.SeedSequence(entropy=seed, spawn_key=tuple(stable_int(n) for n in names))


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """The generator for the draw named by ``names`` (e.g. ``"degrade", "test", "iid-50", id``).

    PCG64 streams and NumPy's normal/uniform samplers are bit-reproducible across platforms, so
    the same seed and names give the same arrays everywhere.
    """
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *names)))
