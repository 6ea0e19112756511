r"""Training data of proxy-based hyper-guidance: single-band patches of the clean tiles, each
blurred by its own random kernel and corrupted by Gaussian noise of a known σ map.

Every patch is one band of a tile (bands are folded into the batch, the nets are 2-D), cropped
at random (random flips and 90° rotations when ``augment``), then

.. math:: y = k * \bar x + \sigma \odot \varepsilon,\qquad \varepsilon \sim \mathcal N(0, I),

with the circular convolution of :class:`pipeline.degrade.operators.Blur` and

* :math:`k`: a Gaussian of width :math:`\sigma_k \sim U[\text{blur\_sigma}]` pixels (side
  :math:`2\lceil 3\sigma_k\rceil + 1`, :func:`pipeline.degrade.tasks.exact_gaussian_kernel`), or
  with probability ``motion_fraction`` a random camera-shake kernel of side ``motion_size``
  (:func:`pipeline.degrade.operators.motion_kernel`, made portable as the blur task does);
* :math:`\sigma`: a map of levels drawn from :math:`U[\text{noise\_percent}] / 100` — one level
  for the patch (``constant``), one per quadrant (``quadrants``), or a smooth field, the bilinear
  interpolation of a 3×3 grid of levels (``smooth``; a convex combination, so it stays in the
  range); the kind is drawn uniformly from ``noise_maps``. :math:`\sigma` is the target of the
  proxy (:math:`g`).

Batch ``step`` of a trial comes from ``rng_for(seed, "train", "guidance", "seed-<k>", "batch",
str(step))``: a resumed trial continues the very same stream, and the variants of one seed
index see the same batches (their comparison is paired). The validation set is drawn once from
``rng_for(seed, "train", "guidance", "val", <image id>, str(i))``, the same for every trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.seeding import rng_for
from pipeline.train.data import random_band_patch

__all__ = [
    "DeblurBatch",
    "Degradation",
    "blur",
    "degrade",
    "draw_batch",
    "pad_kernel",
    "random_kernel",
    "sigma_map",
    "stack",
    "validation_set",
]


@dataclass(frozen=True)
class Degradation:
    """The training distribution of kernels and noise (the params of the same names)."""

    blur_sigma: tuple[float, float] = (0.5, 2.0)
    motion_size: int = 9
    motion_fraction: float = 0.5
    noise_percent: tuple[float, float] = (1.0, 5.0)
    noise_maps: tuple[str, ...] = ("constant", "quadrants", "smooth")


@dataclass
class DeblurBatch:
    """``noisy``, ``clean``, ``sigma``: (B, 1, P, P) float32; ``kernel``: (B, S, S) float64,
    every kernel zero-padded about its centre to the batch's largest odd side S."""

    noisy: np.ndarray
    clean: np.ndarray
    sigma: np.ndarray
    kernel: np.ndarray

    def __len__(self) -> int:
        return len(self.noisy)


def random_kernel(rng: np.random.Generator, deg: Degradation) -> np.ndarray:
    """A Gaussian or (with probability ``motion_fraction``) a motion kernel, float64, sum 1."""
    from pipeline.degrade.operators import motion_kernel
    from pipeline.degrade.tasks import exact_gaussian_kernel, portable_kernel

    if rng.random() < deg.motion_fraction:
        return portable_kernel(motion_kernel(deg.motion_size, rng).numpy())
    lo, hi = deg.blur_sigma
    return exact_gaussian_kernel(float(rng.uniform(lo, hi)))


def pad_kernel(k: np.ndarray, side: int) -> np.ndarray:
    """``k`` (odd sides) zero-padded about its centre to ``side`` × ``side`` (odd): the same
    convolution, a common shape for a batch."""
    kh, kw = k.shape
    if side % 2 == 0 or kh > side or kw > side:
        raise ValueError(f"cannot pad a {kh}×{kw} kernel to {side}×{side}")
    a, b = (side - kh) // 2, (side - kw) // 2
    return np.pad(k, ((a, side - kh - a), (b, side - kw - b)))


def sigma_map(
    rng: np.random.Generator, shape: tuple[int, int], kind: str, lo: float, hi: float
) -> np.ndarray:
    """A (H, W) float64 σ map with levels in [lo, hi] (module docstring)."""
    h, w = shape
    if kind == "constant":
        return np.full((h, w), rng.uniform(lo, hi))
    if kind == "quadrants":
        q = rng.uniform(lo, hi, (2, 2))
        rows = (np.arange(h) >= h // 2).astype(int)
        cols = (np.arange(w) >= w // 2).astype(int)
        return q[rows[:, None], cols[None, :]]
    if kind == "smooth":
        g = rng.uniform(lo, hi, (3, 3))
        # Bilinear interpolation of the 3×3 grid placed at the corners, edges' middles and centre.
        r = np.linspace(0, 2, h) if h > 1 else np.zeros(1)
        c = np.linspace(0, 2, w) if w > 1 else np.zeros(1)
        rows = np.stack([np.interp(c, [0, 1, 2], g[i]) for i in range(3)])  # (3, W)
        return np.stack([np.interp(r, [0, 1, 2], rows[:, j]) for j in range(w)], axis=1)
    raise ValueError(f"unknown noise map {kind!r}")


def blur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The circular convolution of :class:`pipeline.degrade.operators.Blur` of (..., H, W)."""
    import torch

    from pipeline.degrade.operators import Blur

    with torch.no_grad():
        return Blur(torch.from_numpy(k)).A(torch.from_numpy(np.asarray(x, np.float64))).numpy()


def degrade(
    clean: np.ndarray, rng: np.random.Generator, deg: Degradation
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(noisy, sigma, kernel)`` of a (H, W) clean patch: a random kernel, then noise of a
    random σ map (module docstring)."""
    k = random_kernel(rng, deg)
    if k.shape[0] > clean.shape[-2] or k.shape[1] > clean.shape[-1]:
        raise ValueError(f"a {k.shape} training kernel does not fit a {clean.shape} patch")
    kind = deg.noise_maps[int(rng.integers(0, len(deg.noise_maps)))]
    lo, hi = (p / 100 for p in deg.noise_percent)
    sigma = sigma_map(rng, clean.shape[-2:], kind, lo, hi)
    noisy = blur(clean, k) + sigma * rng.standard_normal(clean.shape)
    return noisy, sigma, k


def stack(items: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> DeblurBatch:
    """``(clean, noisy, sigma, kernel)`` of (H, W) images → a :class:`DeblurBatch`."""
    side = max(max(k.shape) for *_, k in items)
    side += 1 - side % 2

    def images(i: int) -> np.ndarray:
        return np.stack([it[i] for it in items])[:, None].astype(np.float32)

    kernels = np.stack([pad_kernel(k, side) for *_, k in items])
    return DeblurBatch(noisy=images(1), clean=images(0), sigma=images(2), kernel=kernels)


def _band_patch(tile: np.ndarray, size: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
    return random_band_patch(tile, size, rng, augment)[0].astype(np.float64)


def draw_batch(
    tiles: list[np.ndarray],
    *,
    seed: int,
    seed_index: int,
    step: int,
    batch_size: int,
    patch_size: int,
    augment: bool,
    deg: Degradation,
) -> DeblurBatch:
    """Training batch number ``step`` (0-based) of the trials of seed index ``seed_index``."""
    rng = rng_for(seed, "train", "guidance", f"seed-{seed_index}", "batch", str(step))
    items = []
    for _ in range(batch_size):
        clean = _band_patch(tiles[int(rng.integers(0, len(tiles)))], patch_size, rng, augment)
        items.append((clean, *degrade(clean, rng, deg)))
    return stack(items)


def validation_set(
    tiles: dict[str, np.ndarray], *, seed: int, patches: int, patch_size: int, deg: Degradation
) -> DeblurBatch:
    """The fixed validation batch: ``patches`` degraded single-band crops of every val tile (no
    augmentation); a tile smaller than a patch is cropped to its smaller side."""
    size = min([patch_size] + [min(t.shape[1:]) for t in tiles.values()])
    items = []
    for image_id, tile in tiles.items():
        for i in range(patches):
            rng = rng_for(seed, "train", "guidance", "val", image_id, str(i))
            clean = _band_patch(tile, size, rng, False)
            items.append((clean, *degrade(clean, rng, deg)))
    return stack(items)
