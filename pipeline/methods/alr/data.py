r"""Training data of the adversarial local regulariser: **unpaired** single-band patches.

Where the two kinds of patches come from (:func:`split_groups`, param ``groups``):

``images``
    the train tiles (in image-id order) are split into two disjoint groups: the even-numbered
    tiles give the clean patches, the odd-numbered ones the noisy patches, so no clean patch
    has its own noisy copy (clean patches of some images, noisy patches of *other* images). A
    single train tile is split into its top half (clean) and bottom half (noisy) instead.
``shared``
    both from every train tile, by independent draws: the authors' training on synthetic noise
    (two shuffled loaders over the same folder). Unpaired still — a batch's clean and noisy
    patches are independent crops — but the two distributions differ by the noise alone. With
    the default's two train tiles ``images`` gives each group one image, and the critic then
    also learns *which image* a patch comes from: on the tiny run of ``tests/test_alr.py``
    (300 steps, 4 seeds) the restoration of a held-out tile gained 0.8–1.2 dB with ``images``
    and 5.5–7.8 dB with ``shared``; on the default data the σ = 0.05 critic's held-out
    Wasserstein gap was negative with ``images`` (−0.04 to −0.15: it separated the two train
    images, not the noise) and +0.34 with ``shared`` (+2.4 dB on the val crops at σ = 0.1).

A step's batch (:func:`draw_batch`) holds, per sample, a clean crop :math:`x_n` (a random tile of
the clean group, a random band, a random position; flips and 90° rotations when ``augment``), a
crop :math:`c_n` of the noisy group drawn the same way, its noise :math:`y_n = c_n + \sigma_n
\varepsilon_n` with :math:`\varepsilon_n \sim \mathcal N(0, I)`, and the interpolation weight
:math:`\alpha_n \sim U[0, 1]` of the gradient penalty. :math:`\sigma_n = \text{lo} + (\text{hi} -
\text{lo}) u_n`, :math:`u_n \sim U[0, 1]`, for the varying-σ critic, else the variant's fixed σ;
:math:`u_n` is drawn either way, so every variant of a seed index sees the same crops,
:math:`\varepsilon` and :math:`\alpha` (paired comparisons). Batch ``step`` comes from
``rng_for(seed, "train", "alr", "seed-<k>", "batch", str(step))``: a resumed trial draws the very
same batches.

The validation set (:func:`validation_set`) is fixed by the seed: ``patches`` single-band crops
of every val tile with Gaussian noise of one σ, from ``rng_for(seed, "train", "alr", "val",
<image id>, str(i))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.seeding import rng_for
from pipeline.train.data import random_band_patch

__all__ = ["PatchBatch", "ValSet", "draw_batch", "split_groups", "validation_set"]


@dataclass
class PatchBatch:
    """``clean``, ``noisy``: (B, 1, P, P) float32; ``sigma``, ``alpha``: (B,) float32."""

    clean: np.ndarray
    noisy: np.ndarray
    sigma: np.ndarray
    alpha: np.ndarray


@dataclass
class ValSet:
    """``clean``, ``noisy``: (M, 1, S, S) float32 at noise level ``sigma``."""

    clean: np.ndarray
    noisy: np.ndarray
    sigma: float


def split_groups(
    tiles: list[np.ndarray], patch_size: int, groups: str = "images"
) -> tuple[list, list]:
    """``(clean group, noisy group)``: ``images`` — even- and odd-numbered tiles, one tile: its
    top and bottom halves (each must hold a patch); ``shared`` — every tile in both."""
    if groups == "shared":
        if not tiles:
            raise ValueError("alr: no train tiles")
        return list(tiles), list(tiles)
    if groups != "images":
        raise ValueError(f"alr: groups = {groups!r}: 'images' or 'shared'")
    if len(tiles) >= 2:
        return list(tiles[0::2]), list(tiles[1::2])
    if len(tiles) == 1:
        tile = tiles[0]
        half = tile.shape[1] // 2
        if half >= patch_size and tile.shape[2] >= patch_size:
            return [tile[:, :half]], [tile[:, half:]]
        raise ValueError(
            f"alr: one train tile of {tile.shape[1]}×{tile.shape[2]} cannot be split into two "
            f"halves of {patch_size}×{patch_size} patches; the critic needs ≥ 2 train images"
        )
    raise ValueError("alr: no train tiles")


def _crop(tiles: list[np.ndarray], size: int, rng: np.random.Generator, augment: bool):
    return random_band_patch(tiles[int(rng.integers(0, len(tiles)))], size, rng, augment)


def draw_batch(
    clean_tiles: list[np.ndarray],
    noisy_tiles: list[np.ndarray],
    *,
    seed: int,
    seed_index: int,
    step: int,
    batch_size: int,
    patch_size: int,
    augment: bool,
    sigma: float | None,
    sigma_range: tuple[float, float] = (0.05, 0.30),
) -> PatchBatch:
    """Training batch number ``step`` (0-based) of the trials of seed index ``seed_index``;
    ``sigma``: the fixed noise level, or None for σ ~ U[sigma_range] per sample."""
    rng = rng_for(seed, "train", "alr", f"seed-{seed_index}", "batch", str(step))
    lo, hi = sigma_range
    clean, noisy, sigmas, alphas = [], [], [], []
    for _ in range(batch_size):
        clean.append(_crop(clean_tiles, patch_size, rng, augment))
        source = _crop(noisy_tiles, patch_size, rng, augment).astype(np.float64)
        u = rng.random()
        s = lo + (hi - lo) * u if sigma is None else sigma
        noisy.append(source + s * rng.standard_normal(source.shape))
        sigmas.append(s)
        alphas.append(rng.random())
    return PatchBatch(
        clean=np.stack(clean).astype(np.float32),
        noisy=np.stack(noisy).astype(np.float32),
        sigma=np.asarray(sigmas, dtype=np.float32),
        alpha=np.asarray(alphas, dtype=np.float32),
    )


def validation_set(
    tiles: dict[str, np.ndarray], *, seed: int, patches: int, size: int, sigma: float
) -> ValSet:
    """The fixed val crops (no augmentation): ``patches`` per val tile, side ``size`` (a
    smaller tile: its smaller side), noise σ = ``sigma``."""
    size = min([size] + [min(t.shape[1:]) for t in tiles.values()])
    clean, noisy = [], []
    for image_id, tile in tiles.items():
        for i in range(patches):
            rng = rng_for(seed, "train", "alr", "val", image_id, str(i))
            x = _crop([tile], size, rng, False).astype(np.float64)
            clean.append(x)
            noisy.append(x + sigma * rng.standard_normal(x.shape))
    return ValSet(
        clean=np.stack(clean).astype(np.float32),
        noisy=np.stack(noisy).astype(np.float32),
        sigma=float(sigma),
    )
