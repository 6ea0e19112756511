"""DLW's training batches, drawn on the fly, and its fixed validation set (docs/conventions.md).

Training: ``batch_size`` random patches of the ``train`` tiles (random flips and 90° rotations
when ``augment``), each corrupted by the training noise case. Batch ``step`` of a trial comes
from ``rng_for(seed, "train", <source set>, "seed-<k>", "batch", str(step))``, so a trial resumed
from a checkpoint continues the very same stream of batches.

Validation: ``val_patches`` patches of every ``val`` tile under the *training* noise
distribution, drawn from ``rng_for(seed, "train", "val", <image id>, str(i))`` — the same set for
every trial, so the test cases stay unseen until evaluation.
"""

from __future__ import annotations

import numpy as np

from pipeline.degrade.registry import Case
from pipeline.seeding import rng_for
from pipeline.train.data import Batch, corrupt, random_patch

__all__ = ["draw_batch", "validation_set"]


def draw_batch(
    tiles: list[np.ndarray],
    *,
    seed: int,
    source_set: str,
    seed_index: int,
    step: int,
    batch_size: int,
    patch_size: int,
    augment: bool,
    noise: Case,
) -> Batch:
    """Training batch number ``step`` (0-based) of trial (``source_set``, ``seed_index``)."""
    rng = rng_for(seed, "train", source_set, f"seed-{seed_index}", "batch", str(step))
    picks = rng.integers(0, len(tiles), batch_size)
    patches = [random_patch(tiles[i], patch_size, rng, augment) for i in picks]
    return corrupt(patches, noise, rng)


def validation_set(
    tiles: dict[str, np.ndarray], *, seed: int, patches: int, patch_size: int, noise: Case
) -> Batch:
    """The fixed validation batch: ``patches`` noisy crops of each val tile (no augmentation)."""
    # One crop size for all, so the set is one batch; a tile smaller than a patch is used whole.
    size = min([patch_size] + [min(t.shape[1:]) for t in tiles.values()])
    out: list[Batch] = []
    for image_id, tile in tiles.items():
        for i in range(patches):
            rng = rng_for(seed, "train", "val", image_id, str(i))
            out.append(corrupt([random_patch(tile, size, rng, False)], noise, rng))
    return Batch(
        *(np.concatenate([getattr(b, k) for b in out]) for k in ("noisy", "clean", "mask"))
    )
