r"""Matrix factorisations taken one sample at a time, so that a sample's result never depends on
the rest of its batch.

LAPACK drivers and their batched wrappers need not return bitwise the same factors for a matrix
alone and inside a batch (on this project's CPUs ``torch.linalg.eigh`` of a stack of 5×5 Gram
matrices differed from the one-matrix call by 1e-15 in some entries; GPU libraries switch to
other algorithms for batches of small matrices). For a convex model such differences stay
rounding differences, but they also decide the *arbitrary* parts of a factorisation (the signs of
singular vectors, the basis chosen inside a repeated or zero singular value), which a non-convex
solve (E3DTV) can amplify. Here the driver is called on each sample's own matrices (the leading
axis is the batch; a sample's few matrices, e.g. E3DTV's three gradient directions, form a stack
of the same shape whatever the batch), so a sample's factors are a function of that sample alone.
The Python loop costs microseconds per sample, small beside the factorisations and the FFTs of an
iteration.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["eigh", "svd"]


def _per_sample(fn: Callable[[Tensor], tuple[Tensor, ...]], a: Tensor) -> tuple[Tensor, ...]:
    if a.ndim == 2 or a.shape[0] <= 1:
        return tuple(fn(a))
    parts = [fn(sample) for sample in a]
    return tuple(torch.stack(column) for column in zip(*parts, strict=True))


def eigh(a: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` of the symmetric matrices ``a`` ``(B, ..., n, n)``, one sample
    (index of the leading axis) at a time."""
    return _per_sample(torch.linalg.eigh, a)


def _thin_svd(m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return torch.linalg.svd(m, full_matrices=False)


def svd(a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin ``torch.linalg.svd`` of the matrices ``a`` ``(B, ..., m, n)``, one sample at a
    time."""
    return _per_sample(_thin_svd, a)
