"""What every learned method trains on: the clean tiles of a split, the dataset hash that names
an experiment, random patches with the eight symmetries of the square, and noisy batches.

Each method (its package under :mod:`pipeline.methods`) draws its own batches from these, from a
seeded stream named after the trial, so a resumed trial continues the very same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.degrade.registry import Case
from pipeline.io import load_npy, read_parquet_meta

__all__ = ["Batch", "corrupt", "dataset_hash", "load_tiles", "random_patch"]


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


def random_band_patch(
    tile: np.ndarray, size: int, rng: np.random.Generator, augment: bool
) -> np.ndarray:
    """One random band of ``tile``, then :func:`random_patch` of it: a (1, size, size) float32
    patch (the methods that fold bands into the batch train on grey patches)."""
    band = int(rng.integers(0, tile.shape[0]))
    return random_patch(tile[band : band + 1], size, rng, augment)


def corrupt(patches: list[np.ndarray], noise: Case, rng: np.random.Generator) -> Batch:
    """The patches corrupted one after another by ``noise`` from ``rng``, with their masks."""
    noisy, masks = [], []
    for x in patches:
        y, info = noise(x, rng)
        noisy.append(y)
        masks.append(info["mask"])
    return Batch(np.stack(noisy), np.stack(patches), np.stack(masks))
