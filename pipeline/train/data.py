"""Training batches drawn on the fly, and the fixed validation set (docs/conventions.md).

Training: ``batch_size`` random patches of the ``train`` tiles (random flips and 90° rotations
when ``augment``), each corrupted by the training noise case. Batch ``step`` of a trial comes
from ``rng_for(seed, "train", <source set>, "seed-<k>", "batch", str(step))``, so a trial resumed
from a checkpoint continues the very same stream of batches.

Validation: ``val_patches`` patches of every ``val`` tile under the *training* noise
distribution, drawn from ``rng_for(seed, "train", "val", <image id>, str(i))`` — the same set for
every trial, so the test cases stay unseen until evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.degrade.registry import Case
from pipeline.io import load_npy, read_parquet_meta
from pipeline.seeding import rng_for

__all__ = [
    "Batch",
    "dataset_hash",
    "draw_batch",
    "load_tiles",
    "random_patch",
    "validation_set",
]


@dataclass
class Batch:
    """Arrays ``(B, C, P, P)``: ``noisy`` and ``clean`` float32, ``mask`` the corrupted pixels."""

    noisy: np.ndarray
    clean: np.ndarray
    mask: np.ndarray


def manifest_path(data_dir: str | Path) -> Path:
    path = Path(data_dir) / "manifest.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no clean-image manifest; run the prepare stage first")
    return path


def dataset_hash(data_dir: str | Path) -> str:
    """The ``dataset_hash`` the prepare stage stored in the manifest's metadata."""
    path = manifest_path(data_dir)
    value = read_parquet_meta(path).get("dataset_hash")
    if not value:
        raise ValueError(f"{path}: no dataset_hash in the manifest metadata; rerun prepare")
    return str(value)


def load_tiles(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """``image_id → (C, H, W)`` float32 tiles of ``split``, in image-id order.

    Manifest paths are relative to the repository (``data/clean/train/x.npy``); they are
    resolved against ``data_dir`` so a copy of the folder elsewhere reads its own files.
    """
    import pandas as pd

    data_dir = Path(data_dir)
    path = manifest_path(data_dir)
    df = pd.read_parquet(path, columns=["image_id", "split", "path"])
    rows = df[df["split"] == split].sort_values("image_id")
    if rows.empty:
        raise ValueError(f"{path}: no {split!r} images; prepare.split.{split} must be ≥ 1")
    tiles = {}
    for image_id, rel in zip(rows["image_id"], rows["path"], strict=True):
        tile = load_npy(data_dir / split / Path(rel).name)
        if tile.ndim != 3 or not np.isfinite(tile).all():
            raise ValueError(f"{rel}: a clean tile must be a finite (C, H, W) array")
        tiles[str(image_id)] = tile.astype(np.float32, copy=False)
    bands = {t.shape[0] for t in tiles.values()}
    if len(bands) != 1:
        raise ValueError(f"{path}: {split} tiles have different band counts {sorted(bands)}")
    return tiles


def random_patch(
    tile: np.ndarray, size: int, rng: np.random.Generator, augment: bool
) -> np.ndarray:
    """A random ``size``² crop of ``tile``; with ``augment`` a random flip and 90° rotation
    (the eight symmetries of the square: a tile as small as the patch still varies)."""
    _, h, w = tile.shape
    if size > h or size > w:
        raise ValueError(f"train.patch_size = {size}: larger than a {h} × {w} tile")
    y0 = int(rng.integers(0, h - size + 1))
    x0 = int(rng.integers(0, w - size + 1))
    patch = tile[:, y0 : y0 + size, x0 : x0 + size]
    if augment:
        patch = np.rot90(patch, k=int(rng.integers(0, 4)), axes=(1, 2))
        if rng.integers(0, 2):
            patch = patch[:, :, ::-1]
    return np.ascontiguousarray(patch, dtype=np.float32)


def _corrupt(patches: list[np.ndarray], noise: Case, rng: np.random.Generator) -> Batch:
    noisy, masks = [], []
    for x in patches:
        y, info = noise(x, rng)
        noisy.append(y)
        masks.append(info["mask"])
    return Batch(np.stack(noisy), np.stack(patches), np.stack(masks))


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
    return _corrupt(patches, noise, rng)


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
            out.append(_corrupt([random_patch(tile, size, rng, False)], noise, rng))
    return Batch(
        *(np.concatenate([getattr(b, k) for b in out]) for k in ("noisy", "clean", "mask"))
    )
