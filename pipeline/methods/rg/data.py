r"""Training and validation data of regularising gradients: single-band patches of the clean
tiles, each degraded by one task of the default suite,

.. math:: y = A \bar x + \sigma n,\qquad n \sim \mathcal N(0, I)\ \text{on y's grid},

with :math:`\sigma \sim U[\text{noise\_percent}] / 100` per patch and :math:`A` (the operators of
:mod:`pipeline.degrade.operators`, as the suite builds them):

``identity``
    denoising, :math:`A = I`; start :math:`x_0 = y`.
``blur``
    circular convolution with the exact Gaussian kernel of width :math:`\sigma_k \sim
    U[\text{blur\_sigma}]` px (:func:`pipeline.degrade.tasks.exact_gaussian_kernel`, side
    :math:`2\lceil 3\sigma_k\rceil + 1`), one kernel for the batch's blur patches; start
    :math:`x_0 = y` (the same grid; :math:`A^\top y` would blur twice).
``downsample``
    ×``factor`` super-resolution :math:`A = S_f K` (Gaussian anti-aliasing of σ = f/2,
    circular); start: the normalised adjoint
    (:func:`pipeline.evaluate.operator_baselines.upsample`).
``inpaint``
    :math:`A x = M \odot x` with a random mask missing the fraction ``missing`` of the pixels
    (:func:`pipeline.degrade.operators.random_mask`, one per patch; missing pixels of y are 0);
    start: normalised convolution (:func:`pipeline.evaluate.operator_baselines.fill`).

A batch holds ``batch_size`` patches, the tasks in turn (every task in every batch, so the losses
averaged over tasks see each of them), grouped by task: a group shares one operator shape.
Batch ``step`` comes from ``rng_for(seed, "train", "rg", "seed-<k>", "batch", str(step))`` — its
patches, degradations, the denoiser's noise and the power iteration's start — so a resumed trial
continues the very same stream, and the variants of one seed index see the same batches (paired
comparison). The validation set is drawn once from ``rng_for(seed, "train", "rg", "val",
<image id>, <task>, str(i))`` (blur: the middle of ``blur_sigma``), the same for every trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.seeding import rng_for
from pipeline.train.data import random_band_patch

__all__ = ["Degradation", "RGBatch", "TaskGroup", "degrade_group", "draw_batch", "validation_set"]


@dataclass(frozen=True)
class Degradation:
    """The training tasks and noise (the params of the same names)."""

    tasks: tuple[str, ...] = ("identity", "blur", "downsample", "inpaint")
    noise_percent: tuple[float, float] = (1.0, 10.0)
    blur_sigma: tuple[float, float] = (1.0, 2.0)
    factor: int = 2
    missing: float = 0.5


@dataclass
class TaskGroup:
    """``n`` patches of one task: ``clean`` and ``x0`` (n, P, P), ``y`` (n, h, w) on the
    operator's grid, ``sigma`` (n,) float64; ``kernel`` (blur) or ``mask`` (inpaint, bool
    (n, P, P), True = observed)."""

    task: str
    clean: np.ndarray
    y: np.ndarray
    x0: np.ndarray
    sigma: np.ndarray
    kernel: np.ndarray | None = None
    mask: np.ndarray | None = None
    factor: int = 2

    def __len__(self) -> int:
        return len(self.clean)

    def operator(self):
        """The group's operator on ``(n, 1, P, P)`` tensors."""
        import torch

        from pipeline.degrade import operators as ops

        if self.task == "identity":
            return ops.Identity()
        if self.task == "blur":
            return ops.Blur(torch.from_numpy(self.kernel))
        if self.task == "downsample":
            return ops.Downsampling(self.factor)
        if self.task == "inpaint":
            return ops.Inpainting(torch.from_numpy(self.mask[:, None].astype(np.float64)))
        raise ValueError(f"unknown task {self.task!r}")


@dataclass
class RGBatch:
    """The task groups, then per patch (in group order) the denoiser's noise level ``s`` (B,)
    and noise ``noise`` (B, P, P), and the power iteration's start ``v0`` (B, P, P)."""

    groups: list[TaskGroup]
    s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    noise: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v0: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def clean(self) -> np.ndarray:
        return np.concatenate([g.clean for g in self.groups])


def degrade_group(
    task: str,
    clean: np.ndarray,
    rng: np.random.Generator,
    deg: Degradation,
    blur_sigma: float | None = None,
) -> TaskGroup:
    """The patches ``clean`` (n, P, P) degraded by ``task`` (module docstring)."""
    import torch

    from pipeline.degrade import operators as ops
    from pipeline.degrade.tasks import exact_gaussian_kernel
    from pipeline.evaluate.operator_baselines import fill, upsample

    clean = np.asarray(clean, dtype=np.float64)
    n = len(clean)
    lo, hi = (p / 100 for p in deg.noise_percent)
    sigma = rng.uniform(lo, hi, n)
    kernel = mask = None
    if task == "identity":
        y = clean + sigma[:, None, None] * rng.standard_normal(clean.shape)
        x0 = y
    elif task == "blur":
        if blur_sigma is None:
            blur_sigma = float(rng.uniform(*deg.blur_sigma))
        kernel = exact_gaussian_kernel(blur_sigma)
        with torch.no_grad():
            y = ops.Blur(torch.from_numpy(kernel)).A(torch.from_numpy(clean)).numpy()
        y = y + sigma[:, None, None] * rng.standard_normal(clean.shape)
        x0 = y
    elif task == "downsample":
        op = ops.Downsampling(deg.factor)
        with torch.no_grad():
            y = op.A(torch.from_numpy(clean)).numpy()
        y = y + sigma[:, None, None] * rng.standard_normal(y.shape)
        x0 = upsample(y, op).astype(np.float64)
    elif task == "inpaint":
        mask = np.stack(
            [ops.random_mask(clean.shape[1:], deg.missing, rng).numpy() > 0 for _ in range(n)]
        )
        noisy = clean + sigma[:, None, None] * rng.standard_normal(clean.shape)
        y = np.where(mask, noisy, 0.0)
        op = ops.Inpainting(torch.from_numpy(mask.astype(np.float64)))
        x0 = fill(y, op).astype(np.float64)
    else:
        raise ValueError(f"unknown task {task!r}")
    return TaskGroup(task, clean, y, x0, sigma, kernel, mask, deg.factor)


def _band_patch(tile: np.ndarray, size: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
    return random_band_patch(tile, size, rng, augment)[0].astype(np.float64)


def task_counts(batch_size: int, tasks: tuple[str, ...]) -> list[int]:
    """Patches per task: the tasks in turn (the first ones get the remainder)."""
    n = len(tasks)
    return [batch_size // n + (i < batch_size % n) for i in range(n)]


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
    score_percent: tuple[float, float] = (1.0, 20.0),
) -> RGBatch:
    """Training batch number ``step`` (0-based) of the trials of seed index ``seed_index``."""
    rng = rng_for(seed, "train", "rg", f"seed-{seed_index}", "batch", str(step))
    groups = []
    for task, count in zip(deg.tasks, task_counts(batch_size, deg.tasks), strict=True):
        clean = np.stack(
            [
                _band_patch(tiles[int(rng.integers(0, len(tiles)))], patch_size, rng, augment)
                for _ in range(count)
            ]
        )
        groups.append(degrade_group(task, clean, rng, deg))
    lo, hi = (p / 100 for p in score_percent)
    shape = (batch_size, patch_size, patch_size)
    return RGBatch(
        groups,
        s=rng.uniform(lo, hi, batch_size),
        noise=rng.standard_normal(shape),
        v0=rng.standard_normal(shape),
    )


def validation_set(
    tiles: dict[str, np.ndarray], *, seed: int, patches: int, patch_size: int, deg: Degradation
) -> RGBatch:
    """The fixed validation batch: ``patches`` crops of every val tile per task (no
    augmentation), one group per task; a tile smaller than a patch is cropped to its smaller side
    (rounded down to a multiple of the factor)."""
    size = min([patch_size] + [min(t.shape[1:]) for t in tiles.values()])
    size -= size % deg.factor
    mid = 0.5 * (deg.blur_sigma[0] + deg.blur_sigma[1])
    groups = []
    for task in deg.tasks:
        clean, rngs = [], []
        for image_id, tile in tiles.items():
            for i in range(patches):
                rng = rng_for(seed, "train", "rg", "val", image_id, task, str(i))
                clean.append(_band_patch(tile, size, rng, False))
                rngs.append(rng)
        # One draw stream for the group's degradation: the last patch's (fixed by the seed).
        groups.append(degrade_group(task, np.stack(clean), rngs[-1], deg, blur_sigma=mid))
    shape = (sum(len(g) for g in groups), size, size)
    rng = rng_for(seed, "train", "rg", "val", "power")
    return RGBatch(groups, s=np.zeros(0), noise=np.zeros(0), v0=rng.standard_normal(shape))
